/* Unit tests for the raft wire format (every message type round-trips;
 * anything malformed is refused) and for the in-memory storage. */
#include "raft.h"
#include "testing.h"

/* ---------------------------------------------------------------- codec */

static raft_entry ents3[3] = {
    {.index = 8, .term = 4, .data = (uint8_t *)"one", .len = 3},
    {.index = 9, .term = 5, .type = RAFT_ENTRY_CONF_CHANGE, .data = (uint8_t *)"\x01\x00\x07", .len = 3},
    {.index = 10, .term = 5},
};
static raft_snapshot snap = {.index = 70, .term = 6,
                             .conf = {.voters = {1, 2, 300}, .n_voters = 3, .learners = {9}, .n_learners = 1},
                             .data = (const uint8_t *)"state", .len = 5};

/* One well-formed message of each type. */
static raft_msg sample(int type) {
  raft_msg m = {.type = (uint8_t)type, .from = 1, .to = 0xffffffffffffull};
  switch (type) {
  case RAFT_MSG_APP:
    m.term = 5, m.index = 7, m.log_term = 4, m.commit = 6, m.entries = ents3, m.n_entries = 3;
    break;
  case RAFT_MSG_APP_RESP:
    m.term = 5, m.index = 9, m.reject = true, m.reject_hint = 3, m.log_term = 2;
    break;
  case RAFT_MSG_VOTE:
  case RAFT_MSG_PREVOTE:
    m.term = 9, m.index = 100, m.log_term = 8, m.transfer = true;
    break;
  case RAFT_MSG_VOTE_RESP:
  case RAFT_MSG_PREVOTE_RESP:
    m.term = 9, m.reject = true;
    break;
  case RAFT_MSG_HEARTBEAT:
    m.term = 3, m.index = 77, m.commit = UINT64_MAX;
    break;
  case RAFT_MSG_HEARTBEAT_RESP:
    m.term = 3, m.index = 77;
    break;
  case RAFT_MSG_SNAP:
    m.term = 6, m.snapshot = &snap;
    break;
  case RAFT_MSG_PROP: {
    static raft_entry prop = {.data = (uint8_t *)"payload", .len = 7};
    m.entries = &prop, m.n_entries = 1;
    break;
  }
  case RAFT_MSG_READ_INDEX:
    m.ctx = (const uint8_t *)"ctx-1", m.ctx_len = 5;
    break;
  case RAFT_MSG_READ_INDEX_RESP:
    m.term = 2, m.index = 40, m.ctx = (const uint8_t *)"ctx-1", m.ctx_len = 5;
    break;
  case RAFT_MSG_TIMEOUT_NOW:
    m.term = 2;
    break;
  case RAFT_MSG_TRANSFER_LEADER:
    m.index = 3;
    break;
  }
  return m;
}

static bool same_msg(const raft_msg *a, const raft_msg *b) {
  if (a->type != b->type || a->reject != b->reject || a->transfer != b->transfer || a->from != b->from ||
      a->to != b->to || a->term != b->term || a->log_term != b->log_term || a->index != b->index ||
      a->commit != b->commit || a->reject_hint != b->reject_hint || a->n_entries != b->n_entries ||
      a->ctx_len != b->ctx_len || (a->ctx_len && memcmp(a->ctx, b->ctx, a->ctx_len)))
    return false;
  for (size_t i = 0; i < a->n_entries; i++) {
    const raft_entry *x = &a->entries[i], *y = &b->entries[i];
    if (x->term != y->term || x->type != y->type || x->len != y->len ||
        (x->len && memcmp(x->data, y->data, x->len)))
      return false;
    if (a->type == RAFT_MSG_APP && x->index != y->index) return false;
  }
  if (!a->snapshot != !b->snapshot) return false;
  if (a->snapshot) {
    const raft_snapshot *x = a->snapshot, *y = b->snapshot;
    if (x->index != y->index || x->term != y->term || x->len != y->len || memcmp(x->data, y->data, x->len) ||
        x->conf.n_voters != y->conf.n_voters || x->conf.n_learners != y->conf.n_learners ||
        memcmp(x->conf.voters, y->conf.voters, x->conf.n_voters * 8) ||
        memcmp(x->conf.learners, y->conf.learners, x->conf.n_learners * 8))
      return false;
  }
  return true;
}

static void test_round_trip_every_type(void) {
  raft_decode_buf db = {0};
  for (int t = RAFT_MSG_APP; t <= RAFT_MSG_TRANSFER_LEADER; t++) {
    raft_msg m = sample(t), d;
    buf b = {0}, again = {0};
    CHECK_INT(raft_msg_encode(&m, &b), ==, 0);
    CHECK_INT(raft_msg_decode(b.data, b.len, &d, &db), ==, 0);
    CHECK(same_msg(&m, &d));
    CHECK_INT(raft_msg_encode(&d, &again), ==, 0);
    CHECK_MEM(again.data, again.len, b.data, b.len);
    CHECK(strcmp(raft_msg_type_name(t), "?") != 0);
    buf_free(&b);
    buf_free(&again);
  }
  raft_decode_buf_free(&db);
}

static void test_compact(void) {
  /* A heartbeat is a handful of bytes. */
  raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 3, .commit = 100, .index = 5};
  buf b = {0};
  raft_msg_encode(&m, &b);
  CHECK_INT(b.len, <=, 10);
  buf_free(&b);
}

static void test_every_prefix_rejected(void) {
  raft_decode_buf db = {0};
  for (int t = RAFT_MSG_APP; t <= RAFT_MSG_TRANSFER_LEADER; t++) {
    raft_msg m = sample(t), d;
    buf b = {0};
    raft_msg_encode(&m, &b);
    for (size_t cut = 0; cut < b.len; cut++) CHECK_INT(raft_msg_decode(b.data, cut, &d, &db), ==, RAFT_EMALFORMED);
    /* and one byte too many */
    buf_append(&b, "", 1);
    CHECK_INT(raft_msg_decode(b.data, b.len, &d, &db), ==, RAFT_EMALFORMED);
    buf_free(&b);
  }
  raft_decode_buf_free(&db);
}

static int decode_hex(const char *hex, raft_msg *m, raft_decode_buf *db) {
  uint8_t bytes[256];
  size_t n = 0;
  for (const char *p = hex; p[0] && p[1]; p += 2) {
    unsigned v;
    sscanf(p, "%2x", &v);
    bytes[n++] = (uint8_t)v;
  }
  return raft_msg_decode(bytes, n, m, db);
}

static void test_malformed_rejected(void) {
  raft_decode_buf db = {0};
  raft_msg m;
  /* A valid heartbeat: version 1, type 7, no flags, fields term|commit,
   * from 1, to 2, term 3, commit 4. */
  CHECK_INT(decode_hex("0107000901020304", &m, &db), ==, 0);
  CHECK_INT(m.commit, ==, 4);
  CHECK_INT(decode_hex("0207000901020304", &m, &db), ==, RAFT_EMALFORMED); /* version */
  CHECK_INT(decode_hex("0100000901020304", &m, &db), ==, RAFT_EMALFORMED); /* type 0 */
  CHECK_INT(decode_hex("010f000901020304", &m, &db), ==, RAFT_EMALFORMED); /* type 15 */
  CHECK_INT(decode_hex("0107010901020304", &m, &db), ==, RAFT_EMALFORMED); /* reject flag */
  CHECK_INT(decode_hex("0107000b0102030504", &m, &db), ==, RAFT_EMALFORMED); /* log_term */
  CHECK_INT(decode_hex("0107000900020304", &m, &db), ==, RAFT_EMALFORMED); /* from 0 */
  CHECK_INT(decode_hex("0107000901020004", &m, &db), ==, RAFT_EMALFORMED); /* present zero */
  CHECK_INT(decode_hex("01070009010283000304", &m, &db), ==, RAFT_EMALFORMED); /* 0x83 0x00 */
  CHECK_INT(decode_hex("0107000901028080808080808080800204", &m, &db), ==, RAFT_EMALFORMED);
  CHECK_INT(decode_hex("010700090102ffffffffffffffffff0104", &m, &db), ==, 0); /* max varint */
  CHECK(m.term == UINT64_MAX);
  CHECK_INT(decode_hex("010700090102ffffffffffffffffff0204", &m, &db), ==, RAFT_EMALFORMED); /* 2^64 */
  /* PROP: 2^60 entries claimed in a 10-byte message: refused before any
   * allocation. */
  CHECK_INT(decode_hex("010a002001028080808080808080100000", &m, &db), ==, RAFT_EMALFORMED);
  CHECK_INT(db.cap, <, 1000);
  /* PROP with zero entries */
  CHECK_INT(decode_hex("010a0020010200", &m, &db), ==, RAFT_EMALFORMED);
  /* entry of type 2 */
  CHECK_INT(decode_hex("010a00200102010002" "00", &m, &db), ==, RAFT_EMALFORMED);
  /* entry data longer than the message */
  CHECK_INT(decode_hex("010a0020010201000005616263", &m, &db), ==, RAFT_EMALFORMED);
  CHECK_INT(decode_hex("010a0020010201000003616263", &m, &db), ==, 0);
  CHECK_MEM(m.entries[0].data, m.entries[0].len, "abc", 3);
  /* APP whose entry indexes would overflow */
  CHECK_INT(decode_hex("010100240102" "ffffffffffffffffff01" "02" "000000" "000000", &m, &db), ==,
            RAFT_EMALFORMED);
  /* SNAP without a snapshot, and with unsorted voters */
  CHECK_INT(decode_hex("01090001010205", &m, &db), ==, RAFT_EMALFORMED);
  CHECK_INT(decode_hex("01090081010205" "0a02" "020302" "0000", &m, &db), ==, RAFT_EMALFORMED);
  CHECK_INT(decode_hex("01090081010205" "0a02" "020203" "0000", &m, &db), ==, 0);
  CHECK_INT(decode_hex("01090081010205" "0a02" "020202" "0000", &m, &db), ==, RAFT_EMALFORMED);
  CHECK_INT(decode_hex("01090081010205" "0a02" "0103" "0103" "00", &m, &db), ==, RAFT_EMALFORMED);
  CHECK_INT(decode_hex("01090081010205" "0a02" "21", &m, &db), ==, RAFT_EMALFORMED); /* 33 voters */
  raft_decode_buf_free(&db);
}

static void test_flips_decode_canonically(void) {
  /* Any input the decoder accepts re-encodes to exactly the same bytes. */
  raft_decode_buf db = {0};
  uint64_t x = testing_seed(42);
  int accepted = 0;
  for (int t = RAFT_MSG_APP; t <= RAFT_MSG_TRANSFER_LEADER; t++) {
    raft_msg m = sample(t), d;
    buf b = {0};
    raft_msg_encode(&m, &b);
    for (int k = 0; k < 2000; k++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      uint8_t copy[512];
      memcpy(copy, b.data, b.len);
      size_t at = (size_t)(x >> 33) % b.len;
      copy[at] ^= (uint8_t)(1u << ((x >> 20) & 7));
      if (raft_msg_decode(copy, b.len, &d, &db) != 0) continue;
      accepted++;
      buf again = {0};
      CHECK_INT(raft_msg_encode(&d, &again), ==, 0);
      CHECK_MEM(again.data, again.len, copy, b.len);
      buf_free(&again);
    }
    buf_free(&b);
  }
  CHECK(accepted > 100);
  raft_decode_buf_free(&db);
}

static void test_encode_refuses_nonsense(void) {
  buf b = {0};
  raft_msg m = sample(RAFT_MSG_APP);
  m.index = 6; /* entries no longer follow it */
  CHECK_INT(raft_msg_encode(&m, &b), ==, RAFT_EINVAL);
  m = sample(RAFT_MSG_HEARTBEAT);
  m.from = 0;
  CHECK_INT(raft_msg_encode(&m, &b), ==, RAFT_EINVAL);
  m = sample(RAFT_MSG_HEARTBEAT);
  m.reject = true;
  CHECK_INT(raft_msg_encode(&m, &b), ==, RAFT_EINVAL);
  m = sample(RAFT_MSG_VOTE_RESP);
  m.n_entries = 1;
  m.entries = ents3;
  CHECK_INT(raft_msg_encode(&m, &b), ==, RAFT_EINVAL);
  m.type = 99;
  CHECK_INT(raft_msg_encode(&m, &b), ==, RAFT_EINVAL);
  CHECK_INT(b.len, ==, 0);
  buf_free(&b);
}

/* ---------------------------------------------------------------- memstorage */

static void append_terms(raft_memstorage *ms, uint64_t from, const uint64_t *terms, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char data[16];
    snprintf(data, sizeof data, "e%llu.%llu", (unsigned long long)(from + i), (unsigned long long)terms[i]);
    raft_entry e = {.index = from + i, .term = terms[i], .data = (uint8_t *)data, .len = (uint32_t)strlen(data)};
    CHECK_INT(raft_memstorage_append(ms, &e, 1), ==, 0);
  }
}

static void test_memstorage_basics(void) {
  raft_memstorage *ms = raft_memstorage_new();
  const raft_storage *st = raft_memstorage_storage(ms);
  CHECK_INT(st->first_index(st->ctx), ==, 1);
  CHECK_INT(st->last_index(st->ctx), ==, 0);
  uint64_t t;
  CHECK_INT(st->term(st->ctx, 0, &t), ==, 0);
  CHECK_INT(st->term(st->ctx, 1, &t), ==, RAFT_EUNAVAILABLE);
  uint64_t terms[] = {1, 1, 2, 2, 3};
  append_terms(ms, 1, terms, 5);
  CHECK_INT(st->last_index(st->ctx), ==, 5);
  CHECK_INT(st->term(st->ctx, 3, &t), ==, 0);
  CHECK_INT(t, ==, 2);
  /* A gap is refused; a conflicting suffix is replaced. */
  raft_entry gap = {.index = 7, .term = 3};
  CHECK_INT(raft_memstorage_append(ms, &gap, 1), ==, RAFT_EINVAL);
  uint64_t newer[] = {4};
  append_terms(ms, 3, newer, 1);
  CHECK_INT(st->last_index(st->ctx), ==, 3);
  CHECK_INT(st->term(st->ctx, 3, &t), ==, 0);
  CHECK_INT(t, ==, 4);
  /* max_bytes: at least one entry, then as many as fit. */
  raft_entry out[8];
  size_t n;
  CHECK_INT(st->entries(st->ctx, 1, 4, 0, out, &n), ==, 0);
  CHECK_INT(n, ==, 1);
  CHECK_INT(st->entries(st->ctx, 1, 4, 10, out, &n), ==, 0);
  CHECK_INT(n, ==, 2); /* "e1.1" + "e2.1" = 8 bytes, + "e3.4" = 12 */
  CHECK_MEM(out[1].data, out[1].len, "e2.1", 4);
  CHECK_INT(st->entries(st->ctx, 1, 5, 100, out, &n), ==, RAFT_EUNAVAILABLE);
  raft_memstorage_free(ms);
}

static void test_memstorage_snapshot_and_compact(void) {
  raft_memstorage *ms = raft_memstorage_new();
  const raft_storage *st = raft_memstorage_storage(ms);
  uint64_t terms[] = {1, 1, 1, 2, 2, 2, 3, 3};
  append_terms(ms, 1, terms, 8);
  raft_conf_state cs = {.voters = {1, 2, 3}, .n_voters = 3};
  CHECK_INT(raft_memstorage_compact(ms, 4), ==, RAFT_EINVAL); /* no snapshot covers it */
  CHECK_INT(raft_memstorage_create_snapshot(ms, 5, &cs, "S5", 2), ==, 0);
  CHECK_INT(raft_memstorage_create_snapshot(ms, 9, &cs, "S9", 2), ==, RAFT_EINVAL);
  CHECK_INT(raft_memstorage_compact(ms, 4), ==, 0);
  CHECK_INT(st->first_index(st->ctx), ==, 5);
  uint64_t t;
  CHECK_INT(st->term(st->ctx, 4, &t), ==, 0); /* the term before the first entry */
  CHECK_INT(t, ==, 2);
  CHECK_INT(st->term(st->ctx, 3, &t), ==, RAFT_ECOMPACTED);
  raft_entry out[8];
  size_t n;
  CHECK_INT(st->entries(st->ctx, 4, 6, 100, out, &n), ==, RAFT_ECOMPACTED);
  CHECK_INT(st->entries(st->ctx, 5, 9, 100, out, &n), ==, 0);
  CHECK_INT(n, ==, 4);
  CHECK_MEM(out[3].data, out[3].len, "e8.3", 4);
  raft_snapshot s;
  CHECK_INT(st->snapshot(st->ctx, &s), ==, 0);
  CHECK_INT(s.index, ==, 5);
  CHECK_INT(s.term, ==, 2);
  CHECK_MEM(s.data, s.len, "S5", 2);
  /* Installing a received snapshot replaces everything. */
  raft_snapshot recv = {.index = 20, .term = 7, .conf = cs, .data = (const uint8_t *)"S20", .len = 3};
  CHECK_INT(raft_memstorage_apply_snapshot(ms, &recv), ==, 0);
  CHECK_INT(st->first_index(st->ctx), ==, 21);
  CHECK_INT(st->last_index(st->ctx), ==, 20);
  CHECK_INT(st->term(st->ctx, 20, &t), ==, 0);
  CHECK_INT(t, ==, 7);
  CHECK_INT(raft_memstorage_hard_state(ms).commit, ==, 20);
  /* Entries at or below the snapshot are skipped on append. */
  uint64_t more[] = {7, 7, 8};
  append_terms(ms, 19, more, 3);
  CHECK_INT(st->last_index(st->ctx), ==, 21);
  recv.index = 10;
  CHECK_INT(raft_memstorage_apply_snapshot(ms, &recv), ==, RAFT_EINVAL); /* older */
  raft_memstorage_free(ms);
}

static void test_memstorage_data_stable(void) {
  /* Data pointers handed out survive later appends (the header array moves,
   * the data does not). */
  raft_memstorage *ms = raft_memstorage_new();
  const raft_storage *st = raft_memstorage_storage(ms);
  uint64_t one[] = {1};
  append_terms(ms, 1, one, 1);
  raft_entry first;
  size_t n;
  st->entries(st->ctx, 1, 2, 100, &first, &n);
  uint64_t terms[1000];
  for (int i = 0; i < 1000; i++) terms[i] = 1;
  append_terms(ms, 2, terms, 1000);
  CHECK_MEM(first.data, first.len, "e1.1", 4);
  raft_memstorage_free(ms);
}

static void test_memstorage_bootstrap(void) {
  raft_memstorage *ms = raft_memstorage_new();
  const raft_storage *st = raft_memstorage_storage(ms);
  raft_conf_state cs = {.voters = {1, 2, 3}, .n_voters = 3, .learners = {4}, .n_learners = 1};
  CHECK_INT(raft_memstorage_bootstrap(ms, &cs), ==, 0);
  CHECK_INT(st->last_index(st->ctx), ==, 4);
  raft_hard_state hs = raft_memstorage_hard_state(ms);
  CHECK_INT(hs.term, ==, 1);
  CHECK_INT(hs.commit, ==, 4);
  raft_entry out[4];
  size_t n;
  st->entries(st->ctx, 1, 5, UINT64_MAX, out, &n);
  CHECK_INT(n, ==, 4);
  raft_conf_state built = {0};
  for (size_t i = 0; i < n; i++) {
    raft_conf_change cc;
    CHECK_INT(out[i].type, ==, RAFT_ENTRY_CONF_CHANGE);
    CHECK_INT(raft_cc_decode(out[i].data, out[i].len, &cc), ==, 0);
    CHECK(raft_conf_apply(&built, &cc));
  }
  CHECK_INT(built.n_voters, ==, 3);
  CHECK_INT(built.n_learners, ==, 1);
  CHECK_INT(raft_memstorage_bootstrap(ms, &cs), ==, RAFT_EINVAL); /* not empty */
  raft_memstorage_free(ms);
  /* A node started on it knows the membership. */
  ms = raft_memstorage_new();
  raft_memstorage_bootstrap(ms, &cs);
  raft_config c = {.id = 4, .storage = raft_memstorage_storage(ms), .election_tick = 10, .heartbeat_tick = 1};
  raft *r;
  CHECK_INT(raft_new(&c, &r), ==, 0);
  raft_conf_state now, applied;
  raft_conf_get(r, &now, &applied);
  CHECK_INT(now.n_voters, ==, 3);
  CHECK_INT(now.learners[0], ==, 4);
  CHECK_INT(applied.n_voters, ==, 0); /* nothing applied yet */
  raft_free(r);
  raft_memstorage_free(ms);
}

int main(void) {
  RUN(test_round_trip_every_type);
  RUN(test_compact);
  RUN(test_every_prefix_rejected);
  RUN(test_malformed_rejected);
  RUN(test_flips_decode_canonically);
  RUN(test_encode_refuses_nonsense);
  RUN(test_memstorage_basics);
  RUN(test_memstorage_snapshot_and_compact);
  RUN(test_memstorage_data_stable);
  RUN(test_memstorage_bootstrap);
  return testing_done();
}
