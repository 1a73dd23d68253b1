/* etcdserverpb.Lease. Grant and revoke change replicated state, so they are
 * proposed and answered by the pipeline once applied. Keep-alive, time-to-
 * live and list read the leader's clocks and are answered on the gRPC
 * thread; on a member that does not lead, keep-alive and time-to-live go to
 * the leader (lease_forward.c). Responses are etcd's, including its
 * quirks: a keep-alive for an unknown lease answers TTL 0, time-to-live
 * answers TTL -1, and neither is an error. */
#include "alarms.h"
#include "errors.h"
#include "lease_service.h"
#include "pipeline.h"
#include "services.h"

#include <stdlib.h>
#include <string.h>

/* Keep-alive responses a client has not read, in bytes, before the stream
 * is ended: gRPC gives servers no back-pressure (rpc.h). A keep-alive
 * response is ~40 bytes, so this is ~25,000 unread answers. */
#define KEEPALIVE_QUEUE_LIMIT (1u << 20)

static void propose(node *n, rpc_call *call, Synodpb__Request *req) { pipeline_propose(n->pipe, call, req); }

/* ---------------------------------------------------------------- grant, revoke */

static void lease_grant_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  Etcdserverpb__LeaseGrantRequest g = *(const Etcdserverpb__LeaseGrantRequest *)m;
  if (lease_grant_ttl(n->lease->table, g.ttl, &g.ttl) != LEASE_OK) return rpc_fail_with(call, &ERR_LEASE_TTL_TOO_LARGE);
  const rpc_error *e = alarms_quota_check(n, ALARMS_LEASE_COST);
  if (e) return rpc_fail_with(call, e);
  /* ID 0: the server chooses, before proposing, so every member applies
   * the same ID. Only positive IDs, as etcd. */
  while (g.id == 0) g.id = (int64_t)((atomic_fetch_add(&n->lease->next_id, 1) + 1) & INT64_MAX);
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_LEASE_GRANT;
  req.lease_grant = &g;
  propose(n, call, &req);
}

static void lease_revoke_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_LEASE_REVOKE;
  req.lease_revoke = (Etcdserverpb__LeaseRevokeRequest *)m;
  propose(ctx, call, &req);
}

/* ---------------------------------------------------------------- keep-alive */

/* One answer; rc is the renewal's outcome. The header's revision was read
 * before renewing (as etcd does), so a client never sees a keep-alive that
 * succeeded "after" the revision that revoked the lease. */
static void keepalive_reply(node *n, rpc_stream *s, int64_t id, int64_t rev, int rc, int64_t ttl) {
  if (rc != LEASE_OK && rc != LEASE_ENOTFOUND) {
    const rpc_error *e = lease_service_error(rc);
    rpc_stream_finish(s, e->code, e->message);
    return;
  }
  Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(n, &h);
  h.revision = rev;
  Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
  resp.header = &h;
  resp.id = id;
  resp.ttl = rc == LEASE_OK ? ttl : 0; /* etcd's gRPC layer: not found is TTL 0 */
  rpc_stream_send(s, &resp.base);
}

typedef struct {
  node *n;
  rpc_stream *s;
  int64_t id, rev;
} forwarded_renewal;

static void forwarded_renewal_done(void *ctx, int rc, int64_t ttl, int64_t granted) {
  (void)granted;
  forwarded_renewal *f = ctx;
  keepalive_reply(f->n, f->s, f->id, f->rev, rc, ttl);
  rpc_stream_unref(f->s);
  free(f);
}

static void *keepalive_open(void *ctx, rpc_stream *s) {
  (void)s;
  return ctx; /* the node: a stream needs no state of its own */
}

static void keepalive_message(void *state, rpc_stream *s, const ProtobufCMessage *m) {
  node *n = state;
  lease_service *svc = n->lease;
  int64_t id = ((const Etcdserverpb__LeaseKeepAliveRequest *)m)->id;
  if (rpc_stream_queued(s) > KEEPALIVE_QUEUE_LIMIT) {
    rpc_stream_finish(s, RPC_RESOURCE_EXHAUSTED, "synod: keep-alive responses are not being read by the client");
    return;
  }
  int64_t rev = node_current_rev(n);
  int64_t ttl = 0;
  int rc = lease_renew(svc->table, id, time_mono_ns(), &ttl);
  if (rc == LEASE_ENOTPRIMARY) {
    forwarded_renewal *f = xmalloc(sizeof *f);
    *f = (forwarded_renewal){n, s, id, rev};
    rpc_stream_ref(s); /* until the leader answers */
    lease_forward_renew(n, id, forwarded_renewal_done, f);
    return;
  }
  keepalive_reply(n, s, id, rev, rc, ttl);
}

static void keepalive_half_close(void *state, rpc_stream *s) {
  (void)state;
  rpc_stream_finish(s, RPC_OK, NULL); /* etcd returns when Recv sees EOF */
}

static void keepalive_closed(void *state, rpc_stream *s) { (void)state, (void)s; }

static const rpc_stream_handler keepalive_stream = {
    .open = keepalive_open,
    .message = keepalive_message,
    .half_close = keepalive_half_close,
    .closed = keepalive_closed,
};

/* ---------------------------------------------------------------- time-to-live */

typedef struct {
  arena *a;
  ProtobufCBinaryData *keys;
  size_t n, cap;
} key_list;

static int collect_key(void *arg, const mvcc_kv *kv) {
  key_list *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    ProtobufCBinaryData *keys = arena_alloc(l->a, cap * sizeof *keys);
    if (l->n) memcpy(keys, l->keys, l->n * sizeof *keys);
    l->keys = keys;
    l->cap = cap;
  }
  /* Copied: mvcc_lease_keys shows each key from a buffer it reuses. */
  l->keys[l->n++] = (ProtobufCBinaryData){.len = kv->key_len, .data = arena_memdup(l->a, kv->key, kv->key_len)};
  return 0;
}

static void ttl_reply(node *n, rpc_call *call, int64_t id, bool keys, int rc, int64_t remaining, int64_t granted) {
  if (rc != LEASE_OK && rc != LEASE_ENOTFOUND) return rpc_fail_with(call, lease_service_error(rc));
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return rpc_fail_with(call, &ERR_INTERNAL);
  arena *a = node_thread_arena();
  Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(n, &h);
  h.revision = mvcc_rev(t);
  Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
  resp.header = &h;
  resp.id = id;
  const rpc_error *e = NULL;
  if (rc == LEASE_ENOTFOUND) {
    resp.ttl = -1; /* etcd's gRPC layer turns "not found" into TTL -1 */
  } else {
    resp.ttl = remaining;
    resp.grantedttl = granted;
    key_list l = {.a = a};
    if (keys && mvcc_lease_keys(t, id, collect_key, &l) != MVCC_OK) e = &ERR_INTERNAL;
    resp.keys = l.keys;
    resp.n_keys = l.n;
  }
  if (e) rpc_fail_with(call, e);
  else rpc_reply(call, &resp.base);
  mvcc_txn_end(t);
  arena_reset(a);
}

typedef struct {
  node *n;
  rpc_call *call;
  int64_t id;
  bool keys;
} forwarded_ttl;

static void forwarded_ttl_done(void *ctx, int rc, int64_t remaining, int64_t granted) {
  forwarded_ttl *f = ctx;
  ttl_reply(f->n, f->call, f->id, f->keys, rc, remaining, granted);
  free(f);
}

static void lease_ttl_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  lease_service *svc = n->lease;
  const Etcdserverpb__LeaseTimeToLiveRequest *r = (const Etcdserverpb__LeaseTimeToLiveRequest *)m;
  int64_t remaining = 0, granted = 0;
  int rc = lease_time_to_live(svc->table, r->id, time_mono_ns(), &remaining, &granted);
  if (rc == LEASE_ENOTPRIMARY) {
    forwarded_ttl *f = xmalloc(sizeof *f);
    *f = (forwarded_ttl){n, call, r->id, r->keys};
    lease_forward_time_to_live(n, r->id, forwarded_ttl_done, f);
    return;
  }
  ttl_reply(n, call, r->id, r->keys, rc, remaining, granted);
}

/* ---------------------------------------------------------------- list */

static void lease_leases_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  node *n = ctx;
  int64_t rev = node_current_rev(n);
  size_t count;
  int64_t *ids = lease_list(n->lease->table, &count);
  arena *a = node_thread_arena();
  Etcdserverpb__LeaseStatus *st = arena_alloc(a, (count ? count : 1) * sizeof *st);
  Etcdserverpb__LeaseStatus **ptrs = arena_alloc(a, (count ? count : 1) * sizeof *ptrs);
  for (size_t i = 0; i < count; i++) {
    etcdserverpb__lease_status__init(&st[i]);
    st[i].id = ids[i];
    ptrs[i] = &st[i];
  }
  free(ids);
  Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(n, &h);
  h.revision = rev;
  Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
  resp.header = &h;
  resp.leases = ptrs;
  resp.n_leases = count;
  rpc_reply(call, &resp.base);
  arena_reset(a);
}

size_t lease_service_methods(node *n, rpc_method *out) {
  const rpc_method m[] = {
      {"/etcdserverpb.Lease/LeaseGrant", &etcdserverpb__lease_grant_request__descriptor, lease_grant_rpc, NULL, false, n},
      {"/etcdserverpb.Lease/LeaseRevoke", &etcdserverpb__lease_revoke_request__descriptor, lease_revoke_rpc, NULL, false,
       n},
      {"/etcdserverpb.Lease/LeaseKeepAlive", &etcdserverpb__lease_keep_alive_request__descriptor, NULL,
       &keepalive_stream, false, n},
      {"/etcdserverpb.Lease/LeaseTimeToLive", &etcdserverpb__lease_time_to_live_request__descriptor, lease_ttl_rpc,
       NULL, false, n},
      {"/etcdserverpb.Lease/LeaseLeases", &etcdserverpb__lease_leases_request__descriptor, lease_leases_rpc, NULL,
       false, n},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) out[i] = m[i];
  return sizeof m / sizeof m[0];
}
