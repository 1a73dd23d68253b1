/* concurrency/: ownership evaluation, the waiter index, cancellation,
 * observers (order, lagging and catch-up), and a randomized check that a
 * lock is never granted to two keys that exist at once. */
#include "concurrency.h"
#include "mvcc_testutil.h"
#include "testing.h"

#include <stdio.h>

static mvcc_store *st;
static char *dir;
static cc_table *tab;

static void setup(void) {
  st = topen(&dir);
  cc_options o = {.store = st, .observer_queue_limit = 100, .catchup_revisions = 3};
  tab = cc_table_new(&o);
}

static void teardown(void) {
  cc_table_free(tab);
  mvcc_close(st);
  tmpdir_remove(dir);
}

static int64_t create_rev_of(const char *key) {
  mvcc_txn *t;
  mvcc_read_begin(st, &t);
  tkv_list l = {0};
  mvcc_span s = span_key(key);
  mvcc_range(t, &s, 0, 0, 0, tkv_collect, &l, NULL);
  int64_t r = l.n ? l.v[0].create_rev : 0;
  tkv_list_clear(&l);
  mvcc_txn_end(t);
  return r;
}

static void del(const char *key) { tdel(st, span_key(key), NULL); }

typedef struct {
  cc_waiter w;
  int decided; /* 0: not yet; 1 granted; 2 lost */
  int64_t rev;
  char key[64];
} tw;

static void on_decided(cc_waiter *w, cc_outcome o, int64_t rev) {
  tw *x = w->arg;
  x->decided = o == CC_GRANTED ? 1 : 2;
  x->rev = rev;
}

static void wait_key(tw *x, const char *pfx, const char *key) {
  memset(x, 0, sizeof *x);
  snprintf(x->key, sizeof x->key, "%s", key);
  x->w.decided = on_decided;
  x->w.arg = x;
  cc_wait(tab, &x->w, (const uint8_t *)pfx, strlen(pfx), (const uint8_t *)key, strlen(key), create_rev_of(key));
}

/* ---------------------------------------------------------------- ownership */

static void test_owner(void) {
  setup();
  tput(st, "L/b", "", 0);   /* rev 2 */
  tput(st, "L/a", "", 0);   /* rev 3: key order first, created later */
  tput(st, "L/x/y", "", 0); /* rev 4: deeper keys count too (etcd's prefix) */
  tput(st, "L", "", 0);     /* not under "L/" */
  tput(st, "K/z", "", 0);
  mvcc_txn *t;
  mvcc_read_begin(st, &t);
  mvcc_kv kv;
  CHECK_INT(cc_owner(t, (const uint8_t *)"L/", 2, 0, &kv), ==, 1);
  CHECK_MEM(kv.key, kv.key_len, "L/b", 3);
  CHECK_INT(cc_owner(t, (const uint8_t *)"M/", 2, 0, &kv), ==, 0);
  CHECK_INT(cc_key_state(t, (const uint8_t *)"L/", 2, (const uint8_t *)"L/b", 3, 2), ==, CC_OWNER);
  CHECK_INT(cc_key_state(t, (const uint8_t *)"L/", 2, (const uint8_t *)"L/a", 3, 3), ==, CC_WAITING);
  CHECK_INT(cc_key_state(t, (const uint8_t *)"L/", 2, (const uint8_t *)"L/a", 3, 9), ==, CC_GONE);
  CHECK_INT(cc_key_state(t, (const uint8_t *)"L/", 2, (const uint8_t *)"L/q", 3, 3), ==, CC_GONE);
  mvcc_txn_end(t);
  del("L/b");
  mvcc_read_begin(st, &t);
  CHECK_INT(cc_owner(t, (const uint8_t *)"L/", 2, 0, &kv), ==, 1);
  CHECK_MEM(kv.key, kv.key_len, "L/a", 3);
  /* as of a past revision */
  CHECK_INT(cc_owner(t, (const uint8_t *)"L/", 2, 3, &kv), ==, 1);
  CHECK_MEM(kv.key, kv.key_len, "L/b", 3);
  mvcc_txn_end(t);
  /* keys created by one request tie: the first in key order owns, alone */
  mvcc_txn *w;
  mvcc_write_begin(st, &w);
  mvcc_rev_begin(w);
  mvcc_put(w, (const uint8_t *)"T/b", 3, NULL, 0, 0, NULL);
  mvcc_put(w, (const uint8_t *)"T/a", 3, NULL, 0, 0, NULL);
  int64_t r = mvcc_rev_end(w);
  mvcc_write_commit(w);
  mvcc_read_begin(st, &t);
  CHECK_INT(cc_key_state(t, (const uint8_t *)"T/", 2, (const uint8_t *)"T/a", 3, r), ==, CC_OWNER);
  CHECK_INT(cc_key_state(t, (const uint8_t *)"T/", 2, (const uint8_t *)"T/b", 3, r), ==, CC_WAITING);
  mvcc_txn_end(t);
  /* prefix helpers */
  uint8_t p[8], end[8];
  CHECK_INT(cc_prefix((const uint8_t *)"ab", 2, p), ==, 3);
  CHECK_MEM(p, 3, "ab/", 3);
  mvcc_span s = cc_prefix_span((const uint8_t *)"a\xff", 2, end);
  CHECK_MEM(s.end, s.end_len, "b", 1);
  s = cc_prefix_span((const uint8_t *)"\xff\xff", 2, end);
  CHECK(s.open_end);
  teardown();
}

/* ---------------------------------------------------------------- waiters */

static void test_handover(void) {
  setup();
  tput(st, "L/a", "", 0);
  tput(st, "L/b", "", 0);
  tput(st, "L/c", "", 0);
  tw a, b, c;
  wait_key(&a, "L/", "L/a");
  CHECK_INT(a.decided, ==, 1); /* owns at once */
  wait_key(&b, "L/", "L/b");
  wait_key(&c, "L/", "L/c");
  CHECK_INT(b.decided, ==, 0);
  CHECK_INT(c.decided, ==, 0);
  cc_stats s;
  cc_table_stats(tab, &s);
  CHECK_INT(s.waiters, ==, 2);
  CHECK_INT(s.groups, ==, 1);
  tput(st, "L/z", "", 0); /* a put changes nobody's fate */
  cc_applied(tab);
  CHECK_INT(b.decided, ==, 0);
  del("L/a");
  int64_t r = trev(st);
  cc_applied(tab);
  CHECK_INT(b.decided, ==, 1);
  CHECK_INT(b.rev, ==, r);
  CHECK_INT(c.decided, ==, 0);
  del("L/b");
  cc_applied(tab);
  CHECK_INT(c.decided, ==, 1);
  cc_table_stats(tab, &s);
  CHECK_INT(s.waiters, ==, 0);
  CHECK_INT(s.groups, ==, 0);
  teardown();
}

static void test_lost_while_waiting(void) {
  setup();
  tput(st, "L/a", "", 0);
  tput(st, "L/b", "", 0);
  tput(st, "L/c", "", 0);
  tw b, c;
  wait_key(&b, "L/", "L/b");
  wait_key(&c, "L/", "L/c");
  /* c's lease expires while a still holds: c is told at once, b waits */
  del("L/c");
  cc_applied(tab);
  CHECK_INT(c.decided, ==, 2);
  CHECK_INT(b.decided, ==, 0);
  /* the key comes back (same lease, new Lock): the old waiter stays lost */
  tput(st, "L/c", "", 0);
  del("L/a");
  cc_applied(tab);
  CHECK_INT(b.decided, ==, 1);
  CHECK_INT(c.decided, ==, 2);
  /* a waiter whose key is gone already when it registers */
  tw d;
  memset(&d, 0, sizeof d);
  d.w.decided = on_decided;
  d.w.arg = &d;
  cc_wait(tab, &d.w, (const uint8_t *)"L/", 2, (const uint8_t *)"L/d", 3, 5);
  CHECK_INT(d.decided, ==, 2);
  teardown();
}

static void test_cancel(void) {
  setup();
  tput(st, "L/a", "", 0);
  tput(st, "L/b", "", 0);
  tw b;
  wait_key(&b, "L/", "L/b");
  CHECK(cc_cancel(tab, &b.w));
  CHECK(!cc_cancel(tab, &b.w));
  del("L/a");
  cc_applied(tab);
  CHECK_INT(b.decided, ==, 0); /* never decided once cancelled */
  /* a decided waiter cannot be cancelled */
  tput(st, "L/c", "", 0);
  tw c;
  wait_key(&c, "L/", "L/c");
  CHECK_INT(c.decided, ==, 0);
  del("L/b");
  cc_applied(tab);
  CHECK_INT(c.decided, ==, 1);
  CHECK(!cc_cancel(tab, &c.w));
  teardown();
}

/* Deletions elsewhere never evaluate a waiter: the index finds the
 * groups by the changed key's prefixes. */
static void test_index_is_selective(void) {
  setup();
  enum { N = 200 };
  static tw w[N];
  char k[64], p[64];
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "lock%d/holder", i);
    tput(st, k, "", 0);
  }
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "lock%d/waiter", i);
    tput(st, k, "", 0);
    snprintf(p, sizeof p, "lock%d/", i);
    wait_key(&w[i], p, k);
  }
  cc_stats before, after;
  cc_table_stats(tab, &before);
  CHECK_INT(before.waiters, ==, N);
  for (int i = 0; i < 50; i++) {
    snprintf(k, sizeof k, "other/%d", i);
    tput(st, k, "", 0);
    del(k);
    cc_applied(tab);
  }
  cc_table_stats(tab, &after);
  CHECK_INT(after.evaluations, ==, before.evaluations);
  /* nested: a deletion under lock7/x/ concerns lock7/ */
  tput(st, "lock7/x/y", "", 0);
  del("lock7/x/y");
  cc_applied(tab);
  cc_table_stats(tab, &after);
  CHECK_INT(after.evaluations, ==, before.evaluations + 1);
  del("lock7/holder");
  cc_applied(tab);
  CHECK_INT(w[7].decided, ==, 1);
  CHECK_INT(w[8].decided, ==, 0);
  for (int i = 0; i < N; i++)
    if (!w[i].decided) cc_cancel(tab, &w[i].w);
  teardown();
}

/* ---------------------------------------------------------------- observers */

typedef struct {
  char log[64][80];
  int n;
  size_t queued;
  int compacted;
} tobs;

static int obs_send(void *arg, const mvcc_kv *kv, int64_t rev) {
  tobs *o = arg;
  if (o->n < 64) {
    if (kv)
      snprintf(o->log[o->n++], 80, "%lld %.*s=%.*s", (long long)rev, (int)kv->key_len, (const char *)kv->key,
               (int)kv->value_len, (const char *)kv->value);
    else
      snprintf(o->log[o->n++], 80, "%lld none", (long long)rev);
  }
  return 0;
}
static size_t obs_queued(void *arg) { return ((tobs *)arg)->queued; }
static void obs_compacted(void *arg) { ((tobs *)arg)->compacted++; }
static const cc_observer_ops obs_ops = {.send = obs_send, .queued = obs_queued, .fail_compacted = obs_compacted};

static void expect_log(tobs *o, const char *const *want, int n) {
  CHECK_INT(o->n, ==, n);
  for (int i = 0; i < n && i < o->n; i++) {
    if (strcmp(o->log[i], want[i]) != 0) CHECK_STR(o->log[i], want[i]);
  }
}

static void test_observe(void) {
  setup();
  tobs o = {0};
  cc_observer *ob = cc_observe(tab, (const uint8_t *)"E/", 2, &obs_ops, &o);
  REQUIRE(ob);
  tput(st, "E/a", "1", 0); /* 2: leader */
  cc_applied(tab);
  tput(st, "E/b", "x", 0); /* 3: a candidate: nothing */
  tput(st, "E/a", "2", 0); /* 4: proclamation */
  tput(st, "E/a", "3", 0); /* 5: proclamation, same batch */
  cc_applied(tab);
  del("E/b");              /* 6: a candidate leaves: nothing */
  tput(st, "E/c", "y", 0); /* 7 */
  del("E/a");              /* 8: c leads */
  cc_applied(tab);
  /* a request that deletes the leader and writes the next one's value */
  mvcc_txn *w;
  mvcc_write_begin(st, &w);
  mvcc_rev_begin(w);
  mvcc_span s = span_key("E/c");
  mvcc_delete_range(w, &s, NULL, NULL, NULL);
  mvcc_put(w, (const uint8_t *)"E/d", 3, (const uint8_t *)"z", 1, 0, NULL);
  mvcc_rev_end(w); /* 9 */
  mvcc_write_commit(w);
  del("E/d"); /* 10: nobody */
  cc_applied(tab);
  const char *want[] = {"1 none", "2 E/a=1", "4 E/a=2", "5 E/a=3", "8 E/c=y", "9 E/d=z", "10 none"};
  expect_log(&o, want, 7);
  /* a second observer starts from the current state */
  tput(st, "E/e", "v", 0); /* 11 */
  tobs o2 = {0};
  cc_observer *ob2 = cc_observe(tab, (const uint8_t *)"E/", 2, &obs_ops, &o2);
  cc_applied(tab);
  const char *want2[] = {"11 E/e=v"};
  expect_log(&o2, want2, 1);
  CHECK_INT(o.n, ==, 8);
  cc_observer_close(ob2);
  cc_observer_close(ob);
  teardown();
}

static void test_observe_lagging(void) {
  setup();
  tobs o = {0};
  cc_observer *ob = cc_observe(tab, (const uint8_t *)"E/", 2, &obs_ops, &o);
  o.queued = 1000; /* over the limit: gets nothing more for now */
  char v[8];
  for (int i = 0; i < 10; i++) {
    snprintf(v, sizeof v, "%d", i);
    tput(st, "E/a", v, 0);
    tput(st, "other", v, 0);
    cc_applied(tab);
  }
  cc_stats s;
  cc_table_stats(tab, &s);
  CHECK_INT(s.lagging, ==, 1);
  CHECK_INT(o.n, ==, 1);
  o.queued = 0;
  cc_observer_drained(ob); /* catch-up from history, 3 revisions a step */
  cc_table_stats(tab, &s);
  CHECK_INT(s.lagging, ==, 0);
  CHECK_INT(o.n, ==, 11);
  CHECK_STR(o.log[1], "2 E/a=0");
  CHECK_STR(o.log[10], "20 E/a=9");
  tput(st, "E/a", "live", 0);
  cc_applied(tab);
  CHECK_INT(o.n, ==, 12);
  CHECK_STR(o.log[11], "22 E/a=live");
  /* lagging behind a compaction: the stream is ended, never silently
   * skipped */
  o.queued = 1000;
  tput(st, "E/a", "gone", 0);
  cc_applied(tab);
  tput(st, "x", "", 0);
  mvcc_txn *w;
  mvcc_write_begin(st, &w);
  CHECK_INT(mvcc_compact(w, trev(st) - 0), ==, MVCC_OK);
  mvcc_write_commit(w);
  o.queued = 0;
  cc_observer_drained(ob);
  CHECK_INT(o.compacted, ==, 1);
  cc_observer_close(ob);
  teardown();
}

/* ---------------------------------------------------------------- model */

/* Random contenders on three locks: keys appear and go (unlock, lease
 * loss) at random; a waiter is registered for every new key. After every
 * step: a waiter is granted iff its key owns, at most one live granted key
 * per lock, and a waiter whose key went first is lost. */
static void test_random(void) {
  setup();
  trng r = {testing_seed(42)};
  enum { KEYS = 12, STEPS = 3000 };
  static tw w[3][KEYS];
  bool live[3][KEYS] = {{0}}, waiting[3][KEYS] = {{0}};
  char k[32], p[8];
  for (int step = 0; step < STEPS; step++) {
    int l = (int)trng_below(&r, 3), i = (int)trng_below(&r, KEYS);
    snprintf(p, sizeof p, "L%d/", l);
    snprintf(k, sizeof k, "L%d/%x", l, i);
    if (!live[l][i]) {
      if (waiting[l][i]) {
        CHECK_INT(w[l][i].decided, !=, 0);
        waiting[l][i] = false;
      }
      tput(st, k, "", 0);
      live[l][i] = true;
      cc_applied(tab);
      wait_key(&w[l][i], p, k);
      waiting[l][i] = true;
    } else {
      bool granted = w[l][i].decided == 1;
      del(k);
      live[l][i] = false;
      cc_applied(tab);
      if (waiting[l][i] && !granted) CHECK_INT(w[l][i].decided, ==, 2);
    }
    /* check every lock against the store */
    mvcc_txn *t;
    mvcc_read_begin(st, &t);
    for (int a = 0; a < 3; a++) {
      int granted_live = 0;
      snprintf(p, sizeof p, "L%d/", a);
      mvcc_kv owner;
      int has = cc_owner(t, (const uint8_t *)p, 3, 0, &owner);
      for (int b = 0; b < KEYS; b++) {
        if (!live[a][b]) continue;
        snprintf(k, sizeof k, "L%d/%x", a, b);
        bool owns = has > 0 && owner.key_len == strlen(k) && memcmp(owner.key, k, owner.key_len) == 0;
        if (w[a][b].decided == 1) granted_live++;
        CHECK_INT(w[a][b].decided == 1, ==, owns);
      }
      CHECK_INT(granted_live, <=, 1);
    }
    mvcc_txn_end(t);
    if (testing_failures) {
      fprintf(stderr, "failed at step %d (SYNOD_SEED=%llu)\n", step, (unsigned long long)testing_seed(42));
      break;
    }
  }
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < KEYS; b++)
      if (waiting[a][b] && !w[a][b].decided) cc_cancel(tab, &w[a][b].w);
  teardown();
}

int main(void) {
  RUN(test_owner);
  RUN(test_handover);
  RUN(test_lost_while_waiting);
  RUN(test_cancel);
  RUN(test_index_is_selective);
  RUN(test_observe);
  RUN(test_observe_lagging);
  RUN(test_random);
  return testing_done();
}
