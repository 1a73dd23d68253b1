/* Tests for the on-disk record layouts (record.h), and for what the store
 * does when the disk holds records that do not decode: MVCC_EIO and a log
 * line, never a crash. */
#include <lmdb.h>

#include "base.h"
#include "mvcc.h"
#include "mvcc_int.h"
#include "mvcc_testutil.h"
#include "record.h"
#include "testing.h"

#define K(s) (const uint8_t *)(s), strlen(s)

static void test_hist_rec(void) {
  hist_rec r = {.key = (const uint8_t *)"key", .key_len = 3, .create = 2, .version = 4, .lease = 1,
                .value = (const uint8_t *)"v", .value_len = 1};
  uint8_t b[64];
  hist_rec_encode(b, &r);
  size_t n = hist_rec_size(3, 1);
  hist_rec d;
  REQUIRE(hist_rec_decode(b, n, &d) == 0);
  CHECK(!d.is_delete && d.create == 2 && d.version == 4 && d.lease == 1);
  CHECK_MEM(d.key, d.key_len, "key", 3);
  CHECK_MEM(d.value, d.value_len, "v", 1);
  for (size_t cut = 0; cut < HIST_REC_HDR + 3; cut++) CHECK_INT(hist_rec_decode(b, cut, &d), ==, -1);
  b[0] = 2;
  CHECK_INT(hist_rec_decode(b, n, &d), ==, -1);
  hist_rec del = {.is_delete = true, .key = (const uint8_t *)"key", .key_len = 3};
  hist_rec_encode(b, &del);
  REQUIRE(hist_rec_decode(b, hist_rec_size(3, 0), &d) == 0);
  CHECK(d.is_delete && d.value_len == 0 && d.create == 0);
  CHECK_INT(hist_rec_decode(b, hist_rec_size(3, 0) + 1, &d), ==, -1); /* a delete has no value */
  b[3] = 1; /* ... and no create revision */
  CHECK_INT(hist_rec_decode(b, hist_rec_size(3, 0), &d), ==, -1);
  hist_rec_encode(b, &r);
  b[1] = 0; /* empty key */
  b[2] = 0;
  CHECK_INT(hist_rec_decode(b, n, &d), ==, -1);
  b[1] = 0x00; /* 512-byte key */
  b[2] = 0x02;
  CHECK_INT(hist_rec_decode(b, n, &d), ==, -1);

  uint8_t hk[HIST_KEY_LEN];
  int64_t main, sub;
  hist_key_encode(hk, 300, 7);
  REQUIRE(hist_key_decode(hk, HIST_KEY_LEN, &main, &sub) == 0);
  CHECK(main == 300 && sub == 7);
  CHECK_INT(hist_key_decode(hk, HIST_KEY_LEN - 1, &main, &sub), ==, -1);
  hk[0] = 0x80;
  CHECK_INT(hist_key_decode(hk, HIST_KEY_LEN, &main, &sub), ==, -1);
  hist_key_encode(hk, 0, 0);
  CHECK_INT(hist_key_decode(hk, HIST_KEY_LEN, &main, &sub), ==, -1);
  /* Big-endian: memcmp order is revision order. */
  uint8_t a[HIST_KEY_LEN], c[HIST_KEY_LEN];
  hist_key_encode(a, 255, 9);
  hist_key_encode(c, 256, 0);
  CHECK(memcmp(a, c, HIST_KEY_LEN) < 0);
}

static void test_kidx_and_state(void) {
  uint8_t b[KIDX_LEN];
  int64_t main, sub;
  bool del;
  kidx_encode(b, 12, 3, true);
  REQUIRE(kidx_decode(b, KIDX_LEN, &main, &sub, &del) == 0);
  CHECK(main == 12 && sub == 3 && del);
  CHECK_INT(kidx_decode(b, KIDX_LEN + 1, &main, &sub, &del), ==, -1);
  b[16] = 2;
  CHECK_INT(kidx_decode(b, KIDX_LEN, &main, &sub, &del), ==, -1);

  store_state st = {.rev = 10, .compact_rev = 8, .compact_done_rev = 5, .compact_pos_main = 6,
                    .compact_pos_sub = 1, .applied_index = UINT64_MAX, .applied_term = 3,
                    .live_keys = 77};
  uint8_t s[STATE_LEN], c[CSTATE_LEN];
  state_encode(s, &st);
  cstate_encode(c, &st);
  store_state d = {0};
  REQUIRE(state_decode(s, STATE_LEN, &d) == 0);
  REQUIRE(cstate_decode(c, CSTATE_LEN, &d) == 0);
  CHECK(memcmp(&d, &st, sizeof d) == 0);
  CHECK_INT(state_check(&d), ==, 0);
  CHECK_INT(state_decode(s, STATE_LEN - 1, &d), ==, -1);
  CHECK_INT(cstate_decode(c, CSTATE_LEN + 1, &d), ==, -1);
  store_state bad = st;
  bad.compact_rev = 11; /* beyond the current revision */
  CHECK_INT(state_check(&bad), ==, -1);
  bad = st;
  bad.compact_done_rev = 9; /* physically ahead of the logical compaction */
  cstate_encode(c, &bad);
  CHECK_INT(cstate_decode(c, CSTATE_LEN, &d), ==, -1);
  bad = st;
  bad.rev = 0;
  state_encode(s, &bad);
  CHECK_INT(state_decode(s, STATE_LEN, &d), ==, -1);
  bad = st;
  bad.live_keys = -1;
  state_encode(s, &bad);
  CHECK_INT(state_decode(s, STATE_LEN, &d), ==, -1);
  cstate_encode(c, &st);
  c[0] = 1; /* another format: told apart from corruption */
  CHECK_INT(cstate_decode(c, CSTATE_LEN, &d), ==, -2);
  CHECK_INT(cstate_decode(c, 4, &d), ==, -2);
  c[0] = STATE_FORMAT;
  c[4] = 1; /* unknown flags */
  CHECK_INT(cstate_decode(c, CSTATE_LEN, &d), ==, -1);
}

/* A plausible LMDB meta page, as record.c expects the layout. */
static void fake_meta(uint8_t *page, size_t psize, uint64_t txnid) {
  memset(page, 0, psize);
  page[10] = 0x08; /* P_META */
  put_le32(page + 16, 0xBEEFC0DE);
  put_le32(page + 20, 1);
  put_le32(page + 16 + 24, (uint32_t)psize);
  put_le64(page + 16 + 24 + 40, UINT64_MAX);      /* free root */
  put_le64(page + 16 + 24 + 48 + 40, 3);          /* main root */
  put_le64(page + 16 + 120, 10);                  /* last page */
  put_le64(page + 16 + 128, txnid);
}

static void test_checkpoint_file(void) {
  size_t psize = 4096;
  uint8_t *m0 = xmalloc(psize), *m1 = xmalloc(psize);
  fake_meta(m0, psize, 6);
  fake_meta(m1, psize, 7);
  lmdb_meta lm;
  REQUIRE(lmdb_meta_parse(m1, psize, &lm) == 0);
  CHECK(lm.txnid == 7 && lm.psize == psize && lm.main_root == 3 && lm.free_root == LMDB_NO_ROOT);
  ckpt_file c = {.psize = (uint32_t)psize, .txnid = 7, .applied_index = 42, .applied_term = 2,
                 .rev = 9, .meta = {m0, m1}};
  buf b = {0};
  ckpt_encode(&b, &c);
  CHECK_INT(b.len, ==, ckpt_size((uint32_t)psize));
  ckpt_file d;
  REQUIRE(ckpt_decode(b.data, b.len, &d) == 0);
  CHECK(d.txnid == 7 && d.applied_index == 42 && d.applied_term == 2 && d.rev == 9);
  CHECK(memcmp(d.meta[1], m1, psize) == 0);
  /* Any flipped bit is caught. */
  for (size_t i = 0; i < b.len; i += 97) {
    b.data[i] ^= 0x10;
    CHECK_INT(ckpt_decode(b.data, b.len, &d), ==, -1);
    b.data[i] ^= 0x10;
  }
  CHECK_INT(ckpt_decode(b.data, b.len - 1, &d), ==, -1);
  /* The newer meta page must be the checkpointed transaction. */
  b.len = 0;
  c.txnid = 6;
  ckpt_encode(&b, &c);
  CHECK_INT(ckpt_decode(b.data, b.len, &d), ==, -1);
  m0[10] = 0; /* not a meta page */
  CHECK_INT(lmdb_meta_parse(m0, psize, &lm), ==, -1);
  CHECK_INT(lmdb_meta_parse(m1, 100, &lm), ==, -1);
  buf_free(&b);
  free(m0);
  free(m1);
}

static void test_marker(void) {
  marker m = {.running = true};
  strcpy(m.boot_id, "0f2c-abc");
  char text[128];
  int n = marker_encode(text, sizeof text, &m);
  REQUIRE(n > 0);
  CHECK_MEM(text, (size_t)n, "running 0f2c-abc\n", 17);
  marker d;
  REQUIRE(marker_decode((const uint8_t *)text, (size_t)n, &d) == 0);
  CHECK(d.running && strcmp(d.boot_id, "0f2c-abc") == 0);
  CHECK_INT(marker_decode((const uint8_t *)"clean x\n", 8, &d), ==, 0);
  CHECK(!d.running);
  const char *bad[] = {"", "running\n", "running \n", "running a b\n", "clean x", "dirty x\n",
                       "running a\nb\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_INT(marker_decode((const uint8_t *)bad[i], strlen(bad[i]), &d), ==, -1);
  strcpy(m.boot_id, "has space");
  CHECK_INT(marker_encode(text, sizeof text, &m), ==, -1);
}

/* ---------------------------------------------------------------- corrupt store */

/* Overwrites one record of a closed store through LMDB directly (db NULL:
 * the main database; a database that does not exist is created). */
static int raw_put(const char *dir, const char *db, const void *key, size_t klen, const void *val,
                   size_t vlen) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  int rc = mdb_env_create(&env);
  if (!rc) rc = mdb_env_set_maxdbs(env, 16);
  if (!rc) rc = mdb_env_open(env, dir, 0, 0600);
  if (!rc) rc = mdb_txn_begin(env, NULL, 0, &txn);
  if (!rc) rc = mdb_dbi_open(txn, db, db ? MDB_CREATE : 0, &dbi);
  MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
  if (!rc) {
    unsigned flags;
    mdb_dbi_flags(txn, dbi, &flags);
    if (flags & MDB_DUPSORT) rc = mdb_del(txn, dbi, &k, NULL); /* replace all dups */
    if (rc == MDB_NOTFOUND) rc = 0;
    if (!rc) rc = mdb_put(txn, dbi, &k, &v, 0);
    if (!rc) rc = mdb_txn_commit(txn);
    else mdb_txn_abort(txn);
  }
  mdb_env_close(env);
  return rc;
}

static void test_corrupt_records(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  CHECK_INT(tput(s, "a", "1", 3), ==, MVCC_OK); /* 2 */
  CHECK_INT(tput(s, "b", "1", 0), ==, MVCC_OK); /* 3 */
  CHECK_INT(tput(s, "a", "2", 3), ==, MVCC_OK); /* 4 */
  CHECK_INT(tput(s, "c", "1", 0), ==, MVCC_OK); /* 5 */
  CHECK_INT(tput(s, "e", "1", 0), ==, MVCC_OK); /* 6 */
  mvcc_close(s);
  /* hist of {4,0} (a's current version): a valid record of another key;
   * hist of {3,0} (b): bad type; kidx of c: bad type. */
  uint8_t hk[HIST_KEY_LEN], rec[64], junk[40] = {9};
  hist_rec other = {.key = (const uint8_t *)"z", .key_len = 1, .create = 4, .version = 1,
                    .value = (const uint8_t *)"2", .value_len = 1};
  hist_rec_encode(rec, &other);
  hist_key_encode(hk, 4, 0);
  CHECK_INT(raw_put(dir, "hist", hk, sizeof hk, rec, hist_rec_size(1, 1)), ==, 0);
  hist_key_encode(hk, 3, 0);
  CHECK_INT(raw_put(dir, "hist", hk, sizeof hk, junk, sizeof junk), ==, 0);
  uint8_t dup[KIDX_LEN];
  kidx_encode(dup, 5, 0, false);
  dup[16] = 7;
  CHECK_INT(raw_put(dir, "kidx", "c", 1, dup, sizeof dup), ==, 0);

  s = topen_dir(dir);
  mvcc_txn *t;
  REQUIRE_EQ(mvcc_read_begin(s, &t), 0);
  tkv_list l = {0};
  mvcc_span sa = span_key("a"), sb = span_key("b"), sc = span_key("c"), se = span_key("e"),
            all = span_from("");
  int64_t count;
  CHECK_INT(mvcc_range(t, &sa, 0, 0, 0, tkv_collect, &l, NULL), ==, MVCC_EIO);
  CHECK_INT(mvcc_range(t, &all, 0, 0, 0, tkv_collect, &l, NULL), ==, MVCC_EIO);
  /* Counting the whole keyspace reads the live-key count, nothing else. */
  CHECK_INT(mvcc_range(t, &all, 0, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 4);
  CHECK_INT(mvcc_range(t, &sb, 4, 0, 0, tkv_collect, &l, NULL), ==, MVCC_EIO);
  CHECK_INT(mvcc_range(t, &sb, 0, 0, 0, tkv_collect, &l, NULL), ==, MVCC_EIO);
  CHECK_INT(mvcc_range(t, &sc, 4, 0, 0, tkv_collect, &l, NULL), ==, MVCC_EIO); /* via kidx */
  CHECK_INT(mvcc_range(t, &sc, 0, 0, 0, NULL, NULL, &count), ==, MVCC_EIO);
  CHECK_INT(mvcc_range(t, &se, 0, 0, 0, tkv_collect, &l, NULL), ==, MVCC_OK); /* e is fine */
  CHECK_INT(mvcc_changes(t, 0, 0, tkv_collect_change, &l), ==, MVCC_EIO);
  mvcc_kv kv;
  CHECK_INT(mvcc_get_before(t, K("b"), 5, 0, &kv), ==, MVCC_EIO);
  CHECK_INT(mvcc_get_before(t, K("c"), 6, 0, &kv), ==, MVCC_EIO);
  CHECK_INT(mvcc_lease_keys(t, 3, tkv_collect, &l), ==, MVCC_EIO);
  uint32_t h;
  CHECK_INT(mvcc_hash_kv(t, 0, &h), ==, MVCC_EIO);
  mvcc_txn_end(t);
  tkv_list_clear(&l);
  REQUIRE_EQ(mvcc_write_begin(s, &t), 0);
  CHECK_INT(mvcc_put(t, K("a"), K("3"), 0, NULL), ==, MVCC_EIO);
  CHECK_INT(mvcc_put(t, K("d"), K("1"), 0, NULL), ==, MVCC_OK); /* a read error does not poison */
  CHECK_INT(mvcc_delete_range(t, &all, NULL, NULL, NULL), ==, MVCC_EIO);
  /* ... but a delete that failed half-way does: nothing of it may commit. */
  CHECK_INT(mvcc_put(t, K("e"), K("1"), 0, NULL), ==, MVCC_EIO);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_EIO);
  CHECK(tget(s, "d", 0, NULL) == NULL);
  mvcc_close(s);

  /* Corrupt store state, or a store of another format: open refuses. */
  uint8_t *saved;
  size_t saved_len;
  char path[600];
  snprintf(path, sizeof path, "%s/data.mdb", dir);
  REQUIRE_EQ(read_file(path, &saved, &saved_len), 0);
  mvcc_options o = {.dir = dir};
  CHECK_INT(raw_put(dir, NULL, "mvcc.state", 10, "bad", 3), ==, 0);
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_EIO);
  REQUIRE_EQ(write_file_atomic(path, saved, saved_len), 0);
  store_state st = {.rev = 6};
  uint8_t cs[CSTATE_LEN];
  cstate_encode(cs, &st);
  cs[0] = 3;
  CHECK_INT(raw_put(dir, NULL, "mvcc.compact", 12, cs, sizeof cs), ==, 0);
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_EIO);
  REQUIRE_EQ(write_file_atomic(path, saved, saved_len), 0);
  CHECK_INT(raw_put(dir, "kv", "a", 1, "x", 1), ==, 0); /* format 1's database */
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_EIO);
  REQUIRE_EQ(write_file_atomic(path, saved, saved_len), 0);
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_OK); /* the test itself broke nothing */
  mvcc_close(s);
  free(saved);
  tmpdir_remove(dir);
}

int main(void) {
  log_set_level(getenv("SYNOD_LOG") ? LOG_DEBUG : LOG_FATAL);
  RUN(test_hist_rec);
  RUN(test_kidx_and_state);
  RUN(test_checkpoint_file);
  RUN(test_marker);
  RUN(test_corrupt_records);
  return testing_done();
}
