/* etcdserverpb.KV: reads run here, on the gRPC thread, against a read
 * snapshot (they never wait for the writer); writes are validated here and
 * proposed to the pipeline, which replies once they are durable and
 * applied. */
#include "alarms.h"
#include "errors.h"
#include "kv.h"
#include "node.h"
#include "pipeline.h"
#include "reads.h"
#include "services.h"

/* Serves a Range from this member's applied state. */
static void range_now(node *n, rpc_call *call, const ProtobufCMessage *m) {
  const Etcdserverpb__RangeRequest *r = (const Etcdserverpb__RangeRequest *)m;
  const rpc_error *e;
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return rpc_fail_with(call, &ERR_INTERNAL);
  arena *a = node_thread_arena();
  kv_exec x = {.mem = a, .copy = false};
  Etcdserverpb__RangeResponse *resp;
  e = kv_range(&x, t, r, &resp);
  if (e) {
    rpc_fail_with(call, e);
  } else {
    node_fill_header(n, resp->header);
    rpc_reply(call, &resp->base); /* packs now, while the snapshot is open */
  }
  mvcc_txn_end(t);
  arena_reset(a);
}

/* Linearizable by default: a ReadIndex round first, unless this member is
 * the only voter and leads (then every acknowledged write is already
 * applied here). Serializable reads take the member's state as it is. */
static void kv_range_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  const Etcdserverpb__RangeRequest *r = (const Etcdserverpb__RangeRequest *)m;
  const rpc_error *e = kv_check_range(r);
  if (e) return rpc_fail_with(call, e);
  if (r->serializable || node_local_reads_ok(n)) {
    /* One key is answered here; a range of keys can take long (reads.h). */
    if (r->range_end.len > 0) return reads_submit_long(n->reads, call, m, range_now);
    return range_now(n, call, m);
  }
  reads_submit(n->reads, call, m, range_now);
}

static void propose(node *n, rpc_call *call, Synodpb__Request *req) { pipeline_propose(n->pipe, call, req); }

static void kv_put_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  const Etcdserverpb__PutRequest *r = (const Etcdserverpb__PutRequest *)m;
  const rpc_error *e = kv_check_put(r);
  if (!e) e = alarms_quota_check(ctx, alarms_cost_put(r));
  if (e) return rpc_fail_with(call, e);
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_PUT;
  req.put = (Etcdserverpb__PutRequest *)r;
  propose(ctx, call, &req);
}

static void kv_delete_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  const Etcdserverpb__DeleteRangeRequest *r = (const Etcdserverpb__DeleteRangeRequest *)m;
  const rpc_error *e = kv_check_delete(r);
  if (e) return rpc_fail_with(call, e);
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_DELETE_RANGE;
  req.delete_range = (Etcdserverpb__DeleteRangeRequest *)r;
  propose(ctx, call, &req);
}

static void readonly_txn_now(node *n, rpc_call *call, const ProtobufCMessage *m) {
  const Etcdserverpb__TxnRequest *r = (const Etcdserverpb__TxnRequest *)m;
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return rpc_fail_with(call, &ERR_INTERNAL);
  arena *a = node_thread_arena();
  kv_exec x = {.mem = a, .copy = false};
  Etcdserverpb__TxnResponse *resp;
  const rpc_error *e = kv_txn(&x, t, false, r, &resp);
  if (e) {
    rpc_fail_with(call, e);
  } else {
    node_fill_header(n, resp->header);
    rpc_reply(call, &resp->base);
  }
  mvcc_txn_end(t);
  arena_reset(a);
}

static void kv_txn_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  const Etcdserverpb__TxnRequest *r = (const Etcdserverpb__TxnRequest *)m;
  const rpc_error *e = kv_check_txn(r, n->cfg.max_txn_ops);
  if (e) return rpc_fail_with(call, e);
  if (kv_txn_is_readonly(r)) {
    /* Reads only: served like a Range, without touching the log. */
    if (kv_txn_is_serializable(r) || node_local_reads_ok(n)) return reads_submit_long(n->reads, call, m, readonly_txn_now);
    return reads_submit(n->reads, call, m, readonly_txn_now);
  }
  e = alarms_quota_check(n, alarms_cost_txn(r));
  if (e) return rpc_fail_with(call, e);
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_TXN;
  req.txn = (Etcdserverpb__TxnRequest *)r;
  propose(n, call, &req);
}

static void kv_compact_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_COMPACTION;
  req.compaction = (Etcdserverpb__CompactionRequest *)m;
  propose(ctx, call, &req);
}

size_t kv_service_methods(node *n, rpc_method *out) {
  const rpc_method m[] = {
      {"/etcdserverpb.KV/Range", &etcdserverpb__range_request__descriptor, kv_range_rpc, NULL, false, n},
      {"/etcdserverpb.KV/Put", &etcdserverpb__put_request__descriptor, kv_put_rpc, NULL, false, n},
      {"/etcdserverpb.KV/DeleteRange", &etcdserverpb__delete_range_request__descriptor, kv_delete_rpc, NULL, false, n},
      {"/etcdserverpb.KV/Txn", &etcdserverpb__txn_request__descriptor, kv_txn_rpc, NULL, false, n},
      {"/etcdserverpb.KV/Compact", &etcdserverpb__compaction_request__descriptor, kv_compact_rpc, NULL, false, n},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) out[i] = m[i];
  return sizeof m / sizeof m[0];
}
