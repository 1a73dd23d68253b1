/* wal_bench - what the WAL costs on this machine's disk.
 *
 *   wal_bench [dir]     (default: a fresh directory under $TMPDIR or /tmp)
 *
 * 1. baseline: pwrite of 100 bytes + fdatasync on a zero-filled file, the
 *    floor any WAL sits on;
 * 2. latency of wal_append(1 entry of 100 bytes) + wal_sync;
 * 3. throughput of batches of 100 entries of 300 bytes, one wal_append and
 *    one wal_sync per batch (group commit);
 * 4. CPU per record: wal_append of the same batches without syncing.
 * Uses default 64 MiB segments; run 3 writes ~85 MB, so it crosses a cut
 * (and the helper's zero-fill of the segment after it): see its p99. */
#include "base.h"
#include "wal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, int64_t *ns, int n) {
  qsort(ns, (size_t)n, sizeof *ns, cmp_i64);
  int64_t sum = 0;
  for (int i = 0; i < n; i++) sum += ns[i];
  printf("%-44s avg %7.1f us  p50 %7.1f us  p99 %7.1f us  (n=%d)\n", what, sum / 1e3 / n,
         ns[n / 2] / 1e3, ns[n * 99 / 100] / 1e3, n);
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void baseline(const char *dir, int n, int64_t *ns) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/baseline.dat", dir) >= (int)sizeof path) die("path");
  int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
  if (fd < 0) die(path);
  static uint8_t zeros[1 << 20];
  for (int i = 0; i < 4; i++)
    if (pwrite(fd, zeros, sizeof zeros, (off_t)i << 20) != (ssize_t)sizeof zeros) die("pwrite");
  if (fsync(fd) < 0) die("fsync");
  uint8_t rec[128] = {1};
  for (int i = 0; i < n; i++) {
    int64_t t = time_mono_ns();
    if (pwrite(fd, rec, sizeof rec, (off_t)i * 128) != (ssize_t)sizeof rec || fdatasync(fd) < 0) die("baseline");
    ns[i] = time_mono_ns() - t;
  }
  close(fd);
  unlink(path);
}

int main(int argc, char **argv) {
  log_set_level(LOG_WARN);
  char dir[PATH_MAX];
  if (argc > 1) {
    snprintf(dir, sizeof dir, "%s", argv[1]);
  } else {
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/wal-bench-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(dir)) die("mkdtemp");
  }
  enum { LAT_N = 2000, BATCH = 100, BATCHES = 2500, ENT_BYTES = 300 };
  static int64_t ns[LAT_N > BATCHES ? LAT_N : BATCHES];
  uint8_t small[100], data[ENT_BYTES];
  memset(small, 'x', sizeof small);
  memset(data, 'y', sizeof data);

  /* The floor first, before the WAL's helper starts zero-filling. */
  baseline(dir, LAT_N, ns);
  report("baseline: pwrite 128 B + fdatasync", ns, LAT_N);

  char waldir[PATH_MAX];
  if (snprintf(waldir, sizeof waldir, "%s/wal", dir) >= (int)sizeof waldir) die("path");
  if (wal_create(waldir, "bench", 5, NULL) < 0) die("wal_create");
  wal_recovered rec;
  wal *w;
  char err[256];
  if (wal_open(waldir, (wal_snap){0, 0}, NULL, &rec, &w, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  wal_recovered_free(&rec);
  /* Let the helper finish preparing the next segment (64 MiB of zeros), as
   * it has long finished in a server that has been running. */
  sleep(2);
  uint64_t index = 0;

  for (int i = 0; i < LAT_N; i++) {
    wal_entry e = {.index = ++index, .term = 1, .data = small, .len = sizeof small};
    int64_t t = time_mono_ns();
    if (wal_append(w, NULL, &e, 1) < 0 || wal_sync(w) < 0) die("append/sync");
    ns[i] = time_mono_ns() - t;
  }
  report("wal_append(1 x 100 B) + wal_sync", ns, LAT_N);

  static wal_entry ents[BATCH];
  wal_hard_state hs = {1, 1, 0};
  int64_t start = time_mono_ns();
  for (int b = 0; b < BATCHES; b++) {
    for (int k = 0; k < BATCH; k++) ents[k] = (wal_entry){.index = ++index, .term = 1, .data = data, .len = ENT_BYTES};
    hs.commit = index;
    int64_t t = time_mono_ns();
    if (wal_append(w, &hs, ents, BATCH) < 0 || wal_sync(w) < 0) die("batch");
    ns[b] = time_mono_ns() - t;
  }
  double secs = (time_mono_ns() - start) / 1e9;
  report("wal_append(100 x 300 B) + wal_sync", ns, BATCHES);
  printf("%-44s %.0f records/s, %.1f MB/s of entry data\n", "  throughput", BATCHES * BATCH / secs,
         BATCHES * BATCH * (double)ENT_BYTES / secs / 1e6);

  /* CPU only: no sync, so the page cache absorbs the writes. */
  int64_t cpu_ns = 0;
  for (int b = 0; b < BATCHES; b++) {
    for (int k = 0; k < BATCH; k++) ents[k] = (wal_entry){.index = ++index, .term = 1, .data = data, .len = ENT_BYTES};
    int64_t t = time_mono_ns();
    if (wal_append(w, NULL, ents, BATCH) < 0) die("append");
    cpu_ns += time_mono_ns() - t;
  }
  printf("%-44s %.0f ns per record (encode + CRC + one pwrite per call)\n", "wal_append(100 x 300 B), no sync",
         (double)cpu_ns / (BATCHES * BATCH));
  wal_close(w);

  if (argc <= 1) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }
  return 0;
}
