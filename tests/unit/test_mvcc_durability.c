/* Durability tests for kvcore/mvcc.
 *
 * Power loss: after a checkpoint the test copies data.mdb (after the
 * checkpoint's fdatasync that copy is what the disk holds), keeps writing
 * (overwrites, deletes, compaction, so LMDB frees and reuses pages), then
 * builds the image a crashed disk could hold: the copy overlaid with a
 * random subset of the pages written since, some torn, some garbage, and
 * random meta pages. Opened in a fresh directory with the checkpoint file
 * and a "running" marker from another boot, the store must come back as
 * exactly the checkpoint's state, and replaying the later requests must
 * give the final state.
 *
 * kill -9: a child commits in a loop and reports each commit; the parent
 * kills it and finds every reported commit.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "mvcc.h"
#include "mvcc_int.h"
#include "mvcc_model.h"
#include "mvcc_testutil.h"
#include "testing.h"

static void copy_dir_files(const char *from, const char *to);

static void path_join(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

/* With MDB_WRITEMAP, LMDB makes data.mdb as long as the map (sparse);
 * what a disk can hold of it is the pages up to the newer meta page's last
 * one (pages past it were never part of a commit), so copies stop there. */
static size_t data_used(const uint8_t *d, size_t n) {
  lmdb_meta m0, m1;
  if (lmdb_meta_parse(d, n, &m0) < 0 || n < 2 * (size_t)m0.psize) return 0; /* not LMDB's */
  if (lmdb_meta_parse(d + m0.psize, n - m0.psize, &m1) < 0) m1 = m0;
  uint64_t last = m0.last_pg > m1.last_pg ? m0.last_pg : m1.last_pg;
  return (size_t)(last + 1) * m0.psize;
}

static bool slurp(const char *dir, const char *name, uint8_t **data, size_t *n) {
  char p[600];
  path_join(p, sizeof p, dir, name);
  if (strcmp(name, "data.mdb") != 0) return read_file(p, data, n) == 0;
  int fd = open(p, O_RDONLY);
  if (fd < 0) return false;
  struct stat st;
  uint8_t head[2 * 65536];
  bool ok = fstat(fd, &st) == 0;
  ssize_t got = ok ? pread(fd, head, sizeof head, 0) : -1;
  *n = got > 0 ? data_used(head, (size_t)got) : 0;
  if (ok && (*n == 0 || *n > (size_t)st.st_size)) *n = (size_t)st.st_size;
  *data = xmalloc(*n ? *n : 1);
  ok = ok && got >= 0 && pread(fd, *data, *n, 0) == (ssize_t)*n;
  close(fd);
  if (!ok) free(*data);
  return ok;
}

static bool spit(const char *dir, const char *name, const void *data, size_t n) {
  char p[600];
  path_join(p, sizeof p, dir, name);
  return write_file_atomic(p, data, n) == 0;
}

/* ---------------------------------------------------------------- workload */

/* One write transaction of random requests, applied to store and model
 * alike, as log entry `index`. Deterministic given (model, rng): replaying
 * from a saved pair regenerates the same requests. */
static int apply_entry(mvcc_store *s, model *m, trng *r, uint64_t index) {
  mvcc_txn *t;
  int rc = mvcc_write_begin(s, &t);
  if (rc) return rc;
  int requests = 1 + (int)trng_below(r, 4);
  for (int q = 0; q < requests && !rc; q++) {
    int kind = (int)trng_below(r, 100);
    if (kind < 70) {
      int key = model_random_key(m, r);
      uint8_t val[5000];
      size_t vlen = trng_chance(r, 15) ? 2000 + trng_below(r, 3000) : trng_below(r, 300);
      for (size_t i = 0; i < vlen; i++) val[i] = (uint8_t)(index + i);
      int64_t lease = (int64_t)trng_below(r, 3);
      rc = mvcc_put(t, m->keys[key].key, m->keys[key].klen, val, vlen, lease, NULL);
      model_put(m, key, val, vlen, lease, NULL);
    } else if (kind < 85) {
      mvcc_span sp = model_random_span(m, r);
      if (!sp.end && !sp.open_end && sp.key_len > MVCC_MAX_KEY) continue;
      rc = mvcc_delete_range(t, &sp, NULL, NULL, NULL);
      model_delete(m, &sp, NULL);
    } else if (m->rev > m->compact_rev + 1) {
      int64_t at = m->compact_rev + 1 + (int64_t)trng_below(r, (uint64_t)(m->rev - m->compact_rev));
      rc = mvcc_compact(t, at);
      m->compact_rev = at;
      while (rc == MVCC_OK && (rc = mvcc_compact_step(t, 1 + trng_below(r, 50))) == 1) rc = MVCC_OK;
    }
    model_rev_end(m);
  }
  if (rc) {
    mvcc_txn_end(t);
    return rc;
  }
  mvcc_set_applied(t, index, 1);
  m->applied = index;
  return mvcc_write_commit(t);
}

/* ---------------------------------------------------------------- crash images */

/* What the disk may hold after power loss: `saved` (synced at the last
 * checkpoint) with any of the pages written since (now in `cur`) landed,
 * torn at sector granularity, or replaced by garbage. */
static uint8_t *crash_image(trng *r, const uint8_t *saved, size_t saved_len, const uint8_t *cur,
                            size_t cur_len, size_t psize, size_t *out_len, int *pages_taken) {
  size_t max = saved_len > cur_len ? saved_len : cur_len;
  size_t len = saved_len;
  if (cur_len > saved_len) /* the file grew: any length in between may have stuck */
    len = saved_len + psize * trng_below(r, (cur_len - saved_len) / psize + 1);
  if (len < max && trng_chance(r, 30)) len = max;
  uint8_t *img = xcalloc(1, len);
  uint8_t *garbage = xmalloc(psize);
  *pages_taken = 0;
  for (size_t p = 0; p * psize < len; p++) {
    size_t off = p * psize;
    const uint8_t *old = off < saved_len ? saved + off : NULL;
    const uint8_t *now = off < cur_len ? cur + off : NULL;
    for (size_t i = 0; i < psize; i++) garbage[i] = (uint8_t)trng_next(r);
    int pick; /* 0 old, 1 new, 2 torn, 3 garbage */
    if (p < 2) pick = (int)trng_below(r, 4); /* the meta pages: anything at all */
    else if (old && now && memcmp(old, now, psize) == 0) pick = 0;
    else pick = trng_chance(r, 40) ? 0 : trng_chance(r, 60) ? 1 : trng_chance(r, 70) ? 2 : 3;
    for (size_t sec = 0; sec < psize; sec += 512) {
      int from = pick == 2 ? (int)trng_below(r, 2) : pick;
      const uint8_t *src = from == 0 ? old : from == 1 ? now : garbage;
      if (src) memcpy(img + off + sec, src + sec, 512);
    }
    if (pick != 0) (*pages_taken)++;
  }
  free(garbage);
  *out_len = len;
  return img;
}

static int power_loss_round(uint64_t seed) {
  trng r = {seed};
  model m;
  model_init(&m);
  char *dir_a = tmpdir_new(), *dir_b = tmpdir_new();
  int bad = 0;
  mvcc_test_set_boot_id("boot-a");
  mvcc_store *a = topen_dir(dir_a);
  uint64_t index = 0;
  int checkpoints = 1 + (int)trng_below(&r, 3);
  model at_ckpt = {0};
  trng rng_at_ckpt = {0};
  uint8_t *saved = NULL;
  size_t saved_len = 0;
  for (int c = 0; c < checkpoints && !bad; c++) {
    int n = 20 + (int)trng_below(&r, 40);
    for (int i = 0; i < n && !bad; i++) {
      int rc = apply_entry(a, &m, &r, ++index);
      if (rc) fprintf(stderr, "  seed %llu: entry %llu: %s\n", (unsigned long long)seed,
                      (unsigned long long)index, mvcc_strerror(rc));
      bad += rc != MVCC_OK;
    }
    if (mvcc_checkpoint(a) != MVCC_OK || mvcc_durable_index(a) != index) {
      fprintf(stderr, "  seed %llu: checkpoint: durable %llu, want %llu\n", (unsigned long long)seed,
              (unsigned long long)mvcc_durable_index(a), (unsigned long long)index);
      bad++;
    }
    free(saved);
    if (!slurp(dir_a, "data.mdb", &saved, &saved_len)) bad++;
    if (at_ckpt.keys) model_free(&at_ckpt);
    model_copy(&at_ckpt, &m);
    rng_at_ckpt = r;
  }
  uint64_t ckpt_index = index;
  /* After the checkpoint: churn, so pages are freed and reused. */
  int after = 20 + (int)(seed % 61); /* not from r: replay starts from r's saved state */
  for (int i = 0; i < after && !bad; i++)
    if (apply_entry(a, &m, &r, ++index) != MVCC_OK) bad++;

  uint8_t *cur = NULL, *ckpt = NULL, *lock = NULL;
  size_t cur_len = 0, ckpt_len = 0, lock_len = 0;
  if (!slurp(dir_a, "data.mdb", &cur, &cur_len) || !slurp(dir_a, "checkpoint", &ckpt, &ckpt_len) ||
      !slurp(dir_a, "lock.mdb", &lock, &lock_len))
    bad++;
  size_t img_len = 0;
  int taken = 0;
  uint8_t *img = bad ? NULL : crash_image(&r, saved, saved_len, cur, cur_len, a->psize, &img_len, &taken);
  static const char marker[] = "running boot-a\n";
  /* The dead process's lock file comes along, reader table and all. */
  if (!bad && (!spit(dir_b, "data.mdb", img, img_len) || !spit(dir_b, "checkpoint", ckpt, ckpt_len) ||
               !spit(dir_b, "marker", marker, strlen(marker)) || !spit(dir_b, "lock.mdb", lock, lock_len)))
    bad++;

  /* The machine rebooted. */
  mvcc_test_set_boot_id("boot-b");
  mvcc_store *b = NULL;
  mvcc_options o = {.dir = dir_b, .checkpoint_ms = 3600000};
  if (!bad && mvcc_open(&o, &b) != MVCC_OK) {
    fprintf(stderr, "  seed %llu: open after power loss failed\n", (unsigned long long)seed);
    bad++;
  }
  if (b) {
    mvcc_txn *t;
    if (mvcc_read_begin(b, &t) == 0) {
      bad += model_check_all(&at_ckpt, t, "restored checkpoint");
      mvcc_txn_end(t);
    } else {
      bad++;
    }
    if (mvcc_durable_index(b) != ckpt_index) bad++;
    /* The caller's log replays what the checkpoint lacks. */
    trng rr = rng_at_ckpt;
    for (uint64_t i = ckpt_index + 1; i <= index && !bad; i++)
      if (apply_entry(b, &at_ckpt, &rr, i) != MVCC_OK) bad++;
    if (!bad && mvcc_read_begin(b, &t) == 0) {
      bad += model_check_all(&m, t, "after replay");
      uint32_t hb = 0, ha = 0;
      mvcc_hash_kv(t, 0, &hb);
      mvcc_txn_end(t);
      if (mvcc_read_begin(a, &t) == 0) {
        mvcc_hash_kv(t, 0, &ha);
        mvcc_txn_end(t);
      }
      if (ha != hb) bad++;
    }
    mvcc_close(b);
  }
  if (bad)
    fprintf(stderr, "FAILED: power loss seed %llu (%d pages of %zu changed; replay with SYNOD_SEED)\n",
            (unsigned long long)seed, taken, img_len / 4096);
  mvcc_test_set_boot_id("boot-a");
  mvcc_close(a);
  mvcc_test_set_boot_id(NULL);
  free(saved);
  free(cur);
  free(ckpt);
  free(lock);
  free(img);
  model_free(&m);
  if (at_ckpt.keys) model_free(&at_ckpt);
  tmpdir_remove(dir_a);
  tmpdir_remove(dir_b);
  return bad;
}

static void test_power_loss(void) {
  uint64_t first = testing_seed(1000);
  int rounds = getenv("SYNOD_SEED") ? 1 : 24 * tlong_factor();
  for (int i = 0; i < rounds; i++) CHECK_INT(power_loss_round(first + (uint64_t)i), ==, 0);
}

/* ---------------------------------------------------------------- markers */

/* A store with k1 (applied 1, checkpointed) and k2 (applied 2, committed
 * after the checkpoint), copied while open as a crash would leave it. */
static void crashed_copy(const char *into, const char *marker) {
  char *dir = tmpdir_new();
  mvcc_test_set_boot_id("boot-a");
  mvcc_store *s = topen_dir(dir);
  mvcc_txn *t;
  mvcc_write_begin(s, &t);
  mvcc_put(t, (const uint8_t *)"k1", 2, (const uint8_t *)"v", 1, 0, NULL);
  mvcc_set_applied(t, 1, 1);
  mvcc_write_commit(t);
  mvcc_checkpoint(s);
  mvcc_write_begin(s, &t);
  mvcc_put(t, (const uint8_t *)"k2", 2, (const uint8_t *)"v", 1, 0, NULL);
  mvcc_set_applied(t, 2, 1);
  mvcc_write_commit(t);
  uint8_t *d;
  size_t n;
  const char *files[] = {"data.mdb", "checkpoint", "lock.mdb"};
  for (int i = 0; i < 3; i++) {
    if (slurp(dir, files[i], &d, &n)) {
      spit(into, files[i], d, n);
      free(d);
    }
  }
  if (marker) spit(into, "marker", marker, strlen(marker));
  mvcc_close(s);
  tmpdir_remove(dir);
}

static uint64_t applied_of(mvcc_store *s) {
  mvcc_txn *t;
  uint64_t index = 0;
  if (mvcc_read_begin(s, &t) == 0) {
    mvcc_applied(t, &index, NULL);
    mvcc_txn_end(t);
  }
  return index;
}

static void test_marker_decisions(void) {
  struct {
    const char *marker;
    bool drop_ckpt, corrupt_ckpt, drop_data;
    int want_rc;
    uint64_t want_applied; /* 2: opened as is, 1: rolled back */
  } cases[] = {
      {"clean boot-a\n", false, false, false, MVCC_OK, 2},
      {"running boot-a\n", false, false, false, MVCC_OK, 2}, /* process crash */
      {"running boot-z\n", false, false, false, MVCC_OK, 1}, /* machine crash */
      {"running boot-z\n", true, false, false, MVCC_EIO, 0},
      {"running boot-z\n", false, true, false, MVCC_EIO, 0},
      {"garbage", false, false, false, MVCC_OK, 1}, /* unreadable: assume the worst */
      {NULL, false, false, false, MVCC_OK, 2},       /* no marker: as is */
      {"clean boot-a\n", false, false, true, MVCC_EIO, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *dir = tmpdir_new();
    crashed_copy(dir, cases[i].marker);
    char p[600];
    if (cases[i].drop_ckpt) {
      path_join(p, sizeof p, dir, "checkpoint");
      unlink(p);
    }
    if (cases[i].drop_data) {
      path_join(p, sizeof p, dir, "data.mdb");
      unlink(p);
    }
    if (cases[i].corrupt_ckpt) {
      uint8_t *d;
      size_t n;
      if (slurp(dir, "checkpoint", &d, &n)) {
        d[n / 2] ^= 1;
        spit(dir, "checkpoint", d, n);
        free(d);
      }
    }
    mvcc_test_set_boot_id("boot-a");
    mvcc_options o = {.dir = dir, .checkpoint_ms = 3600000};
    mvcc_store *s = NULL;
    int rc = mvcc_open(&o, &s);
    if (rc != cases[i].want_rc) fprintf(stderr, "marker case %zu: rc %d\n", i, rc);
    CHECK_INT(rc, ==, cases[i].want_rc);
    if (s) {
      CHECK_INT(applied_of(s), ==, cases[i].want_applied);
      CHECK_INT(mvcc_durable_index(s), ==, cases[i].want_applied);
      const char *k2 = tget(s, "k2", 0, NULL);
      CHECK(cases[i].want_applied == 2 ? k2 != NULL : k2 == NULL);
      CHECK(tget(s, "k1", 0, NULL) != NULL);
      mvcc_close(s);
      /* After any successful open and clean close, the marker says clean. */
      uint8_t *d;
      size_t n;
      CHECK(slurp(dir, "marker", &d, &n) && n > 6 && memcmp(d, "clean ", 6) == 0);
      free(d);
    }
    tmpdir_remove(dir);
  }
  mvcc_test_set_boot_id(NULL);
}

/* While open, the marker names this boot; a real boot id is used by
 * default. */
static void test_marker_running(void) {
  char *dir = tmpdir_new();
  mvcc_store *s = topen_dir(dir);
  uint8_t *d, *boot;
  size_t n, bn;
  REQUIRE_EQ(slurp(dir, "marker", &d, &n), true);
  CHECK(n > 8 && memcmp(d, "running ", 8) == 0);
  if (read_file("/proc/sys/kernel/random/boot_id", &boot, &bn) == 0) {
    CHECK(n == 8 + bn && memcmp(d + 8, boot, bn - 1) == 0);
    free(boot);
  }
  free(d);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- failing checkpoints */

/* The file lands (rename done) but durability is unknown: as if the
 * directory fsync failed. */
static int write_landed_but_failed(const char *path, const void *data, size_t n) {
  write_file_atomic(path, data, n);
  return -1;
}
static int write_failed(const char *path, const void *data, size_t n) {
  (void)path; (void)data; (void)n;
  return -1;
}

static int commit_entry(mvcc_store *s, uint64_t i) {
  mvcc_txn *t;
  int rc = mvcc_write_begin(s, &t);
  if (rc) return rc;
  char k[16];
  snprintf(k, sizeof k, "k%llu", (unsigned long long)i);
  /* Churn: overwrite a handful of big values so freed pages get reused. */
  char v[3000];
  memset(v, (int)i, sizeof v);
  mvcc_put(t, (const uint8_t *)k, strlen(k), (const uint8_t *)v, sizeof v, 0, NULL);
  mvcc_put(t, (const uint8_t *)"hot", 3, (const uint8_t *)v, sizeof v, 0, NULL);
  mvcc_set_applied(t, i, 1);
  return mvcc_write_commit(t);
}

/* Opens a copy of dir as after a power loss and returns its applied index.
 * Failure injection is off meanwhile and `injected` afterwards. */
static uint64_t reopen_with(const char *dir, bool *ok,
                            int (*injected)(const char *, const void *, size_t),
                            const uint8_t *ckpt, size_t ckpt_len) {
  mvcc_test_set_checkpoint_writer(NULL);
  char *copy = tmpdir_new();
  copy_dir_files(dir, copy);
  if (ckpt) spit(copy, "checkpoint", ckpt, ckpt_len); /* the rename did not stick */
  static const char marker[] = "running boot-gone\n";
  spit(copy, "marker", marker, strlen(marker));
  mvcc_test_set_boot_id("boot-new");
  mvcc_options o = {.dir = copy, .checkpoint_ms = 3600000};
  mvcc_store *s = NULL;
  uint64_t applied = 0;
  *ok = mvcc_open(&o, &s) == MVCC_OK;
  if (*ok) {
    applied = applied_of(s);
    int64_t count = 0;
    mvcc_txn *t;
    if (mvcc_read_begin(s, &t) == 0) {
      mvcc_span all = span_from("");
      *ok = mvcc_range(t, &all, 0, 0, 0, NULL, NULL, &count) == MVCC_OK &&
            count == (int64_t)applied + (applied > 0);
      mvcc_txn_end(t);
    }
    mvcc_close(s);
  }
  mvcc_test_set_boot_id("boot-a");
  mvcc_test_set_checkpoint_writer(injected);
  tmpdir_remove(copy);
  return applied;
}

static uint64_t reopen_after_power_loss(const char *dir, bool *ok,
                                        int (*injected)(const char *, const void *, size_t)) {
  return reopen_with(dir, ok, injected, NULL, 0);
}

static void test_failing_checkpoints(void) {
  char *dir = tmpdir_new();
  mvcc_test_set_boot_id("boot-a");
  mvcc_store *s = topen_dir(dir);
  uint64_t i = 0;
  for (; i < 10; i++) CHECK_INT(commit_entry(s, i + 1), ==, MVCC_OK);
  CHECK_INT(mvcc_checkpoint(s), ==, MVCC_OK);
  CHECK_INT(mvcc_durable_index(s), ==, 10);

  /* Not written at all: the old checkpoint stands. */
  for (; i < 20; i++) CHECK_INT(commit_entry(s, i + 1), ==, MVCC_OK);
  mvcc_test_set_checkpoint_writer(write_failed);
  CHECK_INT(mvcc_checkpoint(s), ==, MVCC_EIO);
  CHECK_INT(mvcc_durable_index(s), ==, 10);
  bool ok;
  CHECK_INT(reopen_after_power_loss(dir, &ok, write_failed), ==, 10);
  CHECK(ok);

  /* Written, durability unknown, twice: whichever file survives, its
   * snapshot must still be whole after lots of page reuse. */
  mvcc_test_set_checkpoint_writer(write_landed_but_failed);
  uint8_t *older = NULL;
  size_t older_len = 0;
  for (int round = 0; round < 2; round++) {
    for (int j = 0; j < 10; j++, i++) CHECK_INT(commit_entry(s, i + 1), ==, MVCC_OK);
    CHECK_INT(mvcc_checkpoint(s), ==, MVCC_EIO);
    CHECK_INT(mvcc_durable_index(s), ==, 10);
    if (round == 0) CHECK(slurp(dir, "checkpoint", &older, &older_len)); /* names entry 30 */
  }
  for (int j = 0; j < 200; j++, i++) CHECK_INT(commit_entry(s, i + 1), ==, MVCC_OK);
  CHECK_INT(reopen_after_power_loss(dir, &ok, write_landed_but_failed), ==, 40);
  CHECK(ok);
  /* The directory may also come back with round 1's file. */
  CHECK_INT(reopen_with(dir, &ok, write_landed_but_failed, older, older_len), ==, 30);
  CHECK(ok);

  /* Recovered: a good checkpoint releases the spares and moves on. */
  mvcc_test_set_checkpoint_writer(NULL);
  CHECK_INT(mvcc_checkpoint(s), ==, MVCC_OK);
  CHECK_INT(mvcc_durable_index(s), ==, i);
  CHECK_INT(reopen_after_power_loss(dir, &ok, NULL), ==, i);
  CHECK(ok);

  /* Unsure again and again: the store stops checkpointing and says so in
   * its marker, so even a same-boot reopen rolls back. */
  mvcc_test_set_checkpoint_writer(write_landed_but_failed);
  for (int round = 0; round < 6; round++) {
    CHECK_INT(commit_entry(s, ++i), ==, MVCC_OK);
    CHECK_INT(mvcc_checkpoint(s), ==, MVCC_EIO);
  }
  mvcc_test_set_checkpoint_writer(NULL);
  CHECK_INT(mvcc_checkpoint(s), ==, MVCC_EIO); /* broken for good */
  uint8_t *m;
  size_t mn;
  CHECK(slurp(dir, "marker", &m, &mn) && mn > 8 && memmem(m, mn, "fsync-failed", 12) != NULL);
  free(m);
  free(older);
  mvcc_close(s);
  s = topen_dir(dir); /* same boot, but the marker forces the rollback */
  uint64_t applied = applied_of(s);
  /* Back to the last file that landed: four unsure ones after entry 240,
   * then none (entries i-1 and i came after durability stopped). */
  CHECK_INT(applied, ==, i - 2);
  mvcc_close(s);
  mvcc_test_set_boot_id(NULL);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- kill -9 */

static void child_writer(const char *dir, int fd) {
  mvcc_test_set_boot_id("boot-k");
  mvcc_options o = {.dir = dir, .checkpoint_ms = 3}; /* also die mid-checkpoint */
  mvcc_store *s;
  if (mvcc_open(&o, &s) != MVCC_OK) _exit(3);
  for (uint64_t i = 1; i < 1000000; i++) {
    mvcc_txn *t;
    char k[32], v[64];
    snprintf(k, sizeof k, "k%07llu", (unsigned long long)i);
    snprintf(v, sizeof v, "value-%llu-%0*d", (unsigned long long)i, (int)(i % 40), 0);
    if (mvcc_write_begin(s, &t)) _exit(4);
    mvcc_put(t, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v), 0, NULL);
    if (i % 10 == 0) { /* overwrite and delete older keys: page reuse */
      snprintf(k, sizeof k, "k%07llu", (unsigned long long)(i / 2));
      mvcc_span sp = span_key(k);
      mvcc_delete_range(t, &sp, NULL, NULL, NULL);
    }
    mvcc_set_applied(t, i, 1);
    if (mvcc_write_commit(t)) _exit(5);
    if (write(fd, &i, sizeof i) != sizeof i) _exit(6);
  }
  _exit(0);
}

static int verify_prefix(mvcc_store *s, uint64_t upto, const char *ctx) {
  int bad = 0;
  mvcc_txn *t;
  if (mvcc_read_begin(s, &t)) return 1;
  uint64_t applied;
  mvcc_applied(t, &applied, NULL);
  if (applied < upto) {
    fprintf(stderr, "  %s: applied %llu < %llu reported\n", ctx, (unsigned long long)applied,
            (unsigned long long)upto);
    bad++;
  }
  /* Each entry made exactly one revision, plus one per tenth entry. */
  int64_t want_rev = 1 + (int64_t)applied + (int64_t)(applied / 10);
  if (mvcc_rev(t) != want_rev) {
    fprintf(stderr, "  %s: rev %lld, want %lld\n", ctx, (long long)mvcc_rev(t), (long long)want_rev);
    bad++;
  }
  mvcc_txn_end(t);
  for (uint64_t i = 1; i <= applied && !bad; i++) {
    char k[32], v[64];
    snprintf(k, sizeof k, "k%07llu", (unsigned long long)i);
    snprintf(v, sizeof v, "value-%llu-%0*d", (unsigned long long)i, (int)(i % 40), 0);
    bool deleted = false;
    for (uint64_t j = 10; j <= applied; j += 10)
      if (j / 2 == i) deleted = true;
    int rc;
    const char *got = tget(s, k, 0, &rc);
    if (rc || (deleted ? got != NULL : (!got || strcmp(got, v) != 0))) {
      fprintf(stderr, "  %s: key %s wrong after crash\n", ctx, k);
      bad++;
    }
  }
  return bad;
}

static void copy_dir_files(const char *from, const char *to) {
  const char *files[] = {"data.mdb", "checkpoint", "marker", "lock.mdb"};
  for (int i = 0; i < 4; i++) {
    uint8_t *d;
    size_t n;
    if (slurp(from, files[i], &d, &n)) {
      spit(to, files[i], d, n);
      free(d);
    }
  }
}

static void test_kill9(void) {
  trng r = {testing_seed(77)};
  for (int round = 0; round < 3; round++) {
    char *dir = tmpdir_new();
    int fds[2];
    REQUIRE_EQ(pipe(fds), 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      child_writer(dir, fds[1]);
    }
    close(fds[1]);
    uint64_t target = 100 + trng_below(&r, 1500), last = 0, v;
    while (last < target && read(fds[0], &v, sizeof v) == sizeof v) last = v;
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    while (read(fds[0], &v, sizeof v) == sizeof v) last = v; /* reported before it died */
    close(fds[0]);
    CHECK(WIFSIGNALED(status));
    CHECK(last >= target);

    /* And if the machine had also lost power right after: roll back to the
     * child's last checkpoint, a consistent prefix. */
    char *dir2 = tmpdir_new();
    copy_dir_files(dir, dir2);

    mvcc_test_set_boot_id("boot-k"); /* same boot: a process crash */
    mvcc_store *s = topen_dir(dir);
    CHECK_INT(verify_prefix(s, last, "kill -9"), ==, 0);
    mvcc_close(s);

    mvcc_test_set_boot_id("boot-other");
    s = topen_dir(dir2);
    uint64_t durable = mvcc_durable_index(s);
    CHECK(durable <= last);
    CHECK_INT(verify_prefix(s, durable, "kill -9 then power loss"), ==, 0);
    mvcc_close(s);
    mvcc_test_set_boot_id(NULL);
    tmpdir_remove(dir);
    tmpdir_remove(dir2);
  }
}

int main(void) {
  log_set_level(getenv("SYNOD_LOG") ? LOG_DEBUG : LOG_FATAL);
  signal(SIGPIPE, SIG_IGN);
  /* Both write modes: the pin and the restore must hold whether LMDB
   * pwrites copies or changes pages in the map. */
  const char *only = getenv("SYNOD_MVCC_WRITEMAP"); /* one of them: 0 or 1 */
  for (int writemap = 0; writemap < 2; writemap++) {
    if (only && atoi(only) != writemap) continue;
    mvcc_test_set_writemap(writemap);
    fprintf(stderr, "-- %s\n", writemap ? "MDB_WRITEMAP" : "pwrite");
    RUN(test_marker_running);
    RUN(test_marker_decisions);
    RUN(test_failing_checkpoints);
    RUN(test_kill9);
    RUN(test_power_loss);
  }
  return testing_done();
}
