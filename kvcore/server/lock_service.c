/* v3lockpb.Lock, inside the server (etcd runs its client recipe against
 * itself instead). Lock is a contender (contend.h): one proposal to create
 * "<name>/<lease hex>" with the lease, then a wait decided on the apply
 * thread from committed state. Unlock deletes the key; the next waiter is
 * granted by the apply thread right after the deletion is applied.
 * See docs/concurrency.md. */
#include "contend.h"
#include "errors.h"
#include "kv.h"
#include "node.h"
#include "pipeline.h"
#include "services.h"

static void lock_granted(contender *c, int64_t rev) {
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(c->n, &hdr);
  hdr.revision = rev;
  V3lockpb__LockResponse resp = V3LOCKPB__LOCK_RESPONSE__INIT;
  resp.header = &hdr;
  resp.key = (ProtobufCBinaryData){c->key_len, c->key};
  rpc_reply(c->call, &resp.base);
}

static void lock_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  const V3lockpb__LockRequest *r = (const V3lockpb__LockRequest *)m;
  contender *c = rpc_call_alloc(call, sizeof *c);
  c->n = ctx;
  c->call = call;
  c->name = r->name;
  c->lease = r->lease;
  c->lost_err = &ERR_LOCK_SESSION_EXPIRED;
  c->granted = lock_granted;
  contender_start(c);
}

static void unlock_done(void *arg, const rpc_error *err, const ProtobufCMessage *resp) {
  rpc_call *call = arg;
  if (err) return contend_fail_kv(call, err);
  V3lockpb__UnlockResponse out = V3LOCKPB__UNLOCK_RESPONSE__INIT;
  out.header = ((const Etcdserverpb__DeleteRangeResponse *)resp)->header;
  rpc_reply(call, &out.base);
}

/* etcd: a plain Delete of the key (no error if it is gone already). */
static void unlock_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  const V3lockpb__UnlockRequest *r = (const V3lockpb__UnlockRequest *)m;
  Etcdserverpb__DeleteRangeRequest del = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
  del.key = r->key;
  const rpc_error *e = kv_check_delete(&del);
  if (e) return contend_fail_kv(call, e);
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_DELETE_RANGE;
  req.delete_range = &del;
  pipeline_submit(n->pipe, &req, rpc_call_deadline(call), unlock_done, call);
}

size_t lock_service_methods(node *n, rpc_method *out) {
  out[0] = (rpc_method){"/v3lockpb.Lock/Lock", &v3lockpb__lock_request__descriptor, lock_rpc, NULL, true, n};
  out[1] = (rpc_method){"/v3lockpb.Lock/Unlock", &v3lockpb__unlock_request__descriptor, unlock_rpc, NULL, false, n};
  return 2;
}
