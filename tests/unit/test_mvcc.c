/* Unit tests for kvcore/mvcc: every function and error code of mvcc.h. */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "mvcc.h"
#include "mvcc_int.h"
#include "mvcc_model.h"
#include "mvcc_testutil.h"
#include "testing.h"

#define K(s) (const uint8_t *)(s), strlen(s)

static mvcc_txn *rbegin(mvcc_store *s) {
  mvcc_txn *t = NULL;
  int rc = mvcc_read_begin(s, &t);
  if (rc) {
    fprintf(stderr, "read_begin: %s\n", mvcc_strerror(rc));
    exit(2);
  }
  return t;
}

static mvcc_txn *wbegin(mvcc_store *s) {
  mvcc_txn *t = NULL;
  int rc = mvcc_write_begin(s, &t);
  if (rc) {
    fprintf(stderr, "write_begin: %s\n", mvcc_strerror(rc));
    exit(2);
  }
  return t;
}

/* Reads span at rev into l; returns the range rc. */
static int trange(mvcc_store *s, mvcc_span sp, int64_t rev, int64_t limit, unsigned flags,
                  tkv_list *l, int64_t *count) {
  mvcc_txn *t = rbegin(s);
  int rc = mvcc_range(t, &sp, rev, limit, flags, tkv_collect, l, count);
  mvcc_txn_end(t);
  return rc;
}

static bool tkv_is(const tkv *v, const char *key, const char *value) {
  return bytes_cmp(v->key, v->key_len, key, strlen(key)) == 0 &&
         bytes_cmp(v->value, v->value_len, value, strlen(value)) == 0;
}

/* Number of entries in `hist` (white box: physical compaction progress). */
static int64_t hist_entries(mvcc_store *s) {
  mvcc_txn *t = rbegin(s);
  MDB_stat st;
  mdb_stat(t->txn, s->dbi[DB_HIST], &st);
  mvcc_txn_end(t);
  return (int64_t)st.ms_entries;
}

/* ---------------------------------------------------------------- open */

static void test_open_errors(void) {
  mvcc_store *s = NULL;
  CHECK_INT(mvcc_open(NULL, &s), ==, MVCC_EINVAL);
  mvcc_options o = {.dir = ""};
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_EINVAL);
  char *dir = tmpdir_new();
  o = (mvcc_options){.dir = dir, .checkpoint_ms = -1};
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_EINVAL);
  mvcc_store *a = topen_dir(dir);
  /* One process per store: a second open is refused, not shared. */
  o.checkpoint_ms = 0;
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_EIO);
  mvcc_close(a);
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_OK);
  mvcc_close(s);
  /* A file where the directory should be. */
  char path[600];
  snprintf(path, sizeof path, "%s/file", dir);
  CHECK_INT(write_file_atomic(path, "x", 1), ==, 0);
  o.dir = path;
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_EIO);
  tmpdir_remove(dir);
}

static void test_empty_store(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  mvcc_txn *t = rbegin(s);
  CHECK_INT(mvcc_rev(t), ==, 1);
  CHECK_INT(mvcc_compact_rev(t), ==, 0);
  CHECK_INT(mvcc_compact_done_rev(t), ==, 0);
  uint64_t index = 9, term = 9;
  mvcc_applied(t, &index, &term);
  CHECK_INT(index, ==, 0);
  CHECK_INT(term, ==, 0);
  mvcc_span all = span_from("");
  int64_t count = -1;
  CHECK_INT(mvcc_range(t, &all, 0, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 0);
  CHECK_INT(mvcc_range(t, &all, 1, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
  CHECK_INT(mvcc_range(t, &all, 2, 0, 0, NULL, NULL, &count), ==, MVCC_EFUTURE);
  mvcc_txn_end(t);
  CHECK_INT(mvcc_durable_index(s), ==, 0);
  mvcc_stats st;
  CHECK_INT(mvcc_stats_get(s, &st), ==, MVCC_OK);
  CHECK_INT(st.keys, ==, 0);
  CHECK(st.db_size > 0);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- writes */

static void test_revisions_and_versions(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  tkv_list l = {0};
  CHECK_INT(tput(s, "a", "1", 0), ==, MVCC_OK);
  CHECK_INT(trev(s), ==, 2);
  CHECK_INT(trange(s, span_key("a"), 0, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_INT(l.v[0].create_rev, ==, 2);
  CHECK_INT(l.v[0].mod_rev, ==, 2);
  CHECK_INT(l.v[0].version, ==, 1);
  tkv_list_clear(&l);

  CHECK_INT(tput(s, "a", "2", 0), ==, MVCC_OK);
  CHECK_INT(trange(s, span_key("a"), 0, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_INT(l.v[0].create_rev, ==, 2);
  CHECK_INT(l.v[0].mod_rev, ==, 3);
  CHECK_INT(l.v[0].version, ==, 2);
  CHECK(tkv_is(&l.v[0], "a", "2"));
  tkv_list_clear(&l);

  int64_t n = -1;
  CHECK_INT(tdel(s, span_key("a"), &n), ==, MVCC_OK);
  CHECK_INT(n, ==, 1);
  CHECK_INT(trev(s), ==, 4);
  /* Deleting what does not exist changes nothing: no new revision. */
  CHECK_INT(tdel(s, span_key("a"), &n), ==, MVCC_OK);
  CHECK_INT(n, ==, 0);
  CHECK_INT(trev(s), ==, 4);

  /* A new life: version 1 again, a new create revision. */
  CHECK_INT(tput(s, "a", "3", 0), ==, MVCC_OK);
  CHECK_INT(trange(s, span_key("a"), 0, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_INT(l.v[0].create_rev, ==, 5);
  CHECK_INT(l.v[0].mod_rev, ==, 5);
  CHECK_INT(l.v[0].version, ==, 1);
  tkv_list_clear(&l);

  /* An empty request, and an empty write transaction, keep the revision. */
  mvcc_txn *t = wbegin(s);
  mvcc_rev_begin(t);
  CHECK_INT(mvcc_rev_end(t), ==, 5);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  CHECK_INT(trev(s), ==, 5);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_put_prev(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  mvcc_txn *t = wbegin(s);
  mvcc_kv prev;
  memset(&prev, 0xff, sizeof prev);
  CHECK_INT(mvcc_put(t, K("k"), K("v1"), 7, &prev), ==, MVCC_OK);
  CHECK_INT(prev.version, ==, 0);
  CHECK_INT(mvcc_put(t, K("k"), K("value-two"), 0, &prev), ==, MVCC_OK);
  CHECK_INT(prev.version, ==, 1);
  CHECK_INT(prev.create_rev, ==, 2);
  CHECK_INT(prev.mod_rev, ==, 2);
  CHECK_INT(prev.lease, ==, 7);
  CHECK_MEM(prev.key, prev.key_len, "k", 1);
  CHECK_MEM(prev.value, prev.value_len, "v1", 2);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);

  /* prev stays valid after the write that replaced it, even when the
   * replaced version sits on a page this transaction already dirtied. */
  t = wbegin(s);
  char big[3000];
  memset(big, 'x', sizeof big);
  CHECK_INT(mvcc_put(t, K("k"), (const uint8_t *)big, sizeof big, 0, NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_put(t, K("k"), K("small"), 0, &prev), ==, MVCC_OK);
  CHECK_INT(prev.version, ==, 3);
  CHECK_MEM(prev.value, prev.value_len, big, sizeof big);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static int collect_changes(mvcc_store *s, int64_t from, int64_t to, tkv_list *l) {
  mvcc_txn *t = rbegin(s);
  int rc = mvcc_changes(t, from, to, tkv_collect_change, l);
  mvcc_txn_end(t);
  return rc;
}

static void test_multi_change_request(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  CHECK_INT(tput(s, "a", "old", 0), ==, MVCC_OK); /* rev 2 */
  mvcc_txn *t = wbegin(s);
  mvcc_rev_begin(t);
  CHECK_INT(mvcc_rev(t), ==, 2);
  CHECK_INT(mvcc_put(t, K("b"), K("1"), 0, NULL), ==, MVCC_OK);
  /* Reads inside the request see its changes at the next revision. */
  CHECK_INT(mvcc_rev(t), ==, 3);
  CHECK_INT(mvcc_put(t, K("c"), K("2"), 0, NULL), ==, MVCC_OK);
  mvcc_span sa = span_key("a");
  CHECK_INT(mvcc_delete_range(t, &sa, NULL, NULL, NULL), ==, MVCC_OK);
  tkv_list l = {0};
  int64_t count;
  mvcc_span all = span_from("");
  CHECK_INT(mvcc_range(t, &all, 0, 0, 0, tkv_collect, &l, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 2);
  CHECK(l.n == 2 && tkv_is(&l.v[0], "b", "1") && tkv_is(&l.v[1], "c", "2"));
  tkv_list_clear(&l);
  CHECK_INT(mvcc_range(t, &all, 3, 0, 0, tkv_collect, &l, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 2);
  tkv_list_clear(&l);
  /* The revision before the request is still readable as it was. */
  CHECK_INT(mvcc_range(t, &all, 2, 0, 0, tkv_collect, &l, &count), ==, MVCC_OK);
  CHECK(l.n == 1 && tkv_is(&l.v[0], "a", "old"));
  tkv_list_clear(&l);
  CHECK_INT(mvcc_range(t, &all, 4, 0, 0, NULL, NULL, &count), ==, MVCC_EFUTURE);
  CHECK_INT(mvcc_rev_end(t), ==, 3);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);

  CHECK_INT(collect_changes(s, 3, 3, &l), ==, MVCC_OK);
  REQUIRE(l.n == 3);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(l.v[i].main, ==, 3);
    CHECK_INT(l.v[i].sub, ==, i);
  }
  CHECK(!l.v[0].is_delete && !l.v[1].is_delete && l.v[2].is_delete);
  tkv_list_clear(&l);

  /* Several requests in one transaction each get their own revision;
   * a change outside any bracket is a request of its own. */
  t = wbegin(s);
  CHECK_INT(mvcc_put(t, K("x"), K("1"), 0, NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_rev(t), ==, 4);
  mvcc_rev_begin(t);
  CHECK_INT(mvcc_put(t, K("y"), K("1"), 0, NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_put(t, K("y"), K("2"), 0, NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_rev_end(t), ==, 5);
  mvcc_rev_begin(t);
  CHECK_INT(mvcc_put(t, K("z"), K("1"), 0, NULL), ==, MVCC_OK);
  /* commit ends an open request */
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  CHECK_INT(trev(s), ==, 6);
  CHECK_INT(trange(s, span_key("y"), 0, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_INT(l.v[0].version, ==, 2);
  CHECK_INT(l.v[0].create_rev, ==, 5);
  CHECK_INT(l.v[0].mod_rev, ==, 5);
  tkv_list_clear(&l);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static int record_deleted(void *arg, const mvcc_kv *kv) {
  tkv_list_add(arg, kv);
  return 1; /* asks to stop: delete_range deletes everything anyway */
}

static void test_delete_range(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  const char *keys[] = {"a", "b", "b1", "b2", "c", "d"};
  for (int i = 0; i < 6; i++) CHECK_INT(tput(s, keys[i], keys[i], i), ==, MVCC_OK);
  mvcc_txn *t = wbegin(s);
  tkv_list gone = {0};
  int64_t n = -1;
  mvcc_span sp = span_range("b", "c");
  CHECK_INT(mvcc_delete_range(t, &sp, record_deleted, &gone, &n), ==, MVCC_OK);
  CHECK_INT(n, ==, 3);
  REQUIRE(gone.n == 3);
  CHECK(tkv_is(&gone.v[0], "b", "b") && tkv_is(&gone.v[1], "b1", "b1") && tkv_is(&gone.v[2], "b2", "b2"));
  CHECK_INT(gone.v[1].version, ==, 1);
  CHECK_INT(gone.v[1].lease, ==, 2);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  tkv_list_clear(&gone);
  CHECK_INT(trev(s), ==, 8);

  tkv_list l = {0};
  int64_t count;
  CHECK_INT(trange(s, span_from(""), 0, 0, 0, &l, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 3);
  tkv_list_clear(&l);
  /* Empty and inverted spans delete nothing and keep the revision. */
  CHECK_INT(tdel(s, span_range("c", "c"), &n), ==, MVCC_OK);
  CHECK_INT(n, ==, 0);
  CHECK_INT(tdel(s, span_range("d", "a"), &n), ==, MVCC_OK);
  CHECK_INT(n, ==, 0);
  CHECK_INT(trev(s), ==, 8);
  CHECK_INT(tdel(s, span_from("c"), &n), ==, MVCC_OK);
  CHECK_INT(n, ==, 2);
  CHECK_INT(tdel(s, span_from(""), &n), ==, MVCC_OK);
  CHECK_INT(n, ==, 1);
  CHECK_INT(trev(s), ==, 10);
  mvcc_txn *r = rbegin(s);
  mvcc_span all = span_from("");
  CHECK_INT(mvcc_range(r, &all, 0, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 0);
  /* The deletions are history: readable below. */
  CHECK_INT(mvcc_range(r, &all, 7, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 6);
  mvcc_txn_end(r);
  /* Bad arguments. */
  t = wbegin(s);
  mvcc_span bad = span_key("");
  CHECK_INT(mvcc_delete_range(t, &bad, NULL, NULL, NULL), ==, MVCC_EINVAL);
  CHECK_INT(mvcc_delete_range(t, NULL, NULL, NULL, NULL), ==, MVCC_EINVAL);
  char longkey[MVCC_MAX_KEY + 2];
  memset(longkey, 'k', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = 0;
  bad = span_key(longkey);
  CHECK_INT(mvcc_delete_range(t, &bad, NULL, NULL, NULL), ==, MVCC_EKEYTOOLONG);
  mvcc_txn_end(t);
  r = rbegin(s);
  CHECK_INT(mvcc_delete_range(r, &all, NULL, NULL, NULL), ==, MVCC_EINVAL); /* read txn */
  mvcc_txn_end(r);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- reads */

static void test_range_spans(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  const char *keys[] = {"a", "ab", "b", "ba", "c", "foo", "foo/1", "foo/2", "fop"};
  for (int i = 0; i < 9; i++) CHECK_INT(tput(s, keys[i], keys[i], 0), ==, MVCC_OK);
  int64_t rev_all = trev(s);
  CHECK_INT(tput(s, "zz", "late", 0), ==, MVCC_OK);
  struct {
    mvcc_span sp;
    const char *want; /* space-separated keys, as at rev_all */
  } cases[] = {
      {span_key("b"), "b"},
      {span_key("bb"), ""},
      {span_range("a", "b"), "a ab"},
      {span_range("ab", "c"), "ab b ba"},
      {span_range("foo/", "foo0"), "foo/1 foo/2"},
      {span_range("c", "c"), ""},
      {span_range("c", "b"), ""},
      {span_range("", "ab"), "a"},
      {span_from("fo"), "foo foo/1 foo/2 fop"},
      {span_from(""), "a ab b ba c foo foo/1 foo/2 fop"},
      {span_from("\x00"), "a ab b ba c foo foo/1 foo/2 fop"},
      {span_from("zzz"), ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int past = 0; past < 2; past++) {
      for (unsigned flags = 0; flags < 2; flags++) {
        /* past: at rev_all through kidx; else current through kv (zz excluded below) */
        tkv_list l = {0};
        int64_t count = -1;
        CHECK_INT(trange(s, cases[i].sp, past ? rev_all : 0, 0, flags, &l, &count), ==, MVCC_OK);
        char got[256] = "";
        for (size_t j = 0; j < l.n; j++) {
          size_t at = flags ? l.n - 1 - j : j;
          if (!past && bytes_cmp(l.v[at].key, l.v[at].key_len, "zz", 2) == 0) continue;
          if (*got) strcat(got, " ");
          strncat(got, (const char *)l.v[at].key, l.v[at].key_len);
        }
        if (strcmp(got, cases[i].want) != 0)
          fprintf(stderr, "case %zu past %d reverse %u: got '%s' want '%s'\n", i, past, flags, got,
                  cases[i].want);
        CHECK_STR(got, cases[i].want);
        CHECK_INT(count, ==, (int64_t)l.n);
        tkv_list_clear(&l);
      }
    }
  }

  /* limit, count, reverse */
  for (int past = 0; past < 2; past++) {
    int64_t rev = past ? rev_all : 0;
    tkv_list l = {0};
    int64_t count = -1;
    CHECK_INT(trange(s, span_range("a", "foo"), rev, 2, 0, &l, &count), ==, MVCC_OK);
    CHECK_INT(count, ==, 5);
    CHECK(l.n == 2 && tkv_is(&l.v[0], "a", "a") && tkv_is(&l.v[1], "ab", "ab"));
    tkv_list_clear(&l);
    CHECK_INT(trange(s, span_range("a", "foo"), rev, 2, MVCC_RANGE_REVERSE, &l, &count), ==, MVCC_OK);
    CHECK_INT(count, ==, 5);
    CHECK(l.n == 2 && tkv_is(&l.v[0], "c", "c") && tkv_is(&l.v[1], "ba", "ba"));
    tkv_list_clear(&l);
    /* A visitor that stops early: still the full count. */
    l.stop_after = 3;
    CHECK_INT(trange(s, span_from("a"), rev, 0, 0, &l, &count), ==, MVCC_OK);
    CHECK_INT(l.n, ==, 3);
    CHECK_INT(count, ==, past ? 9 : 10);
    tkv_list_clear(&l);
    /* Count only. */
    mvcc_txn *t = rbegin(s);
    mvcc_span sp = span_from("foo");
    CHECK_INT(mvcc_range(t, &sp, rev, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
    CHECK_INT(count, ==, past ? 4 : 5);
    sp = span_from("");
    CHECK_INT(mvcc_range(t, &sp, rev, 1, 0, NULL, NULL, &count), ==, MVCC_OK);
    CHECK_INT(count, ==, past ? 9 : 10);
    /* Neither a visitor nor a count: nothing to do, still validated. */
    CHECK_INT(mvcc_range(t, &sp, rev, 0, 0, NULL, NULL, NULL), ==, MVCC_OK);
    mvcc_txn_end(t);
  }

  /* Bounds longer than any key LMDB can hold. */
  char longb[700];
  memset(longb, 'f', sizeof longb - 1);
  longb[sizeof longb - 1] = 0;
  longb[0] = 'c';
  tkv_list l = {0};
  CHECK_INT(trange(s, span_range("b", longb), 0, 0, 0, &l, NULL), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 3); /* b ba c */
  tkv_list_clear(&l);
  CHECK_INT(trange(s, span_range("b", longb), 0, 0, MVCC_RANGE_REVERSE, &l, NULL), ==, MVCC_OK);
  CHECK(l.n == 3 && tkv_is(&l.v[0], "c", "c"));
  tkv_list_clear(&l);
  CHECK_INT(trange(s, span_from(longb), rev_all, 0, 0, &l, NULL), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 4); /* foo foo/1 foo/2 fop */
  tkv_list_clear(&l);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_range_errors(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  for (int i = 0; i < 5; i++) CHECK_INT(tput(s, "k", "v", 0), ==, MVCC_OK); /* revs 2..6 */
  mvcc_txn *t = wbegin(s);
  CHECK_INT(mvcc_compact(t, 4), ==, MVCC_OK);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  t = rbegin(s);
  mvcc_span sp = span_key("k");
  int64_t count;
  CHECK_INT(mvcc_range(t, &sp, 7, 0, 0, NULL, NULL, &count), ==, MVCC_EFUTURE);
  CHECK_INT(mvcc_range(t, &sp, 3, 0, 0, NULL, NULL, &count), ==, MVCC_ECOMPACTED);
  CHECK_INT(mvcc_range(t, &sp, 4, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 1);
  CHECK_INT(mvcc_range(t, &sp, 0, -1, 0, NULL, NULL, &count), ==, MVCC_EINVAL);
  CHECK_INT(mvcc_range(t, &sp, 0, 0, 2, NULL, NULL, &count), ==, MVCC_EINVAL);
  CHECK_INT(mvcc_range(t, NULL, 0, 0, 0, NULL, NULL, &count), ==, MVCC_EINVAL);
  mvcc_span empty = span_key("");
  CHECK_INT(mvcc_range(t, &empty, 0, 0, 0, NULL, NULL, &count), ==, MVCC_EINVAL);
  char longkey[MVCC_MAX_KEY + 2];
  memset(longkey, 'k', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = 0;
  mvcc_span lk = span_key(longkey);
  CHECK_INT(mvcc_range(t, &lk, 0, 0, 0, NULL, NULL, &count), ==, MVCC_EKEYTOOLONG);
  mvcc_txn_end(t);
  CHECK_INT(tput(s, longkey, "v", 0), ==, MVCC_EKEYTOOLONG);
  CHECK_INT(tput(s, "", "v", 0), ==, MVCC_EINVAL);
  longkey[MVCC_MAX_KEY] = 0; /* exactly the limit is fine */
  CHECK_INT(tput(s, longkey, "v", 0), ==, MVCC_OK);
  CHECK(tget(s, longkey, 0, NULL) != NULL);
  t = rbegin(s);
  CHECK_INT(mvcc_put(t, K("k"), K("v"), 0, NULL), ==, MVCC_EINVAL); /* read txn */
  CHECK_INT(mvcc_compact(t, 5), ==, MVCC_EINVAL);
  CHECK_INT(mvcc_compact_step(t, 10), ==, MVCC_EINVAL);
  mvcc_txn_end(t);
  t = rbegin(s);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_EINVAL); /* ends it too */
  CHECK(strcmp(mvcc_strerror(MVCC_ECOMPACTED), mvcc_strerror(MVCC_EFUTURE)) != 0);
  for (int rc = MVCC_OK; rc >= MVCC_EINVAL; rc--) CHECK(mvcc_strerror(rc) != NULL);
  CHECK_STR(mvcc_strerror(-100), "mvcc: unknown error");
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_past_revisions(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  /* rev: 2 put a=1, 3 put b=1, 4 put a=2, 5 del a, 6 put a=3, 7 del b */
  CHECK_INT(tput(s, "a", "1", 0), ==, MVCC_OK);
  CHECK_INT(tput(s, "b", "1", 0), ==, MVCC_OK);
  CHECK_INT(tput(s, "a", "2", 0), ==, MVCC_OK);
  CHECK_INT(tdel(s, span_key("a"), NULL), ==, MVCC_OK);
  CHECK_INT(tput(s, "a", "3", 0), ==, MVCC_OK);
  CHECK_INT(tdel(s, span_key("b"), NULL), ==, MVCC_OK);
  const char *want_a[] = {NULL, NULL, "1", "1", "2", NULL, "3", "3"};
  const char *want_b[] = {NULL, NULL, NULL, "1", "1", "1", "1", NULL};
  for (int64_t rev = 1; rev <= 7; rev++) {
    int rc;
    const char *a = tget(s, "a", rev, &rc);
    CHECK_INT(rc, ==, MVCC_OK);
    CHECK(want_a[rev] ? a && strcmp(a, want_a[rev]) == 0 : a == NULL);
    const char *b = tget(s, "b", rev, &rc);
    CHECK(want_b[rev] ? b && strcmp(b, want_b[rev]) == 0 : b == NULL);
  }
  tkv_list l = {0};
  CHECK_INT(trange(s, span_key("a"), 4, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_INT(l.v[0].create_rev, ==, 2);
  CHECK_INT(l.v[0].mod_rev, ==, 4);
  CHECK_INT(l.v[0].version, ==, 2);
  tkv_list_clear(&l);
  CHECK_INT(trange(s, span_key("a"), 6, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_INT(l.v[0].create_rev, ==, 6);
  CHECK_INT(l.v[0].version, ==, 1);
  tkv_list_clear(&l);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- compaction */

/* Applies the same history to a store and the model (keys from the
 * model's universe):
 *   x="a": put 2, put 3, del 4, put 8     y="b": put 5, del 6
 *   z="aa": put 7                         w="bb": put 2 (sub 1), put 9 */
static void build_history(mvcc_store *s, model *m) {
  static const char *names[] = {"a", "b", "aa", "bb"};
  int ids[4];
  for (int i = 0; i < 4; i++) {
    ids[i] = -1;
    for (int k = 0; k < m->nkeys; k++)
      if (bytes_cmp(m->keys[k].key, m->keys[k].klen, names[i], strlen(names[i])) == 0) ids[i] = k;
    REQUIRE(ids[i] >= 0);
  }
  struct { int key; bool del; } steps[][2] = {
      {{0, false}, {3, false}}, {{0, false}, {-1, 0}}, {{0, true}, {-1, 0}}, {{1, false}, {-1, 0}},
      {{1, true}, {-1, 0}},     {{2, false}, {-1, 0}}, {{0, false}, {-1, 0}}, {{3, false}, {-1, 0}},
  };
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    mvcc_txn *t = wbegin(s);
    mvcc_rev_begin(t);
    for (int j = 0; j < 2; j++) {
      if (steps[i][j].key < 0) continue;
      const char *name = names[steps[i][j].key];
      int id = ids[steps[i][j].key];
      char val[16];
      snprintf(val, sizeof val, "%s@%zu", name, i + 2);
      if (steps[i][j].del) {
        mvcc_span sp = span_key(name);
        CHECK_INT(mvcc_delete_range(t, &sp, NULL, NULL, NULL), ==, MVCC_OK);
        model_delete(m, &sp, NULL);
      } else {
        CHECK_INT(mvcc_put(t, K(name), K(val), 0, NULL), ==, MVCC_OK);
        model_put(m, id, (const uint8_t *)val, strlen(val), 0, NULL);
      }
    }
    mvcc_rev_end(t);
    model_rev_end(m);
    CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  }
}

static void test_compaction_semantics(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  model m;
  model_init(&m);
  build_history(s, &m);
  CHECK_INT(trev(s), ==, 9);

  mvcc_txn *t = wbegin(s);
  CHECK_INT(mvcc_compact(t, 10), ==, MVCC_EFUTURE);
  mvcc_rev_begin(t);
  CHECK_INT(mvcc_compact(t, 4), ==, MVCC_EINVAL); /* not inside a request */
  mvcc_rev_end(t);
  CHECK_INT(mvcc_compact(t, 4), ==, MVCC_OK);
  CHECK_INT(mvcc_compact_rev(t), ==, 4);
  CHECK_INT(mvcc_compact_done_rev(t), ==, 0);
  CHECK_INT(mvcc_compact(t, 4), ==, MVCC_ECOMPACTED);
  CHECK_INT(mvcc_compact(t, 3), ==, MVCC_ECOMPACTED);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  m.compact_rev = 4;

  /* Logically compacted before any physical step. */
  t = rbegin(s);
  CHECK_INT(model_check_all(&m, t, "compact 4, no steps"), ==, 0);
  /* The deletion of x at exactly the compact revision is kept, so a
   * watcher starting there still sees it. */
  tkv_list l = {0};
  CHECK_INT(mvcc_changes(t, 4, 4, tkv_collect_change, &l), ==, MVCC_OK);
  CHECK(l.n == 1 && l.v[0].is_delete && tkv_is(&l.v[0], "a", ""));
  tkv_list_clear(&l);
  CHECK_INT(mvcc_changes(t, 3, 0, tkv_collect_change, &l), ==, MVCC_ECOMPACTED);
  uint32_t h_before;
  CHECK_INT(mvcc_hash_kv(t, 0, &h_before), ==, MVCC_OK);
  mvcc_txn_end(t);
  int64_t entries_before = hist_entries(s);

  t = wbegin(s);
  int rc;
  int steps = 0;
  while ((rc = mvcc_compact_step(t, 1)) == 1) steps++;
  CHECK_INT(rc, ==, 0);
  CHECK_INT(steps, ==, 3); /* x@2, w@2, x@3, then x@4 finishes */
  CHECK_INT(mvcc_compact_done_rev(t), ==, 4);
  CHECK_INT(mvcc_compact_step(t, 1), ==, 0); /* nothing left */
  CHECK_INT(mvcc_compact_step(t, 0), ==, MVCC_EINVAL);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  /* x@2, x@3 superseded; x@4 (tombstone at 4) and w@2 kept. */
  CHECK_INT(hist_entries(s), ==, entries_before - 2);
  t = rbegin(s);
  CHECK_INT(model_check_all(&m, t, "compact 4, done"), ==, 0);
  uint32_t h_after;
  CHECK_INT(mvcc_hash_kv(t, 0, &h_after), ==, MVCC_OK);
  CHECK_INT(h_after, ==, h_before);
  mvcc_txn_end(t);

  /* Compacting past the tombstone drops it, and y's whole life. */
  t = wbegin(s);
  CHECK_INT(mvcc_compact(t, 7), ==, MVCC_OK);
  CHECK_INT(mvcc_compact_step(t, 1000), ==, 0);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  m.compact_rev = 7;
  /* left: w@2, z@7, x@8, w@9 */
  CHECK_INT(hist_entries(s), ==, 4);
  t = rbegin(s);
  CHECK_INT(model_check_all(&m, t, "compact 7"), ==, 0);
  mvcc_txn_end(t);
  model_free(&m);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* Physical compaction at every step size, with reads checked after every
 * step against the model: physical progress must never show. */
static void test_compaction_steps(void) {
  static const size_t sizes[] = {1, 2, 3, 5, 8, 13, 1000};
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    char *dir;
    mvcc_store *s = topen(&dir);
    model m;
    model_init(&m);
    trng r = {42};
    for (int i = 0; i < 60; i++) {
      mvcc_txn *t = wbegin(s);
      mvcc_rev_begin(t);
      int changes = 1 + (int)trng_below(&r, 3);
      for (int c = 0; c < changes; c++) {
        int k = (int)trng_below(&r, 6) * 9; /* a few keys, many versions */
        if (trng_chance(&r, 25)) {
          mvcc_span sp = {m.keys[k].key, m.keys[k].klen, NULL, 0, false};
          CHECK_INT(mvcc_delete_range(t, &sp, NULL, NULL, NULL), ==, MVCC_OK);
          model_delete(&m, &sp, NULL);
        } else {
          char v[8];
          snprintf(v, sizeof v, "%d", i);
          CHECK_INT(mvcc_put(t, m.keys[k].key, m.keys[k].klen, K(v), 0, NULL), ==, MVCC_OK);
          model_put(&m, k, (const uint8_t *)v, strlen(v), 0, NULL);
        }
      }
      mvcc_rev_end(t);
      model_rev_end(&m);
      CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
    }
    int64_t targets[] = {20, 21, 45, model_cur(&m)};
    uint32_t ref_hash = 0;
    for (int ti = 0; ti < 4; ti++) {
      mvcc_txn *t = wbegin(s);
      CHECK_INT(mvcc_compact(t, targets[ti]), ==, MVCC_OK);
      CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
      m.compact_rev = targets[ti];
      t = rbegin(s);
      CHECK_INT(mvcc_hash_kv(t, 0, &ref_hash), ==, MVCC_OK);
      mvcc_txn_end(t);
      int rc = 1, guard = 0;
      while (rc == 1 && guard++ < 10000) {
        t = wbegin(s);
        rc = mvcc_compact_step(t, sizes[si]);
        CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
        t = rbegin(s);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "step size %zu target %lld", sizes[si], (long long)targets[ti]);
        int bad = model_check_all(&m, t, ctx);
        CHECK_INT(bad, ==, 0);
        uint32_t h;
        CHECK_INT(mvcc_hash_kv(t, 0, &h), ==, MVCC_OK);
        CHECK_INT(h, ==, ref_hash);
        for (int k = 0; k < 6 && !bad; k++)
          for (int64_t mr = targets[ti] + 1; mr <= model_cur(&m) + 1; mr += 3)
            CHECK_INT(model_check_get_before(&m, t, k * 9, mr, 0, ctx), ==, 0);
        mvcc_txn_end(t);
        if (bad) break;
      }
      CHECK_INT(rc, ==, 0);
    }
    model_free(&m);
    mvcc_close(s);
    tmpdir_remove(dir);
  }
}

/* A new compaction while the previous one is half done restarts the pass. */
static void test_compaction_overtaken(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  for (int i = 0; i < 30; i++) CHECK_INT(tput(s, i % 2 ? "a" : "b", "v", 0), ==, MVCC_OK);
  mvcc_txn *t = wbegin(s);
  CHECK_INT(mvcc_compact(t, 10), ==, MVCC_OK);
  CHECK_INT(mvcc_compact_step(t, 3), ==, 1);
  CHECK_INT(mvcc_compact(t, 25), ==, MVCC_OK);
  CHECK_INT(mvcc_compact_done_rev(t), ==, 0);
  while ((mvcc_compact_step(t, 4)) == 1) {
  }
  CHECK_INT(mvcc_compact_done_rev(t), ==, 25);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  /* 25 was b (odd i => a at rev i+2 ... ): keep the newest <= 25 of each, plus 26..31 */
  CHECK_INT(hist_entries(s), ==, 2 + 6);
  mvcc_close(s);
  s = topen_dir(dir);
  t = rbegin(s);
  CHECK_INT(mvcc_compact_rev(t), ==, 25);
  CHECK_INT(mvcc_compact_done_rev(t), ==, 25);
  mvcc_txn_end(t);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- changes, get_before */

static void test_changes(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  CHECK_INT(tput(s, "a", "1", 5), ==, MVCC_OK);  /* 2 */
  CHECK_INT(tput(s, "b", "1", 0), ==, MVCC_OK);  /* 3 */
  CHECK_INT(tput(s, "a", "2", 0), ==, MVCC_OK);  /* 4 */
  CHECK_INT(tdel(s, span_from(""), NULL), ==, MVCC_OK); /* 5: a, b */
  tkv_list l = {0};
  CHECK_INT(collect_changes(s, 0, 0, &l), ==, MVCC_OK);
  REQUIRE(l.n == 5);
  CHECK(tkv_is(&l.v[0], "a", "1") && l.v[0].main == 2 && l.v[0].lease == 5 && l.v[0].version == 1);
  CHECK(tkv_is(&l.v[2], "a", "2") && l.v[2].version == 2 && l.v[2].create_rev == 2);
  CHECK(l.v[3].is_delete && l.v[3].main == 5 && l.v[3].sub == 0 && l.v[3].key[0] == 'a');
  CHECK(l.v[4].is_delete && l.v[4].main == 5 && l.v[4].sub == 1 && l.v[4].key[0] == 'b');
  CHECK(l.v[4].mod_rev == 5 && l.v[4].value_len == 0 && l.v[4].version == 0 && l.v[4].create_rev == 0);
  tkv_list_clear(&l);
  CHECK_INT(collect_changes(s, 3, 4, &l), ==, MVCC_OK);
  CHECK(l.n == 2 && l.v[0].main == 3 && l.v[1].main == 4);
  tkv_list_clear(&l);
  CHECK_INT(collect_changes(s, 6, 0, &l), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 0);
  CHECK_INT(collect_changes(s, 4, 100, &l), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 3);
  tkv_list_clear(&l);
  l.stop_after = 2;
  CHECK_INT(collect_changes(s, 0, 0, &l), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 2);
  tkv_list_clear(&l);
  mvcc_txn *t = rbegin(s);
  CHECK_INT(mvcc_changes(t, 0, 0, NULL, NULL), ==, MVCC_EINVAL);
  mvcc_txn_end(t);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* The allowed nestings: get_before inside changes (prev_kv for watchers),
 * reads inside delete_range's visitor. */
typedef struct {
  mvcc_txn *t;
  int prevs, bad;
} nest_arg;

static int changes_with_prev(void *arg, const mvcc_change *c) {
  nest_arg *a = arg;
  mvcc_kv prev;
  int rc = mvcc_get_before(a->t, c->kv.key, c->kv.key_len, c->main, c->sub, &prev);
  if (rc == MVCC_OK) a->prevs++;
  else if (rc != MVCC_ENOTFOUND) a->bad++;
  return 0;
}

static int delete_and_read(void *arg, const mvcc_kv *kv) {
  nest_arg *a = arg;
  mvcc_span all = span_from("");
  int64_t count;
  tkv_list l = {0};
  if (mvcc_range(a->t, &all, 0, 0, MVCC_RANGE_REVERSE, tkv_collect, &l, &count) != MVCC_OK) a->bad++;
  if (mvcc_range(a->t, &all, 2, 0, 0, tkv_collect, &l, &count) != MVCC_OK) a->bad++;
  tkv_list_clear(&l);
  (void)kv;
  a->prevs++;
  return 0;
}

static void test_visitor_nesting(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  for (int i = 0; i < 30; i++) {
    char k[8];
    snprintf(k, sizeof k, "k%02d", i % 10);
    CHECK_INT(tput(s, k, "v", 0), ==, MVCC_OK);
  }
  mvcc_txn *t = rbegin(s);
  nest_arg a = {.t = t};
  CHECK_INT(mvcc_changes(t, 0, 0, changes_with_prev, &a), ==, MVCC_OK);
  CHECK_INT(a.prevs, ==, 20); /* every put but each key's first */
  CHECK_INT(a.bad, ==, 0);
  mvcc_txn_end(t);
  t = wbegin(s);
  a = (nest_arg){.t = t};
  mvcc_span sp = span_range("k03", "k08");
  int64_t n;
  CHECK_INT(mvcc_delete_range(t, &sp, delete_and_read, &a, &n), ==, MVCC_OK);
  CHECK_INT(n, ==, 5);
  CHECK_INT(a.prevs, ==, 5);
  CHECK_INT(a.bad, ==, 0);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  tkv_list l = {0};
  int64_t count;
  CHECK_INT(trange(s, span_from(""), 0, 0, 0, &l, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 5);
  CHECK(l.n == 5 && tkv_is(&l.v[3], "k08", "v"));
  tkv_list_clear(&l);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_get_before(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  CHECK_INT(tput(s, "a", "1", 0), ==, MVCC_OK);         /* 2 */
  CHECK_INT(tput(s, "a", "2", 0), ==, MVCC_OK);         /* 3 */
  CHECK_INT(tdel(s, span_key("a"), NULL), ==, MVCC_OK); /* 4 */
  CHECK_INT(tput(s, "a", "3", 0), ==, MVCC_OK);         /* 5 */
  mvcc_txn *t = wbegin(s);
  mvcc_rev_begin(t);
  CHECK_INT(mvcc_put(t, K("a"), K("4"), 0, NULL), ==, MVCC_OK); /* 6.0 */
  CHECK_INT(mvcc_put(t, K("a"), K("5"), 0, NULL), ==, MVCC_OK); /* 6.1 */
  mvcc_rev_end(t);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  t = rbegin(s);
  mvcc_kv kv;
  CHECK_INT(mvcc_get_before(t, K("a"), 2, 0, &kv), ==, MVCC_ENOTFOUND); /* creation */
  CHECK_INT(mvcc_get_before(t, K("a"), 3, 0, &kv), ==, MVCC_OK);
  CHECK_MEM(kv.value, kv.value_len, "1", 1);
  CHECK_INT(kv.mod_rev, ==, 2);
  CHECK_INT(mvcc_get_before(t, K("a"), 4, 0, &kv), ==, MVCC_OK); /* prev of the delete */
  CHECK_MEM(kv.value, kv.value_len, "2", 1);
  CHECK_INT(kv.version, ==, 2);
  CHECK_INT(mvcc_get_before(t, K("a"), 5, 0, &kv), ==, MVCC_ENOTFOUND); /* re-creation */
  CHECK_INT(mvcc_get_before(t, K("a"), 6, 1, &kv), ==, MVCC_OK);        /* same revision */
  CHECK_MEM(kv.value, kv.value_len, "4", 1);
  CHECK_INT(mvcc_get_before(t, K("a"), 7, 0, &kv), ==, MVCC_OK); /* the current one */
  CHECK_MEM(kv.value, kv.value_len, "5", 1);
  CHECK_INT(kv.version, ==, 3);
  CHECK_INT(kv.create_rev, ==, 5);
  CHECK_INT(mvcc_get_before(t, K("a"), 8, 0, &kv), ==, MVCC_EFUTURE);
  CHECK_INT(mvcc_get_before(t, K("zz"), 6, 0, &kv), ==, MVCC_ENOTFOUND);
  CHECK_INT(mvcc_get_before(t, K(""), 6, 0, &kv), ==, MVCC_EINVAL);
  CHECK_INT(mvcc_get_before(t, K("a"), 0, 0, &kv), ==, MVCC_EINVAL);
  mvcc_txn_end(t);
  t = wbegin(s);
  CHECK_INT(mvcc_compact(t, 4), ==, MVCC_OK);
  CHECK_INT(mvcc_compact_step(t, 100), ==, 0);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  t = rbegin(s);
  CHECK_INT(mvcc_get_before(t, K("a"), 4, 0, &kv), ==, MVCC_ECOMPACTED);
  CHECK_INT(mvcc_get_before(t, K("a"), 5, 0, &kv), ==, MVCC_ENOTFOUND);
  CHECK_INT(mvcc_get_before(t, K("a"), 6, 0, &kv), ==, MVCC_OK);
  CHECK_MEM(kv.value, kv.value_len, "3", 1);
  mvcc_txn_end(t);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- leases */

static char *lease_keys_str(mvcc_store *s, int64_t lease) {
  static char out[256];
  tkv_list l = {0};
  mvcc_txn *t = rbegin(s);
  int rc = mvcc_lease_keys(t, lease, tkv_collect, &l);
  mvcc_txn_end(t);
  out[0] = 0;
  if (rc) snprintf(out, sizeof out, "error %d", rc);
  for (size_t i = 0; i < l.n; i++) {
    if (i) strcat(out, " ");
    strncat(out, (const char *)l.v[i].key, l.v[i].key_len);
  }
  tkv_list_clear(&l);
  return out;
}

static int delete_visited(void *arg, const mvcc_kv *kv) {
  mvcc_txn *t = arg;
  mvcc_span sp = {kv->key, kv->key_len, NULL, 0, false};
  return mvcc_delete_range(t, &sp, NULL, NULL, NULL);
}

static void test_lease_keys(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  CHECK_INT(tput(s, "b", "v", 1), ==, MVCC_OK);
  CHECK_INT(tput(s, "a", "v", 1), ==, MVCC_OK);
  CHECK_INT(tput(s, "c", "v", 2), ==, MVCC_OK);
  CHECK_STR(lease_keys_str(s, 1), "a b");
  CHECK_STR(lease_keys_str(s, 2), "c");
  CHECK_STR(lease_keys_str(s, 3), "");
  CHECK_INT(tput(s, "a", "v2", 2), ==, MVCC_OK); /* move */
  CHECK_STR(lease_keys_str(s, 1), "b");
  CHECK_STR(lease_keys_str(s, 2), "a c");
  CHECK_INT(tput(s, "c", "v2", 0), ==, MVCC_OK); /* detach */
  CHECK_STR(lease_keys_str(s, 2), "a");
  CHECK_INT(tdel(s, span_key("a"), NULL), ==, MVCC_OK); /* delete detaches */
  CHECK_STR(lease_keys_str(s, 2), "");
  CHECK_INT(tput(s, "a", "v3", 2), ==, MVCC_OK);
  CHECK_INT(tput(s, "a", "v4", 2), ==, MVCC_OK); /* same lease again */
  CHECK_STR(lease_keys_str(s, 2), "a");
  CHECK_INT(tput(s, "neg", "v", -5), ==, MVCC_OK);
  CHECK_STR(lease_keys_str(s, -5), "neg");
  for (int i = 0; i < 50; i++) {
    char k[16];
    snprintf(k, sizeof k, "r%02d", i);
    CHECK_INT(tput(s, k, "v", 9), ==, MVCC_OK);
  }
  /* Revocation: the visitor deletes each key as it is visited. */
  mvcc_txn *t = wbegin(s);
  mvcc_rev_begin(t);
  CHECK_INT(mvcc_lease_keys(t, 9, delete_visited, t), ==, MVCC_OK);
  mvcc_rev_end(t);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  CHECK_STR(lease_keys_str(s, 9), "");
  tkv_list l = {0};
  int64_t count;
  CHECK_INT(trange(s, span_range("r", "s"), 0, 0, 0, &l, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 0);
  /* Persisted: no rebuild needed after reopen. */
  mvcc_close(s);
  s = topen_dir(dir);
  CHECK_STR(lease_keys_str(s, 1), "b");
  CHECK_STR(lease_keys_str(s, 2), "a");
  t = rbegin(s);
  CHECK_INT(mvcc_lease_keys(t, 1, NULL, NULL), ==, MVCC_EINVAL);
  mvcc_txn_end(t);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- aux, applied */

static int aux_count(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
  (void)k; (void)kl; (void)v; (void)vl;
  (*(int *)arg)++;
  return 0;
}

static void test_aux_tables(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  mvcc_txn *t = wbegin(s);
  for (int tbl = 0; tbl < MVCC_AUX_COUNT; tbl++) {
    char k[8], v[8];
    for (int i = 0; i <= tbl; i++) {
      snprintf(k, sizeof k, "k%d", i);
      snprintf(v, sizeof v, "t%d", tbl);
      CHECK_INT(mvcc_aux_put(t, (mvcc_aux_table)tbl, k, strlen(k), v, strlen(v)), ==, MVCC_OK);
    }
  }
  const uint8_t *val;
  size_t vlen;
  CHECK_INT(mvcc_aux_get(t, MVCC_AUX_AUTH, "k0", 2, &val, &vlen), ==, MVCC_OK); /* own writes */
  CHECK_MEM(val, vlen, "t4", 2);
  CHECK_INT(mvcc_aux_put(t, MVCC_AUX_COUNT, "k", 1, "v", 1), ==, MVCC_EINVAL);
  CHECK_INT(mvcc_aux_put(t, MVCC_AUX_META, "", 0, "v", 1), ==, MVCC_EINVAL);
  char longkey[MVCC_MAX_KEY + 1];
  memset(longkey, 'k', sizeof longkey);
  CHECK_INT(mvcc_aux_put(t, MVCC_AUX_META, longkey, sizeof longkey, "v", 1), ==, MVCC_EKEYTOOLONG);
  CHECK_INT(mvcc_aux_put(t, MVCC_AUX_META, "empty", 5, NULL, 0), ==, MVCC_OK);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  CHECK_INT(trev(s), ==, 1); /* aux writes are not key changes */

  /* An aborted write leaves no trace. */
  t = wbegin(s);
  CHECK_INT(mvcc_aux_put(t, MVCC_AUX_LEASES, "gone", 4, "x", 1), ==, MVCC_OK);
  CHECK_INT(mvcc_aux_del(t, MVCC_AUX_LEASES, "k0", 2), ==, MVCC_OK);
  mvcc_txn_end(t);

  mvcc_close(s);
  s = topen_dir(dir);
  t = rbegin(s);
  for (int tbl = 0; tbl < MVCC_AUX_COUNT; tbl++) {
    int n = 0;
    CHECK_INT(mvcc_aux_scan(t, (mvcc_aux_table)tbl, aux_count, &n), ==, MVCC_OK);
    CHECK_INT(n, ==, tbl + 1 + (tbl == MVCC_AUX_META));
  }
  CHECK_INT(mvcc_aux_get(t, MVCC_AUX_LEASES, "gone", 4, &val, &vlen), ==, MVCC_ENOTFOUND);
  CHECK_INT(mvcc_aux_get(t, MVCC_AUX_LEASES, "k0", 2, &val, &vlen), ==, MVCC_OK);
  CHECK_MEM(val, vlen, "t1", 2);
  CHECK_INT(mvcc_aux_get(t, MVCC_AUX_META, "empty", 5, &val, &vlen), ==, MVCC_OK);
  CHECK_INT(vlen, ==, 0);
  CHECK_INT(mvcc_aux_put(t, MVCC_AUX_META, "k", 1, "v", 1), ==, MVCC_EINVAL); /* read txn */
  CHECK_INT(mvcc_aux_del(t, MVCC_AUX_META, "k", 1), ==, MVCC_EINVAL);
  CHECK_INT(mvcc_aux_scan(t, MVCC_AUX_META, NULL, NULL), ==, MVCC_EINVAL);
  mvcc_txn_end(t);
  t = wbegin(s);
  CHECK_INT(mvcc_aux_del(t, MVCC_AUX_ALARMS, "k0", 2), ==, MVCC_OK);
  CHECK_INT(mvcc_aux_del(t, MVCC_AUX_ALARMS, "k0", 2), ==, MVCC_ENOTFOUND);
  CHECK_INT(mvcc_aux_get(t, MVCC_AUX_ALARMS, "k0", 2, &val, &vlen), ==, MVCC_ENOTFOUND);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_applied_roundtrip(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  mvcc_txn *t = wbegin(s);
  mvcc_set_applied(t, 12345678901ull, 7);
  uint64_t index, term;
  mvcc_applied(t, &index, &term);
  CHECK_INT(index, ==, 12345678901ull);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  t = wbegin(s);
  mvcc_set_applied(t, 99, 9);
  mvcc_txn_end(t); /* aborted */
  mvcc_close(s);
  s = topen_dir(dir);
  t = rbegin(s);
  mvcc_applied(t, &index, &term);
  CHECK_INT(index, ==, 12345678901ull);
  CHECK_INT(term, ==, 7);
  mvcc_txn_end(t);
  /* Opening checkpoints at once: the applied index is durable. */
  CHECK_INT(mvcc_durable_index(s), ==, 12345678901ull);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_abort_leaves_no_trace(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  for (int i = 0; i < 10; i++) CHECK_INT(tput(s, i % 2 ? "a" : "b", "v", i % 3), ==, MVCC_OK);
  mvcc_txn *t = rbegin(s);
  uint32_t h0;
  CHECK_INT(mvcc_hash_kv(t, 0, &h0), ==, MVCC_OK);
  mvcc_txn_end(t);
  mvcc_stats st0;
  CHECK_INT(mvcc_stats_get(s, &st0), ==, MVCC_OK);

  t = wbegin(s);
  CHECK_INT(mvcc_put(t, K("c"), K("new"), 1, NULL), ==, MVCC_OK);
  mvcc_span all = span_from("");
  CHECK_INT(mvcc_delete_range(t, &all, NULL, NULL, NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_compact(t, 5), ==, MVCC_OK);
  CHECK_INT(mvcc_compact_step(t, 100), ==, 0);
  mvcc_set_applied(t, 5, 5);
  mvcc_txn_end(t);

  t = rbegin(s);
  CHECK_INT(mvcc_rev(t), ==, 11);
  CHECK_INT(mvcc_compact_rev(t), ==, 0);
  uint32_t h1;
  CHECK_INT(mvcc_hash_kv(t, 0, &h1), ==, MVCC_OK);
  CHECK_INT(h1, ==, h0);
  uint64_t index;
  mvcc_applied(t, &index, NULL);
  CHECK_INT(index, ==, 0);
  mvcc_txn_end(t);
  CHECK_STR(lease_keys_str(s, 2), "b");
  CHECK_STR(lease_keys_str(s, 1), "");
  mvcc_stats st1;
  CHECK_INT(mvcc_stats_get(s, &st1), ==, MVCC_OK);
  CHECK_INT(st1.keys, ==, st0.keys);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- concurrency */

typedef struct {
  mvcc_store *s;
  _Atomic int stop;
  int failures;
  int snapshots;
} reader_arg;

/* Every key holds the same number, written in one transaction: a reader
 * sees all keys equal, and the same values on a second pass. */
static void *reader_main(void *p) {
  reader_arg *a = p;
  while (!atomic_load(&a->stop)) {
    mvcc_txn *t;
    if (mvcc_read_begin(a->s, &t)) {
      a->failures++;
      break;
    }
    int64_t rev = mvcc_rev(t);
    tkv_list l1 = {0}, l2 = {0};
    mvcc_span all = span_from("");
    int64_t c1, c2;
    int rc1 = mvcc_range(t, &all, 0, 0, 0, tkv_collect, &l1, &c1);
    usleep(200);
    int rc2 = mvcc_range(t, &all, 0, 0, 0, tkv_collect, &l2, &c2);
    if (rc1 || rc2 || c1 != c2 || l1.n != l2.n || mvcc_rev(t) != rev) a->failures++;
    for (size_t i = 0; i < l1.n && i < l2.n; i++) {
      if (bytes_cmp(l1.v[i].value, l1.v[i].value_len, l2.v[i].value, l2.v[i].value_len) != 0 ||
          bytes_cmp(l1.v[i].value, l1.v[i].value_len, l1.v[0].value, l1.v[0].value_len) != 0 ||
          l1.v[i].mod_rev != rev)
        a->failures++;
    }
    tkv_list_clear(&l1);
    tkv_list_clear(&l2);
    mvcc_txn_end(t);
    a->snapshots++;
  }
  return NULL;
}

static void test_concurrent_readers(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  reader_arg a[3] = {{.s = s}, {.s = s}, {.s = s}};
  pthread_t th[3];
  CHECK_INT(tput(s, "k0", "0", 0), ==, MVCC_OK);
  for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, reader_main, &a[i]);
  for (int round = 1; round <= 300; round++) {
    mvcc_txn *t = wbegin(s);
    char v[16];
    snprintf(v, sizeof v, "%d", round);
    mvcc_rev_begin(t);
    for (int k = 0; k < 20; k++) {
      char key[8];
      snprintf(key, sizeof key, "k%d", k);
      CHECK_INT(mvcc_put(t, K(key), K(v), 0, NULL), ==, MVCC_OK);
    }
    mvcc_rev_end(t);
    CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
    if (round % 50 == 0) CHECK_INT(mvcc_checkpoint(s), ==, MVCC_OK);
  }
  for (int i = 0; i < 3; i++) {
    atomic_store(&a[i].stop, 1);
    pthread_join(th[i], NULL);
    CHECK_INT(a[i].failures, ==, 0);
    CHECK(a[i].snapshots > 0);
  }
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- space, stats, hash */

static void test_enospace(void) {
  char *dir = tmpdir_new();
  mvcc_options o = {.dir = dir, .map_size = 1 << 20, .checkpoint_ms = 3600000};
  mvcc_store *s;
  REQUIRE_EQ(mvcc_open(&o, &s), MVCC_OK);
  char value[1000];
  memset(value, 'v', sizeof value);
  int rc = MVCC_OK, committed = 0;
  for (int i = 0; i < 10000 && !rc; i++) {
    mvcc_txn *t = wbegin(s);
    for (int j = 0; j < 10 && !rc; j++) {
      char key[32];
      snprintf(key, sizeof key, "key-%06d", i * 10 + j);
      rc = mvcc_put(t, K(key), (const uint8_t *)value, sizeof value, 0, NULL);
    }
    if (rc) {
      CHECK_INT(rc, ==, MVCC_ENOSPACE);
      /* The transaction is poisoned: every later call fails alike. */
      CHECK_INT(mvcc_put(t, K("x"), K("y"), 0, NULL), ==, MVCC_ENOSPACE);
      CHECK_INT(mvcc_write_commit(t), ==, MVCC_ENOSPACE);
    } else {
      rc = mvcc_write_commit(t);
      if (!rc) committed++;
      else CHECK_INT(rc, ==, MVCC_ENOSPACE);
    }
  }
  CHECK_INT(rc, ==, MVCC_ENOSPACE);
  CHECK(committed > 0);
  /* Everything committed is there, nothing of the failed transaction. */
  mvcc_txn *t = rbegin(s);
  mvcc_span all = span_from("");
  int64_t count;
  CHECK_INT(mvcc_range(t, &all, 0, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, committed * 10);
  CHECK_INT(mvcc_rev(t), ==, 1 + committed * 10);
  mvcc_txn_end(t);
  /* The store still works for what fits. */
  t = wbegin(s);
  mvcc_span one = span_key("key-000000");
  rc = mvcc_delete_range(t, &one, NULL, NULL, NULL);
  CHECK(rc == MVCC_OK || rc == MVCC_ENOSPACE);
  mvcc_write_commit(t);
  mvcc_close(s);
  REQUIRE_EQ(mvcc_open(&o, &s), MVCC_OK);
  t = rbegin(s);
  CHECK(mvcc_rev(t) >= 1 + committed * 10);
  mvcc_txn_end(t);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_stats(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  REQUIRE_EQ(tfill(s, 2000, 100, 256), MVCC_OK);
  mvcc_stats st;
  CHECK_INT(mvcc_stats_get(s, &st), ==, MVCC_OK);
  CHECK_INT(st.keys, ==, 2000);
  CHECK(st.db_size >= 2000 * 256); /* every value is in hist */
  CHECK(st.db_size_in_use > 0 && st.db_size_in_use <= st.db_size);
  CHECK_INT(tdel(s, span_from(""), NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_stats_get(s, &st), ==, MVCC_OK);
  CHECK_INT(st.keys, ==, 0);
  CHECK_INT(mvcc_stats_get(NULL, &st), ==, MVCC_EINVAL);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_hash(void) {
  char *d1, *d2;
  mvcc_store *s1 = topen(&d1), *s2 = topen(&d2);
  mvcc_store *both[2] = {s1, s2};
  for (int i = 0; i < 40; i++) {
    char k[8], v[8];
    snprintf(k, sizeof k, "k%d", i % 7);
    snprintf(v, sizeof v, "%d", i);
    for (int j = 0; j < 2; j++) {
      if (i % 5 == 4) CHECK_INT(tdel(both[j], span_key(k), NULL), ==, MVCC_OK);
      else CHECK_INT(tput(both[j], k, v, i % 3), ==, MVCC_OK);
    }
  }
  uint32_t h1, h2, h20;
  mvcc_txn *t1 = rbegin(s1), *t2 = rbegin(s2);
  CHECK_INT(mvcc_hash_kv(t1, 0, &h1), ==, MVCC_OK);
  CHECK_INT(mvcc_hash_kv(t2, 0, &h2), ==, MVCC_OK);
  CHECK_INT(h1, ==, h2);
  CHECK_INT(mvcc_hash_kv(t1, 20, &h20), ==, MVCC_OK);
  CHECK(h20 != h1);
  CHECK_INT(mvcc_hash_kv(t1, 1000, &h1), ==, MVCC_EFUTURE);
  mvcc_txn_end(t1);
  mvcc_txn_end(t2);
  /* Compact both at 30; only s1 does the physical work. */
  for (int j = 0; j < 2; j++) {
    mvcc_txn *t = wbegin(both[j]);
    CHECK_INT(mvcc_compact(t, 30), ==, MVCC_OK);
    if (j == 0) CHECK_INT(mvcc_compact_step(t, 1000), ==, 0);
    CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  }
  CHECK(hist_entries(s1) < hist_entries(s2));
  t1 = rbegin(s1);
  t2 = rbegin(s2);
  CHECK_INT(mvcc_hash_kv(t1, 0, &h1), ==, MVCC_OK);
  CHECK_INT(mvcc_hash_kv(t2, 0, &h2), ==, MVCC_OK);
  CHECK_INT(h1, ==, h2);
  uint32_t h35a, h35b;
  CHECK_INT(mvcc_hash_kv(t1, 35, &h35a), ==, MVCC_OK);
  CHECK_INT(mvcc_hash_kv(t1, 29, &h1), ==, MVCC_ECOMPACTED);
  mvcc_txn_end(t1);
  mvcc_txn_end(t2);
  /* Later writes do not change the hash of an earlier revision; a
   * different value does change the current one. */
  CHECK_INT(tput(s1, "k1", "other", 0), ==, MVCC_OK);
  CHECK_INT(tput(s2, "k1", "another", 0), ==, MVCC_OK);
  t1 = rbegin(s1);
  t2 = rbegin(s2);
  CHECK_INT(mvcc_hash_kv(t1, 35, &h35b), ==, MVCC_OK);
  CHECK_INT(h35a, ==, h35b);
  CHECK_INT(mvcc_hash_kv(t1, 0, &h1), ==, MVCC_OK);
  CHECK_INT(mvcc_hash_kv(t2, 0, &h2), ==, MVCC_OK);
  CHECK(h1 != h2);
  mvcc_txn_end(t1);
  mvcc_txn_end(t2);
  mvcc_close(s1);
  mvcc_close(s2);
  tmpdir_remove(d1);
  tmpdir_remove(d2);
}

/* ---------------------------------------------------------------- persistence */

static void test_reopen_and_checkpoint(void) {
  char *dir = tmpdir_new();
  mvcc_options o = {.dir = dir, .checkpoint_ms = 20};
  mvcc_store *s;
  REQUIRE_EQ(mvcc_open(&o, &s), MVCC_OK);
  for (uint64_t i = 1; i <= 5; i++) {
    mvcc_txn *t = wbegin(s);
    char v[8];
    snprintf(v, sizeof v, "%llu", (unsigned long long)i);
    CHECK_INT(mvcc_put(t, K("k"), K(v), 0, NULL), ==, MVCC_OK);
    mvcc_set_applied(t, i, 1);
    CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  }
  /* The background thread catches up by itself. */
  for (int i = 0; i < 200 && mvcc_durable_index(s) != 5; i++) usleep(5000);
  CHECK_INT(mvcc_durable_index(s), ==, 5);
  mvcc_txn *t = wbegin(s);
  mvcc_set_applied(t, 6, 1);
  CHECK_INT(mvcc_compact(t, 4), ==, MVCC_OK);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  CHECK_INT(mvcc_checkpoint(s), ==, MVCC_OK);
  CHECK_INT(mvcc_durable_index(s), ==, 6);
  CHECK_INT(mvcc_checkpoint(s), ==, MVCC_OK); /* nothing new: a no-op */
  mvcc_close(s);
  /* A clean close leaves the marker "clean". */
  char path[600];
  snprintf(path, sizeof path, "%s/marker", dir);
  uint8_t *data;
  size_t n;
  REQUIRE_EQ(read_file(path, &data, &n), 0);
  CHECK(n > 6 && memcmp(data, "clean ", 6) == 0);
  free(data);
  REQUIRE_EQ(mvcc_open(&o, &s), MVCC_OK);
  int rc;
  const char *v = tget(s, "k", 0, &rc);
  CHECK(v && strcmp(v, "5") == 0);
  t = rbegin(s);
  CHECK_INT(mvcc_rev(t), ==, 6);
  CHECK_INT(mvcc_compact_rev(t), ==, 4);
  mvcc_txn_end(t);
  CHECK(tget(s, "k", 3, &rc) == NULL && rc == MVCC_ECOMPACTED);
  CHECK_INT(mvcc_durable_index(s), ==, 6);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* With tiny growth limits: commits wake the checkpoint thread early, and a
 * writer that outruns it waits for checkpoints instead of deadlocking. */
static void test_growth_checkpoints(void) {
  mvcc_test_set_growth(64 << 10, 256 << 10);
  char *dir;
  mvcc_store *s = topen(&dir); /* checkpoint_ms: an hour */
  mvcc_test_set_growth(0, 0);
  char value[2000];
  memset(value, 'v', sizeof value);
  uint64_t index = 0;
  for (int batch = 0; batch < 100; batch++) {
    mvcc_txn *t = wbegin(s);
    for (int i = 0; i < 20; i++) {
      char key[32];
      snprintf(key, sizeof key, "key-%04d", (batch * 37 + i * 11) % 500);
      CHECK_INT(mvcc_put(t, K(key), (const uint8_t *)value, sizeof value, 0, NULL), ==, MVCC_OK);
    }
    mvcc_set_applied(t, ++index, 1);
    CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  }
  /* Only growth could have triggered these checkpoints. */
  for (int i = 0; i < 200 && mvcc_durable_index(s) < 50; i++) usleep(5000);
  CHECK(mvcc_durable_index(s) >= 50);
  mvcc_stats st;
  CHECK_INT(mvcc_stats_get(s, &st), ==, MVCC_OK);
  /* ~4 MB of changes, 1 MB live: the pin never held back much. */
  CHECK(st.db_size < 16 << 20);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_large_values(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  size_t n = 200 * 1024;
  uint8_t *big = xmalloc(n);
  for (size_t i = 0; i < n; i++) big[i] = (uint8_t)(i * 7);
  mvcc_txn *t = wbegin(s);
  CHECK_INT(mvcc_put(t, K("big"), big, n, 0, NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  CHECK_INT(tput(s, "big", "small", 0), ==, MVCC_OK);
  tkv_list l = {0};
  CHECK_INT(trange(s, span_key("big"), 2, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_MEM(l.v[0].value, l.v[0].value_len, big, n);
  tkv_list_clear(&l);
  CHECK_INT(collect_changes(s, 2, 2, &l), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_MEM(l.v[0].value, l.v[0].value_len, big, n);
  tkv_list_clear(&l);
  free(big);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* A key with many versions: LMDB moves its dups to a sub-database, and the
 * current version (the last dup), a past one, get_before, a delete and a
 * count must all still be right. */
static void test_hot_key(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  mvcc_txn *t = wbegin(s);
  CHECK_INT(mvcc_put(t, K("cold"), K("c"), 0, NULL), ==, MVCC_OK); /* rev 2 */
  int versions = 20000;
  for (int i = 1; i <= versions; i++) {
    char v[16];
    snprintf(v, sizeof v, "v%d", i);
    CHECK_INT(mvcc_put(t, K("hot"), K(v), 0, NULL), ==, MVCC_OK); /* rev 2 + i */
  }
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  CHECK_INT(tput(s, "zz", "z", 0), ==, MVCC_OK);
  int rc;
  const char *v = tget(s, "hot", 0, &rc);
  CHECK(v && strcmp(v, "v20000") == 0);
  v = tget(s, "hot", 2 + 777, &rc);
  CHECK(v && strcmp(v, "v777") == 0);
  tkv_list l = {0};
  CHECK_INT(trange(s, span_key("hot"), 0, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_INT(l.v[0].version, ==, versions);
  CHECK_INT(l.v[0].create_rev, ==, 3);
  tkv_list_clear(&l);
  t = rbegin(s);
  mvcc_kv kv;
  CHECK_INT(mvcc_get_before(t, K("hot"), 2 + 5000, 0, &kv), ==, MVCC_OK);
  CHECK_MEM(kv.value, kv.value_len, "v4999", 5);
  mvcc_txn_end(t);
  /* Walking past the hot key visits each key once. */
  int64_t count;
  CHECK_INT(trange(s, span_from("a"), 0, 0, 0, &l, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 3);
  CHECK_INT(l.n, ==, 3);
  tkv_list_clear(&l);
  CHECK_INT(trange(s, span_from(""), 0, 0, MVCC_RANGE_REVERSE, &l, NULL), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 3);
  tkv_list_clear(&l);
  CHECK_INT(tdel(s, span_key("hot"), NULL), ==, MVCC_OK);
  CHECK(tget(s, "hot", 0, &rc) == NULL && rc == MVCC_OK);
  CHECK_INT(tput(s, "hot", "again", 0), ==, MVCC_OK);
  CHECK_INT(trange(s, span_key("hot"), 0, 0, 0, &l, NULL), ==, MVCC_OK);
  REQUIRE(l.n == 1);
  CHECK_INT(l.v[0].version, ==, 1);
  tkv_list_clear(&l);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* The key index's tail (tail.c): updates of a key kidx holds stay in
 * memory until a flush writes them to kidx. A reader that began before a
 * flush keeps reading its snapshot while the tail holds what the flush
 * wrote; a reader that began after it must not take those entries for
 * current ones, even when compaction removed the key from kidx and a put
 * brought it back as a new key. */
static void test_index_tail(void) {
  mvcc_test_set_tail_max(2);
  char *dir;
  mvcc_store *s = topen(&dir);
  int rc;
  REQUIRE_EQ(tput(s, "a", "1", 0), MVCC_OK); /* 2: a new key, to kidx */
  REQUIRE_EQ(tput(s, "a", "2", 0), MVCC_OK); /* 3: to the tail */
  mvcc_txn *old;
  REQUIRE_EQ(mvcc_read_begin(s, &old), MVCC_OK);
  REQUIRE_EQ(tdel(s, span_key("a"), NULL), MVCC_OK); /* 4: the tail reaches 2, flushed */
  REQUIRE_EQ(tput(s, "b", "1", 0), MVCC_OK);         /* 5 */
  mvcc_txn *t = wbegin(s);
  REQUIRE_EQ(mvcc_compact(t, 5), MVCC_OK);
  while (mvcc_compact_step(t, 100) == 1) {}
  REQUIRE_EQ(mvcc_write_commit(t), MVCC_OK);
  /* Every entry of a is gone from kidx; a put makes it a new key again. */
  REQUIRE_EQ(tput(s, "a", "3", 0), MVCC_OK); /* 6 */
  mvcc_txn *r;
  REQUIRE_EQ(mvcc_read_begin(s, &r), MVCC_OK);
  mvcc_span sa = span_key("a");
  tkv_list l = {0};
  CHECK_INT(mvcc_range(r, &sa, 0, 0, 0, tkv_collect, &l, NULL), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 1);
  if (l.n == 1) {
    CHECK_INT(l.v[0].mod_rev, ==, 6);
    CHECK_INT(l.v[0].create_rev, ==, 6);
    CHECK_INT(l.v[0].version, ==, 1);
  }
  tkv_list_clear(&l);
  mvcc_txn_end(r);
  /* The old reader still sees a = "2" (the tail's entry at 3). */
  CHECK_INT(mvcc_range(old, &sa, 0, 0, 0, tkv_collect, &l, NULL), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 1);
  if (l.n == 1) {
    CHECK_INT(l.v[0].mod_rev, ==, 3);
    CHECK_INT(l.v[0].version, ==, 2);
  }
  tkv_list_clear(&l);
  mvcc_txn_end(old);
  REQUIRE_EQ(tput(s, "a", "4", 0), MVCC_OK); /* 7: the purge may run now */
  CHECK_STR(tget(s, "a", 0, &rc), "4");
  CHECK_STR(tget(s, "a", 6, &rc), "3");
  /* Reopened without a flush, the tail is rebuilt from history. */
  mvcc_test_set_close_flush(false);
  mvcc_close(s);
  mvcc_test_set_close_flush(true);
  s = topen_dir(dir);
  CHECK_STR(tget(s, "a", 0, &rc), "4");
  CHECK_STR(tget(s, "a", 6, &rc), "3");
  CHECK(tget(s, "a", 4, &rc) == NULL);
  CHECK_INT(rc, ==, MVCC_ECOMPACTED);
  mvcc_close(s);
  tmpdir_remove(dir);

  /* New keys never enter the tail, but they count toward a flush too: an
   * open replays fewer than TAIL_MAX changes, however many were made. */
  mvcc_test_set_tail_max(4);
  s = topen(&dir);
  for (int i = 0; i < 30; i++) {
    char k[16];
    snprintf(k, sizeof k, "n%02d", i);
    REQUIRE_EQ(tput(s, k, "v", 0), MVCC_OK);
  }
  REQUIRE_EQ(tput(s, "n00", "w", 0), MVCC_OK);
  mvcc_test_set_close_flush(false);
  mvcc_close(s);
  mvcc_test_set_close_flush(true);
  s = topen_dir(dir);
  CHECK_INT(s->tail.pending, <, 4);
  CHECK_STR(tget(s, "n00", 0, &rc), "w");
  CHECK_STR(tget(s, "n29", 0, &rc), "v");
  mvcc_close(s);
  tmpdir_remove(dir);
  mvcc_test_set_tail_max(0);
}

int main(void) {
  log_set_level(getenv("SYNOD_LOG") ? LOG_DEBUG : LOG_FATAL);
  RUN(test_open_errors);
  RUN(test_empty_store);
  RUN(test_revisions_and_versions);
  RUN(test_put_prev);
  RUN(test_multi_change_request);
  RUN(test_delete_range);
  RUN(test_range_spans);
  RUN(test_range_errors);
  RUN(test_past_revisions);
  RUN(test_compaction_semantics);
  RUN(test_compaction_steps);
  RUN(test_compaction_overtaken);
  RUN(test_changes);
  RUN(test_get_before);
  RUN(test_visitor_nesting);
  RUN(test_lease_keys);
  RUN(test_aux_tables);
  RUN(test_applied_roundtrip);
  RUN(test_abort_leaves_no_trace);
  RUN(test_concurrent_readers);
  RUN(test_enospace);
  RUN(test_stats);
  RUN(test_hash);
  RUN(test_reopen_and_checkpoint);
  RUN(test_growth_checkpoints);
  RUN(test_large_values);
  RUN(test_hot_key);
  RUN(test_index_tail);
  return testing_done();
}
