/* Bringing a member up and down: configuration, identity, storage, the write
 * pipeline, the gRPC server, and an orderly shutdown on SIGINT/SIGTERM. */
#include "server.h"

#include "base.h"
#include "compactor.h"
#include "node.h"
#include "pipeline.h"
#include "services.h"
#include "watch.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

void node_fill_header(const node *n, Etcdserverpb__ResponseHeader *h) {
  h->cluster_id = n->cluster_id;
  h->member_id = n->member_id;
  h->raft_term = atomic_load(&((node *)n)->term);
}

static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;
static void arena_destroy(void *a) { arena_free(a); }
static void arena_key_init(void) { pthread_key_create(&arena_key, arena_destroy); }

arena *node_thread_arena(void) {
  pthread_once(&arena_once, arena_key_init);
  arena *a = pthread_getspecific(arena_key);
  if (!a) {
    a = arena_new();
    pthread_setspecific(arena_key, a);
  }
  return a;
}

const rpc_method *node_methods(node *n, size_t *count) {
  static rpc_method table[4 * SERVICE_MAX];
  size_t k = 0;
  k += kv_service_methods(n, table + k);
  k += maintenance_service_methods(n, table + k);
  k += cluster_service_methods(n, table + k);
  k += health_service_methods(n, table + k);
  k += watch_service_methods(n, table + k);
  k += pending_service_methods(n, table + k);
  *count = k;
  return table;
}

/* ---------------------------------------------------------------- identity */

/* etcd's member ID: SHA-1 over the sorted peer URLs, concatenated, then the
 * cluster token; the first 8 bytes, big-endian. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static uint64_t compute_member_id(const strlist *peer_urls, const char *token) {
  char **sorted = xmalloc((peer_urls->n ? peer_urls->n : 1) * sizeof *sorted);
  memcpy(sorted, peer_urls->v, peer_urls->n * sizeof *sorted);
  qsort(sorted, peer_urls->n, sizeof *sorted, cmp_str);
  sha1_ctx c;
  sha1_init(&c);
  for (size_t i = 0; i < peer_urls->n; i++) sha1_update(&c, sorted[i], strlen(sorted[i]));
  sha1_update(&c, token, strlen(token));
  uint8_t d[20];
  sha1_final(&c, d);
  free(sorted);
  return get_be64(d);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* etcd's cluster ID: SHA-1 over the sorted member IDs, big-endian. */
static uint64_t compute_cluster_id(uint64_t *ids, size_t n) {
  qsort(ids, n, sizeof *ids, cmp_u64);
  uint8_t *b = xmalloc(8 * (n ? n : 1));
  for (size_t i = 0; i < n; i++) put_be64(b + 8 * i, ids[i]);
  sha1_ctx c;
  sha1_init(&c);
  sha1_update(&c, b, 8 * n);
  uint8_t d[20];
  sha1_final(&c, d);
  free(b);
  return get_be64(d);
}

/* Parses --initial-cluster ("a=http://x:2380,a=http://y:2380,b=...") and
 * derives this member's and the cluster's IDs. */
static int bootstrap_identity(node *n, char *err, size_t err_len) {
  const server_config *cfg = &n->cfg;
  strlist items = {0};
  if (strlist_split(&items, cfg->initial_cluster) < 0 || items.n == 0) {
    snprintf(err, err_len, "invalid --initial-cluster \"%s\"", cfg->initial_cluster);
    return -1;
  }
  strlist mine = {0};
  char other[256] = "";
  int rc = 0;
  for (size_t i = 0; i < items.n && rc == 0; i++) {
    char *eq = strchr(items.v[i], '=');
    if (!eq || eq == items.v[i] || !eq[1]) {
      snprintf(err, err_len, "invalid --initial-cluster entry \"%s\" (want name=URL)", items.v[i]);
      rc = -1;
      break;
    }
    *eq = 0;
    char hp[512];
    bool tls;
    if (url_host_port(eq + 1, hp, sizeof hp, &tls) < 0) {
      snprintf(err, err_len, "invalid --initial-cluster URL \"%s\"", eq + 1);
      rc = -1;
      break;
    }
    if (strcmp(items.v[i], cfg->name) == 0) {
      mine.v = xrealloc(mine.v, (mine.n + 1) * sizeof *mine.v);
      mine.v[mine.n++] = xstrdup(eq + 1);
    } else if (!*other) {
      snprintf(other, sizeof other, "%s", items.v[i]);
    }
  }
  if (rc == 0 && mine.n == 0) {
    snprintf(err, err_len, "couldn't find local name \"%s\" in the initial cluster configuration", cfg->name);
    rc = -1;
  }
  if (rc == 0 && *other) {
    snprintf(err, err_len,
             "--initial-cluster names another member (\"%s\"): multi-member clusters are not supported yet by Synod",
             other);
    rc = -1;
  }
  if (rc == 0) {
    /* etcd insists the member's entry matches its advertised peer URLs. */
    strlist a = mine, b = cfg->initial_advertise_peer_urls;
    char **sa = xmalloc(a.n * sizeof *sa), **sb = xmalloc((b.n ? b.n : 1) * sizeof *sb);
    memcpy(sa, a.v, a.n * sizeof *sa);
    memcpy(sb, b.v, b.n * sizeof *sb);
    qsort(sa, a.n, sizeof *sa, cmp_str);
    qsort(sb, b.n, sizeof *sb, cmp_str);
    bool same = a.n == b.n;
    for (size_t i = 0; same && i < a.n; i++) same = strcmp(sa[i], sb[i]) == 0;
    free(sa);
    free(sb);
    if (!same) {
      snprintf(err, err_len, "--initial-cluster has %s=%s but missing from --initial-advertise-peer-urls=%s",
               cfg->name, mine.v[0], b.n ? b.v[0] : "");
      rc = -1;
    }
  }
  if (rc == 0) {
    n->member_id = compute_member_id(&mine, cfg->initial_cluster_token);
    uint64_t ids[1] = {n->member_id};
    n->cluster_id = compute_cluster_id(ids, 1);
  }
  strlist_free(&mine);
  strlist_free(&items);
  return rc;
}

/* The identity lives in the store's metadata table, written once: on a
 * restart it wins over the --initial-* flags, as in etcd. */
static int load_or_create_identity(node *n, char *err, size_t err_len) {
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return snprintf(err, err_len, "cannot read the store"), -1;
  const uint8_t *v;
  size_t len;
  bool found = mvcc_aux_get(t, MVCC_AUX_META, "identity", 8, &v, &len) == MVCC_OK && len == 16;
  if (found) {
    n->member_id = get_be64(v);
    n->cluster_id = get_be64(v + 8);
  }
  mvcc_txn_end(t);
  if (found) {
    log_info("restarting member %016" PRIx64 " in cluster %016" PRIx64 " (--initial-* flags are ignored)",
             n->member_id, n->cluster_id);
    return 0;
  }
  if (strcmp(n->cfg.initial_cluster_state, "existing") == 0) {
    snprintf(err, err_len, "--initial-cluster-state=existing (joining a running cluster) is not supported yet by Synod");
    return -1;
  }
  if (bootstrap_identity(n, err, err_len) < 0) return -1;
  uint8_t id[16];
  put_be64(id, n->member_id);
  put_be64(id + 8, n->cluster_id);
  if (mvcc_write_begin(n->store, &t) != MVCC_OK || mvcc_aux_put(t, MVCC_AUX_META, "identity", 8, id, 16) != MVCC_OK ||
      mvcc_write_commit(t) != MVCC_OK || mvcc_checkpoint(n->store) != MVCC_OK) {
    snprintf(err, err_len, "cannot record the member identity in the store");
    return -1;
  }
  log_info("starting new member %016" PRIx64 " in new cluster %016" PRIx64, n->member_id, n->cluster_id);
  return 0;
}

/* ---------------------------------------------------------------- main */

static void print_version(void) {
  printf("synod Version: %s\netcd API Version: 3.5\n", SYNOD_VERSION);
}

static int start_rpc(node *n, char *err, size_t err_len) {
  const server_config *cfg = &n->cfg;
  char **addrs = xcalloc(cfg->listen_client_urls.n, sizeof *addrs);
  for (size_t i = 0; i < cfg->listen_client_urls.n; i++) {
    char hp[512];
    bool tls;
    url_host_port(cfg->listen_client_urls.v[i], hp, sizeof hp, &tls);
    addrs[i] = xstrdup(hp);
  }
  size_t n_methods;
  const rpc_method *methods = node_methods(n, &n_methods);
  rpc_server_options opt = {
      .listen = (const char *const *)addrs,
      .n_listen = cfg->listen_client_urls.n,
      /* etcd: the request limit plus 512 KiB of gRPC overhead */
      .max_recv_bytes = cfg->max_request_bytes + 512 * 1024,
      .threads = getenv("SYNOD_GRPC_THREADS") ? atoi(getenv("SYNOD_GRPC_THREADS")) : 1,
  };
  int rc = rpc_server_start(&opt, methods, n_methods, &n->rpc, err, err_len);
  for (size_t i = 0; i < cfg->listen_client_urls.n; i++) {
    if (rc == 0) log_info("serving insecure client requests on %s", addrs[i]);
    free(addrs[i]);
  }
  free(addrs);
  return rc;
}

int synod_main(int argc, char **argv, char **envp) {
  node *n = xcalloc(1, sizeof *n);
  char err[1024] = "";
  int exit_code = 1;
  if (config_parse(&n->cfg, argc, argv, envp, err, sizeof err, &exit_code) < 0) {
    fprintf(stderr, "synod: %s\n", err);
    if (exit_code == 2) fprintf(stderr, "See 'synod --help'.\n");
    config_free(&n->cfg);
    free(n);
    return exit_code;
  }
  if (n->cfg.show_help || n->cfg.show_version) {
    if (n->cfg.show_help) fputs(config_usage(), stdout);
    else print_version();
    config_free(&n->cfg);
    free(n);
    return 0;
  }
  log_level lvl;
  log_level_parse(n->cfg.log_level, &lvl);
  log_set_level(lvl);

  /* Signals are taken synchronously by this thread (sigwait), so block them
   * before any other thread exists; every thread inherits the mask. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  n->started_ns = time_mono_ns();

  snprintf(n->member_dir, sizeof n->member_dir, "%s/member", n->cfg.data_dir);
  char kv_dir[4200], wal_dir[4200];
  snprintf(kv_dir, sizeof kv_dir, "%s/kv", n->member_dir);
  if (n->cfg.wal_dir) snprintf(wal_dir, sizeof wal_dir, "%s", n->cfg.wal_dir);
  else snprintf(wal_dir, sizeof wal_dir, "%s/wal", n->member_dir);
  if (mkdir_all(n->member_dir, 0700) < 0) {
    fprintf(stderr, "synod: cannot create data directory %s: %s\n", n->member_dir, strerror(errno));
    config_free(&n->cfg);
    free(n);
    return 1;
  }

  /* The map is sparse: reserve well beyond the quota so that the quota,
   * not the map, is what stops writes. */
  uint64_t map = (uint64_t)n->cfg.quota_backend_bytes * 2;
  if (map < (8ULL << 30)) map = 8ULL << 30;
  mvcc_options mo = {.dir = kv_dir, .map_size = map};
  int rc = mvcc_open(&mo, &n->store);
  if (rc) {
    fprintf(stderr, "synod: cannot open the store in %s: %s\n", kv_dir, mvcc_strerror(rc));
    config_free(&n->cfg);
    free(n);
    return 1;
  }
  rpc_global_init();
  if (load_or_create_identity(n, err, sizeof err) < 0 || watch_service_start(n, err, sizeof err) < 0 ||
      pipeline_open(n, wal_dir, &n->pipe, err, sizeof err) < 0) {
    fprintf(stderr, "synod: %s\n", err);
    watch_hub_stop(n->watch);
    mvcc_close(n->store);
    rpc_global_shutdown();
    config_free(&n->cfg);
    free(n);
    return 1;
  }
  if (start_rpc(n, err, sizeof err) < 0) {
    fprintf(stderr, "synod: %s\n", err);
    pipeline_close(n->pipe);
    watch_hub_stop(n->watch);
    mvcc_close(n->store);
    rpc_global_shutdown();
    config_free(&n->cfg);
    free(n);
    return 1;
  }
  n->compactor = compactor_start(n);
  log_info("ready to serve client requests (member %016" PRIx64 ", cluster %016" PRIx64 ", name %s)", n->member_id,
           n->cluster_id, n->cfg.name);

  int sig = 0;
  sigwait(&sigs, &sig);
  log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");

  /* Stop intake, let the pipeline answer everything it holds, wait for
   * gRPC to release every call, stop the watch hub, then make the store
   * durable. */
  rpc_server_shutdown(n->rpc);
  compactor_stop(n->compactor);
  pipeline_close(n->pipe);
  rpc_server_free(n->rpc);
  watch_hub_stop(n->watch); /* every Watch stream is closed by now */
  mvcc_close(n->store);
  rpc_global_shutdown();
  config_free(&n->cfg);
  free(n);
  log_info("stopped");
  return 0;
}
