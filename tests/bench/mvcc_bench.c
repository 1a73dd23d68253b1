/* mvcc_bench - how fast kvcore/mvcc is on this machine.
 *
 *   build/bin/mvcc_bench [keys (default 1000000)] [dir (default: a temp dir, removed)]
 *
 * Loads `keys` keys in random order, 256-byte values, 100 puts per commit
 * (the server applies a batch of requests per write transaction), then
 * measures point reads, ranges of 1000, reads at a past revision,
 * overwrites, compaction, a checkpoint, and opening the loaded store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "mvcc.h"

enum { VALUE = 256, BATCH = 100 };

static double now_us(void) { return (double)time_mono_ns() / 1000.0; }

/* CPU time of this thread (user + kernel): steadier than wall time on a
 * shared machine, and what the apply thread actually spends. */
static double cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

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

/* Writes `total` puts of keys key_of(start + i) in batches; returns µs spent
 * in mvcc_put and in mvcc_write_commit separately. */
static double put_cpu, commit_cpu;

static void load(mvcc_store *s, uint64_t n, uint64_t start, uint64_t total, double *put_us,
                 double *commit_us) {
  uint8_t value[VALUE];
  char key[64];
  *put_us = *commit_us = 0;
  put_cpu = commit_cpu = 0;
  for (uint64_t done = 0; done < total;) {
    mvcc_txn *t;
    int rc = mvcc_write_begin(s, &t);
    if (rc) die("write_begin", rc);
    double t0 = now_us(), c0 = cpu_us();
    for (int b = 0; b < BATCH && done < total; b++, done++) {
      size_t kl = key_of(start + done, n, key);
      memset(value, (int)(done & 0xff), sizeof value);
      rc = mvcc_put(t, (uint8_t *)key, kl, value, sizeof value, 0, NULL);
      if (rc) die("put", rc);
    }
    double t1 = now_us(), c1 = cpu_us();
    rc = mvcc_write_commit(t);
    if (rc) die("commit", rc);
    *put_us += t1 - t0;
    *commit_us += now_us() - t1;
    put_cpu += c1 - c0;
    commit_cpu += cpu_us() - c1;
  }
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
  printf("mvcc_bench: %llu keys, %d-byte values, %d puts per commit, in %s\n",
         (unsigned long long)n, VALUE, BATCH, dir);
  mvcc_store *s = open_store(dir, NULL);

  double put_us, commit_us, t0 = now_us();
  load(s, n, 0, n, &put_us, &commit_us);
  double load_s = (now_us() - t0) / 1e6;
  printf("load:          %.2f s, %.0f puts/s; put %.2f us, commit of %d %.0f us "
         "(cpu: put %.2f us, commit %.0f us)\n", load_s, (double)n / load_s, put_us / (double)n,
         BATCH, commit_us / ((double)n / BATCH), put_cpu / (double)n, commit_cpu / ((double)n / BATCH));

  t0 = now_us();
  int rc = mvcc_checkpoint(s);
  if (rc) die("checkpoint", rc);
  printf("checkpoint:    %.0f ms (fdatasync of everything loaded)\n", (now_us() - t0) / 1000);

  /* Point reads at the current revision, each its own read transaction. */
  char key[64];
  int64_t bytes = 0;
  int reads = 200000;
  t0 = now_us();
  double rc0 = cpu_us();
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

  /* The same lookups inside one read transaction: the lookup alone. */
  {
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
    printf("  of which:    lookup %.2f us, read txn begin+end %.2f us\n", lookup,
           (now_us() - t0) / reads);
  }

  /* Ranges of 1000 keys from a random start, and counts. */
  int ranges = 500;
  t0 = now_us();
  for (int i = 0; i < ranges; i++) {
    mvcc_txn *t;
    if ((rc = mvcc_read_begin(s, &t))) die("read_begin", rc);
    size_t kl = key_of(rnd() % n, n, key);
    mvcc_span sp = {(uint8_t *)key, kl, NULL, 0, true};
    if ((rc = mvcc_range(t, &sp, 0, 1000, 0, count_visit, &bytes, NULL))) die("range", rc);
    mvcc_txn_end(t);
  }
  printf("range 1000:    %.0f us\n", (now_us() - t0) / ranges);
  mvcc_txn *t;
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

  /* Steady state: overwrite 10% of the keys. */
  uint64_t over = n / 10;
  t0 = now_us();
  load(s, n, n / 3, over, &put_us, &commit_us);
  double over_s = (now_us() - t0) / 1e6;
  printf("overwrite:     %.0f puts/s; put %.2f us, commit of %d %.0f us (cpu: put %.2f us, "
         "commit %.0f us)\n", (double)over / over_s, put_us / (double)over, BATCH,
         commit_us / ((double)over / BATCH), put_cpu / (double)over, commit_cpu / ((double)over / BATCH));

  /* Compaction of everything but the latest versions, 10000 per step. */
  if ((rc = mvcc_write_begin(s, &t))) die("write_begin", rc);
  int64_t rev = mvcc_rev(t);
  if ((rc = mvcc_compact(t, rev))) die("compact", rc);
  if ((rc = mvcc_write_commit(t))) die("commit", rc);
  t0 = now_us();
  double worst = 0;
  int steps = 0;
  for (rc = 1; rc == 1; steps++) {
    double s0 = now_us();
    mvcc_txn *w;
    if ((rc = mvcc_write_begin(s, &w))) die("write_begin", rc);
    rc = mvcc_compact_step(w, 10000);
    if (rc < 0) die("compact_step", rc);
    int crc = mvcc_write_commit(w);
    if (crc) die("commit", crc);
    if (now_us() - s0 > worst) worst = now_us() - s0;
  }
  printf("compaction:    %.2f s in %d steps of 10000, longest step %.1f ms\n", (now_us() - t0) / 1e6,
         steps, worst / 1000);

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
