/* Tests for the data file's space and the map's resident pages (space.c),
 * in both write modes: a full disk is MVCC_ENOSPACE (never SIGBUS) and
 * commits nothing, db_size counts used pages, and releasing the map under
 * concurrent readers changes nothing they read. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "mvcc.h"
#include "mvcc_int.h"
#include "mvcc_testutil.h"
#include "testing.h"

#define K(s) (const uint8_t *)(s), strlen(s)

static int64_t count_keys(mvcc_store *s) {
  mvcc_txn *t;
  int64_t n = -1;
  if (mvcc_read_begin(s, &t) == 0) {
    mvcc_span all = span_from("");
    if (mvcc_range(t, &all, 0, 0, 0, NULL, NULL, &n) != MVCC_OK) n = -1;
    mvcc_txn_end(t);
  }
  return n;
}

/* Writes batches of 10 big values until one fails; returns that code, and
 * the keys committed before it. */
static int fill(mvcc_store *s, int *committed) {
  char value[3000];
  memset(value, 'v', sizeof value);
  *committed = 0;
  for (int i = 0; i < 100000; i++) {
    mvcc_txn *t;
    int rc = mvcc_write_begin(s, &t);
    for (int j = 0; j < 10 && !rc; j++) {
      char key[32];
      snprintf(key, sizeof key, "key-%06d", i * 10 + j);
      rc = mvcc_put(t, K(key), (const uint8_t *)value, sizeof value, 0, NULL);
    }
    if (rc) {
      /* Poisoned: the commit must fail alike and write nothing. */
      if (mvcc_write_commit(t) != rc) return MVCC_EINVAL;
      return rc;
    }
    rc = mvcc_write_commit(t);
    if (rc) return rc;
    *committed += 10;
  }
  return MVCC_OK;
}

/* In a child with its own mount namespace: a 6 MiB tmpfs, a store on it,
 * writes until the disk is full. Exit 0: ENOSPACE and the store intact;
 * 77: no tmpfs could be mounted (not root): skipped. */
static void disk_full_child(const char *dir) {
  if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
      mount("tmpfs", dir, "tmpfs", 0, "size=6m") < 0)
    _exit(77);
  mvcc_options o = {.dir = dir, .map_size = 64 << 20, .checkpoint_ms = 3600000};
  mvcc_store *s;
  if (mvcc_open(&o, &s) != MVCC_OK) _exit(2);
  int committed;
  int rc = fill(s, &committed);
  if (rc != MVCC_ENOSPACE || committed == 0) {
    fprintf(stderr, "  fill: %s after %d keys\n", mvcc_strerror(rc), committed);
    _exit(3);
  }
  if (count_keys(s) != committed) _exit(4);
  mvcc_stats st;
  if (mvcc_stats_get(s, &st) != MVCC_OK || st.db_size > 6 << 20) _exit(5);
  /* Deleting needs little space and may or may not fit; either way no
   * crash, and what fails is refused cleanly. */
  mvcc_txn *t;
  if (mvcc_write_begin(s, &t) != MVCC_OK) _exit(6);
  mvcc_span one = span_key("key-000000");
  rc = mvcc_delete_range(t, &one, NULL, NULL, NULL);
  if (rc != MVCC_OK && rc != MVCC_ENOSPACE) _exit(7);
  rc = mvcc_write_commit(t);
  if (rc != MVCC_OK && rc != MVCC_ENOSPACE) _exit(8);
  mvcc_close(s);
  if (mvcc_open(&o, &s) != MVCC_OK) _exit(9);
  int64_t n = count_keys(s);
  if (n != committed && n != committed - 1) _exit(10);
  mvcc_close(s);
  _exit(0);
}

static void test_disk_full(void) {
  char *dir = tmpdir_new();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) disk_full_child(dir);
  int status;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    fprintf(stderr, "  skipped: cannot mount a tmpfs here (needs root)\n");
  } else {
    if (WIFSIGNALED(status)) fprintf(stderr, "  child died of signal %d\n", WTERMSIG(status));
    else if (WEXITSTATUS(status)) fprintf(stderr, "  child failed at step %d\n", WEXITSTATUS(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  tmpdir_remove(dir);
}

/* fallocate fails as on a full disk once `allow` calls have passed. */
static int allow;
static int failing_fallocate(int fd, off_t off, off_t len) {
  if (allow-- > 0) return fallocate(fd, 0, off, len);
  errno = ENOSPC;
  return -1;
}

static void test_injected_enospc(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  REQUIRE(s->prealloc); /* /tmp is ext4 or tmpfs here */
  CHECK_INT(tput(s, "a", "1", 0), ==, MVCC_OK);
  allow = 0;
  mvcc_test_set_fallocate(failing_fallocate);
  /* 8 MiB values: past the chunk allocated ahead within a few puts. */
  size_t n = 8 << 20;
  uint8_t *big = xcalloc(1, n);
  int rc = MVCC_OK, i;
  for (i = 0; i < 20 && rc == MVCC_OK; i++) {
    mvcc_txn *t;
    REQUIRE_EQ(mvcc_write_begin(s, &t), MVCC_OK);
    rc = mvcc_put(t, K("big"), big, n, 0, NULL);
    if (rc) CHECK_INT(mvcc_write_commit(t), ==, MVCC_ENOSPACE);
    else rc = mvcc_write_commit(t);
  }
  CHECK_INT(rc, ==, MVCC_ENOSPACE);
  int rrc;
  CHECK(tget(s, "a", 0, &rrc) != NULL);
  mvcc_test_set_fallocate(NULL);
  /* Space is back: writes work again. */
  mvcc_txn *t;
  REQUIRE_EQ(mvcc_write_begin(s, &t), MVCC_OK);
  CHECK_INT(mvcc_put(t, K("big"), big, n, 0, NULL), ==, MVCC_OK);
  CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  free(big);
  mvcc_close(s);
  tmpdir_remove(dir);
}

static void test_db_size(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  CHECK_INT(tput(s, "a", "1", 0), ==, MVCC_OK);
  mvcc_stats st;
  CHECK_INT(mvcc_stats_get(s, &st), ==, MVCC_OK);
  char path[600];
  snprintf(path, sizeof path, "%s/data.mdb", dir);
  struct stat fst;
  REQUIRE_EQ(stat(path, &fst), 0);
  /* Used pages, whatever the file's length (the map's, with WRITEMAP). */
  CHECK(st.db_size > 0 && st.db_size < 1 << 20);
  CHECK(st.db_size <= fst.st_size);
  if (s->writemap) CHECK(fst.st_size >= 8ll << 30);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* Readers check values while the map is released again and again, and
 * the writer keeps overwriting (between its transactions, as in the store). */
typedef struct {
  mvcc_store *s;
  atomic_bool stop;
  int bad;
} release_run;

static void *release_reader(void *p) {
  release_run *r = p;
  while (!atomic_load(&r->stop)) {
    mvcc_txn *t;
    if (mvcc_read_begin(r->s, &t)) {
      r->bad++;
      break;
    }
    tkv_list l = {0};
    mvcc_span all = span_from("");
    if (mvcc_range(t, &all, 0, 0, 0, tkv_collect, &l, NULL) != MVCC_OK || l.n != 200) r->bad++;
    /* Every value is its key's number repeated, whatever the version. */
    for (size_t i = 0; i < l.n; i++) {
      char want[8];
      snprintf(want, sizeof want, "%.5s", (const char *)l.v[i].key + 4);
      for (size_t j = 0; j + 5 <= l.v[i].value_len; j += 5)
        if (memcmp(l.v[i].value + j, want, 5) != 0) r->bad++;
    }
    tkv_list_clear(&l);
    mvcc_txn_end(t);
  }
  return NULL;
}

static void test_release_under_readers(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  char value[2000];
  for (int round = 0; round < 3; round++) {
    mvcc_txn *t;
    REQUIRE_EQ(mvcc_write_begin(s, &t), MVCC_OK);
    for (int k = 0; k < 200; k++) {
      char key[16];
      snprintf(key, sizeof key, "key-%05d", k);
      for (size_t j = 0; j + 5 <= sizeof value; j += 5) memcpy(value + j, key + 4, 5);
      CHECK_INT(mvcc_put(t, K(key), (const uint8_t *)value, 1000 + (size_t)round * 5, 0, NULL), ==,
                MVCC_OK);
    }
    CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
  }
  release_run r = {.s = s};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, release_reader, &r);
  for (int i = 0; i < 300; i++) {
    char key[16];
    snprintf(key, sizeof key, "key-%05d", i % 200);
    for (size_t j = 0; j + 5 <= sizeof value; j += 5) memcpy(value + j, key + 4, 5);
    mvcc_txn *t;
    REQUIRE_EQ(mvcc_write_begin(s, &t), MVCC_OK);
    CHECK_INT(mvcc_put(t, K(key), (const uint8_t *)value, 500 + (size_t)(i % 7) * 5, 0, NULL), ==,
              MVCC_OK);
    space_release(s); /* in the transaction: the harder case */
    CHECK_INT(mvcc_write_commit(t), ==, MVCC_OK);
    space_release(s);
    if (i % 50 == 0) CHECK_INT(mvcc_checkpoint(s), ==, MVCC_OK);
  }
  atomic_store(&r.stop, true);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  CHECK_INT(r.bad, ==, 0);
  mvcc_close(s);
  tmpdir_remove(dir);
}

/* Resident file pages of the process, in KiB. */
static long rss_file_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "RssFile:", 8) == 0) kb = atol(line + 8);
  if (f) fclose(f);
  return kb;
}

/* Opens the store at dir (fault-around off or not), reads every 40th of
 * 4000 keys, and returns how much of the file that mapped, in KiB. */
static long mapped_by_scattered_reads(const char *dir, bool fault_around_off, bool *registered) {
  mvcc_test_set_fault_around_off(fault_around_off);
  mvcc_options o = {.dir = dir, .checkpoint_ms = 3600 * 1000};
  mvcc_store *s;
  *registered = false;
  CHECK_INT(mvcc_open(&o, &s), ==, MVCC_OK);
  if (!s) return 0;
  *registered = mvcc_test_fault_around_off(s);
  space_release(s);
  long before = rss_file_kb();
  for (int k = 0; k < 4000; k += 40) {
    char key[16];
    snprintf(key, sizeof key, "key-%05d", k);
    int rc;
    CHECK(tget(s, key, 0, &rc) != NULL);
  }
  long grown = rss_file_kb() - before;
  mvcc_close(s);
  mvcc_test_set_fault_around_off(true);
  return grown;
}

/* With the map registered with userfaultfd (space.c), a read fault maps the
 * page read, not its neighbours: 100 point reads over an 8 MiB store map
 * a few pages each, where fault-around maps 16 pages or whole folios per
 * fault. */
static void test_fault_around_off(void) {
  char *dir;
  mvcc_store *s = topen(&dir);
  REQUIRE_EQ(tfill(s, 4000, 100, 2000), MVCC_OK);
  mvcc_close(s);
  bool registered, unused;
  long with_fault_around = mapped_by_scattered_reads(dir, false, &unused);
  long without = mapped_by_scattered_reads(dir, true, &registered);
  if (!registered) {
    /* Only a kernel before 6.7, or one without userfaultfd, may refuse. */
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) == 0) sscanf(u.release, "%d.%d", &major, &minor);
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
    bool kernel_can = fd >= 0 && (major > 6 || (major == 6 && minor >= 7));
    if (fd >= 0) close(fd);
    CHECK(!kernel_can);
    fprintf(stderr, "  skipped: this kernel cannot turn fault-around off (needs Linux 6.7)\n");
  } else {
    fprintf(stderr, "  100 reads mapped %ld KiB (with fault-around %ld KiB)\n", without, with_fault_around);
    CHECK(without < 100 * 8 * 4); /* a few pages per read: the kidx and hist paths */
    CHECK(without * 4 < with_fault_around);
  }
  tmpdir_remove(dir);
}

/* The checkpoint thread reads the part of data.mdb allocated ahead into the
 * page cache, several pages a read, so that LMDB's later pwrites land in
 * 4 KiB folios (space.c, "Small folios"): a large folio made a 4 KiB
 * pwrite into it cost 10 us instead of 1.5. Checked through
 * /proc/kpageflags (root only; skipped otherwise). */
static bool in_large_folio(int pagemap, int kpageflags, const void *addr, bool *known) {
  uint64_t entry = 0, flags = 0;
  *known = false;
  long page = sysconf(_SC_PAGESIZE);
  if (pread(pagemap, &entry, 8, (off_t)((uintptr_t)addr / (uintptr_t)page * 8)) != 8 || !(entry >> 63))
    return false;
  uint64_t pfn = entry & ((1ull << 55) - 1);
  if (pfn == 0 || pread(kpageflags, &flags, 8, (off_t)(pfn * 8)) != 8) return false;
  *known = true;
  return flags & ((1ull << 15) | (1ull << 16)); /* KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL */
}

static void test_prepared_pages_are_single(void) {
  int kpageflags = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
  if (kpageflags < 0) {
    fprintf(stderr, "  skipped: /proc/kpageflags is not readable (%s)\n", strerror(errno));
    return;
  }
  char *dir;
  mvcc_store *s = topen(&dir);
  if (s->writemap || !s->prealloc) { /* nothing is prepared: LMDB writes through the map, or no fallocate */
    fprintf(stderr, "  skipped: %s\n", s->writemap ? "WRITEMAP" : "no fallocate here");
    close(kpageflags);
    mvcc_close(s);
    tmpdir_remove(dir);
    return;
  }
  CHECK_INT(tput(s, "a", "1", 0), ==, MVCC_OK);
  char path[600];
  snprintf(path, sizeof path, "%s/data.mdb", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  /* A fresh store uses a few pages; pages 64..1087 lie in what the
   * checkpoint thread prepares (SPACE_PREPARE_AHEAD past the last page). */
  enum { FIRST = 64, COUNT = 1024 };
  size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (FIRST + COUNT) * page;
  uint8_t *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
  REQUIRE(m != MAP_FAILED);
  unsigned char resident[FIRST + COUNT];
  int cached = 0;
  for (int tries = 0; tries < 500 && cached < COUNT; tries++) {
    usleep(10000);
    REQUIRE_EQ(mincore(m, len, resident), 0);
    cached = 0;
    for (int i = FIRST; i < FIRST + COUNT; i++) cached += resident[i] & 1;
  }
  CHECK_INT(cached, ==, COUNT);
  REQUIRE_EQ(madvise(m + FIRST * page, COUNT * page, MADV_POPULATE_READ), 0);
  int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  REQUIRE(pagemap >= 0);
  int large = 0, known = 0;
  for (int i = FIRST; i < FIRST + COUNT; i++) {
    bool k;
    large += in_large_folio(pagemap, kpageflags, m + (size_t)i * page, &k);
    known += k;
  }
  if (known == 0) {
    /* Page frame numbers read as 0 without CAP_SYS_ADMIN. */
    fprintf(stderr, "  skipped: /proc/self/pagemap hides page frame numbers here\n");
  } else {
    fprintf(stderr, "  %d of %d prepared pages in large folios\n", large, known);
    CHECK_INT(known, ==, COUNT);
    CHECK_INT(large, ==, 0);
  }
  close(pagemap);
  munmap(m, len);
  close(fd);
  close(kpageflags);
  mvcc_close(s);
  tmpdir_remove(dir);
}

int main(void) {
  log_set_level(getenv("SYNOD_LOG") ? LOG_DEBUG : LOG_FATAL);
  for (int writemap = 0; writemap < 2; writemap++) {
    mvcc_test_set_writemap(writemap);
    fprintf(stderr, "-- %s\n", writemap ? "MDB_WRITEMAP" : "pwrite");
    RUN(test_disk_full);
    RUN(test_injected_enospc);
    RUN(test_db_size);
    RUN(test_release_under_readers);
    RUN(test_fault_around_off);
    RUN(test_prepared_pages_are_single);
  }
  return testing_done();
}
