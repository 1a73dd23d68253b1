/* Unit tests for store images (kvcore/mvcc/image.c): writing one, checking
 * one (and refusing damaged ones), replacing a live store with one under
 * concurrent readers, defragmenting, and a crash at every step of a
 * replacement (kill and power loss) leaving the old or the new store. */
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "mvcc.h"
#include "mvcc_int.h"
#include "mvcc_testutil.h"
#include "testing.h"

static uint32_t store_hash(mvcc_store *s) {
  mvcc_txn *t;
  uint32_t h = 0;
  if (mvcc_read_begin(s, &t) != MVCC_OK) return 0;
  mvcc_hash_kv(t, 0, &h);
  mvcc_txn_end(t);
  return h;
}

static void set_applied(mvcc_store *s, uint64_t index, uint64_t term) {
  mvcc_txn *w;
  if (mvcc_write_begin(s, &w) != MVCC_OK) return;
  mvcc_set_applied(w, index, term);
  mvcc_write_commit(w);
}

/* n keys under prefix, some overwritten and deleted, a compaction. */
static void fill(mvcc_store *s, const char *prefix, int n, uint64_t applied) {
  char k[64], v[300];
  for (int i = 0; i < n; i++) {
    snprintf(k, sizeof k, "%s/%05d", prefix, i);
    snprintf(v, sizeof v, "%0*d", 10 + (i % 7) * 40, i);
    tput(s, k, v, i % 5 == 0 ? 7 : 0);
  }
  for (int i = 0; i < n; i += 3) {
    snprintf(k, sizeof k, "%s/%05d", prefix, i);
    tput(s, k, "again", 0);
  }
  for (int i = 1; i < n; i += 10) {
    snprintf(k, sizeof k, "%s/%05d", prefix, i);
    tdel(s, span_key(k), NULL);
  }
  mvcc_txn *w;
  if (mvcc_write_begin(s, &w) == MVCC_OK) {
    mvcc_compact(w, trev(s) - n / 4);
    mvcc_write_commit(w);
  }
  set_applied(s, applied, 3);
}

static char *image_to(mvcc_store *s, const char *dir, const char *name, mvcc_image_info *info) {
  char *path = xmalloc(strlen(dir) + strlen(name) + 2);
  sprintf(path, "%s/%s", dir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int rc = fd < 0 ? -1 : mvcc_image_write(s, fd, info);
  if (fd >= 0) close(fd);
  if (rc != MVCC_OK) {
    free(path);
    return NULL;
  }
  return path;
}

static int copy_file(const char *from, const char *to) {
  uint8_t *d;
  size_t n;
  if (read_file(from, &d, &n) < 0) return -1;
  int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int rc = fd < 0 || write(fd, d, n) != (ssize_t)n ? -1 : 0;
  if (fd >= 0) close(fd);
  free(d);
  return rc;
}

static int edit_image(void *arg, mvcc_txn *w) {
  (void)arg;
  mvcc_set_applied(w, 0, 0);
  return mvcc_aux_put(w, MVCC_AUX_META, "who", 3, "me", 2);
}

static int refuse_edit(void *arg, mvcc_txn *w) {
  (void)arg;
  mvcc_aux_put(w, MVCC_AUX_META, "who", 3, "not me", 6);
  return 99;
}

static void test_image_roundtrip(void) {
  char *dir, *out = tmpdir_new();
  mvcc_store *s = topen(&dir);
  fill(s, "k", 800, 1234);
  uint32_t h = store_hash(s);
  int64_t rev = trev(s);
  mvcc_image_info info = {0};
  char *img = image_to(s, out, "img", &info);
  REQUIRE(img != NULL);
  CHECK_INT(info.applied_index, ==, 1234);
  CHECK_INT(info.applied_term, ==, 3);
  CHECK_INT(info.rev, ==, rev);
  CHECK_INT(info.keys, ==, 800 - 80);
  struct stat sb;
  REQUIRE(stat(img, &sb) == 0);
  CHECK_INT(info.bytes, ==, sb.st_size);
  CHECK_INT(sb.st_size % 4096, ==, 0);
  mvcc_image_info again = {0};
  CHECK_INT(mvcc_image_check(img, &again), ==, MVCC_OK);
  CHECK_INT(again.applied_index, ==, 1234);
  CHECK_INT(again.compact_rev, ==, info.compact_rev);

  /* An image can be edited before it is used (a restore, a member's own
   * identity); the history stays. */
  CHECK_INT(mvcc_image_update(img, edit_image, NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_image_update(img, refuse_edit, NULL), ==, 99);
  CHECK_INT(mvcc_image_check(img, &again), ==, MVCC_OK);
  CHECK_INT(again.applied_index, ==, 0);
  CHECK_INT(again.rev, ==, rev);

  /* The image opens as a store with the same contents. */
  char *dir2 = tmpdir_new(), data[4200];
  snprintf(data, sizeof data, "%s/data.mdb", dir2);
  REQUIRE(copy_file(img, data) == 0);
  mvcc_store *s2 = topen_dir(dir2);
  REQUIRE(s2 != NULL);
  CHECK_INT(store_hash(s2), ==, h);
  CHECK_INT(trev(s2), ==, rev);
  int rc;
  CHECK_STR(tget(s2, "k/00003", 0, &rc), "again");
  CHECK(tget(s2, "k/00001", 0, &rc) == NULL);
  CHECK_INT(tput(s2, "new", "x", 0), ==, MVCC_OK);
  mvcc_txn *t;
  REQUIRE(mvcc_read_begin(s2, &t) == MVCC_OK);
  const uint8_t *who;
  size_t who_len;
  CHECK_INT(mvcc_aux_get(t, MVCC_AUX_META, "who", 3, &who, &who_len), ==, MVCC_OK);
  CHECK_MEM(who, who_len, "me", 2);
  mvcc_txn_end(t);
  mvcc_close(s2);
  mvcc_close(s);
  free(img);
  tmpdir_remove(dir2);
  tmpdir_remove(dir);
  tmpdir_remove(out);
}

static int raw_put_image(const char *path, const char *db, const void *key, size_t klen, const void *val,
                         size_t vlen) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  int rc = mdb_env_create(&env);
  if (!rc) rc = mdb_env_set_maxdbs(env, 16);
  if (!rc) rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK, 0600);
  if (!rc) rc = mdb_txn_begin(env, NULL, 0, &txn);
  if (!rc) rc = mdb_dbi_open(txn, db, db ? MDB_CREATE : 0, &dbi);
  MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
  if (!rc) {
    rc = mdb_put(txn, dbi, &k, &v, 0);
    if (!rc) rc = mdb_txn_commit(txn);
    else mdb_txn_abort(txn);
  }
  mdb_env_close(env);
  return rc;
}

static void test_image_check_refuses(void) {
  char *dir, *out = tmpdir_new();
  mvcc_store *s = topen(&dir);
  fill(s, "k", 200, 50);
  char *img = image_to(s, out, "img", NULL);
  REQUIRE(img != NULL);
  mvcc_close(s);
  uint8_t *d;
  size_t n;
  REQUIRE(read_file(img, &d, &n) == 0);
  char bad[4200];
  snprintf(bad, sizeof bad, "%s/bad", out);
  const struct { size_t cut; size_t flip; const char *what; } cases[] = {
      {0, 0, "empty"}, {4096, SIZE_MAX, "one page"}, {0, 16, "meta 0 magic"},
      {0, 4096 + 16, "meta 1 magic"}, {0, 4096 + 16 + 120 + 5, "meta 1 last page"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t len = cases[i].cut ? cases[i].cut : (strcmp(cases[i].what, "empty") == 0 ? 0 : n);
    uint8_t *c = xmemdup(d, n);
    if (cases[i].flip != 0 && cases[i].flip != SIZE_MAX && cases[i].flip < n) c[cases[i].flip] ^= 0x5a;
    int fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, c, len) == (ssize_t)len);
    close(fd);
    free(c);
    if (mvcc_image_check(bad, NULL) != MVCC_EIO) fprintf(stderr, "accepted: %s\n", cases[i].what);
    CHECK_INT(mvcc_image_check(bad, NULL), ==, MVCC_EIO);
  }
  /* Not a multiple of the page size. */
  int fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(write(fd, d, n - 100) == (ssize_t)(n - 100));
  close(fd);
  CHECK_INT(mvcc_image_check(bad, NULL), ==, MVCC_EIO);
  /* Well-formed LMDB, wrong records. */
  uint8_t hk[16] = {0}, junk[3] = {9, 9, 9};
  put_be64(hk, 5);
  REQUIRE(copy_file(img, bad) == 0);
  REQUIRE(raw_put_image(bad, "hist", hk, 16, junk, 3) == 0);
  CHECK_INT(mvcc_image_check(bad, NULL), ==, MVCC_EIO);
  REQUIRE(copy_file(img, bad) == 0);
  REQUIRE(raw_put_image(bad, NULL, "mvcc.state", 10, junk, 3) == 0);
  CHECK_INT(mvcc_image_check(bad, NULL), ==, MVCC_EIO);
  REQUIRE(copy_file(img, bad) == 0);
  uint8_t kd[17] = {0};
  put_be64(kd, 3);
  REQUIRE(raw_put_image(bad, "kidx", "zzz-not-counted", 15, kd, 17) == 0); /* a live key the count lacks */
  CHECK_INT(mvcc_image_check(bad, NULL), ==, MVCC_EIO);
  REQUIRE(copy_file(img, bad) == 0);
  REQUIRE(raw_put_image(bad, "kv", "a", 1, "b", 1) == 0); /* format 1 */
  CHECK_INT(mvcc_image_check(bad, NULL), ==, MVCC_EIO);
  CHECK_INT(mvcc_image_check("/nonexistent/image", NULL), ==, MVCC_EIO);
  CHECK_INT(mvcc_image_check(out, NULL), ==, MVCC_EIO); /* a directory */
  CHECK_INT(mvcc_image_check(img, NULL), ==, MVCC_OK);
  free(d);
  free(img);
  tmpdir_remove(dir);
  tmpdir_remove(out);
}

typedef struct {
  mvcc_store *s;
  int64_t rev_seen;
  uint32_t hash_seen;
  volatile bool stop;
  int errors;
  long reads;
} reader_arg;

/* Reads in a loop: every read transaction sees one store or the other,
 * whole (its revision decides which hash it must have). */
static void *reader(void *arg) {
  reader_arg *r = arg;
  while (!r->stop) {
    mvcc_txn *t;
    if (mvcc_read_begin(r->s, &t) != MVCC_OK) {
      r->errors++;
      continue;
    }
    int64_t rev = mvcc_rev(t);
    uint32_t h = 0;
    mvcc_hash_kv(t, 0, &h);
    mvcc_txn_end(t);
    if (rev == r->rev_seen && h != r->hash_seen) r->errors++;
    r->reads++;
  }
  return NULL;
}

static void test_replace_live(void) {
  char *da, *db, *out = tmpdir_new();
  mvcc_store *a = topen(&da), *b = topen(&db);
  fill(a, "a", 300, 100);
  fill(b, "b", 500, 900);
  tput(b, "extra", "1", 0);
  set_applied(b, 901, 4);
  uint32_t hb = store_hash(b);
  int64_t rb = trev(b);
  char img[4200];
  snprintf(img, sizeof img, "%s/incoming", da); /* same filesystem as the store */
  char *tmpimg = image_to(b, out, "img", NULL);
  REQUIRE(tmpimg != NULL);
  REQUIRE(copy_file(tmpimg, img) == 0);
  mvcc_close(b);

  reader_arg ra = {.s = a, .rev_seen = rb, .hash_seen = hb};
  pthread_t th;
  pthread_create(&th, NULL, reader, &ra);
  usleep(20000);
  CHECK_INT(mvcc_replace(a, img), ==, MVCC_OK);
  ra.stop = true;
  pthread_join(th, NULL);
  CHECK_INT(ra.errors, ==, 0);
  CHECK(ra.reads > 0);
  CHECK(access(img, F_OK) != 0); /* moved into place */
  CHECK_INT(store_hash(a), ==, hb);
  CHECK_INT(trev(a), ==, rb);
  mvcc_txn *t;
  REQUIRE(mvcc_read_begin(a, &t) == MVCC_OK);
  uint64_t idx, term;
  mvcc_applied(t, &idx, &term);
  mvcc_txn_end(t);
  CHECK_INT(idx, ==, 901);
  CHECK_INT(term, ==, 4);
  CHECK_INT(mvcc_durable_index(a), ==, 901);
  CHECK_INT(tput(a, "after", "y", 0), ==, MVCC_OK);
  mvcc_close(a);
  mvcc_store *a2 = topen_dir(da);
  REQUIRE(a2 != NULL);
  int rc;
  CHECK_STR(tget(a2, "after", 0, &rc), "y");
  CHECK_STR(tget(a2, "extra", 0, &rc), "1");
  CHECK(tget(a2, "a/00002", 0, &rc) == NULL);
  /* A damaged image is refused and the store stays as it was. */
  char bad[4200];
  snprintf(bad, sizeof bad, "%s/bad", da);
  int fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(write(fd, "not an image", 12) == 12);
  close(fd);
  uint32_t h2 = store_hash(a2);
  CHECK_INT(mvcc_replace(a2, bad), ==, MVCC_EIO);
  CHECK_INT(store_hash(a2), ==, h2);
  CHECK_INT(tput(a2, "still", "z", 0), ==, MVCC_OK);
  mvcc_close(a2);
  free(tmpimg);
  tmpdir_remove(da);
  tmpdir_remove(db);
  tmpdir_remove(out);
}

/* The helper that ends `held` while replace waits: replace must not swap
 * while a read transaction is open. */
typedef struct {
  mvcc_txn *t;
  volatile bool ended;
} ender_arg;
static void *ender(void *arg) {
  ender_arg *e = arg;
  usleep(100000);
  e->ended = true;
  mvcc_txn_end(e->t);
  return NULL;
}

static void test_replace_waits_for_readers(void) {
  char *da, *db;
  mvcc_store *a = topen(&da), *b = topen(&db);
  fill(a, "a", 50, 10);
  fill(b, "b", 50, 20);
  char img[4200];
  snprintf(img, sizeof img, "%s/incoming", da);
  mvcc_image_info bi;
  char *p = image_to(b, da, "incoming", &bi);
  REQUIRE(p != NULL);
  free(p);
  mvcc_close(b);
  ender_arg e = {0};
  REQUIRE(mvcc_read_begin(a, &e.t) == MVCC_OK);
  pthread_t th;
  pthread_create(&th, NULL, ender, &e);
  CHECK_INT(mvcc_replace(a, img), ==, MVCC_OK);
  CHECK(e.ended); /* returned only after the reader ended */
  pthread_join(th, NULL);
  CHECK_INT(trev(a), ==, bi.rev);
  mvcc_close(a);
  tmpdir_remove(da);
  tmpdir_remove(db);
}

/* An image copy that takes long (held in the image hook here) must not
 * hold up reads while a defragmentation waits to swap the data file: reads
 * run on the gRPC thread, which also carries Raft's messages. */
typedef struct {
  mvcc_store *s;
  int fd;
  int rc;
  atomic_bool done;
} slow_copy;

static atomic_bool image_held, image_release;

static void hold_image(void) {
  atomic_store(&image_held, true);
  while (!atomic_load(&image_release)) usleep(1000);
}

static void *slow_image(void *arg) {
  slow_copy *c = arg;
  c->rc = mvcc_image_write(c->s, c->fd, NULL);
  atomic_store(&c->done, true);
  return NULL;
}

static void *defrag_thread(void *arg) {
  slow_copy *c = arg;
  c->rc = mvcc_defragment(c->s);
  atomic_store(&c->done, true);
  return NULL;
}

static void *read_once(void *arg) {
  slow_copy *c = arg;
  mvcc_txn *t;
  c->rc = mvcc_read_begin(c->s, &t);
  if (c->rc == MVCC_OK) mvcc_txn_end(t);
  atomic_store(&c->done, true);
  return NULL;
}

static bool wait_flag(atomic_bool *f, int ms) {
  for (int i = 0; i < ms && !atomic_load(f); i++) usleep(1000);
  return atomic_load(f);
}

static void test_reads_not_held_by_image_copy(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  fill(s, "k", 400, 9);
  char path[4200];
  snprintf(path, sizeof path, "%s/held.image", dir);
  slow_copy img = {.s = s, .fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)}, defrag = {.s = s}, rd = {.s = s};
  REQUIRE(img.fd >= 0);
  mvcc_test_set_image_hook(hold_image);
  pthread_t ti, td, tr;
  pthread_create(&ti, NULL, slow_image, &img);
  REQUIRE(wait_flag(&image_held, 2000)); /* a copy is under way */
  mvcc_test_set_image_hook(NULL);
  pthread_create(&td, NULL, defrag_thread, &defrag);
  usleep(200 * 1000); /* its own copy is done; it waits for the other copy */
  CHECK(!atomic_load(&defrag.done));
  pthread_create(&tr, NULL, read_once, &rd);
  CHECK(wait_flag(&rd.done, 2000)); /* not blocked behind the copy */
  CHECK_INT(rd.rc, ==, MVCC_OK);
  CHECK(!atomic_load(&defrag.done));
  atomic_store(&image_release, true);
  pthread_join(ti, NULL);
  pthread_join(td, NULL);
  pthread_join(tr, NULL);
  CHECK_INT(img.rc, ==, MVCC_OK);
  CHECK_INT(defrag.rc, ==, MVCC_OK);
  close(img.fd);
  int rc;
  CHECK_STR(tget(s, "k/00003", 0, &rc), "again");
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_defragment(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  char k[32], v[1024];
  memset(v, 'v', sizeof v - 1);
  v[sizeof v - 1] = 0;
  for (int i = 0; i < 3000; i++) {
    snprintf(k, sizeof k, "big/%05d", i);
    tput(s, k, v, 0);
  }
  tdel(s, span_range("big/", "big0"), NULL);
  tput(s, "keep", "me", 0);
  mvcc_txn *w;
  REQUIRE(mvcc_write_begin(s, &w) == MVCC_OK);
  mvcc_compact(w, trev(s));
  while (mvcc_compact_step(w, 100000) > 0) {
  }
  mvcc_write_commit(w);
  set_applied(s, 77, 2);
  mvcc_checkpoint(s);
  mvcc_checkpoint(s);
  mvcc_stats before, after;
  REQUIRE(mvcc_stats_get(s, &before) == MVCC_OK);
  uint32_t h = store_hash(s);
  int64_t rev = trev(s);
  reader_arg ra = {.s = s, .rev_seen = rev, .hash_seen = h};
  pthread_t th;
  pthread_create(&th, NULL, reader, &ra);
  CHECK_INT(mvcc_defragment(s), ==, MVCC_OK);
  ra.stop = true;
  pthread_join(th, NULL);
  CHECK_INT(ra.errors, ==, 0);
  REQUIRE(mvcc_stats_get(s, &after) == MVCC_OK);
  CHECK(after.db_size * 4 < before.db_size);
  CHECK_INT(store_hash(s), ==, h);
  CHECK_INT(trev(s), ==, rev);
  CHECK_INT(mvcc_durable_index(s), ==, 77);
  int rc;
  CHECK_STR(tget(s, "keep", 0, &rc), "me");
  CHECK_INT(tput(s, "later", "1", 0), ==, MVCC_OK);
  mvcc_close(s);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s/%s", dir, MVCC_DEFRAG_TMP);
  CHECK(access(tmp, F_OK) != 0);
  mvcc_store *s2 = topen_dir(dir);
  REQUIRE(s2 != NULL);
  CHECK_STR(tget(s2, "later", 0, &rc), "1");
  mvcc_close(s2);
  tmpdir_remove(dir);
}

/* ---------------------------------------------------------------- crashes */

static int crash_at;
static void crash_hook(int step) {
  if (step == crash_at) _exit(42);
}

/* Copies the store directory's files as they are now (what the disk holds
 * once the page cache is flushed: every file this code fsynced, and more). */
static void copy_dir(const char *from, const char *to) {
  const char *names[] = {"data.mdb", "checkpoint", "marker", "incoming", MVCC_DEFRAG_TMP};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/%s", from, names[i]);
    snprintf(b, sizeof b, "%s/%s", to, names[i]);
    if (access(a, F_OK) == 0) copy_file(a, b);
  }
}

/* For every step of a replacement (and of a defragmentation): a child
 * dies there; the store then opens (as after kill -9, and as after a power
 * loss, on another boot) holding the old or the new contents, whole. */
static void crash_run(bool defrag) {
  for (int step = 1; step <= 8; step++) {
    if (!defrag && step == 3) continue; /* the image is written before only in a defragmentation */
    char *da, *db;
    mvcc_store *a = topen(&da), *b = topen(&db);
    fill(a, "a", 200, 10);
    fill(b, "b", 300, 20);
    uint32_t ha = store_hash(a), hb = defrag ? ha : store_hash(b);
    char img[4200];
    snprintf(img, sizeof img, "%s/incoming", da);
    char *p = image_to(b, da, "incoming", NULL);
    free(p);
    mvcc_close(b);
    mvcc_close(a);
    pid_t pid = fork();
    if (pid == 0) {
      mvcc_store *c = topen_dir(da);
      if (!c) _exit(2);
      tput(c, "a/late", "x", 0); /* in the old store, after its last checkpoint */
      crash_at = step;
      mvcc_test_set_replace_hook(crash_hook);
      int rc = defrag ? mvcc_defragment(c) : mvcc_replace(c, img);
      _exit(rc == MVCC_OK ? 0 : 3);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
    /* Power loss: the same files opened on another boot. */
    char *pl = tmpdir_new();
    copy_dir(da, pl);
    mvcc_test_set_boot_id("another-boot");
    mvcc_store *q = topen_dir(pl);
    mvcc_test_set_boot_id(NULL);
    /* kill -9: opened as it is. */
    mvcc_store *k = topen_dir(da);
    mvcc_store *both[2] = {q, k};
    for (int i = 0; i < 2; i++) {
      if (!both[i]) {
        fprintf(stderr, "step %d (%s): %s did not open\n", step, defrag ? "defrag" : "replace",
                i ? "after kill" : "after power loss");
        CHECK(both[i] != NULL);
        continue;
      }
      int rc;
      bool has_late = tget(both[i], "a/late", 0, &rc) != NULL;
      mvcc_txn *t;
      uint32_t h = 0;
      REQUIRE(mvcc_read_begin(both[i], &t) == MVCC_OK);
      mvcc_hash_kv(t, mvcc_rev(t) - (has_late ? 1 : 0), &h);
      mvcc_txn_end(t);
      /* After a power loss the old store may lack a/late (written after its
       * last checkpoint: the caller's log replays it). */
      bool is_old = h == ha, is_new = defrag ? is_old : (!has_late && h == hb);
      if (!is_old && !is_new)
        fprintf(stderr, "step %d (%s, %s): neither store\n", step, defrag ? "defrag" : "replace",
                i ? "kill" : "power loss");
      CHECK(is_old || is_new);
      /* Up to the environment's close it must be the old one; once the
       * directory is synced, the new one. */
      if (!defrag && step <= 5) CHECK(is_old && !is_new);
      if (!defrag && step >= 7) CHECK(is_new);
      CHECK_INT(tput(both[i], "works", "1", 0), ==, MVCC_OK);
      mvcc_close(both[i]);
    }
    tmpdir_remove(pl);
    tmpdir_remove(da);
    tmpdir_remove(db);
  }
}

static void test_crash_during_replace(void) { crash_run(false); }
static void test_crash_during_defragment(void) { crash_run(true); }

int main(void) {
  RUN(test_image_roundtrip);
  RUN(test_image_check_refuses);
  RUN(test_replace_live);
  RUN(test_replace_waits_for_readers);
  RUN(test_defragment);
  RUN(test_reads_not_held_by_image_copy);
  RUN(test_crash_during_replace);
  RUN(test_crash_during_defragment);
  return testing_done();
}
