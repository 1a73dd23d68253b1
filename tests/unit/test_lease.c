/* Unit tests for kvcore/lease: the table and its hash, the expiry heap, the
 * applied state (grant, revoke with its keys, checkpoints, recovery,
 * determinism across members), the leader's clocks (promotion, renewal,
 * rate-limited expiry, checkpoint scheduling). The clock is the tests'. */
#include "base.h"
#include "lease.h"
#include "lease_int.h"
#include "mvcc_testutil.h"
#include "testing.h"

#define S (1000000000LL) /* one second in ns */
#define T0 (1000 * S)    /* tests' "now" starts here: deadlines stay positive */

static lease_options opts(void) {
  return (lease_options){.min_ttl = 2, .revoke_rate = 1000, .checkpoint_interval_ms = 1000};
}

/* ---------------------------------------------------------------- helpers */

typedef struct {
  mvcc_store *s;
  char *dir;
  lease_table *t;
} fixture;

static fixture fx_open(lease_options o) {
  fixture f;
  f.s = topen(&f.dir);
  f.t = lease_table_new(&o);
  return f;
}

static void fx_close(fixture *f) {
  lease_table_free(f->t);
  mvcc_close(f->s);
  tmpdir_remove(f->dir);
}

static mvcc_txn *wbegin(mvcc_store *s) {
  mvcc_txn *w = NULL;
  if (mvcc_write_begin(s, &w) != MVCC_OK) abort();
  mvcc_rev_begin(w);
  return w;
}

static void wend(mvcc_txn *w) {
  mvcc_rev_end(w);
  if (mvcc_write_commit(w) != MVCC_OK) abort();
}

static int grant(fixture *f, int64_t id, int64_t ttl, int64_t now) {
  mvcc_txn *w = wbegin(f->s);
  int rc = lease_apply_grant(f->t, w, id, ttl, now);
  wend(w);
  return rc;
}

static int revoke(fixture *f, int64_t id) {
  mvcc_txn *w = wbegin(f->s);
  int rc = lease_apply_revoke(f->t, w, id);
  wend(w);
  return rc;
}

static int checkpoint(fixture *f, int64_t id, int64_t remaining, int64_t now) {
  lease_checkpoint cp = {id, remaining};
  mvcc_txn *w = wbegin(f->s);
  int rc = lease_apply_checkpoints(f->t, w, &cp, 1, now);
  wend(w);
  return rc;
}

/* A put that honours the lease check, as kv_exec does. */
static int put_leased(fixture *f, const char *key, int64_t lease) {
  if (lease && !lease_exists(f->t, lease)) return LEASE_ENOTFOUND;
  return tput(f->s, key, "v", lease);
}

typedef struct {
  int64_t revoke[4096];
  lease_checkpoint cps[4096];
  lease_due due;
} due_buf;

static lease_due *tick(due_buf *b, lease_table *t, int64_t now) {
  b->due = (lease_due){.revoke = b->revoke, .cap_revoke = 4096, .checkpoints = b->cps, .cap_checkpoints = 4096};
  lease_tick(t, now, &b->due);
  return &b->due;
}

static int64_t ttl_left(lease_table *t, int64_t id, int64_t now) {
  int64_t left = -99, granted = 0;
  if (lease_time_to_live(t, id, now, &left, &granted) != LEASE_OK) return -99;
  return left;
}

/* ---------------------------------------------------------------- grant */

static void test_grant_errors(void) {
  fixture f = fx_open(opts());
  int64_t ttl = 0;
  CHECK_INT(lease_grant_ttl(f.t, 1, &ttl), ==, LEASE_OK);
  CHECK_INT(ttl, ==, 2); /* raised to the minimum */
  CHECK_INT(lease_grant_ttl(f.t, -5, &ttl), ==, LEASE_OK);
  CHECK_INT(ttl, ==, 2);
  CHECK_INT(lease_grant_ttl(f.t, 60, &ttl), ==, LEASE_OK);
  CHECK_INT(ttl, ==, 60);
  CHECK_INT(lease_grant_ttl(f.t, LEASE_MAX_TTL, &ttl), ==, LEASE_OK);
  CHECK_INT(lease_grant_ttl(f.t, LEASE_MAX_TTL + 1, &ttl), ==, LEASE_ETTL);

  CHECK_INT(grant(&f, 0, 10, T0), ==, LEASE_ENOTFOUND);
  CHECK_INT(grant(&f, 5, LEASE_MAX_TTL + 1, T0), ==, LEASE_ETTL);
  CHECK_INT(grant(&f, 5, 10, T0), ==, LEASE_OK);
  CHECK_INT(grant(&f, 5, 20, T0), ==, LEASE_EEXIST);
  CHECK_INT(grant(&f, -3, LEASE_MAX_TTL, T0), ==, LEASE_OK); /* any non-zero ID, as etcd */
  CHECK(lease_exists(f.t, 5));
  CHECK(lease_exists(f.t, -3));
  CHECK(!lease_exists(f.t, 6));
  CHECK(!lease_exists(f.t, 0));
  CHECK_INT(lease_count(f.t), ==, 2);
  CHECK_INT(revoke(&f, 6), ==, LEASE_ENOTFOUND);
  CHECK_INT(revoke(&f, 0), ==, LEASE_ENOTFOUND);
  fx_close(&f);
}

/* ---------------------------------------------------------------- revoke */

typedef struct {
  tkv_list l;
} changes;

static void test_revoke_deletes_keys_in_one_revision(void) {
  fixture f = fx_open(opts());
  REQUIRE(grant(&f, 7, 10, T0) == LEASE_OK);
  REQUIRE(grant(&f, 8, 10, T0) == LEASE_OK);
  CHECK_INT(put_leased(&f, "c", 7), ==, 0);
  CHECK_INT(put_leased(&f, "a", 7), ==, 0);
  CHECK_INT(put_leased(&f, "b", 7), ==, 0);
  CHECK_INT(put_leased(&f, "d", 0), ==, 0);
  CHECK_INT(put_leased(&f, "e", 8), ==, 0);
  CHECK_INT(put_leased(&f, "x", 9), ==, LEASE_ENOTFOUND);
  /* moving a key to another lease detaches it from the first */
  CHECK_INT(put_leased(&f, "e", 7), ==, 0);
  CHECK_INT(put_leased(&f, "e", 8), ==, 0);
  int64_t before = trev(f.s);

  CHECK_INT(revoke(&f, 7), ==, LEASE_OK);
  CHECK_INT(trev(f.s), ==, before + 1); /* one revision for every key */
  mvcc_txn *t;
  REQUIRE(mvcc_read_begin(f.s, &t) == MVCC_OK);
  tkv_list l = {0};
  CHECK_INT(mvcc_changes(t, before + 1, 0, tkv_collect_change, &l), ==, MVCC_OK);
  mvcc_txn_end(t);
  REQUIRE(l.n == 3);
  const char *want[] = {"a", "b", "c"}; /* key order, identical on every member */
  for (size_t i = 0; i < 3; i++) {
    CHECK(l.v[i].is_delete);
    CHECK_INT(l.v[i].main, ==, before + 1);
    CHECK_INT(l.v[i].sub, ==, (int64_t)i);
    CHECK_MEM(l.v[i].key, l.v[i].key_len, want[i], 1);
  }
  tkv_list_clear(&l);
  int rc;
  CHECK(tget(f.s, "a", 0, &rc) == NULL);
  CHECK_STR(tget(f.s, "d", 0, &rc), "v");
  CHECK_STR(tget(f.s, "e", 0, &rc), "v");
  CHECK(!lease_exists(f.t, 7));
  CHECK_INT(revoke(&f, 7), ==, LEASE_ENOTFOUND);
  CHECK_INT(put_leased(&f, "a", 7), ==, LEASE_ENOTFOUND);

  /* a lease without keys: revoking it changes no revision */
  before = trev(f.s);
  REQUIRE(grant(&f, 9, 10, T0) == LEASE_OK);
  CHECK_INT(revoke(&f, 9), ==, LEASE_OK);
  CHECK_INT(trev(f.s), ==, before);
  CHECK_INT(lease_count(f.t), ==, 1);
  fx_close(&f);
}

/* Many keys: every one goes, in the one revision. */
static void test_revoke_many_keys(void) {
  fixture f = fx_open(opts());
  REQUIRE(grant(&f, 42, 10, T0) == LEASE_OK);
  mvcc_txn *w = wbegin(f.s);
  for (int i = 0; i < 5000; i++) {
    char k[32];
    snprintf(k, sizeof k, "key/%05d", i);
    mvcc_rev_begin(w);
    mvcc_put(w, (const uint8_t *)k, strlen(k), (const uint8_t *)"v", 1, 42, NULL);
    mvcc_rev_end(w);
  }
  wend(w);
  int64_t before = trev(f.s);
  CHECK_INT(revoke(&f, 42), ==, LEASE_OK);
  CHECK_INT(trev(f.s), ==, before + 1);
  mvcc_txn *t;
  REQUIRE(mvcc_read_begin(f.s, &t) == MVCC_OK);
  int64_t count = -1;
  mvcc_span all = span_from("");
  CHECK_INT(mvcc_range(t, &all, 0, 0, 0, NULL, NULL, &count), ==, MVCC_OK);
  CHECK_INT(count, ==, 0);
  tkv_list l = {0};
  CHECK_INT(mvcc_lease_keys(t, 42, tkv_collect, &l), ==, MVCC_OK);
  CHECK_INT(l.n, ==, 0);
  mvcc_txn_end(t);
  fx_close(&f);
}

/* ---------------------------------------------------------------- recovery */

static void test_recover(void) {
  fixture f = fx_open(opts());
  for (int64_t id = 1; id <= 100; id++) REQUIRE(grant(&f, id, 10 + id, T0) == LEASE_OK);
  REQUIRE(checkpoint(&f, 50, 7, T0) == LEASE_OK);
  REQUIRE(checkpoint(&f, 1000, 7, T0) == LEASE_OK); /* unknown: skipped */
  REQUIRE(revoke(&f, 3) == LEASE_OK);

  lease_options o = opts();
  lease_table *t2 = lease_table_new(&o);
  mvcc_txn *t;
  REQUIRE(mvcc_read_begin(f.s, &t) == MVCC_OK);
  CHECK_INT(lease_recover(t2, t), ==, LEASE_OK);
  mvcc_txn_end(t);
  CHECK_INT(lease_count(t2), ==, 99);
  CHECK(!lease_exists(t2, 3));
  CHECK(!lease_exists(t2, 1000));
  CHECK(!lease_is_primary(t2));
  lease_promote(t2, 0, T0);
  int64_t left, granted;
  CHECK_INT(lease_time_to_live(t2, 4, T0, &left, &granted), ==, LEASE_OK);
  CHECK_INT(left, ==, 14);
  CHECK_INT(granted, ==, 14);
  CHECK_INT(lease_time_to_live(t2, 50, T0, &left, &granted), ==, LEASE_OK);
  CHECK_INT(left, ==, 7); /* the checkpoint, not the full 60 */
  CHECK_INT(granted, ==, 60);

  /* recovering again replaces everything, and leaves the table untracked */
  REQUIRE(mvcc_read_begin(f.s, &t) == MVCC_OK);
  CHECK_INT(lease_recover(t2, t), ==, LEASE_OK);
  mvcc_txn_end(t);
  CHECK(!lease_is_primary(t2));
  CHECK_INT(lease_count(t2), ==, 99);
  lease_table_free(t2);
  fx_close(&f);
}

static void test_recover_corrupt(void) {
  const struct {
    const char *what;
    uint8_t key[9];
    size_t key_len;
    uint8_t val[18];
    size_t val_len;
  } bad[] = {
      {"short value", {0, 0, 0, 0, 0, 0, 0, 1}, 8, {1, 2, 3}, 3},
      {"long value", {0, 0, 0, 0, 0, 0, 0, 1}, 8, {1}, 18},
      {"unknown format", {0, 0, 0, 0, 0, 0, 0, 1}, 8, {9}, 17},
      {"short key", {1}, 1, {1}, 17},
      {"long key", {0, 0, 0, 0, 0, 0, 0, 0, 1}, 9, {1}, 17},
      {"ID 0", {0}, 8, {1}, 17},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fixture f = fx_open(opts());
    REQUIRE(grant(&f, 77, 10, T0) == LEASE_OK);
    mvcc_txn *w;
    REQUIRE(mvcc_write_begin(f.s, &w) == MVCC_OK);
    REQUIRE(mvcc_aux_put(w, MVCC_AUX_LEASES, bad[i].key, bad[i].key_len, bad[i].val, bad[i].val_len) == MVCC_OK);
    REQUIRE(mvcc_write_commit(w) == MVCC_OK);
    mvcc_txn *t;
    REQUIRE(mvcc_read_begin(f.s, &t) == MVCC_OK);
    log_set_level(LOG_FATAL);
    int rc = lease_recover(f.t, t);
    log_set_level(LOG_INFO);
    mvcc_txn_end(t);
    if (rc != LEASE_ESTORE) fprintf(stderr, "case: %s\n", bad[i].what);
    CHECK_INT(rc, ==, LEASE_ESTORE);
    CHECK_INT(lease_count(f.t), ==, 0); /* nothing half-loaded */
    fx_close(&f);
  }
}

/* ---------------------------------------------------------------- hash */

/* Random inserts and removals against a plain array: backward-shift
 * deletion must never lose an entry of a probe run. */
static void test_table_churn(void) {
  lease_options o = opts();
  lease_table *t = lease_table_new(&o);
  trng r = {testing_seed(11)};
  enum { N = 3000 };
  static int64_t ids[N];
  static bool live[N];
  for (int i = 0; i < N; i++) ids[i] = (int64_t)(trng_next(&r) >> 1) | 1;
  /* IDs that collide in the low bits, like a generator's counter */
  for (int i = 0; i < N / 3; i++) ids[i] = ((int64_t)0x1234 << 48) + i * 64;
  for (int round = 0; round < 60000; round++) {
    int i = (int)trng_below(&r, N);
    pthread_mutex_lock(&t->mu);
    if (live[i]) {
      table_remove(t, table_find(t, ids[i]));
    } else if (!table_find(t, ids[i])) {
      table_insert(t, ids[i])->ttl = i;
    }
    pthread_mutex_unlock(&t->mu);
    live[i] = !live[i];
    if (round % 5000 == 0 || round == 59999) {
      size_t n = 0;
      for (int k = 0; k < N; k++) {
        CHECK(lease_exists(t, ids[k]) == live[k]);
        n += live[k];
      }
      CHECK_INT(lease_count(t), ==, n);
    }
  }
  lease_table_free(t);
}

/* ---------------------------------------------------------------- clocks */

static void test_renew_and_ttl(void) {
  fixture f = fx_open(opts());
  REQUIRE(grant(&f, 1, 10, T0) == LEASE_OK);
  int64_t ttl = 0;
  CHECK_INT(lease_renew(f.t, 1, T0, &ttl), ==, LEASE_ENOTPRIMARY); /* nobody leads yet */
  CHECK_INT(ttl_left(f.t, 1, T0), ==, -99);
  lease_promote(f.t, 1 * S, T0);
  CHECK_INT(ttl_left(f.t, 1, T0), ==, 11); /* full TTL plus the extension */
  CHECK_INT(lease_renew(f.t, 1, T0 + 5 * S, &ttl), ==, LEASE_OK);
  CHECK_INT(ttl, ==, 10);
  CHECK_INT(ttl_left(f.t, 1, T0 + 5 * S), ==, 10);
  CHECK_INT(ttl_left(f.t, 1, T0 + 5 * S + S / 2), ==, 9); /* truncated */
  CHECK_INT(ttl_left(f.t, 1, T0 + 15 * S + S / 2), ==, 0);
  CHECK_INT(ttl_left(f.t, 1, T0 + 17 * S), ==, -2);
  CHECK_INT(lease_renew(f.t, 2, T0, &ttl), ==, LEASE_ENOTFOUND);
  CHECK_INT(lease_renew(f.t, 1, T0 + 15 * S, &ttl), ==, LEASE_ENOTFOUND); /* expired */
  int64_t left, granted;
  CHECK_INT(lease_time_to_live(f.t, 2, T0, &left, &granted), ==, LEASE_ENOTFOUND);
  lease_demote(f.t);
  CHECK_INT(lease_renew(f.t, 1, T0, &ttl), ==, LEASE_ENOTPRIMARY);
  due_buf b;
  CHECK_INT(tick(&b, f.t, T0 + 100 * S)->n_revoke, ==, 0); /* followers never expire */
  fx_close(&f);
}

/* Random grants, renewals and revocations against a model of deadlines:
 * a lease is handed out for revocation exactly when its deadline passed. */
static void test_expiry_model(void) {
  lease_options o = opts();
  o.revoke_rate = 1000000; /* no limit here */
  o.revoke_retry_ms = 3600 * 1000;
  fixture f = fx_open(o);
  lease_promote(f.t, 0, T0);
  trng r = {testing_seed(5)};
  enum { N = 400 };
  int64_t deadline[N + 1] = {0}; /* 0: no lease */
  bool handed[N + 1] = {false};
  int64_t now = T0;
  due_buf b;
  for (int step = 0; step < 4000; step++) {
    now += (int64_t)trng_below(&r, S / 4);
    int64_t id = 1 + (int64_t)trng_below(&r, N);
    int op = (int)trng_below(&r, 10);
    if (op < 4 && !deadline[id]) {
      int64_t ttl = 2 + (int64_t)trng_below(&r, 20);
      REQUIRE(grant(&f, id, ttl, now) == LEASE_OK);
      deadline[id] = now + ttl * S;
      handed[id] = false;
    } else if (op < 8 && deadline[id]) {
      int64_t ttl;
      int rc = lease_renew(f.t, id, now, &ttl);
      if (deadline[id] <= now) {
        CHECK_INT(rc, ==, LEASE_ENOTFOUND);
      } else {
        CHECK_INT(rc, ==, LEASE_OK);
        deadline[id] = now + ttl * S;
      }
    } else if (deadline[id] && trng_chance(&r, 30)) {
      REQUIRE(revoke(&f, id) == LEASE_OK);
      deadline[id] = 0;
    }
    lease_due *d = tick(&b, f.t, now);
    for (size_t i = 0; i < d->n_revoke; i++) {
      int64_t x = d->revoke[i];
      REQUIRE(x >= 1 && x <= N);
      CHECK(deadline[x] && deadline[x] <= now);
      CHECK(!handed[x]);
      handed[x] = true;
    }
    for (int64_t x = 1; x <= N; x++)
      if (deadline[x] && deadline[x] <= now && !handed[x]) {
        fprintf(stderr, "lease %lld expired at %lld, not handed out at %lld\n", (long long)x,
                (long long)deadline[x], (long long)now);
        CHECK(false);
        handed[x] = true;
      }
    /* the clock thread would sleep until next_ns: nothing may come due before it */
    for (int64_t x = 1; x <= N; x++)
      if (deadline[x] && !handed[x]) CHECK(d->next_ns <= deadline[x]);
    /* apply some of the revocations, as the pipeline would */
    for (size_t i = 0; i < d->n_revoke; i++)
      if (trng_chance(&r, 50)) {
        REQUIRE(revoke(&f, d->revoke[i]) == LEASE_OK);
        deadline[d->revoke[i]] = 0;
      }
  }
  fx_close(&f);
}

/* A lease handed out whose revocation never applies comes up again. */
static void test_expired_retry(void) {
  fixture f = fx_open(opts());
  lease_promote(f.t, 0, T0);
  REQUIRE(grant(&f, 1, 2, T0) == LEASE_OK);
  due_buf b;
  CHECK_INT(tick(&b, f.t, T0 + S)->n_revoke, ==, 0);
  CHECK_INT(tick(&b, f.t, T0 + 2 * S)->n_revoke, ==, 1);
  CHECK_INT(b.due.next_ns, ==, T0 + 5 * S); /* revoke_retry_ms: 3 s */
  CHECK_INT(tick(&b, f.t, T0 + 4 * S)->n_revoke, ==, 0);
  CHECK_INT(tick(&b, f.t, T0 + 5 * S)->n_revoke, ==, 1);
  fx_close(&f);
}

/* After promotion's extension a renewal moves the deadline earlier: the
 * heap must follow, or the lease would expire late. */
static void test_renew_moves_deadline_earlier(void) {
  fixture f = fx_open(opts());
  REQUIRE(grant(&f, 1, 10, T0) == LEASE_OK);
  lease_promote(f.t, 5 * S, T0); /* deadline T0 + 15 s */
  int64_t ttl;
  REQUIRE(lease_renew(f.t, 1, T0 + S, &ttl) == LEASE_OK); /* now T0 + 11 s */
  due_buf b;
  lease_due *d = tick(&b, f.t, T0 + 2 * S);
  CHECK_INT(d->next_ns, ==, T0 + 11 * S);
  CHECK_INT(tick(&b, f.t, T0 + 11 * S)->n_revoke, ==, 1);
  fx_close(&f);
}

/* 10,000 leases expiring together: handed out at the revoke rate (half of
 * it at once, as etcd's 500 ms rounds), and all of them in the end. */
static void test_rate_limit(void) {
  lease_options o = opts();
  o.revoke_retry_ms = 3600 * 1000;
  fixture f = fx_open(o);
  mvcc_txn *w = wbegin(f.s);
  for (int64_t id = 1; id <= 10000; id++) REQUIRE(lease_apply_grant(f.t, w, id, 5, T0) == LEASE_OK);
  wend(w);
  lease_promote(f.t, 0, T0 + 5 * S - 100 * S); /* all expire at T0 */
  due_buf b;
  int64_t now = T0, total = 0, spins = 0, done_at = 0;
  int64_t per_second[20] = {0};
  while (total < 10000 && now < T0 + 20 * S) {
    lease_due *d = tick(&b, f.t, now);
    total += (int64_t)d->n_revoke;
    per_second[(now - T0) / S] += (int64_t)d->n_revoke;
    CHECK_INT(total, <=, 500 + (now - T0) / 1000000); /* burst + 1000/s */
    if (d->next_ns <= now) spins++;
    if (total == 10000) done_at = now;
    now = d->next_ns > now ? d->next_ns : now + 1;
  }
  CHECK_INT(total, ==, 10000);
  CHECK_INT(spins, ==, 0); /* a limited clock sleeps; it never spins */
  CHECK_INT(done_at - T0, >=, 9 * S);
  CHECK_INT(done_at - T0, <=, 10 * S);
  for (int i = 1; i < 9; i++) CHECK_INT(per_second[i], <=, 1001);
  CHECK_INT(per_second[0], <=, 1501);
  fx_close(&f);
}

static void test_promote_spreads_expiries(void) {
  lease_options o = opts();
  fixture f = fx_open(o);
  mvcc_txn *w = wbegin(f.s);
  for (int64_t id = 1; id <= 10000; id++) REQUIRE(lease_apply_grant(f.t, w, id, 30 + (id % 3 == 0), T0) == LEASE_OK);
  wend(w);
  lease_promote(f.t, 2 * S, T0);
  int64_t target = 3 * o.revoke_rate / 4;
  int64_t lo = T0 + 32 * S;
  static int64_t per_second[64];
  memset(per_second, 0, sizeof per_second);
  pthread_mutex_lock(&f.t->mu);
  for (uint32_t s = 0; s < f.t->n_recs; s++) {
    const lease_rec *r = &f.t->recs[s];
    int64_t own = T0 + 2 * S + r->ttl * S;
    CHECK_INT(r->deadline, >=, own); /* never earlier */
    int64_t sec = (r->deadline - lo) / S;
    REQUIRE(sec >= 0 && sec < 64);
    per_second[sec]++;
  }
  pthread_mutex_unlock(&f.t->mu);
  int64_t last = 0;
  for (int i = 0; i < 64; i++) {
    if (per_second[i]) last = i;
    CHECK_INT(per_second[i], <=, 2 * target + 1); /* a burst of one second, then the target rate */
  }
  CHECK_INT(last, <=, 10000 / target + 1);
  /* the revocations keep up: nobody waits expired for more than the shaping allows */
  fx_close(&f);
}

static void test_promote_uses_checkpoint(void) {
  fixture f = fx_open(opts());
  REQUIRE(grant(&f, 1, 100, T0) == LEASE_OK);
  REQUIRE(grant(&f, 2, 100, T0) == LEASE_OK);
  REQUIRE(checkpoint(&f, 1, 30, T0) == LEASE_OK);
  lease_promote(f.t, 1 * S, T0 + 50 * S);
  CHECK_INT(ttl_left(f.t, 1, T0 + 50 * S), ==, 31);
  CHECK_INT(ttl_left(f.t, 2, T0 + 50 * S), ==, 101);
  /* demote, promote again later: the same rule, from the new now */
  lease_demote(f.t);
  lease_promote(f.t, 1 * S, T0 + 200 * S);
  CHECK_INT(ttl_left(f.t, 1, T0 + 200 * S), ==, 31);
  fx_close(&f);
}

/* ---------------------------------------------------------------- checkpoints */

static void test_checkpoint_schedule(void) {
  fixture f = fx_open(opts()); /* interval 1 s */
  lease_promote(f.t, 0, T0);
  REQUIRE(grant(&f, 1, 100, T0) == LEASE_OK);
  REQUIRE(grant(&f, 2, 1, T0) == LEASE_OK); /* shorter than the interval: never checkpointed */
  due_buf b;
  lease_due *d = tick(&b, f.t, T0 + S / 2);
  CHECK_INT(d->n_checkpoints, ==, 0);
  CHECK_INT(d->next_ns, ==, T0 + S);
  d = tick(&b, f.t, T0 + S + S / 4);
  REQUIRE(d->n_checkpoints == 1);
  CHECK_INT(d->checkpoints[0].id, ==, 1);
  CHECK_INT(d->checkpoints[0].remaining_ttl, ==, 99); /* rounded up */
  REQUIRE(checkpoint(&f, 1, 99, T0 + S + S / 4) == LEASE_OK);
  /* the applied checkpoint schedules the next one */
  d = tick(&b, f.t, T0 + 2 * S + S / 4);
  REQUIRE(d->n_checkpoints == 1);
  CHECK_INT(d->checkpoints[0].remaining_ttl, ==, 98);
  REQUIRE(checkpoint(&f, 1, 98, T0 + 2 * S + S / 4) == LEASE_OK);

  /* a renewal makes the checkpoint stale: a clearing checkpoint is due at once */
  int64_t ttl;
  CHECK_INT(lease_renew(f.t, 1, T0 + 3 * S, &ttl), ==, LEASE_OK);
  CHECK_INT(lease_renew(f.t, 1, T0 + 3 * S, &ttl), ==, LEASE_OK); /* queued once */
  d = tick(&b, f.t, T0 + 3 * S);
  REQUIRE(d->n_checkpoints == 1);
  CHECK_INT(d->checkpoints[0].id, ==, 1);
  CHECK_INT(d->checkpoints[0].remaining_ttl, ==, 0);
  REQUIRE(checkpoint(&f, 1, 0, T0 + 3 * S) == LEASE_OK);

  /* a restart now gives the full TTL back, not the stale 98 */
  lease_options o = opts();
  lease_table *t2 = lease_table_new(&o);
  mvcc_txn *t;
  REQUIRE(mvcc_read_begin(f.s, &t) == MVCC_OK);
  REQUIRE(lease_recover(t2, t) == LEASE_OK);
  mvcc_txn_end(t);
  lease_promote(t2, S, T0 + 10 * S);
  CHECK_INT(ttl_left(t2, 1, T0 + 10 * S), ==, 101);
  lease_table_free(t2);

  /* due while freshly renewed: skipped, but the schedule goes on */
  CHECK_INT(lease_renew(f.t, 1, T0 + 4 * S, &ttl), ==, LEASE_OK);
  d = tick(&b, f.t, T0 + 4 * S);
  CHECK_INT(d->n_checkpoints, ==, 0);
  d = tick(&b, f.t, T0 + 5 * S + S / 2);
  REQUIRE(d->n_checkpoints == 1);
  CHECK_INT(d->checkpoints[0].remaining_ttl, ==, 99);

  /* many renew / checkpoint / clear cycles: one live schedule entry, not one per cycle */
  int64_t now = T0 + 6 * S;
  for (int i = 0; i < 50; i++, now += S) {
    d = tick(&b, f.t, now);
    for (size_t k = 0; k < d->n_checkpoints; k++)
      REQUIRE(checkpoint(&f, d->checkpoints[k].id, d->checkpoints[k].remaining_ttl, now) == LEASE_OK);
    CHECK_INT(d->n_checkpoints, <=, 1);
    if (i % 3 == 0) CHECK_INT(lease_renew(f.t, 1, now + S / 2, &ttl), ==, LEASE_OK);
  }
  CHECK_INT(f.t->cps_len, <=, 2);
  fx_close(&f);
}

static void test_checkpoint_rate(void) {
  lease_options o = opts();
  o.checkpoint_rate = 100;
  fixture f = fx_open(o);
  lease_promote(f.t, 0, T0);
  mvcc_txn *w = wbegin(f.s);
  for (int64_t id = 1; id <= 1000; id++) REQUIRE(lease_apply_grant(f.t, w, id, 100, T0) == LEASE_OK);
  wend(w);
  due_buf b;
  int64_t now = T0 + S, total = 0;
  while (total < 1000 && now < T0 + 30 * S) {
    lease_due *d = tick(&b, f.t, now);
    total += (int64_t)d->n_checkpoints;
    CHECK_INT(total, <=, 50 + (now - T0 - S) * 100 / S + 1);
    CHECK_INT(d->next_ns, >, now);
    now = d->next_ns;
  }
  CHECK_INT(total, ==, 1000);
  fx_close(&f);
}

/* ---------------------------------------------------------------- determinism */

typedef struct {
  uint8_t buf[1 << 20];
  size_t len;
} dump;

static int dump_aux(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
  dump *d = arg;
  if (d->len + kl + vl > sizeof d->buf) return 1;
  memcpy(d->buf + d->len, k, kl);
  d->len += kl;
  memcpy(d->buf + d->len, v, vl);
  d->len += vl;
  return 0;
}

static void state_of(mvcc_store *s, dump *d, uint32_t *hash) {
  mvcc_txn *t;
  if (mvcc_read_begin(s, &t) != MVCC_OK) abort();
  d->len = 0;
  mvcc_aux_scan(t, MVCC_AUX_LEASES, dump_aux, d);
  mvcc_hash_kv(t, 0, hash);
  mvcc_txn_end(t);
}

/* The same entries applied on a leader (clocks running, its own now) and a
 * follower (no clocks, another now) leave byte-identical stores. */
static void test_apply_determinism(void) {
  fixture a = fx_open(opts()), b = fx_open(opts());
  lease_promote(a.t, S, T0);
  trng r = {testing_seed(9)};
  int64_t now = T0;
  for (int step = 0; step < 3000; step++) {
    now += (int64_t)trng_below(&r, S);
    int64_t id = 1 + (int64_t)trng_below(&r, 40);
    int op = (int)trng_below(&r, 10);
    int ra, rb;
    if (op < 3) {
      int64_t ttl = (int64_t)trng_below(&r, 600);
      ra = grant(&a, id, ttl, now);
      rb = grant(&b, id, ttl, now + 12345);
    } else if (op < 7) {
      char k[16];
      snprintf(k, sizeof k, "k%d", (int)trng_below(&r, 200));
      if (trng_chance(&r, 10)) id = 0;
      ra = put_leased(&a, k, id);
      rb = put_leased(&b, k, id);
    } else if (op < 8) {
      ra = revoke(&a, id);
      rb = revoke(&b, id);
    } else if (op < 9) {
      int64_t rem = (int64_t)trng_below(&r, 600) - 5;
      ra = checkpoint(&a, id, rem, now);
      rb = checkpoint(&b, id, rem, now);
    } else {
      char k[16];
      snprintf(k, sizeof k, "k%d", (int)trng_below(&r, 200));
      ra = tdel(a.s, span_key(k), NULL);
      rb = tdel(b.s, span_key(k), NULL);
    }
    CHECK_INT(ra, ==, rb);
    /* the leader's own clock work must not touch the store */
    due_buf db;
    tick(&db, a.t, now);
  }
  static dump da, dbb;
  uint32_t ha, hb;
  state_of(a.s, &da, &ha);
  state_of(b.s, &dbb, &hb);
  CHECK_INT(ha, ==, hb);
  CHECK_MEM(da.buf, da.len, dbb.buf, dbb.len);
  CHECK_INT(lease_count(a.t), ==, lease_count(b.t));
  CHECK_INT(trev(a.s), ==, trev(b.s));
  fx_close(&a);
  fx_close(&b);
}

/* ---------------------------------------------------------------- list, waker, memory */

static void test_list_order(void) {
  fixture f = fx_open(opts());
  REQUIRE(grant(&f, 30, 50, T0) == LEASE_OK);
  REQUIRE(grant(&f, 10, 70, T0) == LEASE_OK);
  REQUIRE(grant(&f, 20, 60, T0) == LEASE_OK);
  size_t n;
  int64_t *ids = lease_list(f.t, &n); /* off the leader: by ID */
  REQUIRE(n == 3);
  CHECK(ids[0] == 10 && ids[1] == 20 && ids[2] == 30);
  free(ids);
  lease_promote(f.t, 0, T0);
  ids = lease_list(f.t, &n); /* soonest deadline first, as etcd */
  REQUIRE(n == 3);
  CHECK(ids[0] == 30 && ids[1] == 20 && ids[2] == 10);
  free(ids);
  int64_t ttl;
  CHECK_INT(lease_renew(f.t, 30, T0 + 45 * S, &ttl), ==, LEASE_OK);
  ids = lease_list(f.t, &n);
  CHECK(ids[0] == 20 && ids[1] == 10 && ids[2] == 30);
  free(ids);
  fx_close(&f);
}

static int wakes;
static void count_wake(void *arg) {
  (void)arg;
  wakes++;
}

static void test_waker(void) {
  fixture f = fx_open(opts());
  lease_set_waker(f.t, count_wake, NULL);
  wakes = 0;
  REQUIRE(grant(&f, 1, 100, T0) == LEASE_OK);
  CHECK_INT(wakes, ==, 0); /* nobody leads: no clock to wake */
  lease_promote(f.t, 0, T0);
  CHECK_INT(wakes, ==, 1);
  due_buf b;
  tick(&b, f.t, T0); /* plans the next tick for the checkpoint, at T0 + 1 s */
  REQUIRE(grant(&f, 2, 100, T0) == LEASE_OK);
  CHECK_INT(wakes, ==, 1); /* expires later than planned */
  REQUIRE(checkpoint(&f, 2, 50, T0) == LEASE_OK);
  int64_t ttl;
  REQUIRE(lease_renew(f.t, 2, T0, &ttl) == LEASE_OK); /* must clear the checkpoint */
  CHECK_INT(wakes, ==, 2);
  tick(&b, f.t, T0 + S / 2);
  /* the heap says T0 + 1 s; a 2-second lease is later; 1-second is not */
  REQUIRE(grant(&f, 3, 2, T0 + S / 2) == LEASE_OK);
  CHECK_INT(wakes, ==, 2);
  REQUIRE(grant(&f, 4, 0, T0 + S / 2) == LEASE_OK);
  CHECK_INT(wakes, ==, 3);
  fx_close(&f);

  /* an applied checkpoint schedules the next one sooner than the tick
   * planned (it had nothing but a far expiry left) */
  f = fx_open(opts());
  lease_set_waker(f.t, count_wake, NULL);
  lease_promote(f.t, 0, T0);
  REQUIRE(grant(&f, 1, 100, T0) == LEASE_OK);
  lease_due *d = tick(&b, f.t, T0 + S);
  REQUIRE(d->n_checkpoints == 1);
  CHECK_INT(d->next_ns, ==, T0 + 100 * S);
  wakes = 0;
  REQUIRE(checkpoint(&f, 1, d->checkpoints[0].remaining_ttl, T0 + S) == LEASE_OK);
  CHECK_INT(wakes, ==, 1);
  CHECK_INT(tick(&b, f.t, T0 + 2 * S)->n_checkpoints, ==, 1);
  fx_close(&f);
}

static void test_memory_per_lease(void) {
  fixture f = fx_open(opts());
  lease_promote(f.t, 0, T0);
  mvcc_txn *w = wbegin(f.s);
  for (int64_t id = 1; id <= 100000; id++) REQUIRE(lease_apply_grant(f.t, w, id, 3600, T0) == LEASE_OK);
  wend(w);
  size_t bytes = lease_memory(f.t);
  printf("      in-memory table: %.1f bytes per lease at 100k leases\n", bytes / 100000.0);
  CHECK_INT(bytes / 100000, <=, 160);
  fx_close(&f);
}

int main(void) {
  log_set_level(LOG_WARN);
  RUN(test_grant_errors);
  RUN(test_revoke_deletes_keys_in_one_revision);
  RUN(test_revoke_many_keys);
  RUN(test_recover);
  RUN(test_recover_corrupt);
  RUN(test_table_churn);
  RUN(test_renew_and_ttl);
  RUN(test_expiry_model);
  RUN(test_expired_retry);
  RUN(test_renew_moves_deadline_earlier);
  RUN(test_rate_limit);
  RUN(test_promote_spreads_expiries);
  RUN(test_promote_uses_checkpoint);
  RUN(test_checkpoint_schedule);
  RUN(test_checkpoint_rate);
  RUN(test_apply_determinism);
  RUN(test_list_order);
  RUN(test_waker);
  RUN(test_memory_per_lease);
  return testing_done();
}
