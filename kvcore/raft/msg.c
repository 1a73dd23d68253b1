/* The wire format of raft messages. The server carries these bytes inside
 * its own peer stream, which frames and checksums them; this format only
 * needs to be compact and to reject anything malformed.
 *
 *   u8 version (1) | u8 type | u8 flags | u8 fields | uvarint from | uvarint to
 *   then, for each bit set in fields, in this order:
 *     term, log_term, index, commit, reject_hint   uvarint each
 *     entries    uvarint n, then n x {uvarint term, u8 type, uvarint len, data}
 *     ctx        uvarint len, data
 *     snapshot   uvarint index, uvarint term, uvarint n_voters, voters,
 *                uvarint n_learners, learners, uvarint len, data
 *
 * flags: bit 0 reject, bit 1 transfer. A field is present iff it is
 * non-zero (non-empty), and each type admits only the fields it uses, so a
 * message has exactly one encoding: decode-then-encode reproduces the input
 * byte for byte (the fuzz target checks this). APP entries carry no index:
 * they are m.index+1, m.index+2, ...; PROP entries get index 0.
 */
#include "raft_int.h"

#include <stdlib.h>

enum { MSG_VERSION = 1 };

enum {
  F_TERM = 1 << 0,
  F_LOG_TERM = 1 << 1,
  F_INDEX = 1 << 2,
  F_COMMIT = 1 << 3,
  F_HINT = 1 << 4,
  F_ENTRIES = 1 << 5,
  F_CTX = 1 << 6,
  F_SNAP = 1 << 7,
};

enum { FLAG_REJECT = 1 << 0, FLAG_TRANSFER = 1 << 1 };

typedef struct {
  const char *name;
  uint8_t fields; /* admitted */
  uint8_t flags;  /* admitted */
} msg_rule;

static const msg_rule rules[] = {
    [RAFT_MSG_APP] = {"APP", F_TERM | F_LOG_TERM | F_INDEX | F_COMMIT | F_ENTRIES, 0},
    [RAFT_MSG_APP_RESP] = {"APP_RESP", F_TERM | F_LOG_TERM | F_INDEX | F_HINT, FLAG_REJECT},
    [RAFT_MSG_VOTE] = {"VOTE", F_TERM | F_LOG_TERM | F_INDEX, FLAG_TRANSFER},
    [RAFT_MSG_VOTE_RESP] = {"VOTE_RESP", F_TERM, FLAG_REJECT},
    [RAFT_MSG_PREVOTE] = {"PREVOTE", F_TERM | F_LOG_TERM | F_INDEX, FLAG_TRANSFER},
    [RAFT_MSG_PREVOTE_RESP] = {"PREVOTE_RESP", F_TERM, FLAG_REJECT},
    [RAFT_MSG_HEARTBEAT] = {"HEARTBEAT", F_TERM | F_INDEX | F_COMMIT, 0},
    [RAFT_MSG_HEARTBEAT_RESP] = {"HEARTBEAT_RESP", F_TERM | F_INDEX, 0},
    [RAFT_MSG_SNAP] = {"SNAP", F_TERM | F_SNAP, 0},
    [RAFT_MSG_PROP] = {"PROP", F_ENTRIES, 0},
    [RAFT_MSG_READ_INDEX] = {"READ_INDEX", F_CTX, 0},
    [RAFT_MSG_READ_INDEX_RESP] = {"READ_INDEX_RESP", F_TERM | F_INDEX | F_CTX, 0},
    [RAFT_MSG_TIMEOUT_NOW] = {"TIMEOUT_NOW", F_TERM, 0},
    [RAFT_MSG_TRANSFER_LEADER] = {"TRANSFER_LEADER", F_INDEX, 0},
};

enum { N_TYPES = sizeof rules / sizeof rules[0] };

const char *raft_msg_type_name(int type) {
  if (type <= 0 || type >= N_TYPES) return "?";
  return rules[type].name;
}

static uint8_t fields_of(const raft_msg *m) {
  uint8_t f = 0;
  if (m->term) f |= F_TERM;
  if (m->log_term) f |= F_LOG_TERM;
  if (m->index) f |= F_INDEX;
  if (m->commit) f |= F_COMMIT;
  if (m->reject_hint) f |= F_HINT;
  if (m->n_entries) f |= F_ENTRIES;
  if (m->ctx_len) f |= F_CTX;
  if (m->snapshot) f |= F_SNAP;
  return f;
}

static uint8_t flags_of(const raft_msg *m) {
  return (uint8_t)((m->reject ? FLAG_REJECT : 0) | (m->transfer ? FLAG_TRANSFER : 0));
}

static size_t encoded_size(const raft_msg *m, uint8_t f) {
  size_t n = 4 + uvarint_len(m->from) + uvarint_len(m->to);
  if (f & F_TERM) n += uvarint_len(m->term);
  if (f & F_LOG_TERM) n += uvarint_len(m->log_term);
  if (f & F_INDEX) n += uvarint_len(m->index);
  if (f & F_COMMIT) n += uvarint_len(m->commit);
  if (f & F_HINT) n += uvarint_len(m->reject_hint);
  if (f & F_ENTRIES) {
    n += uvarint_len(m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++) {
      const raft_entry *e = &m->entries[i];
      n += uvarint_len(e->term) + 1 + uvarint_len(e->len) + e->len;
    }
  }
  if (f & F_CTX) n += uvarint_len(m->ctx_len) + m->ctx_len;
  if (f & F_SNAP) {
    const raft_snapshot *s = m->snapshot;
    n += uvarint_len(s->index) + uvarint_len(s->term);
    n += uvarint_len(s->conf.n_voters) + uvarint_len(s->conf.n_learners);
    for (uint32_t i = 0; i < s->conf.n_voters; i++) n += uvarint_len(s->conf.voters[i]);
    for (uint32_t i = 0; i < s->conf.n_learners; i++) n += uvarint_len(s->conf.learners[i]);
    n += uvarint_len(s->len) + s->len;
  }
  return n;
}

int raft_msg_encode(const raft_msg *m, buf *out) {
  if (m->type == 0 || m->type >= N_TYPES || m->from == 0 || m->to == 0) return RAFT_EINVAL;
  const msg_rule *rule = &rules[m->type];
  uint8_t f = fields_of(m), fl = flags_of(m);
  if ((f & ~rule->fields) || (fl & ~rule->flags)) return RAFT_EINVAL;
  if (m->type == RAFT_MSG_SNAP && !m->snapshot) return RAFT_EINVAL;
  if (m->type == RAFT_MSG_PROP && !m->n_entries) return RAFT_EINVAL;
  if (m->type == RAFT_MSG_APP) {
    for (size_t i = 0; i < m->n_entries; i++)
      if (m->entries[i].index != m->index + 1 + i) return RAFT_EINVAL;
  }
  if (m->snapshot && !conf_valid(&m->snapshot->conf)) return RAFT_EINVAL;

  size_t size = encoded_size(m, f);
  buf_reserve(out, size);
  uint8_t *p = out->data + out->len;
  *p++ = MSG_VERSION;
  *p++ = m->type;
  *p++ = fl;
  *p++ = f;
  p = uvarint_put(p, m->from);
  p = uvarint_put(p, m->to);
  if (f & F_TERM) p = uvarint_put(p, m->term);
  if (f & F_LOG_TERM) p = uvarint_put(p, m->log_term);
  if (f & F_INDEX) p = uvarint_put(p, m->index);
  if (f & F_COMMIT) p = uvarint_put(p, m->commit);
  if (f & F_HINT) p = uvarint_put(p, m->reject_hint);
  if (f & F_ENTRIES) {
    p = uvarint_put(p, m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++) {
      const raft_entry *e = &m->entries[i];
      p = uvarint_put(p, e->term);
      *p++ = e->type;
      p = uvarint_put(p, e->len);
      if (e->len) memcpy(p, e->data, e->len);
      p += e->len;
    }
  }
  if (f & F_CTX) {
    p = uvarint_put(p, m->ctx_len);
    memcpy(p, m->ctx, m->ctx_len);
    p += m->ctx_len;
  }
  if (f & F_SNAP) {
    const raft_snapshot *s = m->snapshot;
    p = uvarint_put(p, s->index);
    p = uvarint_put(p, s->term);
    p = uvarint_put(p, s->conf.n_voters);
    for (uint32_t i = 0; i < s->conf.n_voters; i++) p = uvarint_put(p, s->conf.voters[i]);
    p = uvarint_put(p, s->conf.n_learners);
    for (uint32_t i = 0; i < s->conf.n_learners; i++) p = uvarint_put(p, s->conf.learners[i]);
    p = uvarint_put(p, s->len);
    if (s->len) memcpy(p, s->data, s->len);
    p += s->len;
  }
  out->len += size;
  return (size_t)(p - out->data) == out->len ? 0 : RAFT_EINVAL;
}

void raft_decode_buf_free(raft_decode_buf *db) {
  free(db->entries);
  db->entries = NULL;
  db->cap = 0;
}

/* A present field must be non-zero: zero is encoded by absence. */
static uint64_t field(raft_cursor *c, uint8_t f, uint8_t bit) {
  if (!(f & bit)) return 0;
  uint64_t v = cursor_uvarint(c);
  if (v == 0) c->bad = true;
  return v;
}

static bool decode_ids(raft_cursor *c, uint64_t *ids, uint32_t *n) {
  uint64_t k = cursor_uvarint(c);
  if (c->bad || k > RAFT_MAX_NODES) return false;
  *n = (uint32_t)k;
  for (uint32_t i = 0; i < *n; i++) ids[i] = cursor_uvarint(c);
  return !c->bad;
}

int raft_msg_peek_type(const uint8_t *p, size_t len) {
  if (len < 2 || p[0] != MSG_VERSION || p[1] == 0 || p[1] >= N_TYPES) return 0;
  return p[1];
}

int raft_msg_decode(const uint8_t *p, size_t len, raft_msg *m, raft_decode_buf *db) {
  raft_cursor c = {p, p + len, false};
  memset(m, 0, sizeof *m);
  uint8_t version = cursor_u8(&c);
  m->type = cursor_u8(&c);
  uint8_t fl = cursor_u8(&c);
  uint8_t f = cursor_u8(&c);
  if (c.bad || version != MSG_VERSION || m->type == 0 || m->type >= N_TYPES)
    return RAFT_EMALFORMED;
  const msg_rule *rule = &rules[m->type];
  if ((f & ~rule->fields) || (fl & ~rule->flags)) return RAFT_EMALFORMED;
  m->reject = fl & FLAG_REJECT;
  m->transfer = fl & FLAG_TRANSFER;
  m->from = cursor_uvarint(&c);
  m->to = cursor_uvarint(&c);
  if (m->from == 0 || m->to == 0) return RAFT_EMALFORMED;
  m->term = field(&c, f, F_TERM);
  m->log_term = field(&c, f, F_LOG_TERM);
  m->index = field(&c, f, F_INDEX);
  m->commit = field(&c, f, F_COMMIT);
  m->reject_hint = field(&c, f, F_HINT);
  if (c.bad) return RAFT_EMALFORMED;

  if (f & F_ENTRIES) {
    uint64_t n = cursor_uvarint(&c);
    /* Each entry takes at least 3 bytes: bound the array by the input. */
    if (c.bad || n == 0 || n > (uint64_t)(c.end - c.p) / 3) return RAFT_EMALFORMED;
    if (m->type == RAFT_MSG_APP && m->index + n < m->index) return RAFT_EMALFORMED;
    raft_grow(&db->entries, &db->cap, (size_t)n, sizeof *db->entries);
    for (size_t i = 0; i < n; i++) {
      raft_entry *e = &db->entries[i];
      e->term = cursor_uvarint(&c);
      e->type = cursor_u8(&c);
      uint64_t elen = cursor_uvarint(&c);
      if (c.bad || e->type > RAFT_ENTRY_CONF_CHANGE || elen > UINT32_MAX) return RAFT_EMALFORMED;
      e->len = (uint32_t)elen;
      e->data = (uint8_t *)cursor_bytes(&c, elen);
      if (c.bad) return RAFT_EMALFORMED;
      if (elen == 0) e->data = NULL;
      e->index = m->type == RAFT_MSG_APP ? m->index + 1 + i : 0;
    }
    m->entries = db->entries;
    m->n_entries = (size_t)n;
  }
  if (f & F_CTX) {
    uint64_t n = cursor_uvarint(&c);
    m->ctx = cursor_bytes(&c, n);
    if (c.bad || n == 0) return RAFT_EMALFORMED;
    m->ctx_len = (size_t)n;
  }
  if (f & F_SNAP) {
    raft_snapshot *s = &db->snap;
    memset(s, 0, sizeof *s);
    s->index = cursor_uvarint(&c);
    s->term = cursor_uvarint(&c);
    if (!decode_ids(&c, s->conf.voters, &s->conf.n_voters) ||
        !decode_ids(&c, s->conf.learners, &s->conf.n_learners) || !conf_valid(&s->conf))
      return RAFT_EMALFORMED;
    uint64_t n = cursor_uvarint(&c);
    s->data = cursor_bytes(&c, n);
    if (c.bad) return RAFT_EMALFORMED;
    s->len = (size_t)n;
    if (n == 0) s->data = NULL;
    m->snapshot = s;
  }
  if (c.p != c.end) return RAFT_EMALFORMED;
  if (m->type == RAFT_MSG_SNAP && !m->snapshot) return RAFT_EMALFORMED;
  if (m->type == RAFT_MSG_PROP && !m->n_entries) return RAFT_EMALFORMED;
  return 0;
}
