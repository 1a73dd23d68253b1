/* mvcc_bench - how fast and how big kvcore/mvcc is on this machine.
 *
 *   build/bin/mvcc_bench [keys (default 1000000)] [dir (default: a temp dir, removed)]
 *
 * Loads `keys` keys in random order, 256-byte values, 100 puts per commit
 * (the server applies a batch of requests per write transaction), then
 * measures: commits of a single put and of 100 (apply-thread CPU per put,
 * pages written per commit), resident memory, point reads, ranges of 1000,
 * reads at a past revision, compaction, a checkpoint, and opening the
 * loaded store. SYNOD_MVCC_WRITEMAP=0|1 picks LMDB's write mode (the
 * store's default otherwise). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "bench_proc.h"
#include "mvcc.h"
#include "mvcc_int.h"

enum { VALUE = 256, BATCH = 100 };

static double now_us(void) { return (double)time_mono_ns() / 1000.0; }
#define cpu_us bench_thread_cpu_us

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Key i of n, spread so that consecutive i land far apart. */
static size_t key_of(uint64_t i, uint64_t n, char *out) {
  uint64_t p = (i * 2654435761ull) % n;
  return (size_t)sprintf(out, "/registry/pods/ns-%03llu/pod-%010llu", (unsigned long long)(p % 997),
                         (unsigned long long)p);
}

static void die(const char *what, int rc) {
  fprintf(stderr, "%s: %s\n", what, mvcc_strerror(rc));
  exit(1);
}

static int count_visit(void *arg, const mvcc_kv *kv) {
  (*(int64_t *)arg) += (int64_t)kv->value_len;
  return 0;
}

static mvcc_store *open_store(const char *dir, double *took_us) {
  mvcc_options o = {.dir = dir, .map_size = 16ull << 30, .checkpoint_ms = 1000};
  mvcc_store *s;
  double t0 = now_us();
  int rc = mvcc_open(&o, &s);
  if (took_us) *took_us = now_us() - t0;
  if (rc) die("open", rc);
  return s;
}

static void print_mem(const char *when) {
  bench_mem m;
  bench_mem_get(&m);
  printf("rss %-10s %.1f MiB (file pages %.1f, anonymous %.1f), peak %.1f MiB\n", when,
         (double)m.rss / 1024, (double)m.file / 1024, (double)m.anon / 1024, (double)m.hwm / 1024);
}

/* Puts `total` keys key_of(start + i) in commits of `batch`. Reports CPU
 * per put of mvcc_put and of the commits (the apply thread's store work). */
typedef struct {
  double wall_s, put_cpu, commit_cpu; /* per put, µs */
  double commit_wall;                 /* per commit, µs */
} load_result;

static load_result load(mvcc_store *s, uint64_t n, uint64_t start, uint64_t total, int batch) {
  uint8_t value[VALUE];
  char key[64];
  double put_cpu = 0, commit_cpu = 0, commit_wall = 0, t_start = now_us();
  uint64_t commits = 0;
  for (uint64_t done = 0; done < total; commits++) {
    mvcc_txn *t;
    int rc = mvcc_write_begin(s, &t);
    if (rc) die("write_begin", rc);
    double c0 = cpu_us();
    for (int b = 0; b < batch && done < total; b++, done++) {
      size_t kl = key_of(start + done, n, key);
      memset(value, (int)(done & 0xff), sizeof value);
      rc = mvcc_put(t, (uint8_t *)key, kl, value, sizeof value, 0, NULL);
      if (rc) die("put", rc);
    }
    double c1 = cpu_us(), w1 = now_us();
    rc = mvcc_write_commit(t);
    if (rc) die("commit", rc);
    put_cpu += c1 - c0;
    commit_cpu += cpu_us() - c1;
    commit_wall += now_us() - w1;
  }
  return (load_result){(now_us() - t_start) / 1e6, put_cpu / (double)total,
                       commit_cpu / (double)total, commit_wall / (double)commits};
}

/* LMDB's free list (dbi 0): one record per transaction, the pages it
 * freed, count first. Returns the pages listed in all, and in txn's. */
static uint64_t free_pages(mvcc_store *s, uint64_t txnid, uint64_t *of_txn) {
  MDB_txn *txn;
  MDB_cursor *c;
  uint64_t total = 0;
  *of_txn = 0;
  if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) die("free list", MVCC_EIO);
  if (mdb_cursor_open(txn, 0, &c)) die("free list", MVCC_EIO);
  MDB_val k, v;
  while (mdb_cursor_get(c, &k, &v, MDB_NEXT) == 0) {
    size_t n, id;
    memcpy(&n, v.mv_data, sizeof n);
    memcpy(&id, k.mv_data, sizeof id);
    total += n;
    if (id == txnid) *of_txn = n;
  }
  mdb_cursor_close(c);
  mdb_txn_abort(txn);
  return total;
}

/* Pages one commit of `batch` random overwrites writes, averaged over
 * `samples` commits, from LMDB's accounting so it holds in both write
 * modes: every page the commit dirtied is either new at the end of the
 * file or taken from the free list, and each copy-on-write frees the old
 * page under the commit's txn id. Also the write syscalls (pwrite mode). */
static void pages_per_commit(mvcc_store *s, uint64_t n, int batch, int samples) {
  MDB_envinfo a, b;
  uint64_t written = 0, calls = 0, freed;
  for (int i = 0; i < samples; i++) {
    bench_io ia, ib;
    mdb_env_info(s->env, &a);
    uint64_t free0 = free_pages(s, 0, &freed);
    bench_io_get(&ia);
    load(s, n, rnd() % n, (uint64_t)batch, batch);
    bench_io_get(&ib);
    mdb_env_info(s->env, &b);
    uint64_t free1 = free_pages(s, b.me_last_txnid, &freed);
    /* allocated = grown at the end + (freed by it - net change of the free list) */
    written += (b.me_last_pgno - a.me_last_pgno) + freed - (free1 - free0);
    calls += ib.calls - ia.calls;
  }
  printf("pages/commit  of %3d: %.1f written (+ the meta page)%s", batch, (double)written / samples,
         mvcc_test_writemap(s) ? "\n" : "");
  if (!mvcc_test_writemap(s)) printf(", in %.1f write syscalls\n", (double)calls / samples);
}

static void report_load(const char *what, uint64_t puts, int batch, load_result r) {
  printf("%-13s %.2f s, %.0f puts/s; cpu per put %.2f us (put %.2f + commit %.2f), "
         "commit of %d %.0f us wall\n", what, r.wall_s, (double)puts / r.wall_s,
         r.put_cpu + r.commit_cpu, r.put_cpu, r.commit_cpu, batch, r.commit_wall);
}

static void reads(mvcc_store *s, uint64_t n) {
  char key[64];
  int64_t bytes = 0;
  int rc, reads = 200000;
  double t0 = now_us(), rc0 = cpu_us();
  for (int i = 0; i < reads; i++) {
    mvcc_txn *t;
    if ((rc = mvcc_read_begin(s, &t))) die("read_begin", rc);
    size_t kl = key_of(rnd() % n, n, key);
    mvcc_span sp = {(uint8_t *)key, kl, NULL, 0, false};
    if ((rc = mvcc_range(t, &sp, 0, 0, 0, count_visit, &bytes, NULL))) die("range", rc);
    mvcc_txn_end(t);
  }
  printf("point read:    %.2f us (read txn + lookup + decode; cpu %.2f us)\n", (now_us() - t0) / reads,
         (cpu_us() - rc0) / reads);
  if (bytes != (int64_t)reads * VALUE) die("point reads found too little", MVCC_EIO);
  mvcc_txn *t;
  if ((rc = mvcc_read_begin(s, &t))) die("read_begin", rc);
  t0 = now_us();
  for (int i = 0; i < reads; i++) {
    size_t kl = key_of(rnd() % n, n, key);
    mvcc_span sp = {(uint8_t *)key, kl, NULL, 0, false};
    if ((rc = mvcc_range(t, &sp, 0, 0, 0, count_visit, &bytes, NULL))) die("range", rc);
  }
  double lookup = (now_us() - t0) / reads;
  mvcc_txn_end(t);
  t0 = now_us();
  for (int i = 0; i < reads; i++) {
    if ((rc = mvcc_read_begin(s, &t))) die("read_begin", rc);
    mvcc_txn_end(t);
  }
  printf("  of which:    lookup %.2f us, read txn begin+end %.2f us\n", lookup, (now_us() - t0) / reads);

  int ranges = 500;
  t0 = now_us();
  for (int i = 0; i < ranges; i++) {
    if ((rc = mvcc_read_begin(s, &t))) die("read_begin", rc);
    size_t kl = key_of(rnd() % n, n, key);
    mvcc_span sp = {(uint8_t *)key, kl, NULL, 0, true};
    if ((rc = mvcc_range(t, &sp, 0, 1000, 0, count_visit, &bytes, NULL))) die("range", rc);
    mvcc_txn_end(t);
  }
  printf("range 1000:    %.0f us\n", (now_us() - t0) / ranges);
  if ((rc = mvcc_read_begin(s, &t))) die("read_begin", rc);
  int64_t count = 0, mid = mvcc_rev(t) / 2;
  t0 = now_us();
  mvcc_span all = {(const uint8_t *)"", 0, NULL, 0, true};
  mvcc_range(t, &all, 0, 1, 0, NULL, NULL, &count);
  printf("count all:     %.1f us (%lld keys)\n", now_us() - t0, (long long)count);
  mvcc_span ns = {(const uint8_t *)"/registry/pods/ns-5", 19, (const uint8_t *)"/registry/pods/ns-6", 19,
                  false};
  t0 = now_us();
  mvcc_range(t, &ns, 0, 1, 0, NULL, NULL, &count);
  printf("count prefix:  %.0f us (%lld keys)\n", now_us() - t0, (long long)count);
  t0 = now_us();
  for (int i = 0; i < reads / 4; i++) {
    size_t kl = key_of(rnd() % n, n, key);
    mvcc_span sp = {(uint8_t *)key, kl, NULL, 0, false};
    if ((rc = mvcc_range(t, &sp, mid, 0, 0, count_visit, &bytes, NULL))) die("range", rc);
  }
  printf("past read:     %.2f us (at revision %lld, via the key index)\n",
         (now_us() - t0) / (reads / 4), (long long)mid);
  mvcc_txn_end(t);
}

static void compact_all(mvcc_store *s) {
  mvcc_txn *t;
  int rc;
  if ((rc = mvcc_write_begin(s, &t))) die("write_begin", rc);
  if ((rc = mvcc_compact(t, mvcc_rev(t)))) die("compact", rc);
  if ((rc = mvcc_write_commit(t))) die("commit", rc);
  double t0 = now_us(), worst = 0;
  int steps = 0;
  for (rc = 1; rc == 1; steps++) {
    double s0 = now_us();
    if ((rc = mvcc_write_begin(s, &t))) die("write_begin", rc);
    rc = mvcc_compact_step(t, 10000);
    if (rc < 0) die("compact_step", rc);
    int crc = mvcc_write_commit(t);
    if (crc) die("commit", crc);
    if (now_us() - s0 > worst) worst = now_us() - s0;
  }
  printf("compaction:    %.2f s in %d steps of 10000, longest step %.1f ms\n", (now_us() - t0) / 1e6,
         steps, worst / 1000);
}

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  char tmpl[] = "/tmp/mvcc-bench-XXXXXX";
  const char *dir = argc > 2 ? argv[2] : mkdtemp(tmpl);
  if (!dir || n < 1000) {
    fprintf(stderr, "usage: mvcc_bench [keys >= 1000] [dir]\n");
    return 2;
  }
  log_set_level(getenv("SYNOD_LOG") ? LOG_DEBUG : LOG_WARN);
  mvcc_store *s = open_store(dir, NULL);
  printf("mvcc_bench: %llu keys, %d-byte values, in %s%s\n", (unsigned long long)n, VALUE, dir,
         mvcc_test_writemap(s) ? " (MDB_WRITEMAP)" : "");

  load_result r = load(s, n, 0, n, BATCH);
  report_load("load:", n, BATCH, r);
  print_mem("loaded:");
  double t0 = now_us();
  int rc = mvcc_checkpoint(s);
  if (rc) die("checkpoint", rc);
  printf("checkpoint:    %.0f ms (fdatasync of everything loaded)\n", (now_us() - t0) / 1000);
  print_mem("after ckpt:");

  /* Steady state: overwrites of random keys, in commits of 1 and of 100. */
  uint64_t singles = n / 20 < 20000 ? n / 20 : 20000;
  r = load(s, n, rnd() % n, singles, 1);
  report_load("overwrite x1:", singles, 1, r);
  r = load(s, n, n / 3, n / 10, BATCH);
  report_load("overwrite x100:", n / 10, BATCH, r);
  pages_per_commit(s, n, 1, 200);
  pages_per_commit(s, n, BATCH, 50);
  print_mem("written:");

  reads(s, n);
  print_mem("read:");
  compact_all(s);

  mvcc_stats st;
  mvcc_stats_get(s, &st);
  printf("file:          %.0f MiB, %.0f MiB in use, %lld keys\n", (double)st.db_size / (1 << 20),
         (double)st.db_size_in_use / (1 << 20), (long long)st.keys);
  t0 = now_us();
  mvcc_close(s);
  printf("close:         %.0f ms (final checkpoint)\n", (now_us() - t0) / 1000);

  double open_us;
  s = open_store(dir, &open_us);
  printf("open:          %.1f ms with %llu keys (no index to rebuild)\n", open_us / 1000,
         (unsigned long long)n);
  mvcc_txn *t;
  int64_t count = 0;
  mvcc_span all = {(const uint8_t *)"", 0, NULL, 0, true};
  if ((rc = mvcc_read_begin(s, &t))) die("read_begin", rc);
  mvcc_range(t, &all, 0, 1, 0, NULL, NULL, &count);
  mvcc_txn_end(t);
  if (count != (int64_t)n) die("reopened store lost keys", MVCC_EIO);
  mvcc_close(s);
  if (argc <= 2) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }
  return 0;
}
