/* Replication progress of one member, as the leader tracks it.
 *
 *   probe      we do not know where the follower's log matches ours: send
 *              one append, wait for its answer (or the next heartbeat)
 *   replicate  the logs match up to `match`: stream appends optimistically,
 *              at most cap of them unacknowledged (the inflight ring)
 *   snapshot   the entries it needs are compacted: a snapshot is on its way,
 *              send nothing until it is reported or acknowledged
 */
#include "raft_int.h"

void inflights_reset(raft_inflights *f) {
  f->start = 0;
  f->count = 0;
}

bool inflights_full(const raft_inflights *f) { return f->count == f->cap; }

void inflights_add(raft_inflights *f, uint64_t index) {
  if (f->count == f->cap) return; /* callers check full first */
  f->index[(f->start + f->count) % f->cap] = index;
  f->count++;
}

/* Acknowledged up to index: everything at or below it has arrived. */
void inflights_free_le(raft_inflights *f, uint64_t index) {
  while (f->count && f->index[f->start] <= index) {
    f->start = (f->start + 1) % f->cap;
    f->count--;
  }
  if (f->count == 0) f->start = 0;
}

void inflights_free_first(raft_inflights *f) {
  if (f->count) inflights_free_le(f, f->index[f->start]);
}

bool progress_paused(const raft_progress *pr) {
  switch (pr->state) {
  case RAFT_PROGRESS_PROBE: return pr->probe_sent;
  case RAFT_PROGRESS_REPLICATE: return inflights_full(&pr->ifl);
  default: return true;
  }
}

static void reset_state(raft_progress *pr, uint8_t state) {
  pr->state = state;
  pr->probe_sent = false;
  pr->pending_snapshot = 0;
  inflights_reset(&pr->ifl);
}

void progress_become_probe(raft_progress *pr) {
  /* Coming out of a snapshot we know it reached the follower (or was
   * reported), so probe just past it. */
  uint64_t next = pr->match + 1;
  if (pr->state == RAFT_PROGRESS_SNAPSHOT && pr->pending_snapshot + 1 > next)
    next = pr->pending_snapshot + 1;
  reset_state(pr, RAFT_PROGRESS_PROBE);
  pr->next = next;
}

void progress_become_replicate(raft_progress *pr) {
  reset_state(pr, RAFT_PROGRESS_REPLICATE);
  pr->next = pr->match + 1;
}

void progress_become_snapshot(raft_progress *pr, uint64_t snap_index) {
  reset_state(pr, RAFT_PROGRESS_SNAPSHOT);
  pr->pending_snapshot = snap_index;
}

/* An acknowledgement up to n. False if it told us nothing new. */
bool progress_maybe_update(raft_progress *pr, uint64_t n) {
  bool updated = false;
  if (pr->match < n) {
    pr->match = n;
    pr->probe_sent = false;
    updated = true;
  }
  if (pr->next < n + 1) pr->next = n + 1;
  return updated;
}

/* A rejection of the append after `rejected`; the follower suggests its log
 * matches ours at most up to match_hint. False if the rejection is stale
 * (duplicated or reordered). */
bool progress_maybe_decr_to(raft_progress *pr, uint64_t rejected, uint64_t match_hint) {
  if (pr->state == RAFT_PROGRESS_REPLICATE) {
    if (rejected <= pr->match) return false;
    pr->next = pr->match + 1;
    return true;
  }
  /* Probing sends one append at a time, from next-1: anything else is old. */
  if (pr->next == 0 || pr->next - 1 != rejected) return false;
  uint64_t next = RAFT_MIN(rejected, match_hint + 1);
  pr->next = next < pr->match + 1 ? pr->match + 1 : next;
  if (pr->next == 0) pr->next = 1;
  pr->probe_sent = false;
  return true;
}
