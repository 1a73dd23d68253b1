/* Benchmark (not a test): store images at scale.
 *   build/bin/image_bench [keys] [dir]
 * Loads `keys` keys (256-byte values, 100 puts per commit), then times an
 * image (write, check, size), a replace with it, and a defragmentation
 * after half the keys are deleted and compacted away. Figures in
 * docs/maintenance.md. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "mvcc.h"

static double ms_since(int64_t t0) { return (double)(time_mono_ns() - t0) / 1e6; }

int main(int argc, char **argv) {
  long keys = argc > 1 ? atol(argv[1]) : 100000;
  char tmpl[] = "/tmp/image-bench-XXXXXX";
  const char *dir = argc > 2 ? argv[2] : mkdtemp(tmpl);
  char store_dir[4200], img[4300];
  snprintf(store_dir, sizeof store_dir, "%s/store", dir);
  snprintf(img, sizeof img, "%s/store/incoming.img", dir);
  log_set_level(LOG_WARN);
  mvcc_options o = {.dir = store_dir};
  mvcc_store *s;
  if (mvcc_open(&o, &s) != MVCC_OK) return 1;
  char key[64], val[256];
  memset(val, 'v', sizeof val);
  int64_t t0 = time_mono_ns();
  for (long i = 0; i < keys;) {
    mvcc_txn *w;
    if (mvcc_write_begin(s, &w) != MVCC_OK) return 1;
    for (int k = 0; k < 100 && i < keys; k++, i++) {
      long r = (i * 7919) % keys; /* a fixed permutation: random order */
      int n = snprintf(key, sizeof key, "/registry/pods/ns-%03ld/pod-%010ld", r % 1000, r);
      mvcc_put(w, (uint8_t *)key, (size_t)n, (uint8_t *)val, sizeof val, 0, NULL);
    }
    mvcc_set_applied(w, (uint64_t)i, 2);
    if (mvcc_write_commit(w) != MVCC_OK) return 1;
  }
  mvcc_checkpoint(s);
  mvcc_stats st;
  mvcc_stats_get(s, &st);
  printf("loaded %ld keys in %.0f ms: data file %.1f MiB (%.1f MiB in use)\n", keys, ms_since(t0),
         st.db_size / 1048576.0, st.db_size_in_use / 1048576.0);

  int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
  mvcc_image_info info;
  t0 = time_mono_ns();
  if (mvcc_image_write(s, fd, &info) != MVCC_OK) return 1;
  double write_ms = ms_since(t0);
  close(fd);
  t0 = time_mono_ns();
  if (mvcc_image_check(img, NULL) != MVCC_OK) return 1;
  printf("image: %.1f MiB, written (with its check) in %.0f ms; a check alone %.0f ms\n", info.bytes / 1048576.0,
         write_ms, ms_since(t0));
  t0 = time_mono_ns();
  if (mvcc_replace(s, img) != MVCC_OK) return 1;
  printf("replace with the image: %.0f ms\n", ms_since(t0));

  /* Half the keys go, compaction removes their history. */
  mvcc_txn *w;
  mvcc_write_begin(s, &w);
  mvcc_span sp = {.key = (const uint8_t *)"/registry/pods/ns-0", .key_len = 19, .end = (const uint8_t *)"/registry/pods/ns-5", .end_len = 19};
  int64_t deleted = 0;
  mvcc_delete_range(w, &sp, NULL, NULL, &deleted);
  mvcc_write_commit(w);
  /* One more change, so the compaction drops the tombstones too. */
  mvcc_write_begin(s, &w);
  mvcc_put(w, (const uint8_t *)"x", 1, (const uint8_t *)"y", 1, 0, NULL);
  mvcc_write_commit(w);
  mvcc_write_begin(s, &w);
  mvcc_txn *r;
  mvcc_read_begin(s, &r);
  int64_t rev = mvcc_rev(r);
  mvcc_txn_end(r);
  mvcc_compact(w, rev);
  while (mvcc_compact_step(w, 1000000) > 0) {
  }
  mvcc_write_commit(w);
  mvcc_checkpoint(s);
  mvcc_checkpoint(s);
  mvcc_stats_get(s, &st);
  printf("deleted %lld keys and compacted: data file %.1f MiB (%.1f MiB in use)\n", (long long)deleted,
         st.db_size / 1048576.0, st.db_size_in_use / 1048576.0);
  t0 = time_mono_ns();
  if (mvcc_defragment(s) != MVCC_OK) return 1;
  double d_ms = ms_since(t0);
  mvcc_stats_get(s, &st);
  printf("defragmented in %.0f ms: data file %.1f MiB (%.1f MiB in use)\n", d_ms, st.db_size / 1048576.0,
         st.db_size_in_use / 1048576.0);
  mvcc_close(s);
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (argc <= 2 && system(cmd) != 0) return 1;
  return 0;
}
