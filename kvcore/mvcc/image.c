/* Store images: a compact copy of the environment in one file, checking
 * one before trusting it, and putting one in the store's place.
 *
 * Replacing the environment must survive a crash at any step, power loss
 * included, leaving the old store or the new one and never a mix. What
 * could mix them is the checkpoint file: it holds the old data file's meta
 * pages, and an open that finds the marker "running" on another boot
 * writes those pages back into data.mdb. So before the data file changes,
 * the old store is checkpointed a last time and marked "clean" (the next
 * open uses data.mdb as it finds it, and ignores the checkpoint file); the
 * image is fsynced before it is renamed over data.mdb (so whichever name
 * survives a power loss names a whole file), and the directory after. The
 * reopened store's first checkpoint writes a checkpoint file for the new
 * data before the marker says "running" again. Steps, with the state a
 * crash there leaves:
 *
 *   1 writers held back          old store, marker running: as usual
 *   2 final checkpoint, clean    old store, clean
 *   3 image written (defrag)     old store, clean; the copy is removed at open
 *   4 readers held back          old store, clean
 *   5 environment closed         old store, clean
 *   6 renamed, dir not synced    old or new store (both whole), clean
 *   7 dir synced                 new store, clean
 *   8 reopened, checkpointed     new store, marker running, its checkpoint
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mvcc_int.h"

static void (*replace_hook)(int step);
void mvcc_test_set_replace_hook(void (*fn)(int step)) { replace_hook = fn; }
static void at_step(int step) {
  if (replace_hook) replace_hook(step);
}
static void (*image_hook)(void);
void mvcc_test_set_image_hook(void (*fn)(void)) { image_hook = fn; }

/* ---------------------------------------------------------------- writing */

/* The image is written record by record, in key order, into a fresh
 * environment over fd: every page is filled (MDB_APPEND), so a store that
 * lost half its records to deletes and compaction shrinks by half.
 * (LMDB's own compacting copy only drops free pages: half-empty pages stay
 * half-empty.) One read transaction is the source, so the image is one
 * commit of the store; the destination commits every COPY_BATCH records to
 * bound its dirty pages, and is synced at the end. */
enum { COPY_BATCH = 50000, COPY_BATCH_BYTES = 64 << 20 };

static int copy_db(MDB_env *dst, MDB_txn **dtxn, MDB_txn *src, MDB_dbi sdbi, int db, size_t *pending,
                   size_t *pending_bytes) {
  MDB_dbi ddbi;
  int lrc = mdb_dbi_open(*dtxn, mvcc_db_names[db], mvcc_db_flags[db] | MDB_CREATE, &ddbi);
  MDB_cursor *sc = NULL, *dc = NULL;
  if (!lrc) lrc = mdb_cursor_open(src, sdbi, &sc);
  if (!lrc) lrc = mdb_cursor_open(*dtxn, ddbi, &dc);
  bool dups = (mvcc_db_flags[db] & MDB_DUPSORT) != 0;
  MDB_val k, v, prev = {0, NULL};
  uint8_t prev_key[MVCC_MAX_KEY + 1];
  int grc;
  while (!lrc && (grc = mdb_cursor_get(sc, &k, &v, MDB_NEXT)) == 0) {
    bool same = dups && prev.mv_data && k.mv_size == prev.mv_size && memcmp(k.mv_data, prev.mv_data, k.mv_size) == 0;
    lrc = mdb_cursor_put(dc, &k, &v, same ? MDB_APPENDDUP : MDB_APPEND);
    if (dups && k.mv_size <= MVCC_MAX_KEY) {
      memcpy(prev_key, k.mv_data, k.mv_size);
      prev = (MDB_val){k.mv_size, prev_key};
    }
    *pending_bytes += k.mv_size + v.mv_size;
    if (!lrc && (++*pending >= COPY_BATCH || *pending_bytes >= COPY_BATCH_BYTES)) {
      /* Commit and go on in a new transaction, the cursor reopened at the
       * end of what is there (appends continue after it). */
      mdb_cursor_close(dc);
      dc = NULL;
      lrc = mdb_txn_commit(*dtxn);
      *dtxn = NULL;
      if (!lrc) lrc = mdb_txn_begin(dst, NULL, 0, dtxn);
      if (!lrc) lrc = mdb_cursor_open(*dtxn, ddbi, &dc);
      *pending = *pending_bytes = 0;
    }
  }
  if (!lrc && grc != MDB_NOTFOUND) lrc = grc;
  if (sc) mdb_cursor_close(sc);
  if (dc) mdb_cursor_close(dc);
  return lrc;
}

static int copy_env(mvcc_store *s, int fd) {
  if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
    log_error("mvcc: image: preparing the output file: %s", strerror(errno));
    return MVCC_EIO;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  MDB_env *dst = NULL;
  MDB_txn *src = NULL, *dtxn = NULL;
  int lrc = mdb_env_create(&dst);
  if (!lrc) lrc = mdb_env_set_maxdbs(dst, DB_COUNT + 1);
  if (!lrc) lrc = mdb_env_set_mapsize(dst, s->map_size);
  if (!lrc) lrc = mdb_env_open(dst, path, MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOSYNC, 0600);
  if (!lrc) lrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &src);
  if (!lrc) lrc = mdb_txn_begin(dst, NULL, 0, &dtxn);
  size_t pending = 0, pending_bytes = 0;
  for (int db = 0; db < DB_COUNT && !lrc; db++) {
    if (db == DB_MAIN) continue; /* its records are the others' roots, and the state (below) */
    lrc = copy_db(dst, &dtxn, src, s->dbi[db], db, &pending, &pending_bytes);
  }
  static const char *const state_keys[] = {"mvcc.state", "mvcc.compact"};
  MDB_dbi dmain;
  if (!lrc) lrc = mdb_dbi_open(dtxn, NULL, 0, &dmain);
  for (size_t i = 0; i < 2 && !lrc; i++) {
    MDB_val k = {strlen(state_keys[i]), (void *)state_keys[i]}, v;
    lrc = mdb_get(src, s->dbi[DB_MAIN], &k, &v);
    if (!lrc) lrc = mdb_put(dtxn, dmain, &k, &v, 0);
  }
  if (!lrc) {
    lrc = mdb_txn_commit(dtxn);
    dtxn = NULL;
  }
  MDB_envinfo info;
  if (!lrc) lrc = mdb_env_info(dst, &info);
  if (!lrc) lrc = mdb_env_sync(dst, 1);
  if (dtxn) mdb_txn_abort(dtxn);
  if (src) mdb_txn_abort(src);
  uint32_t psize = s->psize;
  if (dst) mdb_env_close(dst);
  if (lrc) return mvcc_lmdb_err(lrc, "writing an image");
  /* LMDB may have grown the file past its last page: an image is exactly
   * its pages. */
  if (ftruncate(fd, (off_t)((uint64_t)(info.me_last_pgno + 1) * psize)) < 0) {
    log_error("mvcc: image: trimming the file: %s", strerror(errno));
    return MVCC_EIO;
  }
  return MVCC_OK;
}

int mvcc_image_write(mvcc_store *s, int fd, mvcc_image_info *info) {
  if (!s || fd < 0) return MVCC_EINVAL;
  /* Counted as a reader: the environment must not be swapped mid-copy. */
  int rc = gate_enter_image(s);
  if (rc) return rc;
  if (image_hook) image_hook();
  rc = copy_env(s, fd);
  gate_leave_image(s);
  if (!rc && info) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    rc = mvcc_image_check(path, info);
  }
  return rc;
}

/* ---------------------------------------------------------------- checking */

static int bad_image(const char *path, const char *why) {
  log_error("mvcc: %s is not a usable store image: %s", path, why);
  return MVCC_EIO;
}

/* Every history record decodes and none is beyond the state's revision. */
static int check_hist(const char *path, MDB_txn *txn, MDB_dbi dbi, const store_state *st) {
  MDB_cursor *c;
  int lrc = mdb_cursor_open(txn, dbi, &c);
  if (lrc) return mvcc_lmdb_err(lrc, "image: opening a cursor");
  MDB_val k, v;
  int rc = MVCC_OK;
  while (!rc && (lrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
    int64_t main, sub;
    hist_rec r;
    if (hist_key_decode(k.mv_data, k.mv_size, &main, &sub) < 0 || hist_rec_decode(v.mv_data, v.mv_size, &r) < 0)
      rc = bad_image(path, "a history record does not decode");
    else if (main > st->rev)
      rc = bad_image(path, "a history record is newer than the store's revision");
  }
  mdb_cursor_close(c);
  if (!rc && lrc != MDB_NOTFOUND) rc = mvcc_lmdb_err(lrc, "image: reading history");
  return rc;
}

/* Every index entry decodes, and the keys whose newest entry (in the
 * tail, rebuilt from hist, else in kidx) is not a deletion are as many as
 * the state says are live. */
static int check_kidx(const char *path, MDB_txn *txn, MDB_dbi dbi, const store_state *st, kidx_tail *tl) {
  MDB_cursor *c;
  int lrc = mdb_cursor_open(txn, dbi, &c);
  if (lrc) return mvcc_lmdb_err(lrc, "image: opening a cursor");
  MDB_val k, v;
  int rc = MVCC_OK;
  int64_t live = 0;
  while (!rc && (lrc = mdb_cursor_get(c, &k, &v, MDB_NEXT_NODUP)) == 0) {
    if (k.mv_size < 1 || k.mv_size > MVCC_MAX_KEY) {
      rc = bad_image(path, "an index key has an impossible length");
      break;
    }
    int64_t main, sub, prev_main = 0, prev_sub = -1;
    bool del = false;
    int drc = 0;
    for (drc = mdb_cursor_get(c, &k, &v, MDB_FIRST_DUP); drc == 0 && !rc;
         drc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
      if (kidx_decode(v.mv_data, v.mv_size, &main, &sub, &del) < 0 || main > st->rev ||
          main < prev_main || (main == prev_main && sub <= prev_sub))
        rc = bad_image(path, "an index entry does not decode");
      prev_main = main, prev_sub = sub;
    }
    if (!rc && drc != MDB_NOTFOUND) rc = mvcc_lmdb_err(drc, "image: reading the index");
    int64_t tm, ts;
    bool tdel;
    if (tail_find(tl, false, k.mv_data, k.mv_size, st->kidx_flushed, st->rev, INT64_MAX, 0, &tm, &ts, &tdel))
      del = tdel;
    if (!rc && !del) live++;
  }
  mdb_cursor_close(c);
  if (!rc && lrc != MDB_NOTFOUND) rc = mvcc_lmdb_err(lrc, "image: reading the index");
  if (!rc && live != st->live_keys) rc = bad_image(path, "the live-key count does not match the index");
  return rc;
}

static int check_env(const char *path, MDB_env *env, mvcc_image_info *info) {
  MDB_txn *txn;
  int lrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
  if (lrc) return mvcc_lmdb_err(lrc, "image: beginning a transaction");
  MDB_dbi dbi[DB_COUNT], old;
  int rc = MVCC_OK;
  for (int i = 0; i < DB_COUNT && !rc; i++) {
    lrc = mdb_dbi_open(txn, mvcc_db_names[i], mvcc_db_flags[i], &dbi[i]);
    if (lrc) rc = bad_image(path, lrc == MDB_NOTFOUND ? "a database is missing" : mdb_strerror(lrc));
  }
  if (!rc && mdb_dbi_open(txn, "kv", 0, &old) == 0) rc = bad_image(path, "it holds a store of format 1");
  store_state st;
  if (!rc) rc = mvcc_state_read(txn, dbi[DB_MAIN], &st);
  if (!rc) rc = check_hist(path, txn, dbi[DB_HIST], &st);
  kidx_tail tl = {0};
  tail_init(&tl);
  if (!rc) rc = tail_replay(&tl, txn, dbi[DB_HIST], dbi[DB_KIDX], &st);
  if (rc == MVCC_EIO) rc = bad_image(path, "its history names a key the index lacks, or does not decode");
  if (!rc) rc = check_kidx(path, txn, dbi[DB_KIDX], &st, &tl);
  tail_destroy(&tl);
  mdb_txn_abort(txn);
  if (!rc && info) {
    info->applied_index = st.applied_index;
    info->applied_term = st.applied_term;
    info->rev = st.rev;
    info->compact_rev = st.compact_rev;
    info->keys = st.live_keys;
  }
  return rc;
}

int mvcc_image_check(const char *path, mvcc_image_info *info) {
  if (!path) return MVCC_EINVAL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    log_error("mvcc: cannot open image %s: %s", path, strerror(errno));
    return MVCC_EIO;
  }
  struct stat sb;
  uint8_t *head = xmalloc(IMAGE_HEADER_MAX);
  size_t want = 0;
  ssize_t got = -1;
  if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
    want = (uint64_t)sb.st_size < IMAGE_HEADER_MAX ? (size_t)sb.st_size : IMAGE_HEADER_MAX;
    got = pread(fd, head, want, 0);
  }
  close(fd);
  image_header h;
  bool ok = got >= 0 && (size_t)got == want && image_header_parse(head, want, (uint64_t)sb.st_size, &h) == 0;
  free(head);
  if (!ok) return bad_image(path, "not an LMDB data file of whole pages whose meta pages point inside it");

  /* Read-only, no lock file, the path is the data file itself. */
  MDB_env *env;
  int lrc = mdb_env_create(&env);
  if (lrc) return mvcc_lmdb_err(lrc, "image: creating an environment");
  lrc = mdb_env_set_maxdbs(env, DB_COUNT + 1);
  if (!lrc) lrc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOLOCK | MDB_NOSUBDIR | MDB_NOTLS, 0);
  int rc = lrc ? bad_image(path, mdb_strerror(lrc)) : check_env(path, env, info);
  mdb_env_close(env);
  if (!rc && info) info->bytes = (uint64_t)sb.st_size;
  return rc;
}

/* ---------------------------------------------------------------- updating */

int mvcc_image_update(const char *path, mvcc_update_fn fn, void *arg) {
  if (!path || !fn) return MVCC_EINVAL;
  int rc = mvcc_image_check(path, NULL);
  if (rc) return rc;
  /* A store object over the file alone: no lock file, no checkpoints, no
   * preallocation; the commit is made durable with one sync. */
  mvcc_store *s = store_alloc(path);
  bool created;
  rc = store_env_open_flags(s, MDB_NOSUBDIR | MDB_NOLOCK, &created);
  mvcc_txn *w = NULL;
  if (!rc) rc = mvcc_write_begin(s, &w);
  if (!rc) {
    rc = fn(arg, w);
    if (rc) mvcc_txn_end(w);
    else rc = mvcc_write_commit(w);
  }
  if (!rc) {
    int lrc = mdb_env_sync(s->env, 1);
    if (lrc) rc = mvcc_lmdb_err(lrc, "syncing an image");
  }
  store_env_close(s);
  store_free(s);
  return rc;
}

/* ---------------------------------------------------------------- replacing */

static int sync_file(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

/* The directory holding path. */
static void dir_of(const char *path, char *out, size_t cap) {
  char *copy = xstrdup(path);
  snprintf(out, cap, "%s", dirname(copy));
  free(copy);
}

/* After a failure before the swap: the old store goes on as it was. */
static int resume(mvcc_store *s, int rc) {
  if (durability_start(s) != MVCC_OK) log_error("mvcc: %s: cannot restart checkpoints", s->dir);
  pthread_mutex_unlock(&s->ck_mu);
  gate_open(s);
  return rc;
}

/* image_path NULL: defragment (the image is made here, while writers wait). */
static int replace_env(mvcc_store *s, const char *image_path) {
  int64_t started = time_mono_ns();
  gate_block_writes(s);
  at_step(1);
  int rc = durability_stop(s);
  pthread_mutex_lock(&s->ck_mu); /* a concurrent mvcc_checkpoint waits for the new environment */
  if (rc) {
    log_error("mvcc: %s: cannot make the store durable before replacing it", s->dir);
    return resume(s, MVCC_EIO);
  }
  at_step(2);
  char tmp[4200], data[4200], src_dir[4200];
  snprintf(tmp, sizeof tmp, "%s/%s", s->dir, MVCC_DEFRAG_TMP);
  snprintf(data, sizeof data, "%s/data.mdb", s->dir);
  const char *src = image_path;
  if (!image_path) {
    src = tmp;
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      log_error("mvcc: defragment: creating %s: %s", tmp, strerror(errno));
      return resume(s, MVCC_EIO);
    }
    rc = copy_env(s, fd); /* readers go on meanwhile; nobody writes */
    if (!rc && fdatasync(fd) < 0) {
      log_error("mvcc: defragment: fdatasync %s: %s", tmp, strerror(errno));
      rc = MVCC_EIO;
    }
    close(fd);
    if (!rc) rc = mvcc_image_check(tmp, NULL); /* never swap in what cannot be read */
    if (rc) {
      unlink(tmp);
      return resume(s, rc);
    }
    at_step(3);
  } else if (sync_file(image_path) < 0) {
    log_error("mvcc: replace: fsync %s: %s", image_path, strerror(errno));
    return resume(s, MVCC_EIO);
  }
  dir_of(src, src_dir, sizeof src_dir);

  gate_block_reads(s);
  at_step(4);
  store_env_close(s);
  at_step(5);
  bool swapped = rename(src, data) == 0;
  if (!swapped) {
    log_error("mvcc: replace: renaming %s to %s: %s", src, data, strerror(errno));
    rc = MVCC_EIO;
  } else {
    at_step(6);
    if (fsync_dir(s->dir) < 0 || (strcmp(src_dir, s->dir) != 0 && fsync_dir(src_dir) < 0))
      log_warn("mvcc: replace: fsync of the directory failed: %s", strerror(errno));
    at_step(7);
  }
  bool created;
  int orc = store_env_open(s, &created);
  if (!orc) orc = durability_start(s);
  pthread_mutex_unlock(&s->ck_mu);
  if (orc) {
    log_error("mvcc: %s: cannot reopen the store after replacing its data file", s->dir);
    pthread_mutex_lock(&s->pool_mu);
    s->env_broken = true;
    pthread_mutex_unlock(&s->pool_mu);
    gate_open(s);
    return MVCC_EIO;
  }
  at_step(8);
  gate_open(s);
  if (swapped)
    log_info("mvcc: %s: %s in %.0f ms", s->dir, image_path ? "replaced by an image" : "defragmented",
             (double)(time_mono_ns() - started) / 1e6);
  return rc;
}

int mvcc_replace(mvcc_store *s, const char *image_path) {
  if (!s || !image_path) return MVCC_EINVAL;
  int rc = mvcc_image_check(image_path, NULL);
  if (rc) return rc;
  return replace_env(s, image_path);
}

int mvcc_defragment(mvcc_store *s) {
  if (!s) return MVCC_EINVAL;
  return replace_env(s, NULL);
}
