/* The consensus state machine: roles, terms, elections and the dispatch of
 * every input. Replication lives in replicate.c, reads in read.c, the
 * ready/advance cycle in ready.c. */
#include "raft_int.h"

#include <stdlib.h>

const char *raft_strerror(int rc) {
  switch (rc) {
  case RAFT_OK: return "ok";
  case RAFT_EPROPOSAL_DROPPED: return "proposal dropped";
  case RAFT_ECOMPACTED: return "requested index is compacted";
  case RAFT_EUNAVAILABLE: return "requested index is unavailable";
  case RAFT_ESNAP_TEMP_UNAVAILABLE: return "snapshot is temporarily unavailable";
  case RAFT_EINVAL: return "invalid argument";
  case RAFT_EMALFORMED: return "malformed message";
  case RAFT_ECONF_PENDING: return "a configuration change is pending";
  case RAFT_ESTORAGE: return "storage failure";
  case RAFT_EBUSY: return "busy: ready not advanced, or a leader lease holds";
  default: return "unknown error";
  }
}

const char *raft_role_name(raft_role role) {
  switch (role) {
  case RAFT_FOLLOWER: return "follower";
  case RAFT_PRE_CANDIDATE: return "pre-candidate";
  case RAFT_CANDIDATE: return "candidate";
  case RAFT_LEADER: return "leader";
  default: return "?";
  }
}

uint64_t raft_id(const raft *r) { return r->id; }
uint64_t raft_lead(const raft *r) { return r->lead; }
raft_role raft_get_role(const raft *r) { return r->role; }

/* ---------------------------------------------------------------- timers */

static uint64_t rng_next(raft *r) {
  /* splitmix64: tiny, and good enough to spread election timeouts. */
  uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void raft_reset_randomized_timeout(raft *r) {
  uint32_t t = r->cfg.election_tick;
  r->randomized_timeout = t + (uint32_t)(rng_next(r) % t);
}

/* ---------------------------------------------------------------- roles */

bool raft_promotable(const raft *r) {
  return conf_is_voter(conf_log_current(&r->conf), r->id) && !r->log.u.snap;
}

uint32_t raft_quorum_size(const raft *r) { return conf_log_current(&r->conf)->n_voters / 2 + 1; }

static void reset(raft *r, uint64_t term) {
  if (r->term != term) {
    r->term = term;
    r->vote = RAFT_NONE;
  }
  r->lead = RAFT_NONE;
  r->election_elapsed = 0;
  r->heartbeat_elapsed = 0;
  raft_reset_randomized_timeout(r);
  r->lead_transferee = RAFT_NONE;
  r->n_votes = 0;
  r->committed_in_term = false;
  raft_reads_reset(r);
}

void raft_become_follower(raft *r, uint64_t term, uint64_t lead) {
  reset(r, term);
  r->lead = lead;
  r->role = RAFT_FOLLOWER;
}

static void become_pre_candidate(raft *r) {
  /* No term change and no vote: a pre-candidate only asks whether it could
   * win, so a partitioned node does not inflate its term. */
  r->role = RAFT_PRE_CANDIDATE;
  r->lead = RAFT_NONE;
  r->n_votes = 0;
  r->lead_transferee = RAFT_NONE;
}

static void become_candidate(raft *r) {
  reset(r, r->term + 1);
  r->vote = r->id;
  r->role = RAFT_CANDIDATE;
}

void raft_become_leader(raft *r) {
  reset(r, r->term);
  r->role = RAFT_LEADER;
  r->lead = r->id;
  r->since_leader = 0;
  raft_progress_rebuild(r);
  /* An empty entry of the new term: committing it commits everything before
   * it (entries of older terms never commit by counting replicas), and until
   * it commits the leader serves no reads and accepts no conf change. */
  raft_append_entry(r, RAFT_ENTRY_NORMAL, NULL, 0);
}

/* Records a vote; returns 1 won, -1 lost, 0 pending. */
static int poll(raft *r, uint64_t id, bool granted) {
  const raft_conf_state *cs = conf_log_current(&r->conf);
  if (conf_is_voter(cs, id)) {
    uint32_t i;
    for (i = 0; i < r->n_votes; i++)
      if (r->vote_from[i] == id) break;
    if (i == r->n_votes && r->n_votes < RAFT_MAX_NODES) {
      r->vote_from[r->n_votes] = id;
      r->vote_granted[r->n_votes] = granted;
      r->n_votes++;
    }
  }
  uint32_t yes = 0, no = 0, q = raft_quorum_size(r);
  for (uint32_t i = 0; i < r->n_votes; i++) r->vote_granted[i] ? yes++ : no++;
  if (yes >= q) return 1;
  if (no > cs->n_voters - q) return -1;
  return 0;
}

static void campaign(raft *r, bool pre, bool transfer) {
  uint64_t vote_term;
  uint8_t type;
  if (pre) {
    become_pre_candidate(r);
    vote_term = r->term + 1;
    type = RAFT_MSG_PREVOTE;
  } else {
    become_candidate(r);
    vote_term = r->term;
    type = RAFT_MSG_VOTE;
  }
  if (poll(r, r->id, true) == 1) {
    /* A single voter wins on its own vote. */
    if (pre) {
      campaign(r, false, transfer);
    } else {
      raft_become_leader(r);
    }
    return;
  }
  const raft_conf_state *cs = conf_log_current(&r->conf);
  uint64_t last = log_last_index(&r->log), last_term = log_last_term(&r->log);
  for (uint32_t i = 0; i < cs->n_voters; i++) {
    if (cs->voters[i] == r->id) continue;
    raft_msg m = {.type = type, .to = cs->voters[i], .term = vote_term, .index = last,
                  .log_term = last_term, .transfer = transfer};
    raft_send(r, &m);
  }
}

void raft_hup(raft *r, bool transfer) {
  if (r->role == RAFT_LEADER || !raft_promotable(r)) return;
  campaign(r, r->cfg.pre_vote && !transfer, transfer);
}

/* Whether this node still trusts a leader enough to refuse to help elect
 * another: with check-quorum a node that heard from a leader within an
 * election timeout refuses votes, which is what makes check-quorum and the
 * leader lease sound. The clock is its own (since_leader), not the election
 * timer or `lead`: a stray higher-term message resets both, and must not
 * release the promise. In lease mode a restarted node also waits out one
 * election timeout, since it may have backed a lease before the crash. */
static bool in_lease(const raft *r) {
  if (!r->cfg.check_quorum) return false;
  if (r->role == RAFT_LEADER || r->since_leader < r->cfg.election_tick) return true;
  return r->cfg.read_mode == RAFT_READ_LEASE && r->ticks < r->cfg.election_tick;
}

/* ---------------------------------------------------------------- tick */

static void tick_election(raft *r) {
  r->election_elapsed++;
  if (raft_promotable(r) && r->election_elapsed >= r->randomized_timeout) {
    r->election_elapsed = 0;
    raft_hup(r, false);
  }
}

static bool quorum_active(raft *r) {
  const raft_conf_state *cs = conf_log_current(&r->conf);
  uint32_t active = 0;
  for (uint32_t i = 0; i < r->n_prs; i++) {
    raft_progress *pr = &r->prs[i];
    if (pr->id == r->id) pr->recent_active = true;
    if (pr->recent_active && conf_is_voter(cs, pr->id)) active++;
  }
  for (uint32_t i = 0; i < r->n_prs; i++)
    if (r->prs[i].id != r->id) r->prs[i].recent_active = false;
  return active >= raft_quorum_size(r);
}

static void tick_heartbeat(raft *r) {
  r->heartbeat_elapsed++;
  r->election_elapsed++;
  if (r->election_elapsed >= r->cfg.election_tick) {
    r->election_elapsed = 0;
    if (r->cfg.check_quorum && !quorum_active(r)) {
      raft_become_follower(r, r->term, RAFT_NONE);
      return;
    }
    /* A transfer gets one election timeout to complete. */
    if (r->lead_transferee != RAFT_NONE) raft_abort_transfer(r);
  }
  if (r->heartbeat_elapsed >= r->cfg.heartbeat_tick) {
    r->heartbeat_elapsed = 0;
    raft_bcast_heartbeat(r);
  }
}

void raft_tick(raft *r) {
  if (r->fatal) return;
  RAFT_ENTER(r);
  r->ticks++;
  if (r->role == RAFT_LEADER) {
    r->since_leader = 0;
  } else if (r->since_leader < UINT32_MAX) {
    r->since_leader++;
  }
  if (r->role == RAFT_LEADER) {
    tick_heartbeat(r);
  } else {
    tick_election(r);
  }
}

/* ---------------------------------------------------------------- step */

static void send_resp(raft *r, uint8_t type, uint64_t to, uint64_t term, bool reject) {
  raft_msg m = {.type = type, .to = to, .term = term, .reject = reject};
  raft_send(r, &m);
}

static void step_vote(raft *r, const raft_msg *m) {
  bool pre = m->type == RAFT_MSG_PREVOTE;
  uint8_t resp = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
  /* A repeat of our vote, or no vote and no leader this term, or a pre-vote
   * for a later term -- and the candidate's log is at least as up to date. */
  bool can = r->vote == m->from || (r->vote == RAFT_NONE && r->lead == RAFT_NONE) ||
             (pre && m->term > r->term);
  if (can && log_is_up_to_date(&r->log, m->index, m->log_term)) {
    /* Answer with the message's term: a pre-vote asks about a term we have
     * not moved to, and the candidate ignores answers about older terms. */
    send_resp(r, resp, m->from, m->term, false);
    if (!pre) {
      r->election_elapsed = 0;
      r->vote = m->from;
    }
  } else {
    send_resp(r, resp, m->from, r->term, true);
  }
}

static void step_candidate(raft *r, const raft_msg *m) {
  uint8_t mine = r->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
  if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP)
    r->since_leader = 0;
  switch (m->type) {
  case RAFT_MSG_APP:
    raft_become_follower(r, m->term, m->from);
    raft_handle_append(r, m);
    return;
  case RAFT_MSG_HEARTBEAT:
    raft_become_follower(r, m->term, m->from);
    raft_handle_heartbeat(r, m);
    return;
  case RAFT_MSG_SNAP:
    raft_become_follower(r, m->term, m->from);
    raft_handle_snapshot(r, m);
    return;
  default:
    break;
  }
  if (m->type != mine) return;
  int res = poll(r, m->from, !m->reject);
  if (res == 1) {
    if (r->role == RAFT_PRE_CANDIDATE) {
      campaign(r, false, false);
    } else {
      raft_become_leader(r);
    }
  } else if (res == -1) {
    raft_become_follower(r, r->term, RAFT_NONE);
  }
}

static void step_follower(raft *r, const raft_msg *m) {
  if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP)
    r->since_leader = 0;
  switch (m->type) {
  case RAFT_MSG_APP:
    r->election_elapsed = 0;
    r->lead = m->from;
    raft_handle_append(r, m);
    break;
  case RAFT_MSG_HEARTBEAT:
    r->election_elapsed = 0;
    r->lead = m->from;
    raft_handle_heartbeat(r, m);
    break;
  case RAFT_MSG_SNAP:
    r->election_elapsed = 0;
    r->lead = m->from;
    raft_handle_snapshot(r, m);
    break;
  case RAFT_MSG_TIMEOUT_NOW:
    raft_hup(r, true);
    break;
  case RAFT_MSG_READ_INDEX_RESP: {
    raft_outbox *o = &r->out[r->cur_out];
    raft_grow(&o->reads, &o->cap_reads, o->n_reads + 1, sizeof *o->reads);
    raft_read_state *rs = &o->reads[o->n_reads++];
    rs->index = m->index;
    rs->ctx_len = m->ctx_len;
    rs->ctx = m->ctx_len ? scratch_dup(&o->mem, m->ctx, m->ctx_len) : NULL;
    break;
  }
  default:
    /* PROP, READ_INDEX, TRANSFER_LEADER sent to a non-leader are dropped
     * rather than forwarded again: two nodes that each think the other leads
     * would bounce them forever. */
    break;
  }
}

static bool is_request(uint8_t type) {
  return type == RAFT_MSG_PROP || type == RAFT_MSG_READ_INDEX ||
         type == RAFT_MSG_TRANSFER_LEADER;
}

static int finish(raft *r) {
  if (r->log.err && !r->fatal) r->fatal = RAFT_ESTORAGE;
  return r->fatal;
}

int raft_step(raft *r, const raft_msg *m) {
  if (r->fatal) return r->fatal;
  RAFT_ENTER(r);
  if (m->to != r->id || m->from == RAFT_NONE || m->from == r->id || m->type == 0 ||
      m->type > RAFT_MSG_TRANSFER_LEADER)
    return 0;
  if (is_request(m->type)) {
    /* Requests carry no term: any leader may serve them. */
    if (r->role == RAFT_LEADER) raft_step_leader_request(r, m);
    return finish(r);
  }
  if (m->term == 0) return 0;

  /* Election timer to keep if we end up refusing a vote (see below). */
  uint32_t keep_elapsed = r->role == RAFT_LEADER ? 0 : r->election_elapsed;
  if (m->term > r->term) {
    bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    if (vote_req && !m->transfer && in_lease(r)) return 0;
    if (m->type == RAFT_MSG_PREVOTE) {
      /* never move to a later term for a pre-vote */
    } else if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject) {
      /* a grant carries the term we would campaign for */
    } else {
      bool from_leader = m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
                         m->type == RAFT_MSG_SNAP;
      raft_become_follower(r, m->term, from_leader ? m->from : RAFT_NONE);
    }
  } else if (m->term < r->term) {
    if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
        (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APP)) {
      /* A stale leader, possibly cut off while we moved on. Tell it our term
       * so it steps down; with check-quorum or pre-vote our higher-term vote
       * requests may never reach it otherwise. */
      raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = m->from, .term = r->term};
      raft_send(r, &resp);
    } else if (m->type == RAFT_MSG_PREVOTE) {
      send_resp(r, RAFT_MSG_PREVOTE_RESP, m->from, r->term, true);
    }
    return finish(r);
  }

  if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
    step_vote(r, m);
    /* A follower restarts its election timer only for a leader or a vote
     * it grants (Raft figure 2), not for every higher term it sees: else a
     * node with a stale log and a fast clock keeps resetting everyone with
     * vote requests nobody grants, and no election ever completes. */
    if (m->type == RAFT_MSG_VOTE && r->vote != m->from) r->election_elapsed = keep_elapsed;
  } else if (r->role == RAFT_LEADER) {
    raft_step_leader_progress(r, m);
  } else if (r->role == RAFT_FOLLOWER) {
    step_follower(r, m);
  } else {
    step_candidate(r, m);
  }
  return finish(r);
}

/* ---------------------------------------------------------------- API */

static bool validate_cc(raft *r, const raft_conf_change *cc, int *rc) {
  if (!r->committed_in_term || r->conf.n_pending) {
    *rc = RAFT_ECONF_PENDING;
    return false;
  }
  raft_conf_state next = *conf_log_current(&r->conf);
  if (!raft_conf_apply(&next, cc)) {
    *rc = RAFT_EINVAL;
    return false;
  }
  return true;
}

/* The leader's side of a proposal; entries come from the local caller or a
 * forwarding follower. Conf changes that would not apply are dropped. */
int raft_leader_propose(raft *r, const raft_entry *ents, size_t n) {
  if (!raft_progress_of(r, r->id)) return RAFT_EPROPOSAL_DROPPED;
  if (r->lead_transferee != RAFT_NONE) return RAFT_EPROPOSAL_DROPPED;
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    const raft_entry *e = &ents[i];
    if (e->type == RAFT_ENTRY_CONF_CHANGE) {
      raft_conf_change cc;
      if (raft_cc_decode(e->data, e->len, &cc) != 0) {
        rc = RAFT_EINVAL;
        continue;
      }
      if (!validate_cc(r, &cc, &rc)) continue;
    }
    raft_append_entry(r, e->type, e->data, e->len);
  }
  return rc;
}

static int propose(raft *r, uint8_t type, const void *data, size_t len) {
  if (r->fatal) return r->fatal;
  RAFT_ENTER(r);
  if (len > UINT32_MAX) return RAFT_EINVAL;
  raft_entry e = {.type = type, .data = (uint8_t *)data, .len = (uint32_t)len};
  if (r->role == RAFT_LEADER) {
    int rc = raft_leader_propose(r, &e, 1);
    return finish(r) ? r->fatal : rc;
  }
  if (r->role != RAFT_FOLLOWER || r->lead == RAFT_NONE || r->cfg.disable_proposal_forwarding)
    return RAFT_EPROPOSAL_DROPPED;
  raft_msg m = {.type = RAFT_MSG_PROP, .to = r->lead, .entries = &e, .n_entries = 1};
  raft_send(r, &m);
  return 0;
}

int raft_propose(raft *r, const void *data, size_t len) {
  return propose(r, RAFT_ENTRY_NORMAL, data, len);
}

int raft_propose_conf_change(raft *r, const raft_conf_change *cc) {
  if (cc->type > RAFT_CC_UPDATE || cc->node_id == 0) return RAFT_EINVAL;
  buf b = {0};
  raft_cc_encode(cc, &b);
  int rc = propose(r, RAFT_ENTRY_CONF_CHANGE, b.data, b.len);
  buf_free(&b);
  return rc;
}

int raft_read_index(raft *r, const void *ctx, size_t len) {
  if (r->fatal) return r->fatal;
  RAFT_ENTER(r);
  if (r->role == RAFT_LEADER) {
    raft_read_request(r, RAFT_NONE, ctx, len);
    return 0;
  }
  if (r->role != RAFT_FOLLOWER || r->lead == RAFT_NONE) return RAFT_EPROPOSAL_DROPPED;
  raft_msg m = {.type = RAFT_MSG_READ_INDEX, .to = r->lead, .ctx = ctx, .ctx_len = len};
  raft_send(r, &m);
  return 0;
}

int raft_transfer_leader(raft *r, uint64_t to) {
  if (r->fatal) return r->fatal;
  RAFT_ENTER(r);
  if (to == RAFT_NONE) return RAFT_EINVAL;
  if (r->role == RAFT_LEADER) return raft_leader_transfer(r, to);
  if (r->role != RAFT_FOLLOWER || r->lead == RAFT_NONE) return RAFT_EPROPOSAL_DROPPED;
  raft_msg m = {.type = RAFT_MSG_TRANSFER_LEADER, .to = r->lead, .index = to};
  raft_send(r, &m);
  return 0;
}

int raft_campaign(raft *r) {
  if (r->fatal) return r->fatal;
  RAFT_ENTER(r);
  /* A follower that backs a leader's lease has promised not to help elect
   * anyone for an election timeout -- itself included. (Found by the
   * simulator: a forced campaign elected a new leader while the old one
   * still served lease reads.) */
  if (r->cfg.read_mode == RAFT_READ_LEASE && r->role != RAFT_LEADER && in_lease(r))
    return RAFT_EBUSY;
  raft_hup(r, false);
  return finish(r);
}

/* ---------------------------------------------------------------- lifecycle */

int raft_new(const raft_config *cfg, raft **out) {
  *out = NULL;
  if (cfg->id == RAFT_NONE || !cfg->storage || cfg->election_tick < 2 ||
      cfg->heartbeat_tick == 0 || cfg->heartbeat_tick >= cfg->election_tick ||
      cfg->read_mode > RAFT_READ_LEASE || (cfg->read_mode == RAFT_READ_LEASE && !cfg->check_quorum))
    return RAFT_EINVAL;
  raft *r = xcalloc(1, sizeof *r);
  r->id = cfg->id;
  r->cfg = *cfg;
  if (!r->cfg.max_msg_bytes) r->cfg.max_msg_bytes = 1 << 20;
  if (!r->cfg.max_inflight_msgs) r->cfg.max_inflight_msgs = 256;
  if (!r->cfg.max_committed_bytes) r->cfg.max_committed_bytes = 64 << 20;
  if (!r->cfg.lease_drift_ticks) r->cfg.lease_drift_ticks = cfg->election_tick / 8 + 1;
  r->rng = cfg->seed ^ (cfg->id * 0x2545f4914f6cdd1dull);

  int rc = log_init(&r->log, cfg->storage);
  raft_hard_state hs;
  raft_conf_state cs;
  if (rc == 0) rc = cfg->storage->initial_state(cfg->storage->ctx, &hs, &cs);
  if (rc == 0 && !conf_valid(&cs)) rc = RAFT_EINVAL;
  if (rc == 0) {
    uint64_t first = log_first_index(&r->log), last = log_last_index(&r->log);
    if (hs.commit > last) rc = RAFT_EINVAL;
    if (hs.commit > r->log.committed) r->log.committed = hs.commit;
    if (cfg->applied > r->log.applied) r->log.applied = cfg->applied;
    if (r->log.applied > r->log.committed) rc = RAFT_EINVAL;
    if (rc == 0) {
      conf_log_reset(&r->conf, first - 1, &cs);
      rc = raft_conf_scan(r, first, last + 1);
    }
  } else if (rc != RAFT_EINVAL) {
    rc = RAFT_ESTORAGE;
  }
  if (rc != 0) {
    raft_free(r);
    return rc;
  }
  r->term = hs.term;
  r->vote = hs.vote;
  r->since_leader = cfg->election_tick;
  raft_become_follower(r, hs.term, RAFT_NONE);
  r->prev_hs = hs;
  r->prev_role = RAFT_FOLLOWER;
  *out = r;
  return 0;
}

void raft_free(raft *r) {
  if (!r) return;
  for (uint32_t i = 0; i < RAFT_MAX_NODES; i++) free(r->prs[i].ifl.index);
  read_queue_free(&r->reads);
  read_queue_free(&r->reads_unready);
  outbox_free(&r->out[0]);
  outbox_free(&r->out[1]);
  free(r->rd_ents);
  free(r->rd_committed);
  free(r->rd_snap_data);
  conf_log_free(&r->conf);
  log_free(&r->log);
  free(r);
}
