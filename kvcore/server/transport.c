/* Member-to-member Raft traffic. See transport.h. */
#include "transport.h"

#include "base.h"
#include "raftnode.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct peer {
  struct peer *next;
  transport *t;
  uint64_t id;
  char target[256];
  rpc_channel *ch;
  rpc_client_stream *s; /* NULL while down; guarded by t->mu */
  int64_t opened_at, retry_at;
  int backoff_ms;
  bool gone; /* removed from the member list; freed with the transport */
  /* messages waiting for the next flush: lengths and bytes, back to back */
  buf pending;
  ProtobufCBinaryData *slots;
  size_t n_pending, cap_slots;
} peer;

struct transport {
  transport_options o;
  struct raftnode *rn;
  pthread_mutex_t mu;
  peer *peers;
  bool told_removed;
  /* counters, reported when the transport is freed */
  uint64_t sent_msgs, sent_batches, dropped, received_msgs, received_batches;
};

transport *transport_new(const transport_options *o) {
  transport *t = xcalloc(1, sizeof *t);
  t->o = *o;
  if (!t->o.max_queued_bytes) t->o.max_queued_bytes = 16 << 20;
  pthread_mutex_init(&t->mu, NULL);
  return t;
}

void transport_set_raft(transport *t, struct raftnode *rn) {
  pthread_mutex_lock(&t->mu);
  t->rn = rn;
  pthread_mutex_unlock(&t->mu);
}

void transport_free(transport *t) {
  if (t->sent_msgs || t->received_msgs)
    log_info("transport: sent %" PRIu64 " Raft messages in %" PRIu64 " batches (%" PRIu64 " dropped), received %" PRIu64
             " in %" PRIu64 " batches",
             t->sent_msgs, t->sent_batches, t->dropped, t->received_msgs, t->received_batches);
  /* Close channels outside the lock: closing waits for callbacks that lock. */
  pthread_mutex_lock(&t->mu);
  peer *list = t->peers;
  t->peers = NULL;
  t->rn = NULL;
  pthread_mutex_unlock(&t->mu);
  for (peer *p = list, *next; p; p = next) {
    next = p->next;
    if (p->ch) rpc_channel_close(p->ch);
    buf_free(&p->pending);
    free(p->slots);
    free(p);
  }
  pthread_mutex_destroy(&t->mu);
  free(t);
}

/* ---------------------------------------------------------------- outbound */

static void stream_closed(void *arg, rpc_code code, const char *message) {
  peer *p = arg;
  transport *t = p->t;
  pthread_mutex_lock(&t->mu);
  p->s = NULL;
  int64_t now = time_mono_ns();
  /* A stream that lived a while was healthy: start backing off afresh.
   * The cap is short (etcd's peer streams redial every 100 ms): a member
   * that restarts hears from the leader, and can serve linearizable
   * reads, within a fifth of a second of listening again; a dead peer
   * costs five refused connects a second. */
  if (now - p->opened_at > 1000000000LL) p->backoff_ms = 0;
  p->backoff_ms = p->backoff_ms ? (p->backoff_ms * 2 > 200 ? 200 : p->backoff_ms * 2) : 50;
  p->retry_at = now + (int64_t)p->backoff_ms * 1000000;
  struct raftnode *rn = t->rn;
  bool removed = code == RPC_FAILED_PRECONDITION && strstr(message, "permanently removed");
  bool first_removed = removed && !t->told_removed;
  if (removed) t->told_removed = true;
  pthread_mutex_unlock(&t->mu);
  if (code != RPC_CANCELLED && code != RPC_OK)
    log_debug("peer %016" PRIx64 ": stream closed: %s", p->id, message);
  if (rn) raftnode_unreachable(rn, p->id);
  if (first_removed && t->o.removed) t->o.removed(t->o.arg);
}

static const rpc_client_stream_handler peer_handler_template = {NULL, NULL, stream_closed, NULL};

void transport_send(transport *t, uint64_t to, const uint8_t *msg, size_t len) {
  pthread_mutex_lock(&t->mu);
  peer *p = t->peers;
  while (p && (p->id != to || p->gone)) p = p->next;
  if (p) {
    /* store the length, then the bytes: slots point into pending at flush */
    uint8_t l[8];
    put_le64(l, len);
    buf_append(&p->pending, l, 8);
    buf_append(&p->pending, msg, len);
    p->n_pending++;
  }
  pthread_mutex_unlock(&t->mu);
  /* unknown or removed member: dropped */
}

/* Sends one peer's pending messages as one batch. With t->mu held. */
static bool flush_peer_locked(transport *t, peer *p) {
  int64_t now = time_mono_ns();
  if (!p->s && now >= p->retry_at) {
    if (!p->ch) p->ch = rpc_channel_open(p->target, 1000);
    rpc_client_stream_handler h = peer_handler_template;
    h.arg = p;
    p->opened_at = now;
    p->s = rpc_client_stream_open(p->ch, "/synodpb.Peer/Raft", &h);
  }
  if (p->n_pending > p->cap_slots) {
    p->cap_slots = p->n_pending * 2;
    p->slots = xrealloc(p->slots, p->cap_slots * sizeof *p->slots);
  }
  const uint8_t *q = p->pending.data;
  for (size_t i = 0; i < p->n_pending; i++) {
    size_t len = (size_t)get_le64(q);
    p->slots[i] = (ProtobufCBinaryData){len, (uint8_t *)q + 8};
    q += 8 + len;
  }
  bool dropped = true;
  if (p->s && rpc_client_stream_queued(p->s) < t->o.max_queued_bytes) {
    Synodpb__RaftBatch b = SYNODPB__RAFT_BATCH__INIT;
    b.cluster_id = t->o.cluster_id;
    b.from = t->o.self_id;
    b.to = p->id;
    b.msgs = p->slots;
    b.n_msgs = p->n_pending;
    dropped = rpc_client_stream_send(p->s, &b.base) < 0;
  }
  t->sent_msgs += p->n_pending;
  t->sent_batches += !dropped;
  t->dropped += dropped ? p->n_pending : 0;
  p->pending.len = 0;
  p->n_pending = 0;
  return dropped;
}

void transport_flush(transport *t) {
  uint64_t lost[RAFT_MAX_NODES];
  size_t n_lost = 0;
  pthread_mutex_lock(&t->mu);
  for (peer *p = t->peers; p; p = p->next)
    if (p->n_pending && flush_peer_locked(t, p) && n_lost < RAFT_MAX_NODES) lost[n_lost++] = p->id;
  struct raftnode *rn = t->rn;
  pthread_mutex_unlock(&t->mu);
  /* Lost appends make raft probe the peer instead of pipelining into a
   * void. (The loop owns raft: report through its mailbox.) */
  if (rn)
    for (size_t i = 0; i < n_lost; i++) raftnode_unreachable(rn, lost[i]);
}

void transport_set_peers(transport *t, const member_list *members) {
  pthread_mutex_lock(&t->mu);
  /* A peer missing from the list is forgotten only once it was removed:
   * the applied list lags the log (a joining member's store is empty until
   * the leader's entries arrive, and it must still answer the leader). */
  for (peer *p = t->peers; p; p = p->next)
    p->gone = t->o.was_removed && t->o.was_removed(t->o.arg, p->id);
  for (size_t i = 0; i < members->n; i++) {
    const member *m = &members->v[i];
    if (m->id == t->o.self_id || m->peer_urls.n == 0) continue;
    char target[256];
    bool tls;
    if (url_host_port(m->peer_urls.v[0], target, sizeof target, &tls) < 0) continue;
    peer *p = t->peers;
    while (p && p->id != m->id) p = p->next;
    if (p && strcmp(p->target, target) != 0) {
      /* Its peer URLs changed: talk to the new address. */
      if (p->s) rpc_client_stream_close(p->s, false);
      p->s = NULL;
      rpc_channel *old = p->ch;
      p->ch = NULL;
      snprintf(p->target, sizeof p->target, "%s", target);
      if (old) {
        pthread_mutex_unlock(&t->mu);
        rpc_channel_close(old);
        pthread_mutex_lock(&t->mu);
      }
    }
    if (!p) {
      p = xcalloc(1, sizeof *p);
      p->t = t;
      p->id = m->id;
      snprintf(p->target, sizeof p->target, "%s", target);
      p->next = t->peers;
      t->peers = p;
    }
    p->gone = false;
  }
  for (peer *p = t->peers; p; p = p->next)
    if (p->gone && p->s) {
      rpc_client_stream_close(p->s, false);
      p->s = NULL;
    }
  pthread_mutex_unlock(&t->mu);
}

/* The channel to a live member (opened on first use), or NULL for an
 * unknown or removed one. Channels live until the transport is freed, so
 * calls on one may outlive the lock. */
static rpc_channel *channel_to(transport *t, uint64_t to) {
  pthread_mutex_lock(&t->mu);
  peer *p = t->peers;
  while (p && (p->id != to || p->gone)) p = p->next;
  if (p && !p->ch) p->ch = rpc_channel_open(p->target, 1000);
  rpc_channel *ch = p ? p->ch : NULL;
  pthread_mutex_unlock(&t->mu);
  return ch;
}

void transport_call(transport *t, uint64_t to, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_type, int64_t timeout_ms, rpc_unary_done done, void *arg) {
  rpc_channel *ch = channel_to(t, to);
  if (!ch) {
    done(arg, RPC_UNAVAILABLE, "etcdserver: no leader", NULL);
    return;
  }
  rpc_call_unary(ch, method, req, resp_type, timeout_ms, done, arg);
}

rpc_client_stream *transport_open_stream(transport *t, uint64_t to, const char *method,
                                         const rpc_client_stream_handler *h) {
  rpc_channel *ch = channel_to(t, to);
  return ch ? rpc_client_stream_open(ch, method, h) : NULL;
}

/* ---------------------------------------------------------------- inbound */

typedef struct {
  transport *t;
  bool refused;
} inbound;

static void *raft_open(void *ctx, rpc_stream *s) {
  (void)s;
  inbound *in = xcalloc(1, sizeof *in);
  in->t = ctx;
  return in;
}

static void raft_message(void *state, rpc_stream *s, const ProtobufCMessage *msg) {
  inbound *in = state;
  transport *t = in->t;
  const Synodpb__RaftBatch *b = (const Synodpb__RaftBatch *)msg;
  if (in->refused) return;
  if (b->cluster_id != t->o.cluster_id) {
    in->refused = true;
    log_warn("refusing Raft messages from member %016" PRIx64 " of cluster %016" PRIx64 " (this is %016" PRIx64 ")",
             b->from, b->cluster_id, t->o.cluster_id);
    return rpc_stream_finish(s, RPC_FAILED_PRECONDITION, "etcdserver: cluster ID mismatch");
  }
  if (b->to != t->o.self_id) {
    in->refused = true;
    return rpc_stream_finish(s, RPC_FAILED_PRECONDITION, "synod: messages for another member");
  }
  if (t->o.was_removed && t->o.was_removed(t->o.arg, b->from)) {
    in->refused = true;
    return rpc_stream_finish(s, RPC_FAILED_PRECONDITION, "the member has been permanently removed from the cluster");
  }
  pthread_mutex_lock(&t->mu);
  struct raftnode *rn = t->rn;
  pthread_mutex_unlock(&t->mu);
  if (!rn) return;
  pthread_mutex_lock(&t->mu);
  t->received_batches++;
  t->received_msgs += b->n_msgs;
  pthread_mutex_unlock(&t->mu);
  for (size_t i = 0; i < b->n_msgs; i++) raftnode_step(rn, b->msgs[i].data, b->msgs[i].len);
}

static void raft_half_close(void *state, rpc_stream *s) {
  (void)state;
  rpc_stream_finish(s, RPC_OK, NULL);
}

static void raft_closed(void *state, rpc_stream *s) {
  (void)s;
  free(state);
}

static const rpc_stream_handler raft_stream = {
    .open = raft_open, .message = raft_message, .half_close = raft_half_close, .closed = raft_closed};

size_t transport_methods(transport *t, rpc_method *out) {
  out[0] = (rpc_method){"/synodpb.Peer/Raft", &synodpb__raft_batch__descriptor, NULL, &raft_stream, false, t};
  return 1;
}
