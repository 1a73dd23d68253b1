/* Log replication: the leader's appends, heartbeats, commit rule and
 * progress tracking; the follower's handling of appends and snapshots;
 * membership effects on the leader; leadership transfer. */
#include "raft_int.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- progress set */

raft_progress *raft_progress_of(raft *r, uint64_t id) {
  for (uint32_t i = 0; i < r->n_prs; i++)
    if (r->prs[i].id == id) return &r->prs[i];
  return NULL;
}

static void progress_init(raft *r, raft_progress *pr, uint64_t id, bool learner) {
  uint64_t *ring = pr->ifl.index;
  size_t cap = pr->ifl.cap;
  memset(pr, 0, sizeof *pr);
  if (!ring || cap != r->cfg.max_inflight_msgs) {
    /* Rings are kept across terms and membership changes: a leader
     * allocates them once per slot. */
    free(ring);
    cap = r->cfg.max_inflight_msgs;
    ring = xmalloc(cap * sizeof *ring);
  }
  pr->ifl.index = ring;
  pr->ifl.cap = cap;
  pr->id = id;
  pr->learner = learner;
  pr->state = RAFT_PROGRESS_PROBE;
  pr->next = log_last_index(&r->log) + 1;
  if (id == r->id) pr->match = log_stable_last(&r->log);
}

/* Makes the progress set match the membership in force. Members that stay
 * keep their progress (unless `fresh`: a new term starts over); new ones
 * start probing at the end of the log. Inflight rings move between slots
 * but are never freed, so a leader allocates one per slot once. */
static void progress_sync(raft *r, bool fresh) {
  const raft_conf_state *cs = conf_log_current(&r->conf);
  raft_progress old[RAFT_MAX_NODES], next[RAFT_MAX_NODES];
  bool init[RAFT_MAX_NODES] = {false};
  memcpy(old, r->prs, sizeof old);
  memset(next, 0, sizeof next);
  uint32_t n = 0;
  for (int pass = 0; pass < 2; pass++) {
    const uint64_t *ids = pass ? cs->learners : cs->voters;
    uint32_t k = pass ? cs->n_learners : cs->n_voters;
    for (uint32_t i = 0; i < k; i++, n++) {
      uint32_t j = 0;
      if (!fresh)
        for (j = 0; j < r->n_prs; j++)
          if (old[j].ifl.index && old[j].id == ids[i]) break;
      if (!fresh && j < r->n_prs) {
        next[n] = old[j];
        old[j].ifl.index = NULL;
      } else {
        next[n].id = ids[i];
        init[n] = true;
      }
      next[n].learner = pass == 1;
    }
  }
  uint32_t donor = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (!init[i]) continue;
    while (donor < RAFT_MAX_NODES && !old[donor].ifl.index) donor++;
    if (donor < RAFT_MAX_NODES) {
      next[i].ifl = old[donor].ifl;
      old[donor].ifl.index = NULL;
    }
    progress_init(r, &next[i], next[i].id, next[i].learner);
    /* A member added while we lead counts as active, or check-quorum could
     * depose us before it had a chance to answer. */
    next[i].recent_active = !fresh || next[i].id == r->id;
  }
  /* Rings left over wait in the slots past the members. */
  uint32_t slot = n;
  for (uint32_t j = 0; j < RAFT_MAX_NODES; j++) {
    if (!old[j].ifl.index) continue;
    next[slot].ifl = old[j].ifl;
    slot++;
  }
  memcpy(r->prs, next, sizeof next);
  r->n_prs = n;
}

void raft_progress_rebuild(raft *r) { progress_sync(r, true); }

/* ---------------------------------------------------------------- leader */

bool raft_append_entry(raft *r, uint8_t type, const void *data, size_t len) {
  log_append_new(&r->log, r->term, type, data, len);
  if (type == RAFT_ENTRY_CONF_CHANGE) {
    const raft_unstable *u = &r->log.u;
    size_t before = r->conf.n_pending;
    raft_conf_on_append(r, &u->ents[u->n - 1]);
    if (r->conf.n_pending != before) raft_on_conf_changed(r);
  }
  return true;
}

static void send_snapshot(raft *r, raft_progress *pr) {
  /* A peer we have not heard from lately is probably down: do not make the
   * transport push a snapshot into the void. */
  if (!pr->recent_active) return;
  raft_snapshot snap;
  int rc = r->log.st->snapshot(r->log.st->ctx, &snap);
  if (rc == RAFT_ESNAP_TEMP_UNAVAILABLE) return;
  if (rc != 0) {
    r->log.err = RAFT_ESTORAGE;
    return;
  }
  if (snap.index == 0 || snap.index < log_first_index(&r->log) - 1) return;
  raft_msg m = {.type = RAFT_MSG_SNAP, .to = pr->id, .term = r->term, .snapshot = &snap};
  raft_send(r, &m);
  progress_become_snapshot(pr, snap.index);
}

/* Sends pr the entries it lacks (or an empty append carrying the commit
 * index if send_if_empty). Returns whether entries went out. */
bool raft_send_append(raft *r, raft_progress *pr, bool send_if_empty) {
  if (progress_paused(pr)) return false;
  uint64_t prev = pr->next - 1, prev_term;
  int rc = log_term(&r->log, prev, &prev_term);
  raft_entry *ents = NULL;
  size_t n = 0;
  if (rc == 0) {
    uint64_t last = log_last_index(&r->log);
    rc = log_slice(&r->log, pr->next, last + 1, r->cfg.max_msg_bytes, &ents, &n);
  }
  if (rc == RAFT_ECOMPACTED) {
    send_snapshot(r, pr);
    return false;
  }
  if (rc != 0) return false;
  if (n == 0 && !send_if_empty) return false;
  raft_msg m = {.type = RAFT_MSG_APP, .to = pr->id, .term = r->term, .index = prev,
                .log_term = prev_term, .entries = ents, .n_entries = n,
                .commit = r->log.committed};
  raft_send(r, &m);
  pr->commit_sent = r->log.committed;
  if (n) {
    uint64_t last = ents[n - 1].index;
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
      pr->next = last + 1;
      inflights_add(&pr->ifl, last);
    } else if (pr->state == RAFT_PROGRESS_PROBE) {
      pr->probe_sent = true;
    }
  }
  return n > 0;
}

void raft_bcast_heartbeat(raft *r) {
  r->round++;
  r->round_tick[r->round % RAFT_ROUND_RING] = r->ticks;
  raft_read_round_started(r);
  for (uint32_t i = 0; i < r->n_prs; i++) {
    raft_progress *pr = &r->prs[i];
    if (pr->id == r->id) continue;
    /* Never more than it is known to hold: its log may diverge after. */
    raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .to = pr->id, .term = r->term,
                  .commit = RAFT_MIN(pr->match, r->log.committed), .index = r->round};
    raft_send(r, &m);
  }
}

/* Sends each follower what it lacks: new entries, or an empty append if it
 * has not been told the current commit index. Runs once per ready, so the
 * proposals and acknowledgements of a whole batch cost one append per
 * follower rather than one each. */
void raft_flush(raft *r) {
  if (r->flushed) return;
  r->flushed = true;
  if (r->role != RAFT_LEADER) return;
  for (uint32_t i = 0; i < r->n_prs; i++) {
    raft_progress *pr = &r->prs[i];
    if (pr->id == r->id) continue;
    bool tell_commit = pr->commit_sent < r->log.committed;
    if (raft_send_append(r, pr, tell_commit))
      while (raft_send_append(r, pr, false)) {
      }
  }
  if (r->round_wanted) raft_bcast_heartbeat(r);
}

/* The highest index a quorum of voters holds durably: the quorum-th largest
 * match (insertion sort: a handful of voters, called on every ack). */
static uint64_t quorum_match(raft *r) {
  const raft_conf_state *cs = conf_log_current(&r->conf);
  uint64_t m[RAFT_MAX_NODES];
  uint32_t n = 0;
  for (uint32_t i = 0; i < cs->n_voters; i++) {
    raft_progress *pr = raft_progress_of(r, cs->voters[i]);
    uint64_t v = pr ? pr->match : 0;
    uint32_t j = n++;
    for (; j > 0 && m[j - 1] < v; j--) m[j] = m[j - 1];
    m[j] = v;
  }
  if (n == 0) return 0;
  return m[raft_quorum_size(r) - 1];
}

void raft_commit_to(raft *r, uint64_t i) {
  if (i <= r->log.committed) return;
  log_commit_to(&r->log, i);
  conf_log_commit(&r->conf, i);
  if (r->role != RAFT_LEADER) return;
  if (!conf_is_voter(&r->conf.base.conf, r->id)) {
    /* Our own removal (or demotion) is committed: stop leading. The others
     * elect a leader among themselves. */
    raft_become_follower(r, r->term, RAFT_NONE);
    return;
  }
  if (!r->committed_in_term && log_term_or_zero(&r->log, i) == r->term) {
    r->committed_in_term = true;
    raft_read_first_commit(r);
  }
}

/* Only entries of the current term commit by counting replicas (Raft 5.4.2):
 * an older entry on a majority can still be overwritten. */
bool raft_maybe_commit(raft *r) {
  uint64_t q = quorum_match(r);
  if (q <= r->log.committed || log_term_or_zero(&r->log, q) != r->term) return false;
  raft_commit_to(r, q);
  return true;
}

void raft_on_conf_changed(raft *r) {
  if (r->role != RAFT_LEADER) return;
  progress_sync(r, false);
  if (r->lead_transferee != RAFT_NONE &&
      !conf_is_voter(conf_log_current(&r->conf), r->lead_transferee))
    raft_abort_transfer(r);
  /* A smaller quorum may already hold more. */
  raft_maybe_commit(r);
}

void raft_abort_transfer(raft *r) { r->lead_transferee = RAFT_NONE; }

void raft_send_timeout_now(raft *r, uint64_t to) {
  /* The transferee will campaign with votes that ignore our lease: from now
   * on this term's lease is worthless. */
  r->lease_revoked = true;
  raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to, .term = r->term};
  raft_send(r, &m);
}

int raft_leader_transfer(raft *r, uint64_t to) {
  raft_progress *pr = raft_progress_of(r, to);
  if (!pr || pr->learner) return RAFT_EINVAL;
  if (to == r->id) return 0;
  if (r->lead_transferee == to) return 0;
  r->lead_transferee = to;
  /* The transfer must finish within an election timeout. */
  r->election_elapsed = 0;
  if (pr->match == log_last_index(&r->log)) {
    raft_send_timeout_now(r, to);
  } else if (pr->state == RAFT_PROGRESS_REPLICATE) {
    /* Re-send from its match now rather than trusting the pipeline. */
    progress_become_probe(pr);
  }
  return 0;
}

void raft_step_leader_request(raft *r, const raft_msg *m) {
  switch (m->type) {
  case RAFT_MSG_PROP:
    raft_leader_propose(r, m->entries, m->n_entries);
    break;
  case RAFT_MSG_READ_INDEX:
    raft_read_request(r, m->from, m->ctx, m->ctx_len);
    break;
  case RAFT_MSG_TRANSFER_LEADER:
    raft_leader_transfer(r, m->index);
    break;
  default:
    break;
  }
}

static void handle_append_resp(raft *r, raft_progress *pr, const raft_msg *m) {
  pr->recent_active = true;
  uint64_t last = log_last_index(&r->log);
  if (m->reject) {
    uint64_t hint = m->reject_hint;
    /* The follower's hint is its last index with a term <= the one we
     * probed; skip our own entries of later terms too, so a diverging tail
     * costs one round trip per term rather than per entry. */
    if (m->log_term > 0) hint = log_find_conflict_by_term(&r->log, hint, m->log_term);
    if (progress_maybe_decr_to(pr, m->index, hint) && pr->state == RAFT_PROGRESS_REPLICATE)
      progress_become_probe(pr);
    return;
  }
  if (m->index > last) return; /* acknowledges entries we never had */
  if (!progress_maybe_update(pr, m->index)) return;
  if (pr->state == RAFT_PROGRESS_PROBE) {
    progress_become_replicate(pr);
  } else if (pr->state == RAFT_PROGRESS_SNAPSHOT && pr->match >= pr->pending_snapshot) {
    progress_become_probe(pr);
    progress_become_replicate(pr);
  } else if (pr->state == RAFT_PROGRESS_REPLICATE) {
    inflights_free_le(&pr->ifl, m->index);
  }
  raft_maybe_commit(r);
  if (r->role != RAFT_LEADER) return; /* committed our own removal */
  if (m->from == r->lead_transferee && pr->match == last) raft_send_timeout_now(r, m->from);
}

/* Heartbeat answers double as a loss detector. A follower that answers
 * heartbeats but whose match has not moved for two of them while appends are
 * outstanding has lost some: replicating optimistically past a gap would
 * never fill it, so fall back to probing from match+1. */
enum { STALL_LIMIT = 2 };

static void handle_heartbeat_resp(raft *r, raft_progress *pr, const raft_msg *m) {
  pr->recent_active = true;
  pr->probe_sent = false;
  if (pr->state == RAFT_PROGRESS_REPLICATE) {
    if (pr->match < log_last_index(&r->log) && pr->match == pr->hb_match) {
      if (++pr->stalls >= STALL_LIMIT) {
        pr->stalls = 0;
        progress_become_probe(pr);
      }
    } else {
      pr->stalls = 0;
    }
    /* A full pipeline may be full of lost messages: let one more through. */
    if (inflights_full(&pr->ifl)) inflights_free_first(&pr->ifl);
  }
  pr->hb_match = pr->match;
  raft_read_ack(r, pr, m->index);
}

void raft_step_leader_progress(raft *r, const raft_msg *m) {
  raft_progress *pr = raft_progress_of(r, m->from);
  if (!pr) return;
  switch (m->type) {
  case RAFT_MSG_APP_RESP: handle_append_resp(r, pr, m); break;
  case RAFT_MSG_HEARTBEAT_RESP: handle_heartbeat_resp(r, pr, m); break;
  default: break;
  }
}

void raft_report_unreachable(raft *r, uint64_t id) {
  RAFT_ENTER(r);
  if (r->role != RAFT_LEADER) return;
  raft_progress *pr = raft_progress_of(r, id);
  /* Pipelined appends were probably lost: fall back to probing. */
  if (pr && pr->state == RAFT_PROGRESS_REPLICATE) progress_become_probe(pr);
}

void raft_report_snapshot(raft *r, uint64_t id, bool ok) {
  RAFT_ENTER(r);
  if (r->role != RAFT_LEADER) return;
  raft_progress *pr = raft_progress_of(r, id);
  if (!pr || pr->state != RAFT_PROGRESS_SNAPSHOT) return;
  if (!ok) pr->pending_snapshot = 0;
  progress_become_probe(pr);
  /* Wait for the follower's answer (or a heartbeat) before the next append. */
  pr->probe_sent = true;
}

/* ---------------------------------------------------------------- follower */

static void send_app_resp(raft *r, uint64_t to, uint64_t index) {
  raft_msg m = {.type = RAFT_MSG_APP_RESP, .to = to, .term = r->term, .index = index};
  raft_send(r, &m);
}

/* Entries of an append must follow the leader's rules; a message breaking
 * them is not from a correct leader and is dropped whole. */
static bool entries_plausible(const raft_msg *m) {
  uint64_t t = m->log_term;
  for (size_t i = 0; i < m->n_entries; i++) {
    const raft_entry *e = &m->entries[i];
    if (e->index != m->index + 1 + i || e->term < t || e->term > m->term) return false;
    t = e->term;
  }
  return true;
}

void raft_handle_append(raft *r, const raft_msg *m) {
  raft_log *l = &r->log;
  if (m->index < l->committed) {
    send_app_resp(r, m->from, l->committed);
    return;
  }
  if (!log_match_term(l, m->index, m->log_term)) {
    /* Reject, with a hint that lets the leader skip a whole term of our
     * divergent tail at once. */
    uint64_t hint = log_find_conflict_by_term(l, RAFT_MIN(m->index, log_last_index(l)),
                                              m->log_term);
    raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = m->from, .term = r->term,
                     .index = m->index, .reject = true, .reject_hint = hint,
                     .log_term = log_term_or_zero(l, hint)};
    raft_send(r, &resp);
    return;
  }
  if (!entries_plausible(m)) return;
  uint64_t last_new = m->index + m->n_entries;
  uint64_t conflict = log_find_conflict(l, m->entries, m->n_entries);
  if (conflict) {
    if (conflict <= l->committed) return; /* would rewrite committed history */
    size_t off = (size_t)(conflict - (m->index + 1));
    size_t before = r->conf.n_pending;
    conf_log_truncate(&r->conf, conflict);
    bool changed = r->conf.n_pending != before;
    log_truncate_append(l, m->entries + off, m->n_entries - off);
    for (size_t i = off; i < m->n_entries; i++) {
      if (m->entries[i].type != RAFT_ENTRY_CONF_CHANGE) continue;
      size_t k = r->conf.n_pending;
      raft_conf_on_append(r, &m->entries[i]);
      changed |= r->conf.n_pending != k;
    }
    if (changed) raft_on_conf_changed(r);
  }
  raft_commit_to(r, RAFT_MIN(m->commit, last_new));
  send_app_resp(r, m->from, last_new);
}

void raft_handle_heartbeat(raft *r, const raft_msg *m) {
  raft_commit_to(r, RAFT_MIN(m->commit, log_last_index(&r->log)));
  raft_msg resp = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .term = r->term,
                   .index = m->index};
  raft_send(r, &resp);
}

void raft_handle_snapshot(raft *r, const raft_msg *m) {
  const raft_snapshot *s = m->snapshot;
  raft_log *l = &r->log;
  if (!s || s->index <= l->committed || !conf_valid(&s->conf) || s->term > m->term) {
    send_app_resp(r, m->from, l->committed);
    return;
  }
  if (log_match_term(l, s->index, s->term)) {
    /* We already hold the log up to the snapshot: just learn it is
     * committed. */
    raft_commit_to(r, s->index);
    send_app_resp(r, m->from, l->committed);
    return;
  }
  log_restore(l, s);
  conf_log_reset(&r->conf, s->index, &s->conf);
  send_app_resp(r, m->from, log_last_index(l));
}
