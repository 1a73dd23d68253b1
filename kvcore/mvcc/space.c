/* The data file's space and the map's resident pages.
 *
 * A full disk must give MVCC_ENOSPACE, not a crash or an EIO. With
 * MDB_WRITEMAP the writer changes pages in the shared map, and LMDB 0.9
 * ftruncates data.mdb to the map size: a sparse file, where the first store
 * to a page in a hole makes the filesystem allocate a block inside a page
 * fault, and on a full disk the kernel can only answer with SIGBUS. With
 * pwrite, LMDB reports a short write as EIO. So the store keeps the file
 * allocated ahead of LMDB (when the filesystem can fallocate): before each
 * change it checks that the pages the transaction may still use (a
 * generous bound per change, counted in t->space_pages) lie below
 * `allocated`, and fallocates another chunk otherwise. A failed fallocate
 * poisons the transaction with MVCC_ENOSPACE before LMDB touched the page:
 * nothing is committed, the process lives. Pages LMDB reuses from its free
 * list are below the last page, which was allocated when first used (and at
 * open the whole used part is fallocated once, in case of holes).
 *
 * Resident memory: every page touched through the map stays mapped until
 * unmapped (and the kernel maps up to 16 neighbours of a page read), so RSS
 * grows with the history written (WRITEMAP) or read. space_release drops
 * the page-table entries of the whole map (MADV_DONTNEED) once more than
 * SPACE_RESIDENT of it is mapped. On a shared file mapping that only
 * unmaps: the pages stay in the page cache, dirty ones stay dirty (the
 * kernel moves the dirty bit to the page), and the next access, by any
 * reader or the writer, refaults the same bytes. Readers' snapshots are
 * never written while they live (LMDB's rule, which the checkpoint pin
 * relies on too), so what they refault is what they saw. It runs between
 * write transactions: the writer after a commit, or the checkpoint thread
 * under the writer lock.
 *
 * Fault-around: on a read fault in a file mapping the kernel maps not one
 * page but up to 16 neighbours that are in the page cache (whole large
 * folios, up to 2 MiB, where the file was written in big pieces), and
 * MADV_RANDOM does not change that. LMDB's copy-on-write scatters the tree
 * over the file, so the neighbours are mostly pages nobody reads: every
 * fault grew RSS by 64 KiB for the 4 KiB wanted, a put load refilled the
 * budget every few milliseconds (release, refault, release), and a scan of
 * the store mapped file pages faster than the polls could drop them (RSS
 * 167 MB for a full `get --prefix` of 100k keys). The kernel skips
 * fault-around in a range registered with userfaultfd for write-protect
 * tracking, and since Linux 6.7 (UFFD_FEATURE_WP_ASYNC) any file mapping
 * may be registered so, with the kernel itself resolving write-protect
 * faults. The store registers the map and never write-protects a page: no
 * fault ever reaches the descriptor, it only makes each fault map the one
 * page asked for. Kernels or sandboxes without it (EINVAL, EPERM, ENOSYS)
 * keep fault-around; nothing else changes.
 *
 * Small folios for the pages LMDB appends: LMDB writes runs of contiguous
 * new pages with one writev, and the kernel caches such a run in one large
 * folio (up to 2 MiB). Every later pwrite of a single page into it (a
 * commit rewriting a reused page) then walks the buffer heads of the whole
 * folio: 10 us per 4 KiB pwrite into a 2 MiB folio against 1.5 us into a
 * 4 KiB one, measured here, and 6% of the server's CPU under a put load.
 * So in pwrite mode the chunk allocated ahead is part of the file
 * (fallocate without KEEP_SIZE) and the checkpoint thread reads it, 64 KiB
 * a read, through a descriptor without readahead (POSIX_FADV_RANDOM), a few
 * MiB ahead of LMDB: without readahead the kernel caches each page read as
 * one zeroed 4 KiB folio, and LMDB's writes later land in those. Clean
 * page-cache pages, not the process's memory; where the thread falls
 * behind, LMDB's writes make large folios as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mvcc_int.h"

static int (*test_fallocate)(int fd, off_t off, off_t len);

void mvcc_test_set_fallocate(int (*fn)(int fd, off_t off, off_t len)) { test_fallocate = fn; }

static int do_fallocate(int fd, off_t off, off_t len) {
  if (test_fallocate) return test_fallocate(fd, off, len);
  int rc;
  /* Not KEEP_SIZE: the chunk ahead is inside the file, so that
   * space_prepare can read it into the page cache (a read past the end
   * caches nothing). LMDB reads the file's length only to grow a map
   * smaller than it (ours is the configured map size, far larger), and
   * with WRITEMAP the file is already as long as the map. */
  do rc = fallocate(fd, 0, off, len);
  while (rc < 0 && errno == EINTR);
  return rc;
}

/* Finds LMDB's map of data.mdb in /proc/self/maps (LMDB does not say
 * where it is), by device and inode. */
static int find_map(mvcc_store *s) {
  struct stat st;
  if (fstat(s->data_fd, &st) < 0) return -1;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[4352];
  int rc = -1;
  while (rc && fgets(line, sizeof line, f)) {
    unsigned long lo, hi, off, ino;
    unsigned maj, min;
    if (sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &lo, &hi, &off, &maj, &min, &ino) != 6) continue;
    if (off != 0 || ino != (unsigned long)st.st_ino || makedev(maj, min) != st.st_dev) continue;
    s->map = (uint8_t *)lo;
    s->map_len = hi - lo;
    rc = 0;
  }
  fclose(f);
  return rc;
}

/* Makes [0, pages) of data.mdb allocated on disk. */
static int allocate_to(mvcc_store *s, uint64_t pages) {
  /* LMDB never goes past the map (MDB_MAP_FULL): neither need we. */
  uint64_t map_pages = s->map_len / s->psize;
  if (pages > map_pages) pages = map_pages;
  if (pages <= s->allocated) return MVCC_OK;
  uint64_t want = pages + SPACE_CHUNK / s->psize; /* a chunk ahead: fallocate is rare */
  if (want > map_pages) want = map_pages;
  off_t from = (off_t)(s->allocated * s->psize), len = (off_t)((want - s->allocated) * s->psize);
  int rc = do_fallocate(s->data_fd, from, len);
  if (rc < 0 && (errno == ENOSPC || errno == EDQUOT) && want > pages) {
    want = pages; /* no room for a chunk ahead: perhaps for what is needed now */
    len = (off_t)((want - s->allocated) * s->psize);
    rc = do_fallocate(s->data_fd, from, len);
  }
  if (rc < 0) {
    int e = errno;
    if (e == ENOSPC || e == EDQUOT) {
      log_warn("mvcc: %s: the disk is full (%s); refusing writes that need more space", s->dir,
               strerror(e));
      return MVCC_ENOSPACE;
    }
    log_error("mvcc: %s: allocating data.mdb ahead of the map: %s", s->dir, strerror(e));
    return MVCC_EIO;
  }
  s->allocated = want;
  return MVCC_OK;
}

/* The descriptor space_prepare reads through (pwrite mode only: with
 * WRITEMAP, LMDB writes through the map, not with writev). */
static void prepare_open(mvcc_store *s) {
  if (s->writemap || !s->prealloc) return;
  char path[4200];
  snprintf(path, sizeof path, "%s/data.mdb", s->dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  /* Without readahead every read caches exactly the page read. */
  posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  s->prepare_fd = fd;
  s->prepared = 0;
}

void space_prepare(mvcc_store *s) {
  if (s->prepare_fd < 0) return;
  uint64_t from = s->prepared, used = atomic_load(&s->last_pgno) + 1;
  uint64_t end = atomic_load(&s->allocated);
  if (from < used) from = used; /* LMDB got there first: its folios are made */
  uint64_t to = from + SPACE_PREPARE_PAGES;
  if (to > used + SPACE_PREPARE_AHEAD) to = used + SPACE_PREPARE_AHEAD;
  if (to > end) to = end;
  /* Several pages a read: without readahead the kernel still caches each
   * page of a longer read as a folio of its own (checked by
   * test_mvcc_space's test_prepared_pages_are_single), and one pread per
   * 4 KiB page was 2% of the server's CPU under a put load. */
  uint8_t run[SPACE_PREPARE_RUN];
  uint64_t per_read = s->psize <= sizeof run ? sizeof run / s->psize : 0;
  while (per_read && from < to) {
    uint64_t n = to - from < per_read ? to - from : per_read;
    ssize_t got = pread(s->prepare_fd, run, n * s->psize, (off_t)(from * s->psize));
    if (got <= 0) break;
    from += (uint64_t)got / s->psize;
    if ((uint64_t)got < n * s->psize) break;
  }
  s->prepared = from;
}

/* Resident file-backed (and shm) pages of the process: /proc/self/statm's
 * third field. 0 if unreadable. */
static uint64_t shared_pages(void) {
  char text[256];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  unsigned long long size, resident, shared;
  if (n <= 0) return 0;
  text[n] = 0;
  return sscanf(text, "%llu %llu %llu", &size, &resident, &shared) == 3 ? shared : 0;
}

#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15) /* Linux 6.7; Debian 12's headers predate it */
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static bool fault_around_off_wanted = true;

void mvcc_test_set_fault_around_off(bool on) { fault_around_off_wanted = on; }

bool mvcc_test_fault_around_off(const mvcc_store *s) { return s->uffd >= 0; }

/* Registers the map for write-protect tracking, which turns fault-around
 * off (see the top of the file). USER_MODE_ONLY: what an unprivileged
 * process may open; no fault is ever delivered either way. */
static void fault_around_off(mvcc_store *s) {
  if (!fault_around_off_wanted) return;
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (fd < 0) {
    log_debug("mvcc: %s: no userfaultfd (%s); the kernel maps neighbouring pages on faults",
              s->dir, strerror(errno));
    return;
  }
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
  struct uffdio_register reg = {.range = {.start = (uintptr_t)s->map, .len = s->map_len},
                                .mode = UFFDIO_REGISTER_MODE_WP};
  if (ioctl(fd, UFFDIO_API, &api) < 0 || ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
    log_debug("mvcc: %s: cannot register the map with userfaultfd (%s); the kernel maps "
              "neighbouring pages on faults", s->dir, strerror(errno));
    close(fd);
    return;
  }
  s->uffd = fd;
}

void space_close(mvcc_store *s) {
  if (s->prepare_fd >= 0) close(s->prepare_fd);
  s->prepare_fd = -1;
  if (s->uffd < 0) return;
  close(s->uffd); /* unregisters the range */
  s->uffd = -1;
}

int space_open(mvcc_store *s) {
  if (find_map(s) < 0) {
    log_error("mvcc: %s: cannot find the data file's map in /proc/self/maps", s->dir);
    return MVCC_EIO;
  }
  fault_around_off(s);
  space_release(s);
  s->shared_base = shared_pages(); /* libraries and the like: not ours to count */
  if (!s->prealloc) return MVCC_OK;
  prepare_open(s);
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  s->allocated = 0;
  int rc = allocate_to(s, (uint64_t)info.me_last_pgno + 1);
  if (rc == MVCC_OK) return MVCC_OK;
  if (rc == MVCC_ENOSPACE) return MVCC_OK; /* opens; writes will say ENOSPACE */
  return rc;
}

int space_probe(const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/space.probe", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  int rc = do_fallocate(fd, 0, 4096);
  int e = errno;
  close(fd);
  unlink(path);
  errno = e;
  return rc < 0 && (e == EOPNOTSUPP || e == ENOSYS) ? -1 : 0;
}

int space_reserve(mvcc_txn *t, uint64_t pages) {
  mvcc_store *s = t->s;
  t->space_pages += pages;
  if (!s->prealloc) return MVCC_OK;
  int rc = allocate_to(s, t->space_base + t->space_pages + SPACE_COMMIT_PAGES + t->space_pages / 64);
  if (rc) t->err = rc;
  return rc;
}

uint64_t space_change_pages(const mvcc_store *s, size_t key_len, size_t value_len) {
  /* The history record on overflow pages, plus copy-on-write paths and
   * splits in hist, kidx (with a key's dup sub-database) and lease_keys. */
  return (HIST_REC_HDR + key_len + value_len + 64) / s->psize + 1 + SPACE_CHANGE_PAGES;
}

void space_release(mvcc_store *s) {
  if (!s->map || !s->release_map) return;
  if (madvise(s->map, s->map_len, MADV_DONTNEED) < 0)
    log_warn("mvcc: %s: releasing the map's pages: %s", s->dir, strerror(errno));
}

/* Whether more of the file is mapped than SPACE_RESIDENT, or an eighth of
 * the used file if that is more: a big store's branch pages (and the
 * neighbours the kernel maps with them) alone exceed a small budget, and
 * releasing them over and over doubled the writer's CPU at a million keys. */
static bool over_budget(mvcc_store *s) {
  uint64_t shared = shared_pages(), page = (uint64_t)sysconf(_SC_PAGESIZE);
  if (shared <= s->shared_base) return false;
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  uint64_t budget = ((uint64_t)info.me_last_pgno + 1) * s->psize / 8;
  if (budget < SPACE_RESIDENT) budget = SPACE_RESIDENT;
  return (shared - s->shared_base) * page >= budget;
}

void space_poll(mvcc_store *s) {
  if (!s->map || !s->release_map || !over_budget(s)) return;
  ticket_lock_acquire(&s->wlock);
  space_release(s);
  ticket_lock_release(&s->wlock);
}

void space_after_commit(mvcc_store *s) {
  if (!s->map || !s->release_map || ++s->commits_unpolled < SPACE_POLL_COMMITS) return;
  int64_t now = time_mono_ns();
  if (now - s->polled_ns < (int64_t)SPACE_COMMIT_POLL_MS * 1000000) return;
  s->polled_ns = now;
  s->commits_unpolled = 0;
  if (over_budget(s)) space_release(s);
}
