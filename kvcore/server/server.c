/* Bringing a member up and down: configuration, identity, storage, the write
 * pipeline, the gRPC server, and an orderly shutdown on SIGINT/SIGTERM. */
#include "server.h"

#include "base.h"
#include "alarms.h"
#include "bootstrap.h"
#include "compactor.h"
#include "concurrency.h"
#include "lease_service.h"
#include "node.h"
#include "pipeline.h"
#include "raftnode.h"
#include "reads.h"
#include "services.h"
#include "snapshot.h"
#include "transport.h"
#include "watch.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- main */

/* How long a stop waits for the client requests in flight to be answered
 * before cancelling them. Answers normally take milliseconds; the bound is
 * for writes that cannot commit (no quorum). The member removing itself
 * depends on it: its MemberRemove answer is made after the SIGTERM. */
enum { CLIENT_DRAIN_MS = 1000 };

static void print_version(void) {
  printf("synod Version: %s\netcd API Version: 3.5\n", SYNOD_VERSION);
}

static int start_server(const strlist *urls, const rpc_method *methods, size_t n_methods, size_t max_recv,
                        int min_ping_ms, const char *what, rpc_server **out, char *err, size_t err_len) {
  char **addrs = xcalloc(urls->n ? urls->n : 1, sizeof *addrs);
  for (size_t i = 0; i < urls->n; i++) {
    char hp[512];
    bool tls;
    url_host_port(urls->v[i], hp, sizeof hp, &tls);
    addrs[i] = xstrdup(hp);
  }
  rpc_server_options opt = {
      .listen = (const char *const *)addrs,
      .n_listen = urls->n,
      .max_recv_bytes = max_recv,
      .threads = getenv("SYNOD_GRPC_THREADS") ? atoi(getenv("SYNOD_GRPC_THREADS")) : 1,
      .min_ping_interval_ms = min_ping_ms,
  };
  int rc = rpc_server_start(&opt, methods, n_methods, out, err, err_len);
  for (size_t i = 0; i < urls->n; i++) {
    if (rc == 0) log_info("serving insecure %s on %s", what, addrs[i]);
    free(addrs[i]);
  }
  free(addrs);
  return rc;
}

static bool was_removed(void *arg, uint64_t id) {
  node *n = arg;
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return false;
  bool r = members_was_removed(t, id);
  mvcc_txn_end(t);
  return r;
}

static void told_removed(void *arg) {
  node *n = arg;
  if (!atomic_exchange(&n->removed, true)) {
    log_error("the member has been permanently removed from the cluster; shutting down");
    kill(getpid(), SIGTERM);
  }
}

static void free_node(node *n) {
  member_cache_destroy(&n->members);
  config_free(&n->cfg);
  free(n);
}

int synod_main(int argc, char **argv, char **envp) {
  node *n = xcalloc(1, sizeof *n);
  member_cache_init(&n->members);
  char err[1024] = "";
  int exit_code = 1;
  if (config_parse(&n->cfg, argc, argv, envp, err, sizeof err, &exit_code) < 0) {
    fprintf(stderr, "synod: %s\n", err);
    if (exit_code == 2) fprintf(stderr, "See 'synod --help'.\n");
    free_node(n);
    return exit_code;
  }
  if (n->cfg.show_help || n->cfg.show_version) {
    if (n->cfg.show_help) fputs(config_usage(), stdout);
    else print_version();
    free_node(n);
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
    free_node(n);
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
    free_node(n);
    return 1;
  }
  rpc_global_init();
  founding_log founding;
  size_t n_methods, n_peer_methods;
  const rpc_method *methods, *peer_methods;
  if (bootstrap_member(n, &founding, err, sizeof err) < 0) goto fail_store;
  /* Leases load before anything can use them: the peer server's methods,
   * and the pipeline, whose replay applies lease entries. */
  if (lease_service_open(n, err, sizeof err) < 0) goto fail_store;
  /* Before the peer server: a transfer may begin as soon as it listens. */
  snapshot_cleanup(n);
  alarms_reload(n);

  /* Peers first: Raft messages may arrive as soon as the others see us. */
  transport_options to = {.self_id = n->member_id, .cluster_id = n->cluster_id, .was_removed = was_removed,
                          .removed = told_removed, .arg = n};
  n->tr = transport_new(&to);
  {
    member_list l;
    member_cache_copy(&n->members, &l, NULL);
    transport_set_peers(n->tr, &l);
    member_list_free(&l);
  }
  peer_methods = node_peer_methods(n, &n_peer_methods);
  if (start_server(&n->cfg.listen_peer_urls, peer_methods, n_peer_methods, 64 << 20, 1000, "peer traffic",
                   &n->peer_rpc, err, sizeof err) < 0)
    goto fail_transport;
  n->reads = reads_start(n);
  if (watch_service_start(n, err, sizeof err) < 0) goto fail_peers;
  {
    /* Before the pipeline: the apply thread calls it after every batch. */
    /* SYNOD_OBSERVE_QUEUE_LIMIT: a test hook, like the watch's */
    const char *ql = getenv("SYNOD_OBSERVE_QUEUE_LIMIT");
    cc_options co = {.store = n->store, .observer_queue_limit = ql ? (size_t)strtoull(ql, NULL, 10) : 0};
    n->cc = cc_table_new(&co);
  }
  rc = pipeline_open(n, wal_dir, founding.ents, founding.n, &n->pipe, err, sizeof err);
  founding_log_free(&founding);
  if (rc < 0) goto fail_peers;
  transport_set_raft(n->tr, n->rn);
  node_members_changed(n);
  /* Reads wait for the store to reach their read point; what it already
   * holds counts (a restart that replays nothing must still serve them). */
  node_applied(n, pipeline_applied_index(n->pipe));
  lease_service_start(n);

  methods = node_methods(n, &n_methods);
  /* etcd: the request limit plus 512 KiB of gRPC overhead */
  if (start_server(&n->cfg.listen_client_urls, methods, n_methods, n->cfg.max_request_bytes + 512 * 1024, 0,
                   "client requests", &n->rpc, err, sizeof err) < 0)
    goto fail_pipeline;
  n->compactor = compactor_start(n);
  log_info("ready to serve client requests (member %016" PRIx64 ", cluster %016" PRIx64 ", name %s)", n->member_id,
           n->cluster_id, n->cfg.name);

  int sig = 0;
  sigwait(&sigs, &sig);
  log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");

  /* Stop intake, let the pipeline answer what it holds, wait for gRPC to
   * release every call, then make the store durable. */
  atomic_store(&n->stopping, true);
  rpc_server_drain(n->rpc, CLIENT_DRAIN_MS);
  compactor_stop(n->compactor);
  lease_service_stop(n); /* no more expiry proposals */
  while (atomic_load(&n->background) > 0) {
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
  }
  transport_set_raft(n->tr, NULL);
  rpc_server_shutdown(n->peer_rpc);
  reads_stop(n->reads);
  n->reads = NULL;
  pipeline_close(n->pipe);
  rpc_server_free(n->rpc);
  rpc_server_free(n->peer_rpc);
  transport_free(n->tr);
  lease_service_free(n); /* keep-alive streams and forwarded calls are over */
  watch_hub_stop(n->watch); /* every Watch stream is closed by now */
  cc_table_free(n->cc);     /* every Lock, Campaign and Observe call too */
  n->cc = NULL;
  alarms_free(n);
  mvcc_close(n->store);
  rpc_global_shutdown();
  exit_code = atomic_load(&n->removed) ? 1 : 0;
  free_node(n);
  log_info("stopped");
  return exit_code;

fail_pipeline:
  lease_service_stop(n);
  transport_set_raft(n->tr, NULL);
  reads_stop(n->reads);
  n->reads = NULL;
  pipeline_close(n->pipe);
fail_peers:
  if (n->reads) reads_stop(n->reads);
  if (n->watch) watch_hub_stop(n->watch);
  cc_table_free(n->cc);
  n->cc = NULL;
  rpc_server_free(n->peer_rpc);
fail_transport:
  transport_free(n->tr);
fail_store:
  fprintf(stderr, "synod: %s\n", err);
  lease_service_free(n);
  founding_log_free(&founding);
  alarms_free(n);
  mvcc_close(n->store);
  rpc_global_shutdown();
  free_node(n);
  return 1;
}
