/* Durability without fsync on the commit path.
 *
 * The environment runs with MDB_NOSYNC, so after power loss data.mdb may
 * hold a meta page that points at pages which never reached the disk. A
 * checkpoint makes one snapshot S safe to go back to:
 *
 *   1. under the writer lock, begin a read txn (it sees S, the newest
 *      commit) and copy the two meta pages, which now describe S and S-1;
 *   2. fdatasync data.mdb: every page of S is on disk;
 *   3. write the copied meta pages, S's applied index and a CRC to the
 *      checkpoint file, atomically;
 *   4. keep the read txn open until the next checkpoint has done step 3.
 *
 * While that read txn lives, LMDB reuses no page reachable from S or S-1
 * (pages freed by txn T are reused only once every reader is past T), so
 * S's tree stays on disk bit for bit whatever later NOSYNC commits write.
 * After an unclean shutdown of the machine (marker says "running" and the
 * boot id changed) open writes the saved meta pages back before LMDB sees
 * the file: LMDB opens at S and everything newer is free space. The caller
 * replays its log from mvcc_applied(). A process crash (same boot) loses
 * nothing the page cache holds, so the store opens as is.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mvcc_int.h"

_Static_assert(sizeof(size_t) == 8, "the LMDB meta page layout in record.c assumes LP64");

static const char ckpt_name[] = "checkpoint";
static const char marker_name[] = "marker";
static const char data_name[] = "data.mdb";

static void path_in(const mvcc_store *s, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", s->dir, name);
}

/* ---------------------------------------------------------------- boot id */

static char test_boot_id[BOOT_ID_MAX + 1];
static bool test_boot_id_set;

void mvcc_test_set_boot_id(const char *boot_id) {
  test_boot_id_set = boot_id != NULL;
  if (boot_id) snprintf(test_boot_id, sizeof test_boot_id, "%s", boot_id);
}

static uint64_t test_growth, test_growth_max;
static int (*ckpt_writer)(const char *path, const void *data, size_t n) = write_file_atomic;

void mvcc_test_set_checkpoint_writer(int (*fn)(const char *path, const void *data, size_t n)) {
  ckpt_writer = fn ? fn : write_file_atomic;
}

void mvcc_test_set_growth(uint64_t early, uint64_t max) {
  test_growth = early;
  test_growth_max = max;
}

/* The kernel's boot id, which changes on every boot: how open tells a
 * process crash (same boot, page cache intact) from a machine crash. */
static void read_boot_id(char out[BOOT_ID_MAX + 1]) {
  out[0] = 0;
  if (test_boot_id_set) {
    snprintf(out, BOOT_ID_MAX + 1, "%s", test_boot_id);
    return;
  }
  uint8_t *data;
  size_t n;
  if (read_file("/proc/sys/kernel/random/boot_id", &data, &n) < 0) {
    log_warn("mvcc: cannot read the kernel boot id (%s); every unclean stop will be treated "
             "as a power loss", strerror(errno));
    return;
  }
  while (n && (data[n - 1] == '\n' || data[n - 1] == ' ')) n--;
  if (n > 0 && n <= BOOT_ID_MAX) {
    memcpy(out, data, n);
    out[n] = 0;
  }
  free(data);
}

/* ---------------------------------------------------------------- marker */

/* boot_id NULL: this boot's. A marker that names no real boot ("unknown",
 * "fsync-failed") makes the next open roll back to the checkpoint. */
static int marker_write(mvcc_store *s, bool running, const char *boot_id) {
  marker m = {.running = running};
  if (!boot_id) boot_id = s->boot_id[0] ? s->boot_id : "unknown";
  snprintf(m.boot_id, sizeof m.boot_id, "%s", boot_id);
  char text[128], path[4096];
  int n = marker_encode(text, sizeof text, &m);
  if (n < 0) {
    log_error("mvcc: unusable boot id '%s'", m.boot_id);
    return MVCC_EIO;
  }
  path_in(s, marker_name, path, sizeof path);
  if (write_file_atomic(path, text, (size_t)n) < 0) {
    log_error("mvcc: writing %s: %s", path, strerror(errno));
    return MVCC_EIO;
  }
  return MVCC_OK;
}

/* ---------------------------------------------------------------- restore */

/* Writes the checkpoint's meta pages over pages 0 and 1 of data.mdb. */
static int restore_meta_pages(mvcc_store *s, const ckpt_file *c) {
  char path[4096];
  path_in(s, data_name, path, sizeof path);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    log_error("mvcc: power loss recovery: cannot open %s: %s", path, strerror(errno));
    return MVCC_EIO;
  }
  struct stat st;
  int rc = MVCC_OK;
  if (fstat(fd, &st) < 0) {
    log_error("mvcc: power loss recovery: fstat %s: %s", path, strerror(errno));
    rc = MVCC_EIO;
  }
  /* The checkpointed roots must lie inside the file, or this is not the
   * data file the checkpoint was taken from. */
  uint64_t pages = rc ? 0 : (uint64_t)st.st_size / c->psize;
  for (int i = 0; i < 2 && !rc; i++) {
    lmdb_meta m;
    lmdb_meta_parse(c->meta[i], c->psize, &m); /* validated by ckpt_decode */
    if (m.txnid != c->txnid) continue;
    if (pages < 2 || (m.main_root != LMDB_NO_ROOT && m.main_root >= pages) ||
        (m.free_root != LMDB_NO_ROOT && m.free_root >= pages)) {
      log_error("mvcc: power loss recovery: %s (%llu pages) does not match its checkpoint", path,
                (unsigned long long)pages);
      rc = MVCC_EIO;
    }
  }
  for (int i = 0; i < 2 && !rc; i++) {
    ssize_t w = pwrite(fd, c->meta[i], c->psize, (off_t)i * c->psize);
    if (w != (ssize_t)c->psize) {
      log_error("mvcc: power loss recovery: writing meta page %d: %s", i,
                w < 0 ? strerror(errno) : "short write");
      rc = MVCC_EIO;
    }
  }
  if (!rc && fdatasync(fd) < 0) {
    log_error("mvcc: power loss recovery: fdatasync %s: %s", path, strerror(errno));
    rc = MVCC_EIO;
  }
  close(fd);
  return rc;
}

static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int durability_prepare(mvcc_store *s, bool *restored, uint64_t *restored_txnid) {
  char mpath[4096], cpath[4096], dpath[4096];
  path_in(s, marker_name, mpath, sizeof mpath);
  path_in(s, ckpt_name, cpath, sizeof cpath);
  path_in(s, data_name, dpath, sizeof dpath);
  read_boot_id(s->boot_id);
  *restored = false;

  bool have_data = file_exists(dpath);
  uint8_t *ck = NULL, *mk = NULL;
  size_t ck_len = 0, mk_len = 0;
  bool have_ckpt = read_file(cpath, &ck, &ck_len) == 0;
  bool have_marker = read_file(mpath, &mk, &mk_len) == 0;
  marker m = {0};
  bool marker_ok = have_marker && marker_decode(mk, mk_len, &m) == 0;
  free(mk);

  int rc = MVCC_OK;
  if (!have_data) {
    if (have_ckpt) {
      log_error("mvcc: %s has a checkpoint but no data.mdb; refusing to start empty", s->dir);
      rc = MVCC_EIO;
    }
    free(ck);
    return rc; /* a new store */
  }
  if (!have_marker) {
    if (have_ckpt) log_warn("mvcc: %s: marker file missing; opening the data file as is", s->dir);
    free(ck);
    return MVCC_OK;
  }
  bool same_boot = marker_ok && s->boot_id[0] && strcmp(m.boot_id, s->boot_id) == 0;
  if (marker_ok && !m.running) {
    free(ck);
    return MVCC_OK; /* closed cleanly: the final checkpoint made it durable */
  }
  if (marker_ok && same_boot) {
    log_warn("mvcc: %s was not closed cleanly, but the machine did not restart: the page cache "
             "kept every commit; opening as is", s->dir);
    free(ck);
    return MVCC_OK;
  }
  /* Running on another boot (or a marker we cannot read): pages written
   * after the last checkpoint may never have reached the disk. */
  ckpt_file c;
  if (!have_ckpt || ckpt_decode(ck, ck_len, &c) < 0) {
    log_error("mvcc: %s: the machine restarted while the store was open, and the checkpoint "
              "file is %s: cannot recover a consistent state", s->dir,
              have_ckpt ? "corrupt" : "missing");
    free(ck);
    return MVCC_EIO;
  }
  rc = restore_meta_pages(s, &c);
  if (!rc) {
    log_warn("mvcc: %s: unclean machine restart detected; rolled back to the checkpoint at "
             "revision %lld, applied index %llu (the log replays the rest)",
             s->dir, (long long)c.rev, (unsigned long long)c.applied_index);
    *restored = true;
    *restored_txnid = c.txnid;
  }
  free(ck);
  return rc;
}

/* ---------------------------------------------------------------- checkpoint */

static int read_full(int fd, uint8_t *p, size_t n, off_t off) {
  while (n) {
    ssize_t r = pread(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
    off += r;
  }
  return 0;
}

/* One checkpoint; the caller holds ck_mu (or is open/close, single-threaded). */
static int checkpoint_locked(mvcc_store *s) {
  if (s->ck_broken) return MVCC_EIO;
  if (s->nspare == (int)(sizeof s->spare_pins / sizeof s->spare_pins[0])) {
    /* Checkpoint files keep failing to become durable: stop, keep every
     * snapshot a surviving file could name, and roll back at next open. */
    log_error("mvcc: checkpoints cannot be made durable; durability stops here");
    s->ck_broken = true;
    marker_write(s, true, "fsync-failed");
    return MVCC_EIO;
  }
  int64_t started = time_mono_ns();
  uint8_t *pages = xmalloc(2 * (size_t)s->psize);
  MDB_txn *snap = NULL;
  store_state st;
  int rc = MVCC_OK;

  /* Step 1: the snapshot and its meta pages, with no commit in between. */
  ticket_lock_acquire(&s->wlock);
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  if (s->pin && info.me_last_txnid == s->pin_txnid && s->nspare == 0) {
    ticket_lock_release(&s->wlock);
    free(pages);
    return MVCC_OK; /* nothing committed since the last checkpoint */
  }
  atomic_store(&s->ck_last_pgno, (uint64_t)info.me_last_pgno);
  int lrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &snap);
  if (lrc) {
    snap = NULL;
    rc = mvcc_lmdb_err(lrc, "checkpoint: beginning the snapshot");
  }
  if (!rc && read_full(s->data_fd, pages, 2 * (size_t)s->psize, 0) < 0) {
    log_error("mvcc: checkpoint: reading meta pages: %s", strerror(errno));
    rc = MVCC_EIO;
  }
  /* Between write transactions: RSS back to what is touched from now on. */
  space_release(s);
  ticket_lock_release(&s->wlock);
  uint64_t txnid = snap ? mdb_txn_id(snap) : 0;
  if (!rc) rc = mvcc_state_read(snap, s->dbi[DB_MAIN], &st);

  ckpt_file c = {.psize = s->psize, .txnid = txnid, .meta = {pages, pages + s->psize}};
  buf file = {0};
  if (!rc) {
    c.applied_index = st.applied_index;
    c.applied_term = st.applied_term;
    c.rev = st.rev;
    ckpt_encode(&file, &c);
    ckpt_file check;
    if (ckpt_decode(file.data, file.len, &check) < 0) {
      /* Not the layout record.c knows (another LMDB build?): restoring such
       * pages could destroy the store, so refuse to claim durability. */
      log_error("mvcc: checkpoint: meta pages of txn %llu do not parse as LMDB 0.9 metas",
                (unsigned long long)txnid);
      rc = MVCC_EIO;
    }
  }
  /* Step 2: everything S references is on disk after this. */
  if (!rc && fdatasync(s->data_fd) < 0) {
    /* After a failed fdatasync the kernel may have dropped the dirty pages:
     * nothing written since the last checkpoint can be trusted to be on
     * disk, ever. Stop checkpointing; the next open rolls back to the last
     * good one and the log replays. */
    log_error("mvcc: checkpoint: fdatasync data.mdb: %s; durability stops here", strerror(errno));
    s->ck_broken = true;
    marker_write(s, true, "fsync-failed");
    rc = MVCC_EIO;
  }
  /* Step 3. */
  bool unsure = false; /* the new file is in place, but maybe not durably */
  if (!rc) {
    char path[4096];
    path_in(s, ckpt_name, path, sizeof path);
    if (ckpt_writer(path, file.data, file.len) < 0) {
      log_error("mvcc: checkpoint: writing %s: %s", path, strerror(errno));
      uint8_t *back = NULL;
      size_t n = 0;
      unsure = read_file(path, &back, &n) == 0 && n == file.len && memcmp(back, file.data, n) == 0;
      free(back);
      if (!unsure) rc = MVCC_EIO; /* the old file still stands, and its pin */
    }
  }
  buf_free(&file);
  free(pages);
  if (rc) {
    if (snap) mdb_txn_abort(snap);
    return rc;
  }
  /* Step 4: S is now the restore point. The previous one may be reused,
   * unless the file naming S might not survive (then either may be read
   * after power loss, and both stay pinned). */
  MDB_txn *old = s->pin;
  s->pin = snap;
  s->pin_txnid = txnid;
  if (unsure) {
    if (old) s->spare_pins[s->nspare++] = old;
    log_warn("mvcc: checkpoint at txn %llu may not be durable; keeping older snapshots pinned",
             (unsigned long long)txnid);
    return MVCC_EIO;
  }
  if (old) mdb_txn_abort(old);
  for (int i = 0; i < s->nspare; i++) mdb_txn_abort(s->spare_pins[i]);
  s->nspare = 0;
  atomic_store(&s->durable_index, st.applied_index);
  log_debug("mvcc: checkpoint txn %llu, applied index %llu, %llu pages, %.1f ms",
            (unsigned long long)txnid, (unsigned long long)st.applied_index,
            (unsigned long long)atomic_load(&s->ck_last_pgno) + 1,
            (double)(time_mono_ns() - started) / 1e6);
  return MVCC_OK;
}

int mvcc_checkpoint(mvcc_store *s) {
  if (!s) return MVCC_EINVAL;
  pthread_mutex_lock(&s->ck_mu);
  int rc = checkpoint_locked(s);
  pthread_mutex_unlock(&s->ck_mu);
  return rc;
}

uint64_t mvcc_durable_index(mvcc_store *s) { return atomic_load(&s->durable_index); }

/* Bytes the file grew since the last checkpoint began. */
static uint64_t growth(mvcc_store *s) {
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  uint64_t last = info.me_last_pgno, base = atomic_load(&s->ck_last_pgno);
  return last > base ? (last - base) * s->psize : 0;
}

void durability_after_commit(mvcc_store *s) {
  if (atomic_load(&s->ck_urgent) || growth(s) < s->ck_growth) return;
  atomic_store(&s->ck_urgent, true);
  pthread_cond_signal(&s->ck_cv); /* a hint: the flag covers a missed wakeup */
}

void durability_before_write(mvcc_store *s) {
  if (growth(s) < s->ck_growth_max) return;
  pthread_mutex_lock(&s->ck_mu);
  /* A checkpoint may have finished while this thread waited for ck_mu. */
  if (s->ck_thread_running && !s->ck_stop && !s->ck_broken && growth(s) >= s->ck_growth_max) {
    log_debug("mvcc: file grew %llu MiB since the last checkpoint; writes wait for the next",
              (unsigned long long)(growth(s) >> 20));
    uint64_t gen = s->ck_gen;
    atomic_store(&s->ck_urgent, true);
    pthread_cond_signal(&s->ck_cv);
    while (s->ck_gen == gen && s->ck_thread_running && !s->ck_stop)
      pthread_cond_wait(&s->ck_done_cv, &s->ck_mu);
  }
  pthread_mutex_unlock(&s->ck_mu);
}

static void *checkpoint_main(void *arg) {
  pthread_setname_np(pthread_self(), "synod-ckpt");
  mvcc_store *s = arg;
  pthread_mutex_lock(&s->ck_mu);
  while (!s->ck_stop) {
    /* Until the next checkpoint is due, look at the map's resident pages
     * every SPACE_POLL_MS (space.c). */
    int64_t due = time_mono_ns() + (int64_t)s->checkpoint_ms * 1000000;
    while (!s->ck_stop && !atomic_load(&s->ck_urgent) && time_mono_ns() < due) {
      int64_t until = time_mono_ns() + (int64_t)SPACE_POLL_MS * 1000000;
      if (until > due) until = due;
      struct timespec ts = {until / 1000000000, until % 1000000000};
      while (!s->ck_stop && !atomic_load(&s->ck_urgent) &&
             pthread_cond_timedwait(&s->ck_cv, &s->ck_mu, &ts) == 0) {
      }
      if (!s->ck_stop && !atomic_load(&s->ck_urgent)) {
        space_poll(s);
        pthread_mutex_unlock(&s->ck_mu); /* reads for milliseconds: hold nobody back */
        space_prepare(s);
        pthread_mutex_lock(&s->ck_mu);
      }
    }
    if (s->ck_stop) break;
    atomic_store(&s->ck_urgent, false);
    checkpoint_locked(s); /* failures are logged; the next tick retries */
    s->ck_gen++;
    pthread_cond_broadcast(&s->ck_done_cv);
  }
  pthread_mutex_unlock(&s->ck_mu);
  return NULL;
}

int durability_start(mvcc_store *s) {
  s->ck_stop = false; /* a replaced environment starts again */
  atomic_store(&s->ck_urgent, false);
  s->ck_growth = test_growth ? test_growth : CKPT_GROWTH;
  s->ck_growth_max = test_growth_max ? test_growth_max : CKPT_GROWTH_MAX;
  /* Pin the current snapshot before anything can write: after a kill -9 the
   * previous process's pin is gone, and the checkpoint file still points at
   * pages that new commits could otherwise reuse. */
  int rc = checkpoint_locked(s);
  if (!rc) rc = marker_write(s, true, NULL);
  if (!rc && pthread_create(&s->ck_thread, NULL, checkpoint_main, s) != 0) {
    log_error("mvcc: cannot start the checkpoint thread");
    rc = MVCC_EIO;
  }
  if (rc) {
    if (s->pin) mdb_txn_abort(s->pin);
    s->pin = NULL;
    return rc;
  }
  s->ck_thread_running = true;
  return MVCC_OK;
}

int durability_stop(mvcc_store *s) {
  if (s->ck_thread_running) {
    pthread_mutex_lock(&s->ck_mu);
    s->ck_stop = true;
    pthread_cond_signal(&s->ck_cv);
    pthread_cond_broadcast(&s->ck_done_cv);
    pthread_mutex_unlock(&s->ck_mu);
    pthread_join(s->ck_thread, NULL);
    s->ck_thread_running = false;
  }
  /* Only a store whose final state is on disk may be called clean. */
  int rc = checkpoint_locked(s);
  if (rc == 0) rc = marker_write(s, false, NULL);
  else log_error("mvcc: %s: final checkpoint failed; the next open will roll back", s->dir);
  if (s->pin) mdb_txn_abort(s->pin);
  s->pin = NULL;
  for (int i = 0; i < s->nspare; i++) mdb_txn_abort(s->spare_pins[i]);
  s->nspare = 0;
  return rc;
}
