/* Keep-alives and time-to-live need the leader's clocks: kvcore/lease keeps
 * deadlines on the primary only. A member that is not primary sends them to
 * the leader over the peer transport, as etcd sends them to its leader over
 * HTTP, and the leader answers from its table. Time-to-live's keys are read
 * from the asking member's own store (replicated state), so only the clock
 * travels.
 *
 * A member that leads but has not taken the clocks over yet (its term's
 * first entry is not applied: a few milliseconds after an election) and a
 * member that knows no leader answer "etcdserver: no leader"; clientv3
 * retries keep-alive streams on that (etcd waits for the leader instead). */
#include "errors.h"
#include "lease_service.h"
#include "pipeline.h"
#include "raftnode.h"
#include "transport.h"

#include <stdlib.h>

typedef struct {
  lease_answer done;
  void *ctx;
} forwarded;

static uint64_t other_leader(node *n) {
  uint64_t lead = n->rn && n->tr ? raftnode_lead(n->rn) : 0;
  return lead == n->member_id ? 0 : lead;
}

static int peer_code_to_lease(rpc_code code) {
  return code == RPC_NOT_FOUND ? LEASE_ENOTFOUND : LEASE_ENOTPRIMARY;
}

static void renew_answered(void *arg, rpc_code code, const char *message, const ProtobufCMessage *resp) {
  (void)message;
  forwarded *f = arg;
  if (code == RPC_OK) f->done(f->ctx, LEASE_OK, ((const Etcdserverpb__LeaseKeepAliveResponse *)resp)->ttl, 0);
  else f->done(f->ctx, peer_code_to_lease(code), 0, 0);
  free(f);
}

static void ttl_answered(void *arg, rpc_code code, const char *message, const ProtobufCMessage *resp) {
  (void)message;
  forwarded *f = arg;
  if (code == RPC_OK) {
    const Etcdserverpb__LeaseTimeToLiveResponse *r = (const Etcdserverpb__LeaseTimeToLiveResponse *)resp;
    f->done(f->ctx, LEASE_OK, r->ttl, r->grantedttl);
  } else {
    f->done(f->ctx, peer_code_to_lease(code), 0, 0);
  }
  free(f);
}

void lease_forward_renew(node *n, int64_t id, lease_answer done, void *ctx) {
  uint64_t lead = other_leader(n);
  if (!lead) return done(ctx, LEASE_ENOTPRIMARY, 0, 0);
  forwarded *f = xmalloc(sizeof *f);
  *f = (forwarded){done, ctx};
  Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
  req.id = id;
  transport_call(n->tr, lead, "/synodpb.Peer/LeaseKeepAlive", &req.base,
                 &etcdserverpb__lease_keep_alive_response__descriptor, pipeline_request_timeout_ms(n), renew_answered, f);
}

void lease_forward_time_to_live(node *n, int64_t id, lease_answer done, void *ctx) {
  uint64_t lead = other_leader(n);
  if (!lead) return done(ctx, LEASE_ENOTPRIMARY, 0, 0);
  forwarded *f = xmalloc(sizeof *f);
  *f = (forwarded){done, ctx};
  Etcdserverpb__LeaseTimeToLiveRequest req = ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
  req.id = id;
  transport_call(n->tr, lead, "/synodpb.Peer/LeaseTimeToLive", &req.base,
                 &etcdserverpb__lease_time_to_live_response__descriptor, pipeline_request_timeout_ms(n), ttl_answered, f);
}

/* ---------------------------------------------------------------- the leader's side */

/* Not found travels as NOT_FOUND; "not the one with the clocks" as etcd's
 * "not leader" (the asking member then answers "no leader"). */
static void fail_peer(rpc_call *call, int rc) {
  if (rc == LEASE_ENOTFOUND) rpc_fail_with(call, &ERR_LEASE_NOT_FOUND);
  else rpc_fail_with(call, &ERR_NOT_LEADER);
}

static void peer_keepalive_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  int64_t id = ((const Etcdserverpb__LeaseKeepAliveRequest *)m)->id, ttl = 0;
  int rc = lease_renew(n->lease->table, id, time_mono_ns(), &ttl);
  if (rc) return fail_peer(call, rc);
  Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(n, &h);
  Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
  resp.header = &h;
  resp.id = id;
  resp.ttl = ttl;
  rpc_reply(call, &resp.base);
}

static void peer_ttl_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  int64_t id = ((const Etcdserverpb__LeaseTimeToLiveRequest *)m)->id, remaining = 0, granted = 0;
  int rc = lease_time_to_live(n->lease->table, id, time_mono_ns(), &remaining, &granted);
  if (rc) return fail_peer(call, rc);
  Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(n, &h);
  Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
  resp.header = &h;
  resp.id = id;
  resp.ttl = remaining;
  resp.grantedttl = granted;
  rpc_reply(call, &resp.base);
}

size_t lease_peer_methods(node *n, rpc_method *out) {
  out[0] = (rpc_method){"/synodpb.Peer/LeaseKeepAlive", &etcdserverpb__lease_keep_alive_request__descriptor,
                        peer_keepalive_rpc, NULL, false, n};
  out[1] = (rpc_method){"/synodpb.Peer/LeaseTimeToLive", &etcdserverpb__lease_time_to_live_request__descriptor,
                        peer_ttl_rpc, NULL, false, n};
  return 2;
}
