/* raft_sim.c - the world of the simulator: virtual time, an event queue,
 * nodes with a "disk" (memstorage) and a state machine, and a network that
 * loses, duplicates, delays, reorders and partitions messages. The safety
 * checks live next to the events that can break them.
 *
 * A node processes its ready the way the server will: it sends rd.msgs at
 * once, then "writes to disk" for a random time during which it keeps
 * receiving messages and ticking; when the write completes it persists,
 * sends rd.msgs_after_persist, applies, and advances. A crash during the
 * write loses the write. Every message is encoded and decoded.
 *
 * The state machine is a hash chain over applied entries; a snapshot
 * carries {index, state hash, log chain hash}, so state machine safety
 * survives snapshots and restarts. */
#include "raft_sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

#define MAX_SLOTS 9
#define TICK 100             /* virtual time units per tick (before skew) */
#define ELECTION_TICK 10
#define TRACE_LINES 400
#define LONG_DELAY_MAX 2500  /* reordering: a message may arrive this late */

/* ---------------------------------------------------------------- small tools */

typedef struct {
  uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rng_below(rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }
static uint64_t rng_range(rng *r, uint64_t lo, uint64_t hi) { return lo + rng_below(r, hi - lo + 1); }
static bool rng_pm(rng *r, uint32_t per_mille) { return rng_below(r, 1000) < per_mille; }

static uint64_t mix(uint64_t h, uint64_t v) {
  rng t = {h ^ (v * 0x9e3779b97f4a7c15ull)};
  return rng_next(&t);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static uint64_t entry_hash(uint64_t prev, const raft_entry *e) {
  return mix(mix(mix(prev, e->term), e->type + 1), hash_bytes(e->data, e->len));
}

/* A vector indexed by log index or term; 0 means unknown. */
typedef struct {
  uint64_t *v;
  size_t cap;
} vec;

static uint64_t vget(const vec *x, uint64_t i) { return i < x->cap ? x->v[i] : 0; }

static void vset(vec *x, uint64_t i, uint64_t val) {
  if (i >= x->cap) {
    size_t cap = x->cap ? x->cap : 64;
    while (cap <= i) cap *= 2;
    x->v = realloc(x->v, cap * sizeof *x->v);
    memset(x->v + x->cap, 0, (cap - x->cap) * sizeof *x->v);
    x->cap = cap;
  }
  x->v[i] = val;
}

static void vclear(vec *x) {
  if (x->cap) memset(x->v, 0, x->cap * sizeof *x->v);
}

/* (index, term) -> chain hash of the log up to that entry. */
typedef struct {
  uint64_t index, term, chain;
} lm_slot;

typedef struct {
  lm_slot *s;
  size_t cap, n;
} lm_table;

static lm_slot *lm_find(lm_table *t, uint64_t index, uint64_t term) {
  size_t mask = t->cap - 1, i = (size_t)mix(index, term) & mask;
  while (t->s[i].index && (t->s[i].index != index || t->s[i].term != term)) i = (i + 1) & mask;
  return &t->s[i];
}

/* Records the chain for (index, term); false if another was recorded. */
static bool lm_check(lm_table *t, uint64_t index, uint64_t term, uint64_t chain) {
  if (t->n * 2 >= t->cap) {
    lm_table g = {calloc(t->cap ? t->cap * 2 : 1024, sizeof(lm_slot)), t->cap ? t->cap * 2 : 1024, 0};
    for (size_t i = 0; i < t->cap; i++)
      if (t->s[i].index) {
        *lm_find(&g, t->s[i].index, t->s[i].term) = t->s[i];
        g.n++;
      }
    free(t->s);
    *t = g;
  }
  lm_slot *sl = lm_find(t, index, term);
  if (!sl->index) {
    *sl = (lm_slot){index, term, chain};
    t->n++;
    return true;
  }
  return sl->chain == chain;
}

/* ---------------------------------------------------------------- world */

typedef struct {
  int voters, learners;
  bool pre_vote, check_quorum, lease;
  uint32_t loss_pm, dup_pm, long_delay_pm;
  uint32_t delay_min, delay_max, disk_max;
  uint32_t skew_pct;
  uint32_t chaos_ticks;
  uint64_t max_msg_bytes;
  uint32_t max_inflight;
  bool conf_changes;
  uint32_t action_gap;   /* mean virtual time between driver actions */
  uint32_t crash_w, partition_w, conf_w, transfer_w, campaign_w, snapshot_w, read_w, propose_w;
} params;

enum { EV_TICK, EV_DELIVER, EV_PERSIST, EV_ACTION, EV_SNAP_REPORT, EV_RESTART, EV_RETIRE, EV_CRASH,
       EV_UNREACHABLE };

typedef struct {
  uint64_t time, seq;
  uint8_t kind;
  uint8_t node;
  uint8_t from;
  uint32_t inc;  /* incarnation the event belongs to */
  uint64_t aux;
  uint8_t *bytes;
  size_t len;
} event;

typedef struct {
  uint64_t id;
  bool exists, up, retired;
  raft *r;
  raft_memstorage *ms;
  uint32_t inc;
  uint64_t period;
  bool persisting;
  raft_ready rd;
  uint64_t applied, sm;     /* the state machine */
  vec chain;                /* durable log: chain hash by index */
  uint64_t chain_last;
  uint64_t snap_index;      /* memstorage snapshot */
  raft_hard_state dur;      /* durable hard state */
  uint64_t commit_checked;
  uint64_t leader_term;     /* last term we saw it lead */
  bool restart_pending;
} snode;

typedef struct {
  uint64_t min_index;       /* highest commit anyone knew when it was issued */
  uint8_t node;
  bool answered;
} read_rec;

typedef struct {
  uint64_t seed;
  sim_fault fault;
  params p;
  rng rng;
  uint64_t now, seq;
  event *heap;
  size_t n_heap, cap_heap;
  snode nodes[MAX_SLOTS + 1];
  int n_slots;
  bool cut[MAX_SLOTS + 1][MAX_SLOTS + 1];
  bool healed;
  raft_decode_buf db;
  vec leader_of_term;
  vec committed_chain, commit_term, sm_at;
  lm_table lm;
  uint64_t max_commit_known; /* highest commit index any node has reported */
  uint64_t max_commit_rec;   /* highest index recorded as committed */
  uint64_t next_prop;
  vec prop_done;             /* proposal id -> 1 once applied somewhere */
  read_rec *reads;
  size_t n_reads, cap_reads;
  char trace[TRACE_LINES][200];
  uint64_t trace_n;
  bool verbose, failed;
  char why[400];
  sim_stats st;
} sim;

static void tracef(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tracef(sim *s, const char *fmt, ...) {
  char *line = s->trace[s->trace_n++ % TRACE_LINES];
  int k = snprintf(line, 200, "t=%-7llu ", (unsigned long long)s->now);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + k, (size_t)(200 - k), fmt, ap);
  va_end(ap);
  if (s->verbose) fprintf(stderr, "%s\n", line);
}

static void fail(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(sim *s, const char *fmt, ...) {
  if (s->failed) return;
  s->failed = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->why, sizeof s->why, fmt, ap);
  va_end(ap);
  tracef(s, "VIOLATION: %s", s->why);
}

/* ---------------------------------------------------------------- events */

static bool ev_less(const event *a, const event *b) {
  return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void schedule(sim *s, event ev) {
  ev.seq = s->seq++;
  if (s->n_heap == s->cap_heap) {
    s->cap_heap = s->cap_heap ? s->cap_heap * 2 : 256;
    s->heap = realloc(s->heap, s->cap_heap * sizeof *s->heap);
  }
  size_t i = s->n_heap++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (!ev_less(&ev, &s->heap[up])) break;
    s->heap[i] = s->heap[up];
    i = up;
  }
  s->heap[i] = ev;
}

static event pop(sim *s) {
  event top = s->heap[0], last = s->heap[--s->n_heap];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= s->n_heap) break;
    if (c + 1 < s->n_heap && ev_less(&s->heap[c + 1], &s->heap[c])) c++;
    if (!ev_less(&s->heap[c], &last)) break;
    s->heap[i] = s->heap[c];
    i = c;
  }
  if (s->n_heap) s->heap[i] = last;
  return top;
}

/* ---------------------------------------------------------------- network */

static const char *type_name(int t) { return raft_msg_type_name(t); }

static void send_msg(sim *s, snode *from, const raft_msg *m) {
  buf b = {0};
  int rc = raft_msg_encode(m, &b);
  if (rc != 0) {
    fail(s, "n%llu could not encode %s: %s", (unsigned long long)from->id, type_name(m->type),
         raft_strerror(rc));
    buf_free(&b);
    return;
  }
  s->st.messages++;
  int copies = 1;
  const char *fate = "";
  if (m->to > (uint64_t)s->n_slots || m->to == 0) {
    copies = 0;
    fate = " (no such node)";
  } else if (s->cut[from->id][m->to]) {
    /* The transport sees the broken link, and sometimes says so. */
    copies = 0;
    fate = " CUT";
    if (rng_pm(&s->rng, 300))
      schedule(s, (event){.time = s->now + 1, .kind = EV_UNREACHABLE, .node = (uint8_t)from->id,
                          .inc = from->inc, .aux = m->to});
  } else if (!s->healed && rng_pm(&s->rng, s->p.loss_pm)) {
    copies = 0;
    fate = " LOST";
  } else if (!s->healed && rng_pm(&s->rng, s->p.dup_pm)) {
    copies = 2;
    fate = " DUP";
  }
  tracef(s, "n%llu -> n%llu %s term=%llu idx=%llu lterm=%llu commit=%llu n=%zu%s%s", (unsigned long long)m->from,
         (unsigned long long)m->to, type_name(m->type), (unsigned long long)m->term,
         (unsigned long long)m->index, (unsigned long long)m->log_term, (unsigned long long)m->commit,
         m->n_entries, m->reject ? " reject" : "", fate);
  if (copies == 0) {
    s->st.dropped++;
    if (m->type == RAFT_MSG_SNAP)
      schedule(s, (event){.time = s->now + s->p.delay_max, .kind = EV_SNAP_REPORT,
                          .node = (uint8_t)from->id, .inc = from->inc, .aux = m->to, .from = 0});
    buf_free(&b);
    return;
  }
  if (m->type == RAFT_MSG_SNAP) s->st.snapshots_sent++;
  for (int c = 0; c < copies; c++) {
    uint64_t delay = rng_range(&s->rng, s->p.delay_min, s->p.delay_max);
    if (!s->healed && rng_pm(&s->rng, s->p.long_delay_pm)) delay = rng_range(&s->rng, 100, LONG_DELAY_MAX);
    event ev = {.time = s->now + delay, .kind = EV_DELIVER, .node = (uint8_t)m->to,
                .from = (uint8_t)from->id, .inc = from->inc, .len = b.len};
    ev.bytes = c == copies - 1 ? b.data : xmemdup(b.data, b.len);
    schedule(s, ev);
  }
}

/* ---------------------------------------------------------------- checks */

/* Election safety and leader completeness, checked whenever a node may
 * have become leader. */
static void check_leader(sim *s, snode *n) {
  if (!n->up || raft_get_role(n->r) != RAFT_LEADER) return;
  raft_status st;
  raft_status_get(n->r, &st);
  if (st.term == n->leader_term) return;
  n->leader_term = st.term;
  s->st.leaders++;
  uint64_t other = vget(&s->leader_of_term, st.term);
  if (other && other != n->id) {
    fail(s, "two leaders in term %llu: n%llu and n%llu", (unsigned long long)st.term,
         (unsigned long long)other, (unsigned long long)n->id);
    return;
  }
  vset(&s->leader_of_term, st.term, n->id);
  tracef(s, "n%llu is LEADER of term %llu", (unsigned long long)n->id, (unsigned long long)st.term);
  /* Every entry committed in an earlier term must be in its log. Entries
   * committed while it won (by leaders of later terms it has not heard of)
   * need not be. */
  uint64_t i = s->max_commit_rec;
  while (i > 0 && vget(&s->commit_term, i) >= st.term) i--;
  if (i == 0 || i <= n->snap_index) return;
  if (i > n->chain_last || vget(&n->chain, i) != vget(&s->committed_chain, i))
    fail(s, "leader completeness: n%llu leads term %llu without committed entry %llu",
         (unsigned long long)n->id, (unsigned long long)st.term, (unsigned long long)i);
}

/* The durable log after an append: log matching against every other log. */
static void persist_entries(sim *s, snode *n, const raft_entry *ents, size_t k) {
  for (size_t i = 0; i < k; i++) {
    const raft_entry *e = &ents[i];
    if (e->index <= n->snap_index) continue;
    uint64_t prev = vget(&n->chain, e->index - 1);
    if (e->index - 1 > n->snap_index && e->index - 1 > n->chain_last) {
      fail(s, "n%llu appended entry %llu after a gap (last %llu)", (unsigned long long)n->id,
           (unsigned long long)e->index, (unsigned long long)n->chain_last);
      return;
    }
    uint64_t c = entry_hash(prev, e);
    vset(&n->chain, e->index, c);
    n->chain_last = e->index;
    if (!lm_check(&s->lm, e->index, e->term, c)) {
      fail(s, "log matching: n%llu has entry %llu term %llu with a different history",
           (unsigned long long)n->id, (unsigned long long)e->index, (unsigned long long)e->term);
      return;
    }
  }
}

/* The durable commit index: what it covers must be the committed history
 * everyone else agrees on, and it never goes back. */
static void persist_hard_state(sim *s, snode *n, const raft_hard_state *hs) {
  raft_hard_state old = n->dur;
  if (hs->term < old.term)
    fail(s, "n%llu durable term went back %llu -> %llu", (unsigned long long)n->id,
         (unsigned long long)old.term, (unsigned long long)hs->term);
  if (hs->term == old.term && old.vote && hs->vote != old.vote)
    fail(s, "n%llu changed its vote in term %llu", (unsigned long long)n->id, (unsigned long long)hs->term);
  if (hs->commit < old.commit)
    fail(s, "n%llu durable commit went back", (unsigned long long)n->id);
  n->dur = *hs;
  if (hs->commit > n->chain_last && hs->commit > n->snap_index)
    fail(s, "n%llu commit %llu beyond its durable log %llu", (unsigned long long)n->id,
         (unsigned long long)hs->commit, (unsigned long long)n->chain_last);
  for (uint64_t i = (n->commit_checked > n->snap_index ? n->commit_checked : n->snap_index) + 1; i <= hs->commit && !s->failed; i++) {
    uint64_t mine = vget(&n->chain, i), rec = vget(&s->committed_chain, i);
    if (!rec) {
      vset(&s->committed_chain, i, mine);
      vset(&s->commit_term, i, hs->term);
      if (i > s->max_commit_rec) s->max_commit_rec = i;
    } else if (rec != mine) {
      fail(s, "committed entry %llu differs on n%llu: a committed entry was lost or changed",
           (unsigned long long)i, (unsigned long long)n->id);
    }
  }
  if (hs->commit > n->commit_checked) n->commit_checked = hs->commit;
}

/* ---------------------------------------------------------------- state machine */

typedef struct {
  uint64_t index, sm, chain;
} snap_data;

static void sm_apply(sim *s, snode *n, const raft_entry *e) {
  if (e->index != n->applied + 1) {
    fail(s, "n%llu applied %llu after %llu", (unsigned long long)n->id, (unsigned long long)e->index,
         (unsigned long long)n->applied);
    return;
  }
  n->applied = e->index;
  n->sm = entry_hash(n->sm, e);
  uint64_t rec = vget(&s->sm_at, e->index);
  if (!rec) {
    vset(&s->sm_at, e->index, n->sm);
  } else if (rec != n->sm) {
    fail(s, "state machine safety: n%llu state after %llu differs", (unsigned long long)n->id,
         (unsigned long long)e->index);
    return;
  }
  if (e->type == RAFT_ENTRY_NORMAL && e->len >= 8) {
    uint64_t id;
    memcpy(&id, e->data, 8);
    if (!vget(&s->prop_done, id)) {
      vset(&s->prop_done, id, 1);
      s->st.committed++;
    }
  } else if (e->type == RAFT_ENTRY_CONF_CHANGE) {
    raft_conf_change cc;
    if (raft_cc_decode(e->data, e->len, &cc) == 0 && cc.type == RAFT_CC_REMOVE &&
        cc.node_id <= (uint64_t)s->n_slots && !s->nodes[cc.node_id].retired &&
        !s->nodes[cc.node_id].restart_pending) {
      /* As etcd does, a member removed for good shuts down. */
      s->nodes[cc.node_id].restart_pending = true;
      schedule(s, (event){.time = s->now + rng_range(&s->rng, 1, 5 * TICK), .kind = EV_RETIRE,
                          .node = (uint8_t)cc.node_id});
    }
  }
}

static void sm_install(sim *s, snode *n, const raft_snapshot *snap) {
  snap_data d = {0};
  if (snap->len >= sizeof d) memcpy(&d, snap->data, sizeof d);
  if (d.index != snap->index) {
    fail(s, "n%llu got a snapshot whose data does not match its index", (unsigned long long)n->id);
    return;
  }
  n->applied = snap->index;
  n->sm = d.sm;
  uint64_t rec = vget(&s->sm_at, snap->index);
  if (rec && rec != d.sm) fail(s, "snapshot state at %llu differs", (unsigned long long)snap->index);
  if (!rec) vset(&s->sm_at, snap->index, d.sm);
  uint64_t crec = vget(&s->committed_chain, snap->index);
  if (crec && crec != d.chain) fail(s, "snapshot log at %llu differs", (unsigned long long)snap->index);
  vclear(&n->chain);
  vset(&n->chain, snap->index, d.chain);
  n->chain_last = snap->index;
  n->snap_index = snap->index;
  if (n->commit_checked < snap->index) n->commit_checked = snap->index;
  s->st.snapshots_installed++;
}

/* ---------------------------------------------------------------- ready */

static void finish_ready(sim *s, snode *n) {
  raft_ready *rd = &n->rd;
  if (rd->snapshot) {
    raft_memstorage_apply_snapshot(n->ms, rd->snapshot);
    sm_install(s, n, rd->snapshot);
  }
  if (rd->n_entries) {
    if (raft_memstorage_append(n->ms, rd->entries, rd->n_entries) != 0)
      fail(s, "n%llu: storage refused the ready's entries", (unsigned long long)n->id);
    persist_entries(s, n, rd->entries, rd->n_entries);
  }
  if (rd->hard_state_changed) {
    raft_memstorage_set_hard_state(n->ms, &rd->hard_state);
    persist_hard_state(s, n, &rd->hard_state);
  }
  if (s->fault != SIM_FAULT_ACK_BEFORE_PERSIST)
    for (size_t i = 0; i < rd->n_msgs_after_persist; i++) send_msg(s, n, &rd->msgs_after_persist[i]);
  for (size_t i = 0; i < rd->n_committed && !s->failed; i++) sm_apply(s, n, &rd->committed[i]);
  for (size_t i = 0; i < rd->n_read_states; i++) {
    const raft_read_state *rs = &rd->read_states[i];
    uint64_t id;
    if (rs->ctx_len != 8) continue;
    memcpy(&id, rs->ctx, 8);
    if (id >= s->n_reads) continue;
    read_rec *rr = &s->reads[id];
    s->st.reads_checked++;
    tracef(s, "n%llu read %llu -> index %llu (needs >= %llu)", (unsigned long long)n->id,
           (unsigned long long)id, (unsigned long long)rs->index, (unsigned long long)rr->min_index);
    if (rs->index < rr->min_index)
      fail(s, "linearizability: read %llu at n%llu returned index %llu but %llu was already committed",
           (unsigned long long)id, (unsigned long long)n->id, (unsigned long long)rs->index,
           (unsigned long long)rr->min_index);
    if (rs->index > s->max_commit_known)
      fail(s, "read %llu returned uncommitted index %llu", (unsigned long long)id,
           (unsigned long long)rs->index);
    rr->answered = true;
  }
  int rc = raft_advance(n->r);
  if (rc != 0) fail(s, "n%llu advance: %s", (unsigned long long)n->id, raft_strerror(rc));
  n->persisting = false;
}

/* Runs a node's ready cycles after anything happened to it. */
static void node_work(sim *s, snode *n) {
  check_leader(s, n);
  while (n->up && !n->persisting && !s->failed && raft_has_ready(n->r)) {
    int rc = raft_get_ready(n->r, &n->rd);
    if (rc != 0) {
      fail(s, "n%llu ready: %s", (unsigned long long)n->id, raft_strerror(rc));
      return;
    }
    raft_ready *rd = &n->rd;
    if (rd->hard_state.commit > s->max_commit_known) s->max_commit_known = rd->hard_state.commit;
    if (rd->soft_state_changed)
      tracef(s, "n%llu %s term=%llu lead=%llu", (unsigned long long)n->id, raft_role_name(rd->role),
             (unsigned long long)rd->hard_state.term, (unsigned long long)rd->lead);
    for (size_t i = 0; i < rd->n_msgs; i++) send_msg(s, n, &rd->msgs[i]);
    if (s->fault == SIM_FAULT_ACK_BEFORE_PERSIST)
      for (size_t i = 0; i < rd->n_msgs_after_persist; i++) send_msg(s, n, &rd->msgs_after_persist[i]);
    uint64_t d = rng_pm(&s->rng, 400) ? 0 : rng_range(&s->rng, 1, s->p.disk_max);
    if (d == 0) {
      finish_ready(s, n);
    } else {
      n->persisting = true;
      schedule(s, (event){.time = s->now + d, .kind = EV_PERSIST, .node = (uint8_t)n->id, .inc = n->inc});
      /* Power loss in the middle of a write: the write is lost. */
      uint32_t pm = s->fault == SIM_FAULT_ACK_BEFORE_PERSIST ? 150 : 15;
      if (!s->healed && s->p.crash_w && rng_pm(&s->rng, pm))
        schedule(s, (event){.time = s->now + rng_below(&s->rng, d), .kind = EV_CRASH,
                            .node = (uint8_t)n->id, .inc = n->inc});
    }
    check_leader(s, n);
  }
}

/* ---------------------------------------------------------------- node lifecycle */

static raft_config node_config(sim *s, snode *n) {
  raft_config c;
  memset(&c, 0, sizeof c);
  c.id = n->id;
  c.storage = raft_memstorage_storage(n->ms);
  c.election_tick = ELECTION_TICK;
  c.heartbeat_tick = 1;
  c.check_quorum = s->p.check_quorum;
  c.pre_vote = s->p.pre_vote;
  c.read_mode = s->p.lease ? RAFT_READ_LEASE : RAFT_READ_SAFE;
  c.max_msg_bytes = s->p.max_msg_bytes;
  c.max_inflight_msgs = s->p.max_inflight;
  c.seed = s->seed * 31 + n->id * 1000003 + n->inc;
  return c;
}

static void node_start(sim *s, snode *n) {
  raft_config c = node_config(s, n);
  /* The state machine comes back from the snapshot on disk. */
  raft_snapshot snap;
  const raft_storage *st = raft_memstorage_storage(n->ms);
  st->snapshot(st->ctx, &snap);
  n->applied = snap.index;
  n->sm = 0;
  if (snap.len >= sizeof(snap_data)) {
    snap_data d;
    memcpy(&d, snap.data, sizeof d);
    n->sm = d.sm;
  }
  c.applied = snap.index;
  int rc = raft_new(&c, &n->r);
  if (rc != 0) {
    fail(s, "n%llu restart failed: %s", (unsigned long long)n->id, raft_strerror(rc));
    return;
  }
  n->up = true;
  n->persisting = false;
  n->leader_term = 0;
  tracef(s, "n%llu starts (term %llu, log %llu..%llu)", (unsigned long long)n->id,
         (unsigned long long)n->dur.term, (unsigned long long)st->first_index(st->ctx),
         (unsigned long long)st->last_index(st->ctx));
}

static void node_crash(sim *s, snode *n, const char *why) {
  if (!n->up) return;
  raft_free(n->r);
  n->r = NULL;
  n->up = false;
  n->inc++;
  n->persisting = false;
  s->st.crashes++;
  tracef(s, "n%llu %s", (unsigned long long)n->id, why);
  if (s->fault == SIM_FAULT_FORGET_VOTE) {
    raft_hard_state hs = raft_memstorage_hard_state(n->ms);
    hs.vote = 0;
    raft_memstorage_set_hard_state(n->ms, &hs);
    n->dur.vote = 0;
  }
}

static void crash_and_restart_later(sim *s, snode *n, const char *why) {
  node_crash(s, n, why);
  n->restart_pending = true;
  uint64_t down = rng_pm(&s->rng, 200) ? rng_range(&s->rng, 20, 60) : rng_range(&s->rng, 1, 15);
  schedule(s, (event){.time = s->now + down * TICK, .kind = EV_RESTART, .node = (uint8_t)n->id});
}

static void schedule_tick(sim *s, snode *n) {
  schedule(s, (event){.time = s->now + n->period, .kind = EV_TICK, .node = (uint8_t)n->id});
}

static void node_create(sim *s, snode *n, const raft_conf_state *founders) {
  n->exists = true;
  n->ms = raft_memstorage_new();
  if (founders) {
    raft_memstorage_bootstrap(n->ms, founders);
    n->dur = raft_memstorage_hard_state(n->ms);
    const raft_storage *st = raft_memstorage_storage(n->ms);
    raft_entry e[RAFT_MAX_NODES];
    size_t k = 0;
    st->entries(st->ctx, 1, st->last_index(st->ctx) + 1, UINT64_MAX, e, &k);
    persist_entries(s, n, e, k);
    persist_hard_state(s, n, &n->dur);
  }
  uint32_t skew = s->p.skew_pct;
  n->period = TICK * (100 - skew) / 100 + rng_below(&s->rng, 2 * TICK * skew / 100 + 1);
  /* The planted fault: clocks running at rates 4x apart, far beyond what the
   * lease margin allows. */
  if (s->fault == SIM_FAULT_LEASE_NO_MARGIN) n->period = rng_below(&s->rng, 2) ? TICK * 2 : TICK / 2;
  node_start(s, n);
  schedule_tick(s, n);
}

/* ---------------------------------------------------------------- driver */

static snode *pick_up(sim *s) {
  int k = 0;
  snode *cand[MAX_SLOTS];
  for (int i = 1; i <= s->n_slots; i++)
    if (s->nodes[i].up) cand[k++] = &s->nodes[i];
  return k ? cand[rng_below(&s->rng, (uint64_t)k)] : NULL;
}

static snode *find_leader(sim *s) {
  snode *best = NULL;
  uint64_t best_term = 0;
  for (int i = 1; i <= s->n_slots; i++) {
    snode *n = &s->nodes[i];
    if (!n->up || raft_get_role(n->r) != RAFT_LEADER) continue;
    raft_status st;
    raft_status_get(n->r, &st);
    if (st.term > best_term) {
      best = n;
      best_term = st.term;
    }
  }
  return best;
}

static void propose(sim *s, snode *n) {
  uint8_t data[64];
  uint64_t id = ++s->next_prop;
  memcpy(data, &id, 8);
  size_t len = 8 + rng_below(&s->rng, 48);
  for (size_t i = 8; i < len; i++) data[i] = (uint8_t)rng_next(&s->rng);
  int rc = raft_propose(n->r, data, len);
  s->st.proposals++;
  tracef(s, "n%llu propose #%llu: %s", (unsigned long long)n->id, (unsigned long long)id, raft_strerror(rc));
  if (rc != 0 && rc != RAFT_EPROPOSAL_DROPPED) fail(s, "propose: %s", raft_strerror(rc));
}

static void read_index(sim *s, snode *n) {
  if (s->n_reads == s->cap_reads) {
    s->cap_reads = s->cap_reads ? s->cap_reads * 2 : 64;
    s->reads = realloc(s->reads, s->cap_reads * sizeof *s->reads);
  }
  uint64_t id = s->n_reads++;
  s->reads[id] = (read_rec){.min_index = s->max_commit_known, .node = (uint8_t)n->id};
  int rc = raft_read_index(n->r, &id, 8);
  s->reads[id].answered = rc != 0; /* no answer is coming */
  s->st.reads++;
  tracef(s, "n%llu read #%llu (committed >= %llu): %s", (unsigned long long)n->id, (unsigned long long)id,
         (unsigned long long)s->max_commit_known, raft_strerror(rc));
}

static void conf_change(sim *s) {
  snode *l = find_leader(s);
  if (!l) return;
  raft_conf_state cs;
  raft_conf_get(l->r, &cs, NULL);
  raft_conf_change cc = {0};
  uint64_t roll = rng_below(&s->rng, 100);
  if (roll < 30) {
    int fresh = 0;
    for (int i = 1; i <= s->n_slots && !fresh; i++)
      if (!s->nodes[i].exists) fresh = i;
    if (!fresh) return;
    node_create(s, &s->nodes[fresh], NULL);
    cc = (raft_conf_change){.type = RAFT_CC_ADD_LEARNER, .node_id = (uint64_t)fresh};
  } else if (roll < 55) {
    if (!cs.n_learners) return;
    cc = (raft_conf_change){.type = RAFT_CC_ADD_VOTER,
                            .node_id = cs.learners[rng_below(&s->rng, cs.n_learners)]};
  } else if (roll < 80) {
    if (cs.n_voters <= 3) return;
    cc = (raft_conf_change){.type = RAFT_CC_REMOVE, .node_id = cs.voters[rng_below(&s->rng, cs.n_voters)]};
  } else if (roll < 90) {
    if (!cs.n_learners) return;
    cc = (raft_conf_change){.type = RAFT_CC_REMOVE,
                            .node_id = cs.learners[rng_below(&s->rng, cs.n_learners)]};
  } else if (roll < 97) {
    if (cs.n_voters <= 3) return;
    cc = (raft_conf_change){.type = RAFT_CC_ADD_LEARNER,
                            .node_id = cs.voters[rng_below(&s->rng, cs.n_voters)]};
  } else {
    cc = (raft_conf_change){.type = RAFT_CC_UPDATE, .node_id = cs.voters[0],
                            .ctx = (const uint8_t *)"peer-urls", .ctx_len = 9};
  }
  int rc = raft_propose_conf_change(l->r, &cc);
  s->st.conf_changes += rc == 0;
  tracef(s, "n%llu conf change type %d node %llu: %s", (unsigned long long)l->id, cc.type,
         (unsigned long long)cc.node_id, raft_strerror(rc));
  node_work(s, l);
}

static void partition(sim *s) {
  memset(s->cut, 0, sizeof s->cut);
  uint64_t kind = rng_below(&s->rng, 4);
  s->st.partitions++;
  if (kind == 0) {
    tracef(s, "network healed");
    return;
  }
  if (kind == 1) {
    /* isolate one node */
    uint64_t v = rng_range(&s->rng, 1, (uint64_t)s->n_slots);
    for (int i = 1; i <= s->n_slots; i++) s->cut[v][i] = s->cut[i][v] = true;
    tracef(s, "partition: n%llu isolated", (unsigned long long)v);
  } else if (kind == 2) {
    /* split in two groups */
    bool side[MAX_SLOTS + 1];
    for (int i = 1; i <= s->n_slots; i++) side[i] = rng_below(&s->rng, 2);
    for (int i = 1; i <= s->n_slots; i++)
      for (int j = 1; j <= s->n_slots; j++) s->cut[i][j] = side[i] != side[j];
    tracef(s, "partition: split");
  } else {
    /* one-way cuts */
    for (int k = 0; k < 3; k++) {
      uint64_t a = rng_range(&s->rng, 1, (uint64_t)s->n_slots), b = rng_range(&s->rng, 1, (uint64_t)s->n_slots);
      s->cut[a][b] = true;
      tracef(s, "partition: n%llu -/-> n%llu", (unsigned long long)a, (unsigned long long)b);
    }
  }
}

static void snapshot_node(sim *s, snode *n) {
  if (!n->up || n->persisting || n->applied <= n->snap_index + 3) return;
  raft_conf_state applied_conf;
  raft_status st;
  raft_status_get(n->r, &st);
  raft_conf_get(n->r, NULL, &applied_conf);
  if (st.applied != n->applied) {
    fail(s, "n%llu raft applied %llu, state machine %llu", (unsigned long long)n->id,
         (unsigned long long)st.applied, (unsigned long long)n->applied);
    return;
  }
  uint8_t data[sizeof(snap_data) + 16];
  snap_data d = {n->applied, n->sm, vget(&n->chain, n->applied)};
  memcpy(data, &d, sizeof d);
  size_t len = sizeof d + rng_below(&s->rng, 16);
  memset(data + sizeof d, 0xab, len - sizeof d);
  if (raft_memstorage_create_snapshot(n->ms, n->applied, &applied_conf, data, len) != 0) {
    fail(s, "n%llu could not snapshot at %llu", (unsigned long long)n->id, (unsigned long long)n->applied);
    return;
  }
  n->snap_index = n->applied;
  const raft_storage *sto = raft_memstorage_storage(n->ms);
  uint64_t first = sto->first_index(sto->ctx);
  uint64_t keep = rng_below(&s->rng, 8);
  uint64_t to = n->applied > keep ? n->applied - keep : 0;
  if (to >= first) raft_memstorage_compact(n->ms, to);
  tracef(s, "n%llu snapshot at %llu, log from %llu", (unsigned long long)n->id,
         (unsigned long long)n->applied, (unsigned long long)sto->first_index(sto->ctx));
}

static void action(sim *s) {
  const params *p = &s->p;
  uint32_t total = p->propose_w + p->read_w + p->crash_w + p->partition_w + p->conf_w +
                   p->transfer_w + p->campaign_w + p->snapshot_w;
  uint64_t roll = rng_below(&s->rng, total);
  snode *n = pick_up(s);
  if (roll < p->propose_w) {
    if (n) propose(s, n);
  } else if ((roll -= p->propose_w) < p->read_w) {
    if (n) read_index(s, n);
  } else if ((roll -= p->read_w) < p->crash_w) {
    if (n) {
      crash_and_restart_later(s, n, "CRASH");
      n = NULL;
    }
  } else if ((roll -= p->crash_w) < p->partition_w) {
    partition(s);
    n = NULL;
  } else if ((roll -= p->partition_w) < p->conf_w) {
    if (p->conf_changes) conf_change(s);
    n = NULL;
  } else if ((roll -= p->conf_w) < p->transfer_w) {
    snode *l = find_leader(s);
    if (l) {
      raft_conf_state cs;
      raft_conf_get(l->r, &cs, NULL);
      uint64_t to = cs.voters[rng_below(&s->rng, cs.n_voters)];
      int rc = raft_transfer_leader(l->r, to);
      s->st.transfers++;
      tracef(s, "n%llu transfer to n%llu: %s", (unsigned long long)l->id, (unsigned long long)to, raft_strerror(rc));
    }
    n = l;
  } else if ((roll -= p->transfer_w) < p->campaign_w) {
    if (n) {
      tracef(s, "n%llu campaign", (unsigned long long)n->id);
      raft_campaign(n->r);
    }
  } else {
    if (n) snapshot_node(s, n);
  }
  if (n) node_work(s, n);
}

/* ---------------------------------------------------------------- event loop */

static void dispatch(sim *s, event *ev) {
  snode *n = &s->nodes[ev->node];
  s->st.events++;
  switch (ev->kind) {
  case EV_TICK:
    if (n->up) {
      raft_tick(n->r);
      node_work(s, n);
    }
    if (!n->retired) schedule_tick(s, n);
    break;
  case EV_DELIVER: {
    if (!n->up || s->cut[ev->from][ev->node]) {
      tracef(s, "n%u -> n%u dropped on arrival", ev->from, ev->node);
      s->st.dropped++;
      raft_msg peek;
      if (raft_msg_decode(ev->bytes, ev->len, &peek, &s->db) == 0 && peek.type == RAFT_MSG_SNAP)
        schedule(s, (event){.time = s->now + 1, .kind = EV_SNAP_REPORT, .node = ev->from,
                            .inc = ev->inc, .aux = ev->node, .from = 0});
      break;
    }
    raft_msg m;
    int rc = raft_msg_decode(ev->bytes, ev->len, &m, &s->db);
    if (rc != 0) {
      fail(s, "n%u could not decode a message from n%u", ev->node, ev->from);
      break;
    }
    int src = raft_step(n->r, &m);
    if (src != 0) fail(s, "n%u step: %s", ev->node, raft_strerror(src));
    if (m.type == RAFT_MSG_SNAP)
      schedule(s, (event){.time = s->now + 1, .kind = EV_SNAP_REPORT, .node = ev->from, .inc = ev->inc,
                          .aux = ev->node, .from = 1});
    node_work(s, n);
    break;
  }
  case EV_PERSIST:
    if (n->up && n->inc == ev->inc && n->persisting) {
      finish_ready(s, n);
      node_work(s, n);
    }
    break;
  case EV_SNAP_REPORT:
    if (n->up && n->inc == ev->inc) {
      raft_report_snapshot(n->r, ev->aux, ev->from == 1);
      node_work(s, n);
    }
    break;
  case EV_UNREACHABLE:
    if (n->up && n->inc == ev->inc) {
      raft_report_unreachable(n->r, ev->aux);
      node_work(s, n);
    }
    break;
  case EV_RESTART:
    n->restart_pending = false;
    if (!n->up && !n->retired) {
      node_start(s, n);
      node_work(s, n);
    }
    break;
  case EV_CRASH:
    if (n->up && n->inc == ev->inc && !s->healed) crash_and_restart_later(s, n, "CRASH during a disk write");
    break;
  case EV_RETIRE:
    node_crash(s, n, "RETIRED (removed from the cluster)");
    n->retired = true;
    break;
  case EV_ACTION:
    if (!s->healed) {
      action(s);
      schedule(s, (event){.time = s->now + rng_range(&s->rng, 1, 2 * s->p.action_gap), .kind = EV_ACTION});
    }
    break;
  }
  free(ev->bytes);
}

static void run_until(sim *s, uint64_t t) {
  while (!s->failed && s->n_heap && s->heap[0].time <= t) {
    event ev = pop(s);
    s->now = ev.time;
    dispatch(s, &ev);
  }
  if (s->now < t) s->now = t;
}

/* ---------------------------------------------------------------- parameters */

static void choose_params(sim *s) {
  rng r = {s->seed * 0x9e3779b97f4a7c15ull + 17};
  params *p = &s->p;
  static const int sizes[] = {3, 3, 3, 5, 5, 7};
  p->voters = sizes[rng_below(&r, 6)];
  p->learners = (int)rng_below(&r, 3);
  if (p->voters == 7 && p->learners > 1) p->learners = 1;
  p->pre_vote = rng_below(&r, 2);
  p->check_quorum = rng_below(&r, 2);
  p->lease = p->check_quorum && rng_pm(&r, 400);
  p->loss_pm = (uint32_t)(rng_pm(&r, 300) ? 0 : rng_range(&r, 5, 150));
  p->dup_pm = (uint32_t)rng_range(&r, 0, 50);
  p->long_delay_pm = (uint32_t)rng_range(&r, 0, 30);
  p->delay_min = (uint32_t)rng_range(&r, 1, 10);
  p->delay_max = p->delay_min + (uint32_t)rng_range(&r, 0, 60);
  p->disk_max = (uint32_t)rng_range(&r, 1, 40);
  /* Lease reads tolerate the configured drift margin, not arbitrary skew. */
  p->skew_pct = (uint32_t)(p->lease ? rng_range(&r, 0, 10) : rng_range(&r, 0, 40));
  p->chaos_ticks = (uint32_t)rng_range(&r, 150, 450);
  static const uint64_t msg_bytes[] = {40, 200, 4096, 1 << 20};
  p->max_msg_bytes = msg_bytes[rng_below(&r, 4)];
  static const uint32_t inflight[] = {1, 4, 64, 256};
  p->max_inflight = inflight[rng_below(&r, 4)];
  p->conf_changes = rng_pm(&r, 500);
  p->action_gap = (uint32_t)rng_range(&r, 20, 120);
  p->propose_w = 40;
  p->read_w = 15;
  p->crash_w = (uint32_t)rng_range(&r, 0, 6);
  p->partition_w = (uint32_t)rng_range(&r, 0, 6);
  p->conf_w = p->conf_changes ? 4 : 0;
  p->transfer_w = (uint32_t)rng_range(&r, 0, 3);
  p->campaign_w = (uint32_t)rng_range(&r, 0, 2);
  p->snapshot_w = (uint32_t)rng_range(&r, 1, 6);
}

static void print_params(const sim *s, FILE *f) {
  const params *p = &s->p;
  fprintf(f,
          "  voters=%d learners=%d pre_vote=%d check_quorum=%d lease=%d loss=%u%% dup=%u%% "
          "long_delay=%u%% delay=[%u,%u] disk<=%u skew=%u%% chaos_ticks=%u max_msg_bytes=%llu "
          "inflight=%u conf_changes=%d\n",
          p->voters, p->learners, p->pre_vote, p->check_quorum, p->lease, p->loss_pm / 10, p->dup_pm / 10,
          p->long_delay_pm / 10, p->delay_min, p->delay_max, p->disk_max, p->skew_pct, p->chaos_ticks,
          (unsigned long long)p->max_msg_bytes, p->max_inflight, p->conf_changes);
}

/* ---------------------------------------------------------------- liveness */

/* A leader whose whole membership is up, in its term and following it. */
static snode *stable_leader(sim *s) {
  snode *l = find_leader(s);
  if (!l) return NULL;
  raft_status ls;
  raft_status_get(l->r, &ls);
  raft_conf_state cs;
  raft_conf_get(l->r, &cs, NULL);
  for (int pass = 0; pass < 2; pass++) {
    const uint64_t *ids = pass ? cs.learners : cs.voters;
    uint32_t k = pass ? cs.n_learners : cs.n_voters;
    for (uint32_t i = 0; i < k; i++) {
      snode *m = &s->nodes[ids[i]];
      if (!m->up) return NULL;
      raft_status ms;
      raft_status_get(m->r, &ms);
      if (ms.term != ls.term || ms.lead != l->id) return NULL;
    }
  }
  return l;
}

static bool members_applied(sim *s, snode *l, uint64_t first_prop, uint64_t last_prop) {
  for (uint64_t id = first_prop; id <= last_prop; id++)
    if (!vget(&s->prop_done, id)) return false;
  raft_status ls;
  raft_status_get(l->r, &ls);
  raft_conf_state cs;
  raft_conf_get(l->r, &cs, NULL);
  for (int pass = 0; pass < 2; pass++) {
    const uint64_t *ids = pass ? cs.learners : cs.voters;
    uint32_t k = pass ? cs.n_learners : cs.n_voters;
    for (uint32_t i = 0; i < k; i++) {
      snode *m = &s->nodes[ids[i]];
      if (!m->up || m->applied < ls.commit) return false;
    }
  }
  return true;
}

static void liveness(sim *s) {
  s->healed = true;
  memset(s->cut, 0, sizeof s->cut);
  tracef(s, "--- network healed, crashed nodes restarted: checking liveness");
  for (int i = 1; i <= s->n_slots; i++) {
    snode *n = &s->nodes[i];
    if (n->exists && !n->up && !n->retired && !n->restart_pending) {
      node_start(s, n);
      node_work(s, n);
    }
  }
  /* Let late messages of the chaos phase arrive and pending restarts and
   * retirements happen. */
  run_until(s, s->now + LONG_DELAY_MAX + 60 * TICK);
  for (int i = 1; i <= s->n_slots; i++) {
    snode *n = &s->nodes[i];
    if (n->exists && !n->up && !n->retired) {
      node_start(s, n);
      node_work(s, n);
    }
  }
  const uint64_t bound = 40 * ELECTION_TICK * TICK;
  for (int attempt = 0; attempt < 3 && !s->failed; attempt++) {
    uint64_t deadline = s->now + bound;
    snode *l = NULL;
    while (!s->failed && s->now < deadline && !(l = stable_leader(s))) run_until(s, s->now + TICK);
    if (s->failed) return;
    if (!l) {
      fail(s, "liveness: no stable leader within %llu ticks of healing",
           (unsigned long long)(bound / TICK));
      return;
    }
    raft_status ls;
    raft_status_get(l->r, &ls);
    uint64_t first = s->next_prop + 1;
    for (int k = 0; k < 3; k++) {
      propose(s, l);
      node_work(s, l);
    }
    uint64_t last = s->next_prop;
    raft_conf_state cs;
    raft_conf_get(l->r, &cs, NULL);
    snode *f = &s->nodes[cs.voters[rng_below(&s->rng, cs.n_voters)]];
    size_t reads_from = s->n_reads;
    read_index(s, l);
    node_work(s, l);
    if (f && f != l) {
      read_index(s, f);
      node_work(s, f);
    }
    deadline = s->now + bound;
    while (!s->failed && s->now < deadline && !members_applied(s, l, first, last)) {
      run_until(s, s->now + TICK);
      raft_status now_st;
      if (!l->up) break;
      raft_status_get(l->r, &now_st);
      if (now_st.term != ls.term || now_st.role != RAFT_LEADER) break;
    }
    if (s->failed) return;
    if (members_applied(s, l, first, last)) {
      run_until(s, s->now + 5 * TICK);
      for (size_t i = reads_from; i < s->n_reads; i++)
        if (!s->reads[i].answered) {
          fail(s, "liveness: read %zu at n%u unanswered in a healed cluster", i, s->reads[i].node);
          return;
        }
      return;
    }
    tracef(s, "leadership changed during the liveness check; again");
  }
  if (!s->failed) fail(s, "liveness: proposals in a healed cluster were not applied everywhere");
}

/* ---------------------------------------------------------------- run */

static void print_trace(const sim *s) {
  uint64_t n = s->trace_n < TRACE_LINES ? s->trace_n : TRACE_LINES;
  fprintf(stderr, "--- last %llu events:\n", (unsigned long long)n);
  for (uint64_t i = s->trace_n - n; i < s->trace_n; i++) fprintf(stderr, "%s\n", s->trace[i % TRACE_LINES]);
}

int sim_run(uint64_t seed, sim_fault fault, bool verbose, sim_stats *stats) {
  sim *s = calloc(1, sizeof *s);
  s->seed = seed;
  s->fault = fault;
  s->verbose = verbose;
  s->rng.s = seed;
  choose_params(s);
  if (fault == SIM_FAULT_LEASE_NO_MARGIN) {
    s->p.lease = s->p.check_quorum = true;
    s->p.read_w = 40;
    s->p.partition_w = 8;
  }
  s->n_slots = s->p.voters + s->p.learners + (s->p.conf_changes ? 2 : 0);
  if (s->n_slots > MAX_SLOTS) s->n_slots = MAX_SLOTS;
  raft_conf_state founders;
  memset(&founders, 0, sizeof founders);
  for (int i = 1; i <= s->p.voters; i++) founders.voters[founders.n_voters++] = (uint64_t)i;
  for (int i = s->p.voters + 1; i <= s->p.voters + s->p.learners; i++)
    founders.learners[founders.n_learners++] = (uint64_t)i;
  for (int i = 1; i <= s->n_slots; i++) s->nodes[i].id = (uint64_t)i;
  for (int i = 1; i <= s->p.voters + s->p.learners; i++) node_create(s, &s->nodes[i], &founders);
  schedule(s, (event){.time = 1, .kind = EV_ACTION});
  if (verbose) print_params(s, stderr);

  run_until(s, (uint64_t)s->p.chaos_ticks * TICK);
  if (!s->failed) liveness(s);

  int rc = 0;
  if (s->failed && fault) {
    /* A planted fault is expected to be caught: one line is enough. */
    fprintf(stderr, "FAIL seed %llu: %s\n", (unsigned long long)seed, s->why);
    rc = 1;
  } else if (s->failed) {
    fprintf(stderr, "\nFAIL seed %llu: %s\n", (unsigned long long)seed, s->why);
    print_params(s, stderr);
    print_trace(s);
    fprintf(stderr, "replay: tests/raft_sim --seed %llu --verbose%s\n\n", (unsigned long long)seed,
            fault ? " --fault <same>" : "");
    rc = 1;
  }
  s->st.elections = s->leader_of_term.cap;
  if (stats) {
    sim_stats *t = stats;
    const sim_stats *a = &s->st;
    t->events += a->events;
    t->messages += a->messages;
    t->dropped += a->dropped;
    t->leaders += a->leaders;
    t->proposals += a->proposals;
    t->committed += a->committed;
    t->reads += a->reads;
    t->reads_checked += a->reads_checked;
    t->snapshots_sent += a->snapshots_sent;
    t->snapshots_installed += a->snapshots_installed;
    t->conf_changes += a->conf_changes;
    t->crashes += a->crashes;
    t->transfers += a->transfers;
    t->partitions += a->partitions;
  }

  for (int i = 1; i <= MAX_SLOTS; i++) {
    snode *n = &s->nodes[i];
    raft_free(n->r);
    raft_memstorage_free(n->ms);
    free(n->chain.v);
  }
  while (s->n_heap) {
    event ev = pop(s);
    free(ev.bytes);
  }
  free(s->heap);
  free(s->leader_of_term.v);
  free(s->committed_chain.v);
  free(s->commit_term.v);
  free(s->sm_at.v);
  free(s->prop_done.v);
  free(s->lm.s);
  free(s->reads);
  raft_decode_buf_free(&s->db);
  free(s);
  return rc;
}
