/* Store lifecycle, transactions and the read-transaction pool. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mvcc_int.h"

/* NULL: LMDB's main database. */
const char *const mvcc_db_names[DB_COUNT] = {
    NULL, "hist", "kidx", "lease_keys",
    "aux_meta", "aux_leases", "aux_members", "aux_alarms", "aux_auth",
};
const unsigned mvcc_db_flags[DB_COUNT] = {
    [DB_KIDX] = MDB_DUPSORT | MDB_DUPFIXED,
    [DB_LEASE_KEYS] = MDB_DUPSORT,
};

enum {
  POOL_MAX = 64,                  /* idle read transactions kept for reuse */
  MAX_READERS = 1024,             /* LMDB reader slots (pool + active + pins) */
};
#define DEFAULT_MAP_SIZE (8ull << 30)
#define DEFAULT_CHECKPOINT_MS 250

static const uint8_t state_key[] = "mvcc.state", cstate_key[] = "mvcc.compact";

static int test_writemap = -1;
void mvcc_test_set_writemap(int mode) { test_writemap = mode; }
bool mvcc_test_writemap(const mvcc_store *s) { return s->writemap; }

/* Whether checkpoints unmap the map's pages (space_release):
 * SYNOD_MVCC_RELEASE=0|1 for benchmarks. */
static bool use_release(void) {
  const char *e = getenv("SYNOD_MVCC_RELEASE");
  if (e && (strcmp(e, "0") == 0 || strcmp(e, "1") == 0)) return e[0] == '1';
  return true;
}

/* The write mode: see mvcc_test_set_writemap. */
static bool use_writemap(void) {
  if (test_writemap >= 0) return test_writemap == 1;
  const char *e = getenv("SYNOD_MVCC_WRITEMAP");
  if (e && (strcmp(e, "0") == 0 || strcmp(e, "1") == 0)) return e[0] == '1';
  /* pwrite: measured as fast in the server, and a third of WRITEMAP's
   * resident memory (docs/storage.md, "Write mode"). */
  return false;
}

const char *mvcc_strerror(int rc) {
  switch (rc) {
  case MVCC_OK: return "ok";
  case MVCC_ECOMPACTED: return "mvcc: required revision has been compacted";
  case MVCC_EFUTURE: return "mvcc: required revision is a future revision";
  case MVCC_ENOSPACE: return "mvcc: database space exceeded";
  case MVCC_EKEYTOOLONG: return "mvcc: key is too long";
  case MVCC_ENOTFOUND: return "mvcc: not found";
  case MVCC_EIO: return "mvcc: storage failure";
  case MVCC_EINVAL: return "mvcc: invalid argument";
  default: return "mvcc: unknown error";
  }
}

int mvcc_lmdb_err(int rc, const char *what) {
  switch (rc) {
  case MDB_SUCCESS: return MVCC_OK;
  case MDB_NOTFOUND: return MVCC_ENOTFOUND;
  case ENOSPC:
  case EDQUOT:
    log_warn("mvcc: %s: the disk is full", what);
    return MVCC_ENOSPACE;
  case MDB_MAP_FULL:
    log_warn("mvcc: %s: database space exceeded (raise the map size or compact)", what);
    return MVCC_ENOSPACE;
  default:
    log_error("mvcc: %s: %s", what, mdb_strerror(rc));
    return MVCC_EIO;
  }
}

int mvcc_corrupt(const char *what, const void *key, size_t key_len) {
  char shown[4 * 48 + 1];
  size_t o = 0;
  const uint8_t *k = key;
  for (size_t i = 0; i < key_len && i < 48; i++) {
    if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\\') shown[o++] = (char)k[i];
    else o += (size_t)snprintf(shown + o, sizeof shown - o, "\\x%02x", k[i]);
  }
  shown[o] = 0;
  log_error("mvcc: corrupt %s record (key \"%s\"%s of %zu bytes); the data file is damaged", what,
            shown, key_len > 48 ? "..." : "", key_len);
  return MVCC_EIO;
}

int mvcc_check_key(const uint8_t *key, size_t key_len) {
  if (key_len == 0 || !key) return MVCC_EINVAL;
  if (key_len > MVCC_MAX_KEY) return MVCC_EKEYTOOLONG;
  return MVCC_OK;
}

/* ---------------------------------------------------------------- ticket lock */

static void ticket_lock_init(ticket_lock *l) {
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  l->next = l->serving = 0;
}

static void ticket_lock_destroy(ticket_lock *l) {
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
}

void ticket_lock_acquire(ticket_lock *l) {
  pthread_mutex_lock(&l->mu);
  uint64_t mine = l->next++;
  while (l->serving != mine) pthread_cond_wait(&l->cv, &l->mu);
  pthread_mutex_unlock(&l->mu);
}

void ticket_lock_release(ticket_lock *l) {
  pthread_mutex_lock(&l->mu);
  l->serving++;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* ---------------------------------------------------------------- state */

int mvcc_state_read(MDB_txn *txn, MDB_dbi main, store_state *st) {
  MDB_val k = {sizeof state_key - 1, (void *)state_key}, v;
  int rc = mdb_get(txn, main, &k, &v);
  if (rc) return mvcc_lmdb_err(rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc, "reading store state");
  if (state_decode(v.mv_data, v.mv_size, st) < 0) {
    log_error("mvcc: corrupt store state record (%zu bytes)", v.mv_size);
    return MVCC_EIO;
  }
  k = (MDB_val){sizeof cstate_key - 1, (void *)cstate_key};
  rc = mdb_get(txn, main, &k, &v);
  if (rc) return mvcc_lmdb_err(rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc, "reading compaction state");
  rc = cstate_decode(v.mv_data, v.mv_size, st);
  if (rc == -2) {
    log_error("mvcc: the store is of format %u; this build reads format %d only",
              get_le32(v.mv_data), STATE_FORMAT);
    return MVCC_EIO;
  }
  if (rc < 0 || state_check(st) < 0) {
    log_error("mvcc: corrupt store state records");
    return MVCC_EIO;
  }
  return MVCC_OK;
}

/* Writes back what changed: the hot record on most commits, the
 * compaction record only when compaction moved. */
static int state_write(mvcc_txn *t) {
  MDB_dbi main = t->s->dbi[DB_MAIN];
  int rc = 0;
  if (t->state_dirty) {
    uint8_t rec[STATE_LEN];
    state_encode(rec, &t->st);
    MDB_val k = {sizeof state_key - 1, (void *)state_key}, v = {STATE_LEN, rec};
    rc = mdb_put(t->txn, main, &k, &v, 0);
  }
  if (!rc && t->compact_dirty) {
    uint8_t rec[CSTATE_LEN];
    cstate_encode(rec, &t->st);
    MDB_val k = {sizeof cstate_key - 1, (void *)cstate_key}, v = {CSTATE_LEN, rec};
    rc = mdb_put(t->txn, main, &k, &v, 0);
  }
  return rc;
}

/* ---------------------------------------------------------------- cursors */

int mvcc_cursor(mvcc_txn *t, int db, MDB_cursor **out) {
  int rc = 0;
  if (!t->cur[db]) {
    rc = mdb_cursor_open(t->txn, t->s->dbi[db], &t->cur[db]);
    if (rc) t->cur[db] = NULL;
  } else if (t->cur_stale[db]) {
    rc = mdb_cursor_renew(t->txn, t->cur[db]);
  }
  if (rc) return mvcc_lmdb_err(rc, "opening a cursor");
  t->cur_stale[db] = false;
  *out = t->cur[db];
  return MVCC_OK;
}

static void close_cursors(mvcc_txn *t) {
  for (int i = 0; i < DB_COUNT; i++) {
    if (t->cur[i]) mdb_cursor_close(t->cur[i]);
    t->cur[i] = NULL;
    t->cur_stale[i] = false;
  }
}

/* ---------------------------------------------------------------- opening */

/* Opens every database. An existing store is opened read-only, so nothing
 * is written before the first checkpoint pins the current snapshot; only a
 * brand-new environment gets a write transaction that creates them. */
static int open_databases(mvcc_store *s, bool *created) {
  MDB_txn *txn;
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
  if (rc) return mvcc_lmdb_err(rc, "beginning a transaction");
  int found = 0;
  for (int i = 0; i < DB_COUNT; i++) {
    rc = mdb_dbi_open(txn, mvcc_db_names[i], mvcc_db_flags[i], &s->dbi[i]);
    if (rc == 0) found += mvcc_db_names[i] != NULL;
    else if (rc != MDB_NOTFOUND) break;
  }
  /* Format 1 kept the latest versions in a database of its own. */
  MDB_dbi old;
  if ((!rc || rc == MDB_NOTFOUND) && mdb_dbi_open(txn, "kv", 0, &old) == 0) {
    mdb_txn_abort(txn);
    log_error("mvcc: %s holds a store of format 1; this build reads format %d only (there is no "
              "migration: restore from a snapshot into an empty directory)", s->dir, STATE_FORMAT);
    return MVCC_EIO;
  }
  if (rc && rc != MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    return mvcc_lmdb_err(rc, "opening a database");
  }
  if (found == DB_COUNT - 1) {
    store_state st;
    rc = mvcc_state_read(txn, s->dbi[DB_MAIN], &st);
    if (!rc) rc = tail_replay(&s->tail, txn, s->dbi[DB_HIST], s->dbi[DB_KIDX], &st);
    if (rc) {
      mdb_txn_abort(txn);
      return rc;
    }
    *created = false;
    return mvcc_lmdb_err(mdb_txn_commit(txn), "opening databases"); /* keeps the handles */
  }
  mdb_txn_abort(txn);
  if (found != 0) {
    log_error("mvcc: %s: only %d of %d databases exist; not a Synod store of this version",
              s->dir, found, DB_COUNT - 1);
    return MVCC_EIO;
  }
  rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  if (rc) return mvcc_lmdb_err(rc, "beginning a transaction");
  for (int i = 0; i < DB_COUNT && !rc; i++)
    rc = mdb_dbi_open(txn, mvcc_db_names[i], mvcc_db_flags[i] | MDB_CREATE, &s->dbi[i]);
  if (!rc) {
    mvcc_txn t = {.s = s, .txn = txn, .st = {.rev = 1}, .state_dirty = true, .compact_dirty = true};
    rc = state_write(&t);
  }
  if (rc) {
    mdb_txn_abort(txn);
    return mvcc_lmdb_err(rc, "creating databases");
  }
  tail_clear(&s->tail);
  s->tail.flushed = 0;
  *created = true;
  return mvcc_lmdb_err(mdb_txn_commit(txn), "creating databases");
}

/* One process per store: the checkpoint logic assumes it owns every writer
 * and every pin. */
static int lock_dir(mvcc_store *s) {
  char path[4096];
  snprintf(path, sizeof path, "%s/synod.lock", s->dir);
  s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s->lock_fd < 0) {
    log_error("mvcc: cannot open %s: %s", path, strerror(errno));
    return MVCC_EIO;
  }
  if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
    log_error("mvcc: %s is in use by another process (%s)", s->dir, strerror(errno));
    return MVCC_EIO;
  }
  return MVCC_OK;
}

void store_free(mvcc_store *s) {
  space_close(s);
  if (s->env) mdb_env_close(s->env);
  pthread_cond_destroy(&s->gate_cv);
  if (s->lock_fd >= 0) close(s->lock_fd);
  ticket_lock_destroy(&s->wlock);
  pthread_mutex_destroy(&s->pool_mu);
  pthread_mutex_destroy(&s->ck_mu);
  pthread_cond_destroy(&s->ck_cv);
  pthread_cond_destroy(&s->ck_done_cv);
  buf_free(&s->wtxn.scratch);
  buf_free(&s->wtxn.work);
  tail_destroy(&s->tail);
  free(s->dir);
  free(s);
}

static void free_read_pool(mvcc_store *s) {
  for (mvcc_txn *t = s->pool, *next; t; t = next) {
    next = t->next;
    close_cursors(t);
    mdb_txn_abort(t->txn);
    free(t);
  }
  s->pool = NULL;
  s->pool_len = 0;
}

void store_env_close(mvcc_store *s) {
  free_read_pool(s);
  space_close(s);
  if (s->env) mdb_env_close(s->env);
  s->env = NULL;
  s->map = NULL;
  s->map_len = 0;
  s->data_fd = -1;
}

int store_env_open(mvcc_store *s, bool *created) {
  return store_env_open_flags(s, 0, created);
}

int store_env_open_flags(mvcc_store *s, unsigned extra, bool *created) {
  int lrc = mdb_env_create(&s->env);
  if (lrc) s->env = NULL;
  if (!lrc) lrc = mdb_env_set_maxdbs(s->env, DB_COUNT + 1); /* and format 1's kv */
  if (!lrc) lrc = mdb_env_set_maxreaders(s->env, MAX_READERS);
  if (!lrc) lrc = mdb_env_set_mapsize(s->env, s->map_size);
  /* NOSYNC: commits never fsync (the caller's log is the durability point,
   * checkpoints make the file durable). NOTLS: read transactions are not
   * tied to threads, so the pool and the checkpoint pin can move. */
  if (!lrc)
    lrc = mdb_env_open(s->env, s->dir, MDB_NOSYNC | MDB_NOTLS | (s->writemap ? MDB_WRITEMAP : 0) | extra, 0600);
  if (!lrc) lrc = mdb_env_get_fd(s->env, &s->data_fd);
  MDB_stat st;
  if (!lrc) lrc = mdb_env_stat(s->env, &st);
  if (!lrc) s->psize = st.ms_psize;
  int rc = lrc ? mvcc_lmdb_err(lrc, "opening the environment") : MVCC_OK;
  if (!rc) rc = open_databases(s, created);
  if (!rc) rc = space_open(s);
  if (!rc) {
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    atomic_store(&s->last_pgno, (uint64_t)info.me_last_pgno);
  }
  if (rc) store_env_close(s);
  return rc;
}

mvcc_store *store_alloc(const char *dir) {
  mvcc_store *s = xcalloc(1, sizeof *s);
  s->dir = xstrdup(dir);
  s->lock_fd = -1;
  s->data_fd = -1;
  s->uffd = -1;
  s->prepare_fd = -1;
  s->checkpoint_ms = DEFAULT_CHECKPOINT_MS;
  s->map_size = DEFAULT_MAP_SIZE;
  ticket_lock_init(&s->wlock);
  pthread_mutex_init(&s->pool_mu, NULL);
  tail_init(&s->tail);
  pthread_cond_init(&s->gate_cv, NULL);
  pthread_mutex_init(&s->ck_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->ck_cv, &ca);
  pthread_cond_init(&s->ck_done_cv, NULL);
  pthread_condattr_destroy(&ca);
  s->wtxn.s = s;
  s->wtxn.write = true;
  return s;
}

int mvcc_open(const mvcc_options *opt, mvcc_store **out) {
  if (!opt || !opt->dir || !*opt->dir || !out || opt->checkpoint_ms < 0) return MVCC_EINVAL;
  *out = NULL;
  mvcc_store *s = store_alloc(opt->dir);
  if (opt->checkpoint_ms) s->checkpoint_ms = opt->checkpoint_ms;
  if (opt->map_size) s->map_size = opt->map_size;

  int rc = MVCC_OK;
  if (mkdir_all(s->dir, 0700) < 0) {
    log_error("mvcc: cannot create %s: %s", s->dir, strerror(errno));
    rc = MVCC_EIO;
  }
  if (!rc) rc = lock_dir(s);
  bool restored = false;
  uint64_t restored_txnid = 0;
  if (!rc) {
    /* A defragmentation that never finished left its copy behind. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/%s", s->dir, MVCC_DEFRAG_TMP);
    unlink(tmp);
    rc = durability_prepare(s, &restored, &restored_txnid);
  }
  if (!rc) {
    s->writemap = use_writemap();
    s->prealloc = space_probe(s->dir) == 0;
    if (s->writemap && !s->prealloc) {
      /* Without fallocate a full disk would be a SIGBUS in WRITEMAP mode. */
      log_warn("mvcc: %s: the filesystem cannot preallocate; writing with pwrite", s->dir);
      s->writemap = false;
    }
    s->release_map = use_release();
  }
  bool created = false;
  if (!rc) rc = store_env_open(s, &created);
  if (!rc && restored) {
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    if (info.me_last_txnid != restored_txnid) {
      log_error("mvcc: restored checkpoint txn %llu but LMDB opened txn %llu",
                (unsigned long long)restored_txnid, (unsigned long long)info.me_last_txnid);
      rc = MVCC_EIO;
    }
  }
  if (!rc) rc = durability_start(s);
  if (rc) {
    store_free(s);
    return rc;
  }
  log_info("mvcc: opened %s%s", s->dir, created ? " (new)" : restored ? " (restored checkpoint)" : "");
  *out = s;
  return MVCC_OK;
}

static bool test_close_flush = true;
void mvcc_test_set_close_flush(bool on) { test_close_flush = on; }

/* Writes the key index's tail to kidx, so the next open replays nothing. */
static void flush_tail(mvcc_store *s) {
  if (s->tail.pending == 0 || !test_close_flush) return;
  mvcc_txn *w;
  if (mvcc_write_begin(s, &w) != MVCC_OK) return;
  if (tail_flush(w) == MVCC_OK) mvcc_write_commit(w);
  else mvcc_txn_end(w);
}

void mvcc_close(mvcc_store *s) {
  if (!s) return;
  if (!s->env_broken) {
    flush_tail(s);
    durability_stop(s);
  }
  free_read_pool(s);
  store_free(s);
}

/* ---------------------------------------------------------------- the gate */

void gate_block_writes(mvcc_store *s) {
  pthread_mutex_lock(&s->pool_mu);
  s->block_writes = true;
  while (s->writers_open > 0) pthread_cond_wait(&s->gate_cv, &s->pool_mu);
  pthread_mutex_unlock(&s->pool_mu);
}

void gate_block_reads(mvcc_store *s) {
  pthread_mutex_lock(&s->pool_mu);
  s->block_images = true;
  while (s->images_open > 0) pthread_cond_wait(&s->gate_cv, &s->pool_mu);
  s->block_reads = true;
  while (s->readers_open > 0) pthread_cond_wait(&s->gate_cv, &s->pool_mu);
  pthread_mutex_unlock(&s->pool_mu);
}

void gate_open(mvcc_store *s) {
  pthread_mutex_lock(&s->pool_mu);
  s->block_images = s->block_reads = s->block_writes = false;
  pthread_cond_broadcast(&s->gate_cv);
  pthread_mutex_unlock(&s->pool_mu);
}

int gate_enter_image(mvcc_store *s) {
  pthread_mutex_lock(&s->pool_mu);
  while (s->block_images || s->block_reads) pthread_cond_wait(&s->gate_cv, &s->pool_mu);
  bool broken = s->env_broken;
  if (!broken) s->readers_open++, s->images_open++;
  pthread_mutex_unlock(&s->pool_mu);
  return broken ? MVCC_EIO : MVCC_OK;
}

void gate_leave_image(mvcc_store *s) {
  pthread_mutex_lock(&s->pool_mu);
  s->images_open--;
  s->readers_open--;
  if (s->block_images || s->block_reads || s->block_writes) pthread_cond_broadcast(&s->gate_cv);
  pthread_mutex_unlock(&s->pool_mu);
}

void gate_leave(mvcc_store *s, bool writer) {
  pthread_mutex_lock(&s->pool_mu);
  if (writer) s->writers_open--;
  else s->readers_open--;
  if (s->block_reads || s->block_writes) pthread_cond_broadcast(&s->gate_cv);
  pthread_mutex_unlock(&s->pool_mu);
}

/* ---------------------------------------------------------------- transactions */

/* Takes a read transaction off the list of open ones; pool_mu held. */
static void unlist_locked(mvcc_store *s, mvcc_txn *t) {
  if (t->active_prev) t->active_prev->active_next = t->active_next;
  else s->active = t->active_next;
  if (t->active_next) t->active_next->active_prev = t->active_prev;
  t->active_next = t->active_prev = NULL;
}

int mvcc_read_begin(mvcc_store *s, mvcc_txn **out) {
  if (!s || !out) return MVCC_EINVAL;
  pthread_mutex_lock(&s->pool_mu);
  while (s->block_reads) pthread_cond_wait(&s->gate_cv, &s->pool_mu);
  if (s->env_broken) {
    pthread_mutex_unlock(&s->pool_mu);
    return MVCC_EIO;
  }
  s->readers_open++;
  mvcc_txn *t = s->pool;
  if (t) {
    s->pool = t->next;
    s->pool_len--;
  } else {
    t = xcalloc(1, sizeof *t);
    t->s = s;
  }
  /* Before the snapshot: the F registered is at most the snapshot's. */
  t->tail_floor = s->tail.flushed;
  t->active_prev = NULL;
  t->active_next = s->active;
  if (s->active) s->active->active_prev = t;
  s->active = t;
  pthread_mutex_unlock(&s->pool_mu);
  int rc = t->txn ? mdb_txn_renew(t->txn) : -1;
  if (rc == 0) {
    for (int i = 0; i < DB_COUNT; i++) t->cur_stale[i] = t->cur[i] != NULL;
  } else {
    if (t->txn) {
      close_cursors(t);
      mdb_txn_abort(t->txn);
      t->txn = NULL;
    }
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
    if (rc) {
      pthread_mutex_lock(&s->pool_mu);
      unlist_locked(s, t);
      pthread_mutex_unlock(&s->pool_mu);
      free(t);
      gate_leave(s, false);
      return mvcc_lmdb_err(rc, "beginning a read transaction");
    }
  }
  rc = mvcc_state_read(t->txn, s->dbi[DB_MAIN], &t->st);
  if (rc) {
    mvcc_txn_end(t);
    return rc;
  }
  *out = t;
  return MVCC_OK;
}

/* Ends the write transaction: commit (returning LMDB's code) or abort. The
 * cursors go first: LMDB frees a write transaction's cursors with it. */
static int write_finish(mvcc_txn *t, bool commit) {
  close_cursors(t);
  int lrc = 0;
  if (commit) lrc = mdb_txn_commit(t->txn);
  else mdb_txn_abort(t->txn);
  t->txn = NULL;
  tail_txn_end(t, commit && !lrc);
  if (commit && !lrc) {
    MDB_envinfo info;
    mdb_env_info(t->s->env, &info);
    atomic_store(&t->s->last_pgno, (uint64_t)info.me_last_pgno);
    space_after_commit(t->s); /* between write transactions */
  }
  ticket_lock_release(&t->s->wlock);
  gate_leave(t->s, true);
  return lrc;
}

void mvcc_txn_end(mvcc_txn *t) {
  if (!t) return;
  mvcc_store *s = t->s;
  if (t->write) {
    write_finish(t, false);
    return;
  }
  mdb_txn_reset(t->txn);
  pthread_mutex_lock(&s->pool_mu);
  unlist_locked(s, t);
  s->readers_open--;
  if (s->block_reads) pthread_cond_broadcast(&s->gate_cv);
  bool keep = s->pool_len < POOL_MAX;
  if (keep) {
    t->next = s->pool;
    s->pool = t;
    s->pool_len++;
  }
  pthread_mutex_unlock(&s->pool_mu);
  if (!keep) {
    close_cursors(t);
    mdb_txn_abort(t->txn);
    free(t);
  }
}

int mvcc_write_begin(mvcc_store *s, mvcc_txn **out) {
  if (!s || !out) return MVCC_EINVAL;
  pthread_mutex_lock(&s->pool_mu);
  while (s->block_writes) pthread_cond_wait(&s->gate_cv, &s->pool_mu);
  if (s->env_broken) {
    pthread_mutex_unlock(&s->pool_mu);
    return MVCC_EIO;
  }
  s->writers_open++;
  pthread_mutex_unlock(&s->pool_mu);
  durability_before_write(s);
  ticket_lock_acquire(&s->wlock);
  tail_purge(s);
  mvcc_txn *t = &s->wtxn;
  t->in_request = false;
  t->sub = 0;
  t->state_dirty = t->compact_dirty = false;
  t->err = MVCC_OK;
  int rc = mdb_txn_begin(s->env, NULL, 0, &t->txn);
  if (rc) {
    ticket_lock_release(&s->wlock);
    gate_leave(s, true);
    return mvcc_lmdb_err(rc, "beginning a write transaction");
  }
  MDB_envinfo info;
  mdb_env_info(s->env, &info); /* the newest commit, which this txn starts from */
  t->space_base = (uint64_t)info.me_last_pgno + 1;
  t->space_pages = 0;
  tail_txn_begin(t);
  rc = mvcc_state_read(t->txn, s->dbi[DB_MAIN], &t->st);
  if (rc) {
    write_finish(t, false);
    return rc;
  }
  *out = t;
  return MVCC_OK;
}

int mvcc_write_commit(mvcc_txn *t) {
  if (!t) return MVCC_EINVAL;
  if (!t->write) {
    mvcc_txn_end(t);
    return MVCC_EINVAL;
  }
  if (t->in_request) mvcc_rev_end(t);
  int rc = t->err;
  if (!rc && t->s->tail.pending >= t->s->tail.max) rc = tail_flush(t);
  if (!rc) rc = space_reserve(t, 0);
  if (!rc && (t->state_dirty || t->compact_dirty)) {
    int lrc = state_write(t);
    if (lrc) rc = mvcc_lmdb_err(lrc, "writing store state");
  }
  if (rc) {
    write_finish(t, false);
    return rc;
  }
  rc = mvcc_lmdb_err(write_finish(t, true), "committing");
  if (!rc) durability_after_commit(t->s);
  return rc;
}

int64_t mvcc_rev(const mvcc_txn *t) { return txn_rev(t); }
int64_t mvcc_compact_rev(const mvcc_txn *t) { return t->st.compact_rev; }
int64_t mvcc_compact_done_rev(const mvcc_txn *t) { return t->st.compact_done_rev; }

void mvcc_set_applied(mvcc_txn *t, uint64_t index, uint64_t term) {
  if (!t || !t->write) return;
  t->st.applied_index = index;
  t->st.applied_term = term;
  t->state_dirty = true;
}

void mvcc_applied(const mvcc_txn *t, uint64_t *index, uint64_t *term) {
  if (index) *index = t->st.applied_index;
  if (term) *term = t->st.applied_term;
}

/* ---------------------------------------------------------------- stats */

int64_t mvcc_db_size(mvcc_store *s) { return (int64_t)((atomic_load(&s->last_pgno) + 1) * s->psize); }

int mvcc_stats_get(mvcc_store *s, mvcc_stats *out) {
  if (!s || !out) return MVCC_EINVAL;
  mvcc_txn *t;
  int rc = mvcc_read_begin(s, &t);
  if (rc) return rc;
  MDB_envinfo info;
  MDB_cursor *fc = NULL;
  uint64_t free_pages = 0;
  int lrc = mdb_env_info(s->env, &info);
  /* dbi 0 is LMDB's free-page database: each record lists pages freed by
   * one transaction, the count first. */
  if (!lrc) lrc = mdb_cursor_open(t->txn, 0, &fc);
  MDB_val k, v;
  while (!lrc && (lrc = mdb_cursor_get(fc, &k, &v, MDB_NEXT)) == 0) {
    size_t n;
    if (v.mv_size < sizeof n) continue;
    memcpy(&n, v.mv_data, sizeof n);
    free_pages += n;
  }
  if (lrc == MDB_NOTFOUND) lrc = 0;
  if (fc) mdb_cursor_close(fc);
  int64_t keys = t->st.live_keys;
  mvcc_txn_end(t);
  if (lrc) return mvcc_lmdb_err(lrc, "reading statistics");
  /* The pages LMDB has used, not the file's length: with MDB_WRITEMAP the
   * file is as long as the map (sparse beyond what is allocated). */
  uint64_t pages = (uint64_t)info.me_last_pgno + 1;
  out->db_size = (int64_t)(pages * s->psize);
  out->db_size_in_use = (int64_t)((pages > free_pages ? pages - free_pages : 0) * s->psize);
  out->keys = keys;
  return MVCC_OK;
}
