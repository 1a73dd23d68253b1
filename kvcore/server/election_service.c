/* v3electionpb.Election, inside the server. Campaign is a contender
 * (contend.h) whose key carries the candidate's value; Proclaim and Resign
 * are Txns guarded by the leader key's create revision; Leader reads the
 * oldest key under the prefix; Observe follows the prefix through the
 * member's concurrency table, every change of leadership and every
 * proclamation, revision by revision. See docs/concurrency.md. */
#include "contend.h"
#include "errors.h"
#include "node.h"
#include "pipeline.h"
#include "reads.h"
#include "services.h"

#include <stdlib.h>
#include <string.h>

static void campaign_granted(contender *c, int64_t rev) {
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(c->n, &hdr);
  hdr.revision = rev;
  V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;
  lk.name = c->name;
  lk.key = (ProtobufCBinaryData){c->key_len, c->key};
  lk.rev = c->create_rev;
  lk.lease = c->lease;
  V3electionpb__CampaignResponse resp = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
  resp.header = &hdr;
  resp.leader = &lk;
  rpc_reply(c->call, &resp.base);
}

static void campaign_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  const V3electionpb__CampaignRequest *r = (const V3electionpb__CampaignRequest *)m;
  contender *c = rpc_call_alloc(call, sizeof *c);
  c->n = ctx;
  c->call = call;
  c->name = r->name;
  c->value = r->value;
  c->lease = r->lease;
  c->campaign = true;
  c->lost_err = &ERR_ELECTION_SESSION_EXPIRED;
  c->granted = campaign_granted;
  contender_start(c);
}

/* ---------------------------------------------------------------- Proclaim, Resign */

typedef struct {
  rpc_call *call;
  bool proclaim;
} guarded;

static void guarded_done(void *arg, const rpc_error *err, const ProtobufCMessage *resp) {
  guarded *g = arg;
  rpc_call *call = g->call;
  if (err) return contend_fail_kv(call, err);
  const Etcdserverpb__TxnResponse *r = (const Etcdserverpb__TxnResponse *)resp;
  if (g->proclaim) {
    if (!r->succeeded) return rpc_fail_with(call, &ERR_ELECTION_NOT_LEADER);
    V3electionpb__ProclaimResponse out = V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
    out.header = r->header;
    rpc_reply(call, &out.base);
  } else {
    /* etcd: resigning a key that is gone already is not an error. */
    V3electionpb__ResignResponse out = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
    out.header = r->header;
    rpc_reply(call, &out.base);
  }
}

/* Proclaim: Put(key, value) if the key is still the one elected (same
 * create revision) and still leads: no key under the prefix is older.
 * Resign: Delete(key) if it is still the one elected. */
static void submit_guarded(node *n, rpc_call *call, const V3electionpb__LeaderKey *l, const ProtobufCBinaryData *value,
                           bool proclaim) {
  Etcdserverpb__Compare same = ETCDSERVERPB__COMPARE__INIT;
  same.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
  same.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
  same.key = l->key;
  same.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
  same.create_revision = l->rev;
  uint8_t *pfx = rpc_call_alloc(call, l->name.len + 1);
  size_t pfx_len = cc_prefix(l->name.data, l->name.len, pfx);
  uint8_t *end = rpc_call_alloc(call, pfx_len);
  mvcc_span span = cc_prefix_span(pfx, pfx_len, end);
  Etcdserverpb__Compare oldest = ETCDSERVERPB__COMPARE__INIT;
  oldest.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
  oldest.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
  oldest.key = (ProtobufCBinaryData){pfx_len, pfx};
  oldest.range_end = span.open_end ? (ProtobufCBinaryData){1, (uint8_t *)"\0"}
                                   : (ProtobufCBinaryData){span.end_len, (uint8_t *)span.end};
  oldest.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
  oldest.create_revision = l->rev - 1;
  Etcdserverpb__Compare *cmps[] = {&same, &oldest};
  Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
  put.key = l->key;
  if (value) put.value = *value;
  put.lease = l->lease;
  Etcdserverpb__DeleteRangeRequest del = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
  del.key = l->key;
  Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
  if (proclaim) {
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op.request_put = &put;
  } else {
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op.request_delete_range = &del;
  }
  Etcdserverpb__RequestOp *ops[] = {&op};
  Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
  txn.n_compare = proclaim ? 2 : 1;
  txn.compare = cmps;
  txn.n_success = 1;
  txn.success = ops;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_TXN;
  req.txn = &txn;
  guarded *g = rpc_call_alloc(call, sizeof *g);
  g->call = call;
  g->proclaim = proclaim;
  pipeline_submit(n->pipe, &req, rpc_call_deadline(call), guarded_done, g);
}

static void proclaim_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  const V3electionpb__ProclaimRequest *r = (const V3electionpb__ProclaimRequest *)m;
  if (!r->leader) return rpc_fail_with(call, &ERR_ELECTION_MISSING_LEADER);
  if (r->leader->key.len == 0) return contend_fail_kv(call, &ERR_EMPTY_KEY);
  submit_guarded(ctx, call, r->leader, &r->value, true);
}

static void resign_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  const V3electionpb__ResignRequest *r = (const V3electionpb__ResignRequest *)m;
  if (!r->leader) return rpc_fail_with(call, &ERR_ELECTION_MISSING_LEADER);
  if (r->leader->key.len == 0) return contend_fail_kv(call, &ERR_EMPTY_KEY);
  submit_guarded(ctx, call, r->leader, NULL, false);
}

/* ---------------------------------------------------------------- Leader */

static void fill_kv(Mvccpb__KeyValue *out, const mvcc_kv *kv) {
  out->key = (ProtobufCBinaryData){kv->key_len, (uint8_t *)kv->key};
  out->value = (ProtobufCBinaryData){kv->value_len, (uint8_t *)kv->value};
  out->create_revision = kv->create_rev;
  out->mod_revision = kv->mod_rev;
  out->version = kv->version;
  out->lease = kv->lease;
}

static void leader_now(node *n, rpc_call *call, const ProtobufCMessage *m) {
  const V3electionpb__LeaderRequest *r = (const V3electionpb__LeaderRequest *)m;
  uint8_t pfx[MVCC_MAX_KEY + 2];
  if (r->name.len > MVCC_MAX_KEY) return rpc_fail_with(call, &ERR_ELECTION_NO_LEADER);
  size_t pfx_len = cc_prefix(r->name.data, r->name.len, pfx);
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return rpc_fail_with(call, &ERR_INTERNAL);
  mvcc_kv kv;
  int rc = cc_owner(t, pfx, pfx_len, 0, &kv);
  if (rc < 0) {
    rpc_fail_with(call, &ERR_INTERNAL);
  } else if (rc == 0) {
    rpc_fail_with(call, &ERR_ELECTION_NO_LEADER);
  } else {
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    node_fill_header(n, &hdr);
    hdr.revision = mvcc_rev(t);
    Mvccpb__KeyValue k = MVCCPB__KEY_VALUE__INIT;
    fill_kv(&k, &kv);
    V3electionpb__LeaderResponse resp = V3ELECTIONPB__LEADER_RESPONSE__INIT;
    resp.header = &hdr;
    resp.kv = &k;
    rpc_reply(call, &resp.base); /* packed now, while the snapshot is open */
  }
  mvcc_txn_end(t);
}

/* Linearizable, like a Range: a ReadIndex round unless this member is the
 * only voter and leads. */
static void leader_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  if (node_local_reads_ok(n)) return leader_now(n, call, m);
  reads_submit(n->reads, call, m, leader_now);
}

/* ---------------------------------------------------------------- Observe */

typedef struct {
  node *n;
  rpc_stream *s;
  cc_observer *o;
} observe_state;

static int observe_send(void *arg, const mvcc_kv *kv, int64_t rev) {
  observe_state *st = arg;
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(st->n, &hdr);
  hdr.revision = rev;
  /* No leader: a kv with no key (create_revision 0), where etcd sends
   * nothing. clientv3 users that read resp.Kv never see a nil. */
  Mvccpb__KeyValue k = MVCCPB__KEY_VALUE__INIT;
  if (kv) fill_kv(&k, kv);
  V3electionpb__LeaderResponse resp = V3ELECTIONPB__LEADER_RESPONSE__INIT;
  resp.header = &hdr;
  resp.kv = &k;
  return rpc_stream_send(st->s, &resp.base);
}

static size_t observe_queued(void *arg) { return rpc_stream_queued(((observe_state *)arg)->s); }

static void observe_compacted(void *arg) {
  observe_state *st = arg;
  rpc_stream_finish(st->s, ERR_COMPACTED.code, ERR_COMPACTED.message);
}

static const cc_observer_ops observe_ops = {
    .send = observe_send, .queued = observe_queued, .fail_compacted = observe_compacted};

static void *observe_open(void *ctx, rpc_stream *s) {
  observe_state *st = xcalloc(1, sizeof *st);
  st->n = ctx;
  st->s = s;
  return st;
}

static void observe_message(void *state, rpc_stream *s, const ProtobufCMessage *m) {
  observe_state *st = state;
  if (st->o) return; /* one request per call (a server-streaming method) */
  const V3electionpb__LeaderRequest *r = (const V3electionpb__LeaderRequest *)m;
  if (r->name.len > MVCC_MAX_KEY) {
    rpc_stream_finish(s, ERR_KEY_TOO_LONG.code, ERR_KEY_TOO_LONG.message);
    return;
  }
  uint8_t pfx[MVCC_MAX_KEY + 2];
  size_t pfx_len = cc_prefix(r->name.data, r->name.len, pfx);
  st->o = cc_observe(st->n->cc, pfx, pfx_len, &observe_ops, st);
  if (!st->o) rpc_stream_finish(s, ERR_INTERNAL.code, ERR_INTERNAL.message);
}

static void observe_drained(void *state, rpc_stream *s) {
  (void)s;
  observe_state *st = state;
  if (st->o) cc_observer_drained(st->o);
}

static void observe_closed(void *state, rpc_stream *s) {
  (void)s;
  observe_state *st = state;
  if (st->o) cc_observer_close(st->o);
  free(st);
}

static const rpc_stream_handler observe_handler = {
    .open = observe_open, .message = observe_message, .drained = observe_drained, .closed = observe_closed};

size_t election_service_methods(node *n, rpc_method *out) {
  const rpc_method m[] = {
      {"/v3electionpb.Election/Campaign", &v3electionpb__campaign_request__descriptor, campaign_rpc, NULL, true, n},
      {"/v3electionpb.Election/Proclaim", &v3electionpb__proclaim_request__descriptor, proclaim_rpc, NULL, false, n},
      {"/v3electionpb.Election/Leader", &v3electionpb__leader_request__descriptor, leader_rpc, NULL, false, n},
      {"/v3electionpb.Election/Observe", &v3electionpb__leader_request__descriptor, NULL, &observe_handler, false,
       n},
      {"/v3electionpb.Election/Resign", &v3electionpb__resign_request__descriptor, resign_rpc, NULL, false, n},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) out[i] = m[i];
  return sizeof m / sizeof m[0];
}
