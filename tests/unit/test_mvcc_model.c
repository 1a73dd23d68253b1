/* Randomized test: random requests (puts, delete ranges, multi-change
 * requests, compactions, physical compaction steps, aborted transactions,
 * reopens) against kvcore/mvcc and the reference model, checking reads at
 * random revisions after every step. Seeds differ in how soon the key
 * index's tail is flushed (after every entry, every few, or the default),
 * reopens sometimes leave the tail to be replayed, and a reader is
 * sometimes kept open across the next transactions and checked at its own
 * revision (flushes and purges must not take entries it still reads).
 *
 * SYNOD_SEED=n replays one seed; SYNOD_LONG=n runs n times more operations
 * and seeds. */
#include "base.h"
#include "mvcc.h"
#include "mvcc_int.h"
#include "mvcc_model.h"
#include "mvcc_testutil.h"
#include "testing.h"

typedef struct {
  trng r;
  model m;
  mvcc_store *s;
  char *dir;
  char ctx[96];
  int bad;
} run;

static void random_value(run *x, uint8_t *buf, size_t *len) {
  size_t n = trng_chance(&x->r, 3) ? 3000 : trng_below(&x->r, 24);
  for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)trng_next(&x->r);
  *len = n;
}

static int64_t random_rev(run *x) {
  if (trng_chance(&x->r, 25)) return 0;
  int64_t lo = x->m.compact_rev - 2, hi = model_cur(&x->m) + 2;
  if (lo < -1) lo = -1;
  return lo + (int64_t)trng_below(&x->r, (uint64_t)(hi - lo + 1));
}

static void random_read(run *x, mvcc_txn *t) {
  model *m = &x->m;
  switch (trng_below(&x->r, 4)) {
  case 0: case 1: {
    mvcc_span sp = model_random_span(m, &x->r);
    int64_t limit = trng_chance(&x->r, 30) ? (int64_t)trng_below(&x->r, 5) : 0;
    unsigned flags = trng_chance(&x->r, 30) ? MVCC_RANGE_REVERSE : 0;
    x->bad += model_check_range(m, t, &sp, random_rev(x), limit, flags, x->ctx);
    break;
  }
  case 2: {
    int64_t from = random_rev(x), to = trng_chance(&x->r, 50) ? 0 : random_rev(x);
    x->bad += model_check_changes(m, t, from, to, x->ctx);
    break;
  }
  default: {
    int64_t main = random_rev(x);
    if (main < 1) main = 1;
    x->bad += model_check_get_before(m, t, model_random_key(m, &x->r), main,
                                     (int64_t)trng_below(&x->r, 3), x->ctx);
    x->bad += model_check_lease_keys(m, t, (int64_t)trng_below(&x->r, 4), x->ctx);
  }
  }
}

static void do_put(run *x, mvcc_txn *t) {
  int key = model_random_key(&x->m, &x->r);
  uint8_t val[3000];
  size_t vlen;
  random_value(x, val, &vlen);
  int64_t lease = (int64_t)trng_below(&x->r, 4);
  mvcc_kv prev;
  mver want;
  int rc = mvcc_put(t, x->m.keys[key].key, x->m.keys[key].klen, val, vlen, lease, &prev);
  model_put(&x->m, key, val, vlen, lease, &want);
  if (rc) {
    fprintf(stderr, "  (%s) put: %s\n", x->ctx, mvcc_strerror(rc));
    x->bad++;
    return;
  }
  if (prev.version != want.version ||
      (want.version && (prev.create_rev != want.create || prev.mod_rev != want.main ||
                        prev.lease != want.lease ||
                        bytes_cmp(prev.value, prev.value_len, want.val, want.vlen) != 0))) {
    fprintf(stderr, "  (%s) put: prev version %lld, want %lld\n", x->ctx, (long long)prev.version,
            (long long)want.version);
    x->bad++;
  }
}

static void do_delete(run *x, mvcc_txn *t) {
  mvcc_span sp = model_random_span(&x->m, &x->r);
  if (!sp.end && !sp.open_end && sp.key_len > MVCC_MAX_KEY) return;
  tkv_list got = {0}, want = {0};
  int64_t n = -1;
  int rc = mvcc_delete_range(t, &sp, tkv_collect, &got, &n);
  int64_t wn = model_delete(&x->m, &sp, &want);
  if (rc || n != wn || got.n != want.n) {
    fprintf(stderr, "  (%s) delete_range: rc %d, %lld deleted (%zu seen), want %lld\n", x->ctx, rc,
            (long long)n, got.n, (long long)wn);
    x->bad++;
  }
  for (size_t i = 0; i < got.n && i < want.n; i++) {
    if (bytes_cmp(got.v[i].key, got.v[i].key_len, want.v[i].key, want.v[i].key_len) != 0 ||
        bytes_cmp(got.v[i].value, got.v[i].value_len, want.v[i].value, want.v[i].value_len) != 0 ||
        got.v[i].version != want.v[i].version || got.v[i].mod_rev != want.v[i].mod_rev) {
      fprintf(stderr, "  (%s) delete_range: visitor saw the wrong version\n", x->ctx);
      x->bad++;
    }
  }
  tkv_list_clear(&got);
  tkv_list_clear(&want);
}

static void do_compact(run *x, mvcc_txn *t) {
  model *m = &x->m;
  int64_t rev = m->compact_rev - 1 + (int64_t)trng_below(&x->r, (uint64_t)(m->rev - m->compact_rev + 3));
  int want = rev <= m->compact_rev ? MVCC_ECOMPACTED : rev > m->rev ? MVCC_EFUTURE : MVCC_OK;
  int rc = mvcc_compact(t, rev);
  if (rc != want) {
    fprintf(stderr, "  (%s) compact(%lld): %d, want %d\n", x->ctx, (long long)rev, rc, want);
    x->bad++;
  }
  if (!rc) m->compact_rev = rev;
}

/* A physical step must not change anything readable, the hash included. */
static void do_compact_step(run *x, mvcc_txn *t) {
  uint32_t before, after;
  int rc1 = mvcc_hash_kv(t, 0, &before);
  int rc = mvcc_compact_step(t, 1 + trng_below(&x->r, 20));
  int rc2 = mvcc_hash_kv(t, 0, &after);
  if (rc < 0 || rc1 || rc2 || before != after) {
    fprintf(stderr, "  (%s) compact_step: rc %d, hash %08x -> %08x\n", x->ctx, rc, before, after);
    x->bad++;
  }
}

/* One multi-change request, reading its own changes as it goes. */
static void do_request(run *x, mvcc_txn *t) {
  mvcc_rev_begin(t);
  if (trng_chance(&x->r, 10) && mvcc_compact(t, x->m.rev) != MVCC_EINVAL) {
    fprintf(stderr, "  (%s) compact inside a request was accepted\n", x->ctx);
    x->bad++;
  }
  int n = 1 + (int)trng_below(&x->r, 4);
  for (int i = 0; i < n; i++) {
    if (trng_chance(&x->r, 70)) do_put(x, t);
    else do_delete(x, t);
    if (trng_chance(&x->r, 30)) random_read(x, t);
  }
  int64_t rev = mvcc_rev_end(t);
  model_rev_end(&x->m);
  if (rev != x->m.rev) {
    fprintf(stderr, "  (%s) rev_end %lld, want %lld\n", x->ctx, (long long)rev, (long long)x->m.rev);
    x->bad++;
  }
}

static void reopen(run *x) {
  bool flush = trng_chance(&x->r, 50);
  mvcc_test_set_close_flush(flush);
  mvcc_close(x->s);
  mvcc_test_set_close_flush(true);
  x->s = topen_dir(x->dir);
}

/* A reader kept open across transactions: checked at its own revision
 * while the compaction it saw still holds. */
typedef struct {
  mvcc_txn *t;
  int64_t rev, compact_rev;
} old_reader;

static void old_reader_check(run *x, old_reader *o) {
  if (!o->t || x->m.compact_rev != o->compact_rev) return;
  for (int i = 0; i < 3; i++) {
    mvcc_span sp = model_random_span(&x->m, &x->r);
    int64_t rev = o->rev - (int64_t)trng_below(&x->r, 3);
    if (rev < o->compact_rev || rev < 1) rev = o->rev;
    char ctx[128];
    snprintf(ctx, sizeof ctx, "%s, reader at %lld", x->ctx, (long long)o->rev);
    x->bad += model_check_range(&x->m, o->t, &sp, rev, 0, 0, ctx);
    x->bad += model_check_changes(&x->m, o->t, rev, o->rev, ctx);
  }
}

static void old_reader_end(old_reader *o) {
  if (o->t) mvcc_txn_end(o->t);
  o->t = NULL;
}

static int run_seed(uint64_t seed, int ops) {
  run x = {.r = {seed}};
  model_init(&x.m);
  static const size_t tail_max[] = {1, 3, 0, 2};
  mvcc_test_set_tail_max(tail_max[seed % 4]);
  x.s = topen(&x.dir);
  old_reader old = {0};
  for (int op = 0; op < ops && !x.bad; op++) {
    snprintf(x.ctx, sizeof x.ctx, "seed %llu op %d", (unsigned long long)seed, op);
    mvcc_txn *t;
    if (mvcc_write_begin(x.s, &t)) {
      x.bad++;
      break;
    }
    model_mark mark = model_save(&x.m);
    int requests = 1 + (int)trng_below(&x.r, 3);
    for (int i = 0; i < requests; i++) {
      int kind = (int)trng_below(&x.r, 100);
      if (kind < 40) {
        do_put(&x, t);
        model_rev_end(&x.m); /* a change outside a bracket is a request */
      } else if (kind < 55) {
        do_delete(&x, t);
        model_rev_end(&x.m);
      } else if (kind < 80) {
        do_request(&x, t);
      } else if (kind < 87) {
        do_compact(&x, t);
      } else if (kind < 95) {
        do_compact_step(&x, t);
      } else {
        random_read(&x, t);
      }
    }
    x.m.applied = (uint64_t)op + 1;
    mvcc_set_applied(t, x.m.applied, 1);
    if (trng_chance(&x.r, 8)) {
      mvcc_txn_end(t);
      model_rollback(&x.m, mark);
    } else {
      int rc = mvcc_write_commit(t);
      if (rc) {
        fprintf(stderr, "  (%s) commit: %s\n", x.ctx, mvcc_strerror(rc));
        x.bad++;
      }
    }
    old_reader_check(&x, &old);
    if (old.t && trng_chance(&x.r, 30)) old_reader_end(&old);
    mvcc_txn *r;
    if (mvcc_read_begin(x.s, &r)) {
      x.bad++;
      break;
    }
    for (int i = 0; i < 4; i++) random_read(&x, r);
    if (!old.t && trng_chance(&x.r, 20)) {
      old = (old_reader){r, mvcc_rev(r), mvcc_compact_rev(r)};
    } else {
      mvcc_txn_end(r);
    }
    if (trng_chance(&x.r, 2)) mvcc_checkpoint(x.s);
    if (trng_chance(&x.r, 1)) {
      old_reader_end(&old);
      reopen(&x);
      if (mvcc_read_begin(x.s, &r) == 0) {
        x.bad += model_check_all(&x.m, r, x.ctx);
        mvcc_txn_end(r);
      }
    }
  }
  old_reader_end(&old);
  mvcc_txn *r;
  if (!x.bad && mvcc_read_begin(x.s, &r) == 0) {
    x.bad += model_check_all(&x.m, r, "final");
    mvcc_txn_end(r);
  }
  mvcc_test_set_tail_max(0);
  if (x.bad) fprintf(stderr, "FAILED: replay with SYNOD_SEED=%llu\n", (unsigned long long)seed);
  mvcc_close(x.s);
  tmpdir_remove(x.dir);
  model_free(&x.m);
  return x.bad;
}

static void test_random_against_model(void) {
  int f = tlong_factor();
  uint64_t first = testing_seed(1);
  int seeds = getenv("SYNOD_SEED") ? 1 : 5 * f;
  for (int i = 0; i < seeds; i++) CHECK_INT(run_seed(first + (uint64_t)i, 700 * f), ==, 0);
}

int main(void) {
  log_set_level(getenv("SYNOD_LOG") ? LOG_DEBUG : LOG_FATAL);
  RUN(test_random_against_model);
  return testing_done();
}
