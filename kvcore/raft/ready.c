/* The ready/advance cycle: collecting what the caller must persist, send and
 * apply, and learning afterwards that it was done. Also the outbox that
 * messages wait in, and the status query.
 *
 * Two outboxes alternate: messages produced since the last raft_get_ready() go
 * to the pending one; raft_get_ready() hands it to the caller and makes the
 * other one pending; raft_advance() empties the handed-out one. So a ready
 * stays intact while the caller steps more messages before advancing. */
#include "raft_int.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- outbox */

void outbox_reset(raft_outbox *o) {
  o->n_msgs = o->n_after = o->n_reads = 0;
  scratch_reset(&o->mem);
}

void outbox_free(raft_outbox *o) {
  free(o->msgs);
  free(o->after);
  free(o->reads);
  scratch_free(&o->mem);
  memset(o, 0, sizeof *o);
}

/* Messages that claim durable state: an acknowledgement of entries, a vote,
 * a vote request (the candidate's own vote), and other answers. The rest
 * (a leader's appends and heartbeats, forwarded requests, pre-votes) may
 * leave before this node's own writes are durable. */
static bool needs_persist(uint8_t type) {
  switch (type) {
  case RAFT_MSG_APP_RESP:
  case RAFT_MSG_VOTE:
  case RAFT_MSG_VOTE_RESP:
  case RAFT_MSG_PREVOTE_RESP:
  case RAFT_MSG_HEARTBEAT_RESP: return true;
  default: return false;
  }
}

/* Queues a message, deep-copying everything it points to into the pending
 * outbox: the entries' sources (the unstable log, the caller's storage) may
 * change before the message is handed out. */
void raft_send(raft *r, const raft_msg *m) {
  raft_outbox *o = &r->out[r->cur_out];
  raft_msg *dst;
  if (needs_persist(m->type)) {
    raft_grow(&o->after, &o->cap_after, o->n_after + 1, sizeof *o->after);
    dst = &o->after[o->n_after++];
  } else {
    raft_grow(&o->msgs, &o->cap_msgs, o->n_msgs + 1, sizeof *o->msgs);
    dst = &o->msgs[o->n_msgs++];
  }
  *dst = *m;
  dst->from = r->id;
  if (m->n_entries) {
    raft_entry *e = scratch_alloc(&o->mem, m->n_entries * sizeof *e);
    for (size_t i = 0; i < m->n_entries; i++) {
      e[i] = m->entries[i];
      e[i].data = e[i].len ? scratch_dup(&o->mem, e[i].data, e[i].len) : NULL;
    }
    dst->entries = e;
  }
  if (m->ctx_len) dst->ctx = scratch_dup(&o->mem, m->ctx, m->ctx_len);
  if (m->snapshot) {
    raft_snapshot *s = scratch_dup(&o->mem, m->snapshot, sizeof *s);
    if (s->len) s->data = scratch_dup(&o->mem, s->data, s->len);
    dst->snapshot = s;
  }
}

/* ---------------------------------------------------------------- ready */

static raft_hard_state hard_state(const raft *r) {
  raft_hard_state hs = {r->term, r->vote, r->log.committed};
  return hs;
}

static bool hs_equal(raft_hard_state a, raft_hard_state b) {
  return a.term == b.term && a.vote == b.vote && a.commit == b.commit;
}

/* Committed entries not yet handed out: (applied, min(committed, last)]. */
static void committed_range(raft *r, uint64_t *lo, uint64_t *hi) {
  *lo = RAFT_MAX(r->log.applied + 1, log_first_index(&r->log));
  *hi = RAFT_MIN(r->log.committed, log_last_index(&r->log));
}

static int finish(raft *r) {
  if (r->log.err && !r->fatal) r->fatal = RAFT_ESTORAGE;
  return r->fatal;
}

bool raft_has_ready(raft *r) {
  if (r->fatal || r->ready_out) return false;
  raft_flush(r);
  if (finish(r)) return false;
  const raft_outbox *o = &r->out[r->cur_out];
  if (o->n_msgs || o->n_after || o->n_reads) return true;
  if (r->log.u.n || r->log.u.snap) return true;
  if (!hs_equal(hard_state(r), r->prev_hs)) return true;
  if (r->role != r->prev_role || r->lead != r->prev_lead) return true;
  uint64_t lo, hi;
  committed_range(r, &lo, &hi);
  return lo <= hi;
}

static int collect_committed(raft *r) {
  uint64_t lo, hi;
  committed_range(r, &lo, &hi);
  size_t n = 0;
  uint64_t bytes = 0, budget = r->cfg.max_committed_bytes;
  if (hi >= lo && hi - lo >= RAFT_READY_MAX_COMMITTED) hi = lo + RAFT_READY_MAX_COMMITTED - 1;
  while (lo <= hi) {
    raft_entry *ents;
    size_t k;
    int rc = log_slice(&r->log, lo, hi + 1, budget - RAFT_MIN(bytes, budget), &ents, &k);
    if (rc != 0) return r->log.err ? RAFT_ESTORAGE : 0;
    raft_grow(&r->rd_committed, &r->cap_rd_committed, n + k, sizeof *r->rd_committed);
    size_t i;
    for (i = 0; i < k; i++) {
      if (n > 0 && bytes + ents[i].len > budget) break;
      bytes += ents[i].len;
      r->rd_committed[n++] = ents[i];
    }
    if (i < k) break;
    lo += k;
  }
  r->rd_n_committed = n;
  r->rd_committed_hi = n ? r->rd_committed[n - 1].index : 0;
  return 0;
}

int raft_get_ready(raft *r, raft_ready *rd) {
  if (r->fatal) return r->fatal;
  if (r->ready_out) return RAFT_EBUSY;
  memset(rd, 0, sizeof *rd);
  raft_flush(r);
  if (finish(r)) return r->fatal;

  rd->role = r->role;
  rd->lead = r->lead;
  rd->soft_state_changed = r->role != r->prev_role || r->lead != r->prev_lead;
  r->prev_role = r->role;
  r->prev_lead = r->lead;

  rd->hard_state = hard_state(r);
  rd->hard_state_changed = !hs_equal(rd->hard_state, r->prev_hs);
  rd->must_sync = rd->hard_state.term != r->prev_hs.term || rd->hard_state.vote != r->prev_hs.vote;
  r->prev_hs = rd->hard_state;

  raft_unstable *u = &r->log.u;
  r->rd_has_snap = u->snap != NULL;
  if (u->snap) {
    /* Our own copy: another snapshot may replace the pending one before
     * this ready is advanced. */
    r->rd_snap = *u->snap;
    free(r->rd_snap_data);
    r->rd_snap_data = u->snap->len ? xmemdup(u->snap->data, u->snap->len) : NULL;
    r->rd_snap.data = r->rd_snap_data;
    rd->snapshot = &r->rd_snap;
    rd->must_sync = true;
  }

  raft_grow(&r->rd_ents, &r->cap_rd_ents, u->n, sizeof *r->rd_ents);
  if (u->n) memcpy(r->rd_ents, u->ents, u->n * sizeof *u->ents);
  rd->entries = r->rd_ents;
  rd->n_entries = u->n;
  r->rd_last_index = u->n ? u->ents[u->n - 1].index : 0;
  r->rd_last_term = u->n ? u->ents[u->n - 1].term : 0;
  if (u->n) rd->must_sync = true;

  int rc = collect_committed(r);
  if (rc) return r->fatal = rc;
  rd->committed = r->rd_committed;
  rd->n_committed = r->rd_n_committed;

  raft_outbox *o = &r->out[r->cur_out];
  rd->msgs = o->msgs;
  rd->n_msgs = o->n_msgs;
  rd->msgs_after_persist = o->after;
  rd->n_msgs_after_persist = o->n_after;
  rd->read_states = o->reads;
  rd->n_read_states = o->n_reads;
  r->cur_out ^= 1;

  r->ready_out = true;
  /* Data the ready points at must survive truncations until advance. */
  r->log.defer_release = true;
  return 0;
}

int raft_advance(raft *r) {
  if (r->fatal) return r->fatal;
  RAFT_ENTER(r);
  if (!r->ready_out) return RAFT_EINVAL;
  r->ready_out = false;

  /* Membership as of the applied index; read the entries before the log
   * lets go of their data. */
  if (r->rd_has_snap) r->applied_conf = r->rd_snap.conf;
  for (size_t i = 0; i < r->rd_n_committed; i++) raft_conf_on_apply(r, &r->rd_committed[i]);

  if (r->rd_has_snap) {
    log_stable_snap_to(&r->log, r->rd_snap.index);
    if (r->log.applied < r->rd_snap.index) r->log.applied = r->rd_snap.index;
  }
  if (r->rd_last_index) log_stable_to(&r->log, r->rd_last_index, r->rd_last_term);
  if (r->rd_n_committed && r->rd_committed_hi > r->log.applied)
    r->log.applied = r->rd_committed_hi;
  r->rd_n_committed = 0;
  r->rd_last_index = 0;
  r->rd_has_snap = false;
  free(r->rd_snap_data);
  r->rd_snap_data = NULL;

  r->log.defer_release = false;
  log_release_graveyard(&r->log);
  outbox_reset(&r->out[r->cur_out ^ 1]);

  if (r->role == RAFT_LEADER) {
    /* The leader's own log counts toward commitment only now that it is
     * durable (dissertation 10.2.1): sending appends before persisting is
     * safe because of this. */
    raft_progress *pr = raft_progress_of(r, r->id);
    uint64_t stable = log_stable_last(&r->log);
    if (pr && stable > pr->match) {
      pr->match = stable;
      if (pr->next < stable + 1) pr->next = stable + 1;
      raft_maybe_commit(r);
    }
  }
  return finish(r);
}

/* ---------------------------------------------------------------- status */

void raft_status_get(const raft *cr, raft_status *st) {
  raft *r = (raft *)cr; /* log reads go through the storage interface */
  st->id = r->id;
  st->role = r->role;
  st->lead = r->lead;
  st->term = r->term;
  st->vote = r->vote;
  st->commit = r->log.committed;
  st->applied = r->log.applied;
  st->first_index = log_first_index(&r->log);
  st->last_index = log_last_index(&r->log);
  st->lead_transferee = r->lead_transferee;
}

uint32_t raft_progress_get(const raft *r, raft_peer_status out[RAFT_MAX_NODES]) {
  if (r->role != RAFT_LEADER) return 0;
  for (uint32_t i = 0; i < r->n_prs; i++) {
    const raft_progress *pr = &r->prs[i];
    raft_peer_status *p = &out[i];
    memset(p, 0, sizeof *p);
    p->id = pr->id;
    p->match = pr->match;
    p->next = pr->next;
    p->state = pr->state;
    p->learner = pr->learner;
    p->recent_active = pr->recent_active;
    p->inflight = (uint32_t)pr->ifl.count;
  }
  return r->n_prs;
}

void raft_conf_get(const raft *r, raft_conf_state *current, raft_conf_state *applied) {
  if (current) *current = *conf_log_current(&r->conf);
  if (applied) *applied = r->applied_conf;
}
