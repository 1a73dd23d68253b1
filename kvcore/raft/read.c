/* Linearizable reads (ReadIndex, Raft dissertation 6.4).
 *
 * A read that arrives when the leader's commit index is c is safe to serve
 * once the state machine reaches c -- provided the leader was still the
 * leader when the read arrived. Safe mode proves that with a heartbeat
 * round started after the read arrived and acknowledged by a quorum:
 *
 *   - every heartbeat carries a round number; rounds only grow in a term
 *   - a read arriving while round k is the newest waits for round k+1
 *   - all reads that arrived between two readies share one round, so
 *     thousands of concurrent readers cost one heartbeat per follower
 *
 * Lease mode skips the round while the lease holds. Followers that heard
 * from the leader refuse votes for election_tick ticks (check-quorum), so
 * no other leader can exist until election_tick ticks after the send time
 * of the newest round a quorum acknowledged, as measured by the slowest
 * clock. The leader trusts the lease for election_tick - 2 -
 * lease_drift_ticks ticks of its own clock (one tick is lost to the
 * follower's tick granularity, one to the leader's). */
#include "raft_int.h"

#include <stdlib.h>

static void req_free(raft_read_req *q) { free(q->ctx); }

void read_queue_clear(raft_read_queue *q) {
  for (size_t i = 0; i < q->n; i++) req_free(&q->q[(q->head + i) % q->cap]);
  q->head = q->n = 0;
}

void read_queue_free(raft_read_queue *q) {
  read_queue_clear(q);
  free(q->q);
  q->q = NULL;
  q->cap = 0;
}

static void queue_push(raft_read_queue *q, const raft_read_req *req) {
  if (q->n == q->cap) {
    /* Unroll the ring into a bigger one. */
    size_t cap = q->cap ? q->cap * 2 : 16;
    raft_read_req *nq = xmalloc(cap * sizeof *nq);
    for (size_t i = 0; i < q->n; i++) nq[i] = q->q[(q->head + i) % q->cap];
    free(q->q);
    q->q = nq;
    q->cap = cap;
    q->head = 0;
  }
  q->q[(q->head + q->n) % q->cap] = *req;
  q->n++;
}

static raft_read_req *queue_front(raft_read_queue *q) { return q->n ? &q->q[q->head] : NULL; }

static void queue_pop(raft_read_queue *q) {
  q->head = (q->head + 1) % q->cap;
  q->n--;
}

void raft_reads_reset(raft *r) {
  /* Requests die with the leadership: callers retry on timeout. */
  read_queue_clear(&r->reads);
  read_queue_clear(&r->reads_unready);
  r->round = 0;
  r->round_wanted = false;
  r->has_lease = false;
  r->lease_revoked = false;
  for (uint32_t i = 0; i < RAFT_MAX_NODES; i++) r->prs[i].acked_round = 0;
}

/* Delivers a confirmed read: locally as a read state, or to the follower
 * that asked. */
static void respond(raft *r, uint64_t from, uint64_t index, const uint8_t *ctx, size_t len) {
  if (from == RAFT_NONE || from == r->id) {
    raft_outbox *o = &r->out[r->cur_out];
    raft_grow(&o->reads, &o->cap_reads, o->n_reads + 1, sizeof *o->reads);
    raft_read_state *rs = &o->reads[o->n_reads++];
    rs->index = index;
    rs->ctx_len = len;
    rs->ctx = len ? scratch_dup(&o->mem, ctx, len) : NULL;
    return;
  }
  raft_msg m = {.type = RAFT_MSG_READ_INDEX_RESP, .to = from, .term = r->term, .index = index,
                .ctx = ctx, .ctx_len = len};
  raft_send(r, &m);
}

bool raft_lease_valid(const raft *r) {
  if (r->cfg.read_mode != RAFT_READ_LEASE || !r->has_lease || r->lease_revoked ||
      r->lead_transferee != RAFT_NONE)
    return false;
  uint64_t span = r->cfg.election_tick;
  if (span <= 2 + (uint64_t)r->cfg.lease_drift_ticks) return false;
  span -= 2 + r->cfg.lease_drift_ticks;
  return r->ticks - r->lease_tick < span;
}

static void enqueue(raft_read_queue *q, uint64_t from, uint64_t index, uint64_t round,
                    const uint8_t *ctx, size_t len) {
  raft_read_req req = {.from = from, .index = index, .round = round, .ctx_len = len};
  req.ctx = len ? xmemdup(ctx, len) : NULL;
  queue_push(q, &req);
}

void raft_read_request(raft *r, uint64_t from, const uint8_t *ctx, size_t len) {
  if (r->role != RAFT_LEADER) return;
  if (!r->committed_in_term) {
    /* Our commit index may still lag what earlier leaders committed: wait
     * until an entry of our own term commits. */
    enqueue(&r->reads_unready, from, 0, 0, ctx, len);
    return;
  }
  uint64_t commit = r->log.committed;
  if (raft_quorum_size(r) == 1 && conf_is_voter(conf_log_current(&r->conf), r->id)) {
    respond(r, from, commit, ctx, len);
    return;
  }
  if (raft_lease_valid(r)) {
    respond(r, from, commit, ctx, len);
    return;
  }
  enqueue(&r->reads, from, commit, r->round + 1, ctx, len);
  r->round_wanted = true;
}

void raft_read_first_commit(raft *r) {
  raft_read_queue q = r->reads_unready;
  memset(&r->reads_unready, 0, sizeof r->reads_unready);
  for (size_t i = 0; i < q.n; i++) {
    raft_read_req *req = &q.q[(q.head + i) % q.cap];
    raft_read_request(r, req->from, req->ctx, req->ctx_len);
  }
  read_queue_free(&q);
}

void raft_read_round_started(raft *r) { r->round_wanted = false; }

/* Releases every read whose round a quorum of voters has acknowledged, and
 * extends the lease to the send time of that round. */
void raft_read_ack(raft *r, raft_progress *pr, uint64_t round) {
  if (round > r->round || round <= pr->acked_round) return;
  pr->acked_round = round;
  const raft_conf_state *cs = conf_log_current(&r->conf);
  uint64_t acks[RAFT_MAX_NODES];
  uint32_t n = 0;
  for (uint32_t i = 0; i < cs->n_voters; i++) {
    if (cs->voters[i] == r->id) {
      acks[n++] = r->round;
      continue;
    }
    raft_progress *p = raft_progress_of(r, cs->voters[i]);
    acks[n++] = p ? p->acked_round : 0;
  }
  if (n == 0) return;
  /* The quorum-th highest acknowledged round (few voters: insertion sort). */
  for (uint32_t i = 1; i < n; i++)
    for (uint32_t j = i; j > 0 && acks[j - 1] < acks[j]; j--) {
      uint64_t t = acks[j];
      acks[j] = acks[j - 1];
      acks[j - 1] = t;
    }
  uint64_t q = acks[raft_quorum_size(r) - 1];
  if (q == 0) return;
  if (r->round - q < RAFT_ROUND_RING) {
    uint64_t sent = r->round_tick[q % RAFT_ROUND_RING];
    if (!r->has_lease || sent > r->lease_tick) r->lease_tick = sent;
    r->has_lease = true;
  }
  for (raft_read_req *req; (req = queue_front(&r->reads)) && req->round <= q;) {
    respond(r, req->from, req->index, req->ctx, req->ctx_len);
    req_free(req);
    queue_pop(&r->reads);
  }
}
