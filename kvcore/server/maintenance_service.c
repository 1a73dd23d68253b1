/* etcdserverpb.Maintenance: what `etcdctl endpoint status`, `endpoint
 * hashkv` and `alarm list` ask. */
#include "alarms.h"
#include "errors.h"
#include "kv.h"
#include "node.h"
#include "pipeline.h"
#include "raftnode.h"
#include "reads.h"
#include "services.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

/* The etcd API level Synod implements; clients parse it as a version. */
#define ETCD_API_VERSION "3.5.0"

static Etcdserverpb__ResponseHeader *header_at(node *n, arena *a, int64_t rev) {
  Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof *h);
  etcdserverpb__response_header__init(h);
  h->revision = rev;
  node_fill_header(n, h);
  return h;
}

static void status_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  node *n = ctx;
  arena *a = node_thread_arena();
  mvcc_stats st = {0};
  mvcc_stats_get(n->store, &st);
  Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
  resp.header = header_at(n, a, node_current_rev(n));
  resp.version = ETCD_API_VERSION;
  resp.dbsize = st.db_size;
  resp.dbsizeinuse = st.db_size_in_use;
  raftnode_view v;
  raftnode_get_view(n->rn, &v);
  resp.leader = v.st.lead;
  resp.raftindex = v.st.commit;
  resp.raftappliedindex = pipeline_applied_index(n->pipe);
  resp.raftterm = v.st.term;
  for (uint32_t i = 0; i < v.conf.n_learners; i++)
    if (v.conf.learners[i] == n->member_id) resp.islearner = true;
  char **alarms;
  size_t n_alarms = alarms_strings(n, a, &alarms);
  resp.errors = arena_alloc(a, (n_alarms + 1) * sizeof *resp.errors);
  if (v.st.lead == 0) resp.errors[resp.n_errors++] = (char *)"etcdserver: no leader";
  for (size_t i = 0; i < n_alarms; i++) resp.errors[resp.n_errors++] = alarms[i];
  rpc_reply(call, &resp.base);
  arena_reset(a);
}

static void hash_common(node *n, rpc_call *call, int64_t rev, bool kv) {
  arena *a = node_thread_arena();
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return rpc_fail_with(call, &ERR_INTERNAL);
  int64_t cur = mvcc_rev(t), compacted = mvcc_compact_rev(t);
  uint32_t hash = 0;
  const rpc_error *e = NULL;
  if (rev > cur) e = &ERR_FUTURE_REV;
  else if (rev > 0 && rev < compacted) e = &ERR_COMPACTED;
  else e = kv_mvcc_error(mvcc_hash_kv(t, rev, &hash));
  mvcc_txn_end(t);
  if (e) return rpc_fail_with(call, e);
  if (kv) {
    Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
    resp.header = header_at(n, a, cur);
    resp.hash = hash;
    resp.compact_revision = compacted;
    rpc_reply(call, &resp.base);
  } else {
    Etcdserverpb__HashResponse resp = ETCDSERVERPB__HASH_RESPONSE__INIT;
    resp.header = header_at(n, a, cur);
    resp.hash = hash;
    rpc_reply(call, &resp.base);
  }
  arena_reset(a);
}

static void hash_now(node *n, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  hash_common(n, call, 0, false);
}

static void hashkv_now(node *n, rpc_call *call, const ProtobufCMessage *m) {
  hash_common(n, call, ((const Etcdserverpb__HashKVRequest *)m)->revision, true);
}

/* Hashing reads the whole store: a long read (reads.h). */
static void hash_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  reads_submit_long(n->reads, call, m, hash_now);
}

static void hashkv_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  reads_submit_long(n->reads, call, m, hashkv_now);
}

/* Every action goes through the log, as etcd's (so a list is linearizable
 * and every member agrees on what was raised or disarmed). */
static void alarm_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_ALARM;
  req.alarm = (Etcdserverpb__AlarmRequest *)m;
  pipeline_propose(n->pipe, call, &req);
}

/* MoveLeader: only the leader hands over, to a voter; the reply waits until
 * the target leads (or an election timeout's worth of ticks has passed,
 * which is when raft abandons the transfer). */
typedef struct {
  node *n;
  rpc_call *call;
  uint64_t target;
} move;

static void *move_wait(void *arg) {
  move *mv = arg;
  node *n = mv->n;
  int64_t deadline = time_mono_ms() + 2 * (int64_t)n->cfg.election_ms + 1000;
  while (time_mono_ms() < deadline && !atomic_load(&n->stopping) && raftnode_lead(n->rn) != mv->target) {
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL);
  }
  if (raftnode_lead(n->rn) == mv->target) {
    Etcdserverpb__MoveLeaderResponse resp = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    node_fill_header(n, &h);
    resp.header = &h;
    rpc_reply(mv->call, &resp.base);
  } else {
    rpc_fail_with(mv->call, atomic_load(&n->stopping) ? &ERR_STOPPED : &ERR_TIMEOUT_LEADER_TRANSFER);
  }
  free(mv);
  atomic_fetch_sub(&n->background, 1);
  return NULL;
}

static void move_leader_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  const Etcdserverpb__MoveLeaderRequest *r = (const Etcdserverpb__MoveLeaderRequest *)m;
  raftnode_view v;
  raftnode_get_view(n->rn, &v);
  if (v.st.lead != n->member_id) return rpc_fail_with(call, &ERR_NOT_LEADER);
  bool voter = false;
  for (uint32_t i = 0; i < v.conf.n_voters; i++) voter |= v.conf.voters[i] == r->targetid;
  if (!voter) return rpc_fail_with(call, &ERR_BAD_LEADER_TRANSFEREE);
  if (r->targetid == n->member_id) {
    Etcdserverpb__MoveLeaderResponse resp = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    node_fill_header(n, &h);
    resp.header = &h;
    return rpc_reply(call, &resp.base);
  }
  raftnode_transfer_leader(n->rn, r->targetid);
  move *mv = xmalloc(sizeof *mv);
  *mv = (move){n, call, r->targetid};
  atomic_fetch_add(&n->background, 1);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, move_wait, mv) != 0) move_wait(mv);
  pthread_attr_destroy(&attr);
}

size_t maintenance_service_methods(node *n, rpc_method *out) {
  const rpc_method m[] = {
      {"/etcdserverpb.Maintenance/Status", &etcdserverpb__status_request__descriptor, status_rpc, NULL, false, n},
      {"/etcdserverpb.Maintenance/Hash", &etcdserverpb__hash_request__descriptor, hash_rpc, NULL, false, n},
      {"/etcdserverpb.Maintenance/HashKV", &etcdserverpb__hash_kvrequest__descriptor, hashkv_rpc, NULL, false, n},
      {"/etcdserverpb.Maintenance/Alarm", &etcdserverpb__alarm_request__descriptor, alarm_rpc, NULL, true, n},
      {"/etcdserverpb.Maintenance/MoveLeader", &etcdserverpb__move_leader_request__descriptor, move_leader_rpc, NULL, true, n},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) out[i] = m[i];
  return sizeof m / sizeof m[0];
}
