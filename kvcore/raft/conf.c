/* Membership: conf change encoding, the deterministic rule that applies a
 * change, and the history of changes still above the commit index.
 *
 * A node uses the newest membership in its log, committed or not (Raft
 * dissertation 4.1). Since membership is a pure function of the log prefix
 * (snapshot conf + each change in order), nodes whose logs match agree on it,
 * and a truncated change reverts with the entries that carried it. */
#include "raft_int.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- encoding
 *
 *   u8 version (1) | u8 type | uvarint node_id | ctx (the rest)
 */
enum { CC_VERSION = 1 };

void raft_cc_encode(const raft_conf_change *cc, buf *out) {
  buf_reserve(out, 2 + 10 + cc->ctx_len);
  uint8_t *p = out->data + out->len;
  *p++ = CC_VERSION;
  *p++ = cc->type;
  p = uvarint_put(p, cc->node_id);
  if (cc->ctx_len) memcpy(p, cc->ctx, cc->ctx_len);
  p += cc->ctx_len;
  out->len = (size_t)(p - out->data);
}

int raft_cc_decode(const uint8_t *p, size_t len, raft_conf_change *cc) {
  raft_cursor c = {p, p + len, false};
  memset(cc, 0, sizeof *cc);
  uint8_t version = cursor_u8(&c);
  cc->type = cursor_u8(&c);
  cc->node_id = cursor_uvarint(&c);
  if (c.bad || version != CC_VERSION || cc->type > RAFT_CC_UPDATE) return RAFT_EMALFORMED;
  cc->ctx_len = (size_t)(c.end - c.p);
  cc->ctx = cc->ctx_len ? c.p : NULL;
  return 0;
}

/* ---------------------------------------------------------------- sets */

static int find(const uint64_t *ids, uint32_t n, uint64_t id) {
  for (uint32_t i = 0; i < n; i++)
    if (ids[i] == id) return (int)i;
  return -1;
}

static void insert_sorted(uint64_t *ids, uint32_t *n, uint64_t id) {
  uint32_t i = *n;
  while (i > 0 && ids[i - 1] > id) {
    ids[i] = ids[i - 1];
    i--;
  }
  ids[i] = id;
  (*n)++;
}

static void remove_at(uint64_t *ids, uint32_t *n, int at) {
  memmove(ids + at, ids + at + 1, (*n - (uint32_t)at - 1) * sizeof *ids);
  (*n)--;
}

bool conf_is_voter(const raft_conf_state *cs, uint64_t id) {
  return find(cs->voters, cs->n_voters, id) >= 0;
}

static bool ascending(const uint64_t *ids, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    if (ids[i] == 0 || (i && ids[i - 1] >= ids[i])) return false;
  return true;
}

bool conf_valid(const raft_conf_state *cs) {
  if (cs->n_voters > RAFT_MAX_NODES || cs->n_learners > RAFT_MAX_NODES ||
      cs->n_voters + cs->n_learners > RAFT_MAX_NODES)
    return false;
  if (!ascending(cs->voters, cs->n_voters) || !ascending(cs->learners, cs->n_learners))
    return false;
  for (uint32_t i = 0; i < cs->n_learners; i++)
    if (conf_is_voter(cs, cs->learners[i])) return false;
  return true;
}

bool raft_conf_apply(raft_conf_state *cs, const raft_conf_change *cc) {
  uint64_t id = cc->node_id;
  if (id == 0) return false;
  int v = find(cs->voters, cs->n_voters, id);
  int l = find(cs->learners, cs->n_learners, id);
  bool full = cs->n_voters + cs->n_learners >= RAFT_MAX_NODES;
  switch (cc->type) {
  case RAFT_CC_ADD_VOTER:
    if (v >= 0) return false;
    if (l >= 0) {
      remove_at(cs->learners, &cs->n_learners, l);
    } else if (full) {
      return false;
    }
    insert_sorted(cs->voters, &cs->n_voters, id);
    return true;
  case RAFT_CC_ADD_LEARNER:
    if (l >= 0) return false;
    if (v >= 0) {
      /* Demoting the last voter would leave nobody to elect a leader. */
      if (cs->n_voters == 1) return false;
      remove_at(cs->voters, &cs->n_voters, v);
    } else if (full) {
      return false;
    }
    insert_sorted(cs->learners, &cs->n_learners, id);
    return true;
  case RAFT_CC_REMOVE:
    if (v >= 0) {
      if (cs->n_voters == 1) return false;
      remove_at(cs->voters, &cs->n_voters, v);
      return true;
    }
    if (l >= 0) {
      remove_at(cs->learners, &cs->n_learners, l);
      return true;
    }
    return false;
  case RAFT_CC_UPDATE:
    return v >= 0 || l >= 0;
  default:
    return false;
  }
}

/* ---------------------------------------------------------------- history */

const raft_conf_state *conf_log_current(const raft_conf_log *c) {
  return c->n_pending ? &c->pending[c->n_pending - 1].conf : &c->base.conf;
}

void conf_log_reset(raft_conf_log *c, uint64_t index, const raft_conf_state *cs) {
  c->base.index = index;
  c->base.conf = *cs;
  c->n_pending = 0;
}

void conf_log_push(raft_conf_log *c, uint64_t index, const raft_conf_state *cs) {
  raft_grow(&c->pending, &c->cap_pending, c->n_pending + 1, sizeof *c->pending);
  c->pending[c->n_pending].index = index;
  c->pending[c->n_pending].conf = *cs;
  c->n_pending++;
}

void conf_log_truncate(raft_conf_log *c, uint64_t from_index) {
  while (c->n_pending && c->pending[c->n_pending - 1].index >= from_index) c->n_pending--;
}

void conf_log_commit(raft_conf_log *c, uint64_t commit) {
  size_t k = 0;
  while (k < c->n_pending && c->pending[k].index <= commit) k++;
  if (k == 0) return;
  c->base = c->pending[k - 1];
  memmove(c->pending, c->pending + k, (c->n_pending - k) * sizeof *c->pending);
  c->n_pending -= k;
}

void conf_log_free(raft_conf_log *c) {
  free(c->pending);
  c->pending = NULL;
  c->n_pending = c->cap_pending = 0;
}

/* ---------------------------------------------------------------- node side */

/* Applies a conf change entry to cs; false if it changes nothing. */
static bool apply_entry(raft_conf_state *cs, const raft_entry *e) {
  if (e->type != RAFT_ENTRY_CONF_CHANGE) return false;
  raft_conf_change cc;
  if (raft_cc_decode(e->data, e->len, &cc) != 0) return false;
  return raft_conf_apply(cs, &cc);
}

void raft_conf_on_append(raft *r, const raft_entry *e) {
  raft_conf_state next = *conf_log_current(&r->conf);
  if (!apply_entry(&next, e)) return;
  conf_log_push(&r->conf, e->index, &next);
}

void raft_conf_on_apply(raft *r, const raft_entry *e) { apply_entry(&r->applied_conf, e); }

/* Startup: replays the changes in (lo-1, hi) of the log over the snapshot's
 * membership, so the node begins with the membership its log implies. */
int raft_conf_scan(raft *r, uint64_t lo, uint64_t hi) {
  uint64_t applied = r->log.applied;
  if (applied < lo) r->applied_conf = *conf_log_current(&r->conf);
  while (lo < hi) {
    raft_entry *ents;
    size_t n;
    int rc = log_slice(&r->log, lo, hi, UINT64_MAX, &ents, &n);
    if (rc != 0) return rc == RAFT_ESTORAGE || r->log.err ? RAFT_ESTORAGE : RAFT_EINVAL;
    for (size_t i = 0; i < n; i++) {
      raft_conf_on_append(r, &ents[i]);
      if (ents[i].index == applied) r->applied_conf = *conf_log_current(&r->conf);
    }
    lo += n;
  }
  conf_log_commit(&r->conf, r->log.committed);
  return 0;
}
