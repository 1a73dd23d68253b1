/* A member's identity, decided once and kept in the store:
 *
 *   restart         the stored identity wins; --initial-* flags are ignored
 *   new cluster     IDs from --initial-cluster (etcd's rules); every founding
 *                   member writes the same founding log: one membership
 *                   change per member, in ID order, committed at term 1
 *   existing        (--initial-cluster-state=existing) the member was added
 *                   with MemberAdd; it asks the others for the cluster ID
 *                   and finds itself by its peer URLs; its log starts empty
 *                   and the leader brings it up to date */
#include "bootstrap.h"

#include "base.h"
#include "membership.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool same_urls(const strlist *a, const strlist *b) {
  if (a->n != b->n) return false;
  char **sa = xmalloc((a->n ? a->n : 1) * sizeof *sa), **sb = xmalloc((b->n ? b->n : 1) * sizeof *sb);
  memcpy(sa, a->v, a->n * sizeof *sa);
  memcpy(sb, b->v, b->n * sizeof *sb);
  qsort(sa, a->n, sizeof *sa, cmp_str);
  qsort(sb, b->n, sizeof *sb, cmp_str);
  bool same = true;
  for (size_t i = 0; same && i < a->n; i++) same = strcmp(sa[i], sb[i]) == 0;
  free(sa);
  free(sb);
  return same;
}

int bootstrap_write_identity(mvcc_txn *w, uint64_t member_id, uint64_t cluster_id) {
  uint8_t id[16];
  put_be64(id, member_id);
  put_be64(id + 8, cluster_id);
  return mvcc_aux_put(w, MVCC_AUX_META, "identity", 8, id, 16);
}

static int store_identity(node *n, char *err, size_t err_len) {
  mvcc_txn *t;
  if (mvcc_write_begin(n->store, &t) != MVCC_OK || bootstrap_write_identity(t, n->member_id, n->cluster_id) != MVCC_OK ||
      mvcc_write_commit(t) != MVCC_OK || mvcc_checkpoint(n->store) != MVCC_OK) {
    snprintf(err, err_len, "cannot record the member identity in the store");
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- new cluster */

static int cmp_member_id(const void *a, const void *b) {
  uint64_t x = ((const initial_member *)a)->id, y = ((const initial_member *)b)->id;
  return x < y ? -1 : x > y;
}

/* etcd's VerifyBootstrap for a new cluster: this member is in
 * --initial-cluster, with its advertised peer URLs. */
static int check_new(const char *name, const char *spec, const char *token, const strlist *adv, initial_cluster *ic,
                     const initial_member **self_out, char *err, size_t err_len) {
  if (initial_cluster_parse(spec, token, ic, err, err_len) < 0) return -1;
  const initial_member *self = NULL;
  for (size_t i = 0; i < ic->n; i++)
    if (strcmp(ic->v[i].name, name) == 0) self = &ic->v[i];
  if (!self) {
    snprintf(err, err_len, "couldn't find local name \"%s\" in the initial cluster configuration", name);
    initial_cluster_free(ic);
    return -1;
  }
  if (!same_urls(&self->peer_urls, adv)) {
    snprintf(err, err_len, "--initial-cluster has %s=%s but missing from --initial-advertise-peer-urls=%s", name,
             self->peer_urls.v[0], adv->n ? adv->v[0] : "");
    initial_cluster_free(ic);
    return -1;
  }
  *self_out = self;
  return 0;
}

int bootstrap_check_new(const char *name, const char *initial_cluster_spec, const char *token, const strlist *adv,
                        uint64_t *member_id, uint64_t *cluster_id, char *err, size_t err_len) {
  initial_cluster ic;
  const initial_member *self;
  if (check_new(name, initial_cluster_spec, token, adv, &ic, &self, err, err_len) < 0) return -1;
  *member_id = self->id;
  *cluster_id = ic.cluster_id;
  initial_cluster_free(&ic);
  return 0;
}

static int bootstrap_new(node *n, founding_log *log, char *err, size_t err_len) {
  const server_config *cfg = &n->cfg;
  initial_cluster ic;
  const initial_member *self;
  if (check_new(cfg->name, cfg->initial_cluster, cfg->initial_cluster_token, &cfg->initial_advertise_peer_urls, &ic,
                &self, err, err_len) < 0)
    return -1;
  n->member_id = self->id;
  n->cluster_id = ic.cluster_id;

  /* The founding log: identical on every founding member. */
  qsort(ic.v, ic.n, sizeof *ic.v, cmp_member_id);
  log->n = ic.n;
  log->ents = xcalloc(ic.n, sizeof *log->ents);
  for (size_t i = 0; i < ic.n; i++) {
    buf ctx = {0};
    members_encode_context(ic.v[i].id, &ic.v[i].peer_urls, false, ic.v[i].name, &ctx);
    raft_conf_change cc = {.type = RAFT_CC_ADD_VOTER, .node_id = ic.v[i].id, .ctx = ctx.data, .ctx_len = ctx.len};
    buf data = {0};
    raft_cc_encode(&cc, &data);
    buf_free(&ctx);
    log->ents[i] = (raft_entry){.term = 1, .index = i + 1, .data = data.data, .len = (uint32_t)data.len,
                                .type = RAFT_ENTRY_CONF_CHANGE};
  }
  /* Until the founding log is applied, talk to the founders by these URLs. */
  member_list l = {0};
  l.n = ic.n;
  l.v = xcalloc(ic.n, sizeof *l.v);
  for (size_t i = 0; i < ic.n; i++) {
    l.v[i].id = ic.v[i].id;
    l.v[i].name = xstrdup(ic.v[i].name);
    l.v[i].peer_urls = ic.v[i].peer_urls;
    memset(&ic.v[i].peer_urls, 0, sizeof ic.v[i].peer_urls);
  }
  member_cache_set(&n->members, &l);
  initial_cluster_free(&ic);
  if (store_identity(n, err, err_len) < 0) return -1;
  log_info("starting new member %016" PRIx64 " in new cluster %016" PRIx64 " (%zu founding members)", n->member_id,
           n->cluster_id, log->n);
  return 0;
}

/* ---------------------------------------------------------------- existing cluster */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  rpc_code code;
  Synodpb__MembersResponse *resp;
} members_call;

static void members_done(void *arg, rpc_code code, const char *message, const ProtobufCMessage *resp) {
  (void)message;
  members_call *c = arg;
  pthread_mutex_lock(&c->mu);
  c->code = code;
  if (code == RPC_OK && resp) {
    /* copy: resp is freed when we return */
    size_t len = protobuf_c_message_get_packed_size(resp);
    uint8_t *b = xmalloc(len ? len : 1);
    protobuf_c_message_pack(resp, b);
    c->resp = synodpb__members_response__unpack(NULL, len, b);
    free(b);
  }
  c->done = true;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static Synodpb__MembersResponse *ask_members(const char *url) {
  char target[512];
  bool tls;
  if (url_host_port(url, target, sizeof target, &tls) < 0) return NULL;
  rpc_channel *ch = rpc_channel_open(target, 0);
  members_call c = {.done = false};
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  Synodpb__MembersRequest req = SYNODPB__MEMBERS_REQUEST__INIT;
  rpc_call_unary(ch, "/synodpb.Peer/Members", &req.base, &synodpb__members_response__descriptor, 3000, members_done,
                 &c);
  pthread_mutex_lock(&c.mu);
  while (!c.done) pthread_cond_wait(&c.cv, &c.mu);
  pthread_mutex_unlock(&c.mu);
  rpc_channel_close(ch);
  pthread_mutex_destroy(&c.mu);
  pthread_cond_destroy(&c.cv);
  return c.resp;
}

static int bootstrap_join(node *n, char *err, size_t err_len) {
  const server_config *cfg = &n->cfg;
  initial_cluster ic;
  if (initial_cluster_parse(cfg->initial_cluster, cfg->initial_cluster_token, &ic, err, err_len) < 0) return -1;
  Synodpb__MembersResponse *resp = NULL;
  for (size_t i = 0; i < ic.n && !resp; i++) {
    if (strcmp(ic.v[i].name, cfg->name) == 0) continue;
    for (size_t k = 0; k < ic.v[i].peer_urls.n && !resp; k++) resp = ask_members(ic.v[i].peer_urls.v[k]);
  }
  initial_cluster_free(&ic);
  if (!resp) {
    snprintf(err, err_len, "cannot fetch cluster info from any peer in --initial-cluster");
    return -1;
  }
  const Etcdserverpb__Member *self = NULL;
  for (size_t i = 0; i < resp->n_members && !self; i++) {
    strlist urls = {resp->members[i]->peerurls, resp->members[i]->n_peerurls};
    if (same_urls(&urls, &cfg->initial_advertise_peer_urls)) self = resp->members[i];
  }
  if (!self) {
    snprintf(err, err_len,
             "error validating peerURLs: member with peer URLs %s has not been added to the cluster (use etcdctl member add first)",
             cfg->initial_advertise_peer_urls.n ? cfg->initial_advertise_peer_urls.v[0] : "");
    synodpb__members_response__free_unpacked(resp, NULL);
    return -1;
  }
  n->member_id = self->id;
  n->cluster_id = resp->cluster_id;
  member_list l = {0};
  l.n = resp->n_members;
  l.v = xcalloc(l.n ? l.n : 1, sizeof *l.v);
  for (size_t i = 0; i < l.n; i++) {
    const Etcdserverpb__Member *m = resp->members[i];
    l.v[i].id = m->id;
    l.v[i].name = xstrdup(m->name ? m->name : "");
    for (size_t k = 0; k < m->n_peerurls; k++) {
      l.v[i].peer_urls.v = xrealloc(l.v[i].peer_urls.v, (k + 1) * sizeof(char *));
      l.v[i].peer_urls.v[k] = xstrdup(m->peerurls[k]);
      l.v[i].peer_urls.n = k + 1;
    }
    l.v[i].is_learner = m->islearner;
  }
  member_cache_set(&n->members, &l);
  synodpb__members_response__free_unpacked(resp, NULL);
  if (store_identity(n, err, err_len) < 0) return -1;
  log_info("joining cluster %016" PRIx64 " as member %016" PRIx64, n->cluster_id, n->member_id);
  return 0;
}

/* ---------------------------------------------------------------- entry point */

int bootstrap_member(node *n, founding_log *log, char *err, size_t err_len) {
  memset(log, 0, sizeof *log);
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return snprintf(err, err_len, "cannot read the store"), -1;
  const uint8_t *v;
  size_t len;
  bool found = mvcc_aux_get(t, MVCC_AUX_META, "identity", 8, &v, &len) == MVCC_OK && len == 16;
  if (found) {
    n->member_id = get_be64(v);
    n->cluster_id = get_be64(v + 8);
  }
  member_list l;
  int rc = found ? members_load(t, &l) : MVCC_OK;
  mvcc_txn_end(t);
  if (found) {
    if (rc) return snprintf(err, err_len, "cannot read the member list: %s", mvcc_strerror(rc)), -1;
    member_cache_set(&n->members, &l);
    log_info("restarting member %016" PRIx64 " in cluster %016" PRIx64 " (--initial-* flags are ignored)",
             n->member_id, n->cluster_id);
    return 0;
  }
  if (strcmp(n->cfg.initial_cluster_state, "existing") == 0) return bootstrap_join(n, err, err_len);
  return bootstrap_new(n, log, err, err_len);
}

void founding_log_free(founding_log *log) {
  for (size_t i = 0; i < log->n; i++) free(log->ents[i].data);
  free(log->ents);
  memset(log, 0, sizeof *log);
}
