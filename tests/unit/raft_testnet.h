/* raft_testnet.h - a synchronous network of raft nodes for unit tests.
 *
 * Each node has a memstorage (its "disk"). tn_pump() runs every node's
 * ready/advance cycle the way the server will (persist, send, apply,
 * advance) and delivers queued messages in FIFO order until the network is
 * quiet. Every message goes through raft_msg_encode/raft_msg_decode, so the
 * codec is exercised by every test. Links can be cut per direction, and
 * message types dropped, to build the situations the rules talk about. */
#ifndef SYNOD_RAFT_TESTNET_H
#define SYNOD_RAFT_TESTNET_H

#include "raft.h"
#include "testing.h"

#define TN_MAX 8

typedef struct {
  uint64_t index, term;
  uint8_t type;
  uint32_t len;
  uint8_t data[32];
} tn_applied;

typedef struct {
  raft *r;
  raft_memstorage *ms;
  raft_config cfg;
  bool up;
  tn_applied *applied;
  size_t n_applied, cap_applied;
  uint64_t reads[64];  /* read state indexes received */
  uint8_t read_ctx[64];
  size_t n_reads;
} tn_node;

typedef struct {
  buf bytes;
  uint64_t to;
} tn_msg;

typedef struct {
  tn_node nodes[TN_MAX + 1]; /* by id, 1..n */
  int n;
  bool cut[TN_MAX + 1][TN_MAX + 1];
  bool drop_type[16];
  tn_msg *q;
  size_t qhead, qn, qcap;
  raft_decode_buf db;
  uint64_t delivered[16]; /* per message type */
  uint64_t sent[16];
  uint64_t rejections;    /* APP_RESP rejections delivered */
  bool hold;              /* queue messages but do not deliver */
  uint64_t boot;          /* entries in the founding log (its last index) */
} tn_net;

static inline raft_config tn_default_config(uint64_t id) {
  raft_config c;
  memset(&c, 0, sizeof c);
  c.id = id;
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  c.max_inflight_msgs = 256;
  c.seed = id * 7919;
  return c;
}

static inline void tn_start(tn_net *nt, uint64_t id) {
  tn_node *nd = &nt->nodes[id];
  nd->cfg.storage = raft_memstorage_storage(nd->ms);
  int rc = raft_new(&nd->cfg, &nd->r);
  if (rc != 0) {
    fprintf(stderr, "raft_new(%llu): %s\n", (unsigned long long)id, raft_strerror(rc));
    exit(2);
  }
  nd->up = true;
}

/* Builds n voters 1..n (plus `learners` learners after them). */
static inline void tn_init_with(tn_net *nt, int voters, int learners,
                                void (*tweak)(raft_config *)) {
  memset(nt, 0, sizeof *nt);
  nt->n = voters + learners;
  nt->boot = (uint64_t)nt->n;
  raft_conf_state cs;
  memset(&cs, 0, sizeof cs);
  for (int i = 1; i <= voters; i++) cs.voters[cs.n_voters++] = (uint64_t)i;
  for (int i = voters + 1; i <= nt->n; i++) cs.learners[cs.n_learners++] = (uint64_t)i;
  for (int i = 1; i <= nt->n; i++) {
    tn_node *nd = &nt->nodes[i];
    nd->ms = raft_memstorage_new();
    raft_memstorage_bootstrap(nd->ms, &cs);
    nd->cfg = tn_default_config((uint64_t)i);
    if (tweak) tweak(&nd->cfg);
    tn_start(nt, (uint64_t)i);
  }
}

static inline void tn_init(tn_net *nt, int voters) { tn_init_with(nt, voters, 0, NULL); }

/* Adds a node with empty storage (not a member until a conf change). */
static inline void tn_add_empty(tn_net *nt, uint64_t id, void (*tweak)(raft_config *)) {
  tn_node *nd = &nt->nodes[id];
  nd->ms = raft_memstorage_new();
  nd->cfg = tn_default_config(id);
  if (tweak) tweak(&nd->cfg);
  tn_start(nt, id);
  if ((int)id > nt->n) nt->n = (int)id;
}

static inline void tn_crash(tn_net *nt, uint64_t id) {
  tn_node *nd = &nt->nodes[id];
  raft_free(nd->r);
  nd->r = NULL;
  nd->up = false;
}

static inline void tn_restart(tn_net *nt, uint64_t id) {
  tn_node *nd = &nt->nodes[id];
  if (nd->up) tn_crash(nt, id);
  nd->n_applied = 0; /* the state machine restarts from the snapshot */
  nd->cfg.applied = 0;
  tn_start(nt, id);
}

static inline void tn_free(tn_net *nt) {
  for (int i = 1; i <= TN_MAX; i++) {
    tn_node *nd = &nt->nodes[i];
    raft_free(nd->r);
    raft_memstorage_free(nd->ms);
    free(nd->applied);
  }
  for (size_t i = 0; i < nt->qn; i++) buf_free(&nt->q[(nt->qhead + i) % nt->qcap].bytes);
  free(nt->q);
  raft_decode_buf_free(&nt->db);
}

static inline void tn_enqueue(tn_net *nt, const raft_msg *m) {
  tn_msg tm = {{0}, m->to};
  int rc = raft_msg_encode(m, &tm.bytes);
  if (rc != 0) {
    fprintf(stderr, "encode %s: %s\n", raft_msg_type_name(m->type), raft_strerror(rc));
    exit(2);
  }
  nt->sent[m->type]++;
  if (nt->qn == nt->qcap) {
    size_t cap = nt->qcap ? nt->qcap * 2 : 64;
    tn_msg *nq = malloc(cap * sizeof *nq);
    for (size_t i = 0; i < nt->qn; i++) nq[i] = nt->q[(nt->qhead + i) % nt->qcap];
    free(nt->q);
    nt->q = nq;
    nt->qcap = cap;
    nt->qhead = 0;
  }
  nt->q[(nt->qhead + nt->qn) % nt->qcap] = tm;
  nt->qn++;
}

/* One ready/advance cycle of one node. Returns whether there was one. */
static inline bool tn_cycle(tn_net *nt, uint64_t id) {
  tn_node *nd = &nt->nodes[id];
  if (!nd->up || !raft_has_ready(nd->r)) return false;
  raft_ready rd;
  int rc = raft_get_ready(nd->r, &rd);
  if (rc != 0) {
    fprintf(stderr, "ready: %s\n", raft_strerror(rc));
    exit(2);
  }
  for (size_t i = 0; i < rd.n_msgs; i++) tn_enqueue(nt, &rd.msgs[i]);
  if (rd.snapshot) raft_memstorage_apply_snapshot(nd->ms, rd.snapshot);
  if (rd.n_entries && raft_memstorage_append(nd->ms, rd.entries, rd.n_entries) != 0) {
    fprintf(stderr, "append failed\n");
    exit(2);
  }
  if (rd.hard_state_changed) raft_memstorage_set_hard_state(nd->ms, &rd.hard_state);
  for (size_t i = 0; i < rd.n_msgs_after_persist; i++) tn_enqueue(nt, &rd.msgs_after_persist[i]);
  if (rd.snapshot) nd->n_applied = 0;
  for (size_t i = 0; i < rd.n_committed; i++) {
    const raft_entry *e = &rd.committed[i];
    if (nd->n_applied == nd->cap_applied) {
      nd->cap_applied = nd->cap_applied ? nd->cap_applied * 2 : 64;
      nd->applied = realloc(nd->applied, nd->cap_applied * sizeof *nd->applied);
    }
    tn_applied *a = &nd->applied[nd->n_applied++];
    a->index = e->index;
    a->term = e->term;
    a->type = e->type;
    a->len = e->len;
    if (e->len) memcpy(a->data, e->data, e->len < sizeof a->data ? e->len : sizeof a->data);
  }
  for (size_t i = 0; i < rd.n_read_states && nd->n_reads < 64; i++) {
    nd->reads[nd->n_reads] = rd.read_states[i].index;
    nd->read_ctx[nd->n_reads] = rd.read_states[i].ctx_len ? rd.read_states[i].ctx[0] : 0;
    nd->n_reads++;
  }
  raft_advance(nd->r);
  return true;
}

/* Delivers one queued message; false if the queue is empty. */
static inline bool tn_deliver_one(tn_net *nt) {
  if (nt->qn == 0) return false;
  tn_msg tm = nt->q[nt->qhead];
  nt->qhead = (nt->qhead + 1) % nt->qcap;
  nt->qn--;
  raft_msg m;
  int rc = raft_msg_decode(tm.bytes.data, tm.bytes.len, &m, &nt->db);
  if (rc != 0) {
    fprintf(stderr, "decode failed\n");
    exit(2);
  }
  tn_node *nd = m.to <= TN_MAX ? &nt->nodes[m.to] : NULL;
  bool drop = !nd || !nd->up || nt->cut[m.from][m.to] || nt->drop_type[m.type];
  if (!drop) {
    nt->delivered[m.type]++;
    if (m.type == RAFT_MSG_APP_RESP && m.reject) nt->rejections++;
    raft_step(nd->r, &m);
  } else if (m.type == RAFT_MSG_SNAP && nt->nodes[m.from].up) {
    raft_report_snapshot(nt->nodes[m.from].r, m.to, false);
  }
  if (!drop && m.type == RAFT_MSG_SNAP) raft_report_snapshot(nt->nodes[m.from].r, m.to, true);
  buf_free(&tm.bytes);
  return true;
}

/* Runs until no node has work and no message is queued. */
static inline void tn_pump(tn_net *nt) {
  for (int guard = 0; guard < 100000; guard++) {
    bool any = false;
    for (int i = 1; i <= nt->n; i++) any |= tn_cycle(nt, (uint64_t)i);
    if (!nt->hold) any |= tn_deliver_one(nt);
    if (!any) return;
  }
  fprintf(stderr, "tn_pump: network never quiesced\n");
  exit(2);
}

/* Drops every queued message. */
static inline void tn_clear_queue(tn_net *nt) {
  while (nt->qn) {
    buf_free(&nt->q[nt->qhead].bytes);
    nt->qhead = (nt->qhead + 1) % nt->qcap;
    nt->qn--;
  }
}

static inline void tn_isolate(tn_net *nt, uint64_t id) {
  for (int i = 1; i <= TN_MAX; i++) {
    nt->cut[id][i] = true;
    nt->cut[i][id] = true;
  }
}

static inline void tn_heal(tn_net *nt) { memset(nt->cut, 0, sizeof nt->cut); }

static inline void tn_tick(tn_net *nt, uint64_t id, int n) {
  for (int i = 0; i < n; i++) {
    raft_tick(nt->nodes[id].r);
    tn_pump(nt);
  }
}

static inline void tn_tick_all(tn_net *nt, int n) {
  for (int k = 0; k < n; k++) {
    for (int i = 1; i <= nt->n; i++)
      if (nt->nodes[i].up) raft_tick(nt->nodes[i].r);
    tn_pump(nt);
  }
}

static inline raft_role tn_role(tn_net *nt, uint64_t id) { return raft_get_role(nt->nodes[id].r); }

static inline void tn_elect(tn_net *nt, uint64_t id) {
  raft_campaign(nt->nodes[id].r);
  tn_pump(nt);
}

static inline int tn_propose(tn_net *nt, uint64_t id, const char *s) {
  int rc = raft_propose(nt->nodes[id].r, s, strlen(s));
  tn_pump(nt);
  return rc;
}

/* The last applied entry's data as a string (for checks). */
static inline const char *tn_last_data(tn_net *nt, uint64_t id) {
  static char out[40];
  tn_node *nd = &nt->nodes[id];
  if (!nd->n_applied) return "";
  tn_applied *a = &nd->applied[nd->n_applied - 1];
  size_t n = a->len < 32 ? a->len : 32;
  memcpy(out, a->data, n);
  out[n] = 0;
  return out;
}

/* Number of applied normal entries with non-empty data. */
static inline size_t tn_applied_data(tn_net *nt, uint64_t id) {
  tn_node *nd = &nt->nodes[id];
  size_t k = 0;
  for (size_t i = 0; i < nd->n_applied; i++)
    if (nd->applied[i].len && nd->applied[i].type == RAFT_ENTRY_NORMAL) k++;
  return k;
}

#endif
