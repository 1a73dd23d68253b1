/* mvcc_int.h - what the files of kvcore/mvcc share; not part of the API.
 *
 *   store.c       open/close, transactions, the read-txn pool, stats
 *   durability.c  checkpoints, the unclean-boot marker, power-loss restore
 *   space.c       the file allocated ahead (disk full = ENOSPACE), map release
 *   read.c        range, changes, get_before, lease_keys, hash
 *   write.c       put, delete_range, request brackets, commit
 *   compact.c     logical and physical compaction, the "kept" rule
 *   aux.c         aux tables
 *   image.c       images: write, check, replace the store, defragment
 *   record.c      byte layouts (record.h)
 */
#ifndef SYNOD_MVCC_INT_H
#define SYNOD_MVCC_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "base.h"
#include "mvcc.h"
#include "record.h"

/* LMDB databases, in one environment. A commit rewrites the main
 * database's page (it holds the named databases' roots), so the store's
 * own records live there too rather than in a database of their own. */
enum {
  DB_MAIN,       /* LMDB's main database: "mvcc.state", "mvcc.compact" */
  DB_HIST,       /* BE64 main | BE64 sub -> hist_rec (every change, every value) */
  DB_KIDX,       /* user key -> sorted 17-byte dups (main, sub, type); newest = current */
  DB_LEASE_KEYS, /* BE64 lease -> sorted user keys */
  DB_AUX,        /* DB_AUX + mvcc_aux_table */
  DB_COUNT = DB_AUX + MVCC_AUX_COUNT
};

/* Names (NULL: the main database) and flags of the databases. */
extern const char *const mvcc_db_names[DB_COUNT];
extern const unsigned mvcc_db_flags[DB_COUNT];

/* The key index's tail (tail.c): newer entries of keys kidx holds. */
typedef struct tail_key tail_key;
typedef struct {
  uint64_t hash; /* beside the pointer: a probe reads no key it does not want */
  tail_key *key; /* NULL: empty */
} tail_slot;
typedef struct {
  pthread_rwlock_t lock; /* readers around a lookup; the writer around a change */
  tail_slot *slots;      /* open addressing, power-of-two capacity, at most half full */
  size_t cap, n_keys;
  _Atomic size_t n_dups; /* entries held: readers skip the lock at 0 */
  size_t max;            /* a commit flushes once this many changes are above F */
  /* The writer's alone. */
  size_t unflushed;          /* tail entries above F */
  size_t pending;            /* changes above F, tail entries or not: what an open replays */
  size_t unflushed_at_begin, pending_at_begin; /* restored by an abort */
  tail_key **undo;           /* keys appended to by the open transaction */
  size_t undo_n, undo_cap;
  bool purge_wanted;         /* a flush committed: drop what it wrote, once readers allow */
  /* The committed F; readers register it as they begin. Guarded by the
   * store's pool_mu (the writer reads it without). */
  int64_t flushed;
} kidx_tail;
enum { TAIL_MAX = 16384 };

struct mvcc_txn {
  mvcc_store *s;
  MDB_txn *txn;
  bool write;
  store_state st; /* as of begin; a write txn updates it in memory */
  MDB_cursor *cur[DB_COUNT];
  bool cur_stale[DB_COUNT]; /* read txn reused from the pool: renew first */
  mvcc_txn *next;           /* read-txn pool link */
  /* Read transactions: open ones are listed (pool_mu) with the F they
   * registered at begin, which bounds what tail_purge may drop. */
  mvcc_txn *active_next, *active_prev;
  int64_t tail_floor;

  /* Write transactions only. */
  bool in_request;  /* between rev_begin and rev_end */
  int64_t sub;      /* changes so far in the current request */
  bool state_dirty;   /* st's "mvcc.state" part must be written at commit */
  bool compact_dirty; /* ... and its "mvcc.compact" part */
  int err;          /* sticky: a failed LMDB write poisons the txn */
  uint64_t space_base;  /* pages in use when the txn began (space.c) */
  uint64_t space_pages; /* bound on the pages it has used since */
  buf scratch;      /* prev copies handed out by mvcc_put */
  buf work;         /* compaction's list of entries to remove */
};

/* A FIFO lock: the writer mutex. Checkpoints need it for a moment, and a
 * plain mutex would let a writer that commits in a tight loop starve them. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t next, serving;
} ticket_lock;

struct mvcc_store {
  char *dir;
  MDB_env *env;
  MDB_dbi dbi[DB_COUNT];
  int data_fd;  /* LMDB's own descriptor for data.mdb */
  int lock_fd;  /* flock'd: one process per store */
  uint32_t psize;
  bool writemap; /* MDB_WRITEMAP: the writer changes pages in the map */
  uint8_t *map;  /* LMDB's map of data.mdb (space.c) */
  size_t map_len;
  bool prealloc;      /* fallocate works: the file is allocated ahead (space.c) */
  _Atomic uint64_t allocated; /* pages of data.mdb known allocated on disk (the writer's;
                                * space_prepare reads it) */
  int prepare_fd;      /* data.mdb read without readahead, or -1 (space_prepare) */
  uint64_t prepared;   /* checkpoint thread only: pages below are prepared, or LMDB's */
  bool release_map;   /* unmap the map's pages at checkpoints */
  int uffd;           /* userfaultfd that turns off fault-around on the map, or -1 (space.c) */
  uint64_t shared_base; /* process's resident shared pages before the map's */
  unsigned commits_unpolled; /* writer only: commits since space_after_commit looked */
  int64_t polled_ns;         /* writer only: when space_after_commit last looked */

  ticket_lock wlock;
  mvcc_txn wtxn; /* the one write transaction, reused */

  pthread_mutex_t pool_mu; /* guards the free list and the gate, never held across LMDB calls */
  mvcc_txn *pool;
  int pool_len;
  mvcc_txn *active; /* open read transactions */
  kidx_tail tail;
  /* The gate (image.c): replacing the environment waits until no
   * transaction is open, and holds new ones back meanwhile. Writers are
   * held first (a defragmentation copies the store while readers go on),
   * then readers. Guarded by pool_mu. */
  pthread_cond_t gate_cv;
  int readers_open, writers_open;
  int images_open;   /* of readers_open: image copies (long) */
  bool block_images; /* gate_block_reads is waiting for image copies to end */
  bool block_reads, block_writes;
  bool env_broken; /* a replaced data file could not be reopened */
  uint64_t map_size; /* as opened, for reopening */
  _Atomic uint64_t last_pgno; /* LMDB's last page as of the last commit (mvcc_db_size) */

  /* Checkpoints (durability.c). ck_mu serializes them and guards the pin. */
  pthread_mutex_t ck_mu;
  pthread_cond_t ck_cv;
  pthread_t ck_thread;
  bool ck_thread_running, ck_stop;
  bool ck_broken;    /* an fdatasync failed: never claim durability again */
  MDB_txn *pin;      /* read txn holding the last checkpoint's snapshot */
  uint64_t pin_txnid;
  /* Older snapshots that a checkpoint file on disk may still name: kept
   * while a checkpoint's rename landed but could not be made durable. */
  MDB_txn *spare_pins[4];
  int nspare;
  /* The pin stops LMDB from reusing pages freed after it, so heavy writing
   * grows the file until the next checkpoint moves it. Commits that find
   * the file grown by CKPT_GROWTH since the last checkpoint ask for one
   * early, which bounds that growth. */
  _Atomic uint64_t ck_last_pgno; /* LMDB's last page at the last checkpoint */
  _Atomic bool ck_urgent;
  uint64_t ck_growth, ck_growth_max; /* CKPT_GROWTH, CKPT_GROWTH_MAX unless a test set them */
  /* Past CKPT_GROWTH_MAX, writers wait for a checkpoint (backpressure): a
   * writer faster than the disk would otherwise grow the file without end. */
  pthread_cond_t ck_done_cv;
  uint64_t ck_gen; /* checkpoints attempted by the thread; guarded by ck_mu */
  int checkpoint_ms;
  _Atomic uint64_t durable_index;
  char boot_id[BOOT_ID_MAX + 1]; /* "" if unknown */
};

/* ---------------------------------------------------------------- store.c */

/* Maps an LMDB (or errno) code to MVCC_E*, logging what is not expected. */
int mvcc_lmdb_err(int rc, const char *what);
/* Cursor on db for this transaction, opened or renewed on first use. */
int mvcc_cursor(mvcc_txn *t, int db, MDB_cursor **out);
/* Reads both state records from the main database and checks them. */
int mvcc_state_read(MDB_txn *txn, MDB_dbi main, store_state *st);
void ticket_lock_acquire(ticket_lock *l);
void ticket_lock_release(ticket_lock *l);

/* Logs a record that failed validation (key shown escaped) and returns
 * MVCC_EIO. */
int mvcc_corrupt(const char *what, const void *key, size_t key_len);
/* Validates a single key: EINVAL if empty, EKEYTOOLONG above MVCC_MAX_KEY. */
int mvcc_check_key(const uint8_t *key, size_t key_len);
/* The revision reads at "current" see: a write txn's open request counts. */
static inline int64_t txn_rev(const mvcc_txn *t) { return t->st.rev + (t->sub > 0 ? 1 : 0); }

/* Opens the LMDB environment in s->dir (after durability_prepare) and its
 * databases, and finds the map; *created says whether the store is new.
 * Closing: the read pool's transactions first, then the environment. */
int store_env_open(mvcc_store *s, bool *created);
/* extra: more LMDB flags (an image file: MDB_NOSUBDIR | MDB_NOLOCK). */
int store_env_open_flags(mvcc_store *s, unsigned extra, bool *created);
/* A store object with its locks set up and nothing opened; store_free
 * closes whatever was (the environment, the lock file) and frees it. */
mvcc_store *store_alloc(const char *dir);
void store_free(mvcc_store *s);
void store_env_close(mvcc_store *s);
/* The gate (see mvcc_store). block_* wait until the transactions of that
 * kind have ended; gate_open lets everyone in again. */
void gate_leave(mvcc_store *s, bool writer);
/* An image copy is a reader (read transactions count themselves in
 * mvcc_read_begin) that may take seconds: gate_block_reads waits for copies
 * to end before it blocks ordinary reads, so that reads (served on the gRPC
 * thread, which also carries Raft's messages) wait only for the swap
 * itself, never for a copy. MVCC_EIO once the store is broken. */
int gate_enter_image(mvcc_store *s);
void gate_leave_image(mvcc_store *s);
void gate_block_writes(mvcc_store *s);
void gate_block_reads(mvcc_store *s);
void gate_open(mvcc_store *s);

/* Tests and benchmarks: LMDB's write mode for stores opened from now on
 * (1: MDB_WRITEMAP, 0: pwrite, -1: the default, which the environment
 * variable SYNOD_MVCC_WRITEMAP=0|1 overrides). */
void mvcc_test_set_writemap(int mode);
bool mvcc_test_writemap(const mvcc_store *s);

/* ---------------------------------------------------------------- space.c */

/* After the environment opened: finds the map, turns fault-around off on
 * it where the kernel can, releases it, and (where fallocate works)
 * allocates the used part of the file and a chunk ahead. */
int space_open(mvcc_store *s);
/* Before the environment closes: undoes what space_open set up beside
 * LMDB (the userfaultfd). */
void space_close(mvcc_store *s);
/* Tests only: whether space_open turns fault-around off (default true; it
 * still does only where the kernel can), and whether it did for s. */
void mvcc_test_set_fault_around_off(bool on);
bool mvcc_test_fault_around_off(const mvcc_store *s);
/* Whether fallocate works in dir (WRITEMAP is safe only then): 0 or -1. */
int space_probe(const char *dir);
/* Before a change that may use up to `pages` more pages: with WRITEMAP,
 * makes sure the file is allocated that far, or poisons t with
 * MVCC_ENOSPACE (disk full) / MVCC_EIO. Pages 0: the check before commit. */
int space_reserve(mvcc_txn *t, uint64_t pages);
/* A bound on the pages one change of a key and value may use. */
uint64_t space_change_pages(const mvcc_store *s, size_t key_len, size_t value_len);
/* Drops the map's page-table entries (the pages stay in the page cache).
 * Between write transactions. */
void space_release(mvcc_store *s);
/* From the checkpoint thread, every SPACE_POLL_MS, without the checkpoint
 * lock: puts the next pages of the part allocated ahead into the page cache
 * as single pages (pwrite mode), SPACE_PREPARE_RUN bytes a read, at most
 * SPACE_PREPARE_PAGES a call and SPACE_PREPARE_AHEAD beyond LMDB's last
 * page (8 MiB a poll keeps ahead of 160 MB/s of growth; preparing the
 * whole chunk at once cost every start 70 ms of CPU and 64 MiB of page
 * cache). */
void space_prepare(mvcc_store *s);
enum { SPACE_PREPARE_PAGES = 2048, SPACE_PREPARE_AHEAD = 2048, SPACE_PREPARE_RUN = 64 << 10 };
/* From the checkpoint thread, every SPACE_POLL_MS: if more than
 * SPACE_RESIDENT of the file is mapped, takes the writer lock for a moment
 * and releases the map. */
void space_poll(mvcc_store *s);
/* The writer, after each commit, still holding the writer lock: the same
 * check every SPACE_POLL_COMMITS commits if SPACE_COMMIT_POLL_MS have
 * passed (a checkpoint's fdatasync can keep the checkpoint thread busy
 * while the writer maps page after page; reading /proc/self/statm after
 * every few one-put commits cost a few microseconds a put). */
void space_after_commit(mvcc_store *s);
#define SPACE_RESIDENT (16ull << 20) /* at least; see over_budget */
enum { SPACE_POLL_MS = 50, SPACE_POLL_COMMITS = 4, SPACE_COMMIT_POLL_MS = 5 };
#define SPACE_CHUNK (64ull << 20) /* fallocated ahead at a time */
enum {
  SPACE_CHANGE_PAGES = 48, /* per change: COW paths and splits of every tree it touches */
  SPACE_DELETE_PAGES = 16, /* per record compaction removes */
  SPACE_COMMIT_PAGES = 64, /* the commit itself: free list, main database */
};
/* Tests only: replaces fallocate (NULL: the real one), to inject ENOSPC. */
void mvcc_test_set_fallocate(int (*fn)(int fd, off_t off, off_t len));

/* ---------------------------------------------------------------- durability.c */

/* Before mdb_env_open: decides between "open as is" and "restore the last
 * checkpoint's meta pages" from the marker file and the boot id. */
int durability_prepare(mvcc_store *s, bool *restored, uint64_t *restored_txnid);
/* After the environment is usable: first checkpoint, marker "running",
 * background thread. */
int durability_start(mvcc_store *s);
/* At close: stop the thread, final checkpoint, marker "clean", drop the pin.
 * Returns MVCC_OK only if the store was marked clean (its final state is on
 * disk and the next open will use the data file as it is). */
int durability_stop(mvcc_store *s);
/* After each commit (cheap): wakes the checkpoint thread early if the file
 * has grown by CKPT_GROWTH bytes since the last checkpoint. */
void durability_after_commit(mvcc_store *s);
/* Before each write transaction: waits for a checkpoint if the file has
 * grown by CKPT_GROWTH_MAX since the last one. */
void durability_before_write(mvcc_store *s);
#define CKPT_GROWTH (64ull << 20)
#define CKPT_GROWTH_MAX (512ull << 20)

/* Tests only: the boot id to use instead of the kernel's (NULL: the kernel's).
 * Simulates a reboot without one. */
void mvcc_test_set_boot_id(const char *boot_id);
/* Tests only: growth limits for stores opened from now on (0, 0: defaults). */
void mvcc_test_set_growth(uint64_t early, uint64_t max);
/* Tests only: how checkpoint files are written (NULL: write_file_atomic),
 * to inject failures. */
void mvcc_test_set_checkpoint_writer(int (*fn)(const char *path, const void *data, size_t n));

/* ---------------------------------------------------------------- image.c */

/* A defragmentation's copy, in the store's directory (removed at open). */
#define MVCC_DEFRAG_TMP "defrag.tmp"

/* Tests only: called at each step of replacing the environment (steps in
 * image.c's replace_env), to simulate a crash there. */
void mvcc_test_set_replace_hook(void (*fn)(int step));
/* Tests only: called by mvcc_image_write once it counts as a reader, before
 * it copies (a test holds it there to stand for a long copy). */
void mvcc_test_set_image_hook(void (*fn)(void));

/* ---------------------------------------------------------------- read.c */

/* Positions a kidx cursor on the first key >= target (which may be longer
 * than any stored key, or empty: the first key). */
int kidx_seek_ge(MDB_cursor *c, const uint8_t *target, size_t n, MDB_val *k, MDB_val *d);
/* The current version of key as t sees it (its newest index entry, value
 * from hist): MVCC_OK, MVCC_ENOTFOUND (no entry, or the newest is a
 * delete), or an error. kv points into the map; *sub (may be NULL) gets
 * the version's sub revision; *indexed (may be NULL) whether kidx holds
 * the key. If the tail has no entry, leaves t's kidx cursor on the key or
 * where it would be. */
int latest_get(mvcc_txn *t, const uint8_t *key, size_t key_len, mvcc_kv *kv, int64_t *sub,
               bool *indexed);
/* The newest kidx entry of the key under the cursor with main <= rev.
 * Returns 0 (found), MDB_NOTFOUND (the key has none), or an LMDB error. The
 * cursor stays on this key. */
int kidx_version_at(MDB_cursor *c, MDB_val *key, int64_t rev, int64_t *main, int64_t *sub,
                    bool *is_delete);
/* Reads and validates hist record (main, sub). */
int hist_get(mvcc_txn *t, int64_t main, int64_t sub, hist_rec *out);

/* ---------------------------------------------------------------- tail.c */

void tail_init(kidx_tail *tl);
void tail_clear(kidx_tail *tl);
void tail_destroy(kidx_tail *tl);
/* The newest tail entry of key that t sees and that sorts below
 * {below_main, below_sub}: true and the entry, or false (then the answer,
 * if any, is in kidx). */
bool tail_lookup(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t below_main, int64_t below_sub,
                 int64_t *main, int64_t *sub, bool *del);
/* The same for any tail: entries with main in (lo, hi]; lock: take the
 * read lock (not the writer). */
bool tail_find(kidx_tail *tl, bool lock, const uint8_t *key, size_t key_len, int64_t lo, int64_t hi,
               int64_t below_main, int64_t below_sub, int64_t *main, int64_t *sub, bool *del);
/* The writer: an entry of a key kidx holds, newer than all of its others. */
void tail_append(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t main, int64_t sub, bool del);
/* The writer, for every change (in the tail or not): an open would replay
 * it, so it counts toward the next flush, which moves F past it. */
static inline void tail_count_change(mvcc_txn *t) { t->s->tail.pending++; }
/* The writer, as its transaction begins and ends. */
void tail_txn_begin(mvcc_txn *t);
void tail_txn_end(mvcc_txn *t, bool committed);
/* Writes the entries above t's F to kidx and moves F to t's revision.
 * Outside a request only. */
int tail_flush(mvcc_txn *t);
/* The writer, between transactions: drops the entries a committed flush
 * wrote once no reader that predates it is open. */
void tail_purge(mvcc_store *s);
/* Rebuilds the tail of a store opened at st from hist above its F. */
int tail_replay(kidx_tail *tl, MDB_txn *txn, MDB_dbi hist, MDB_dbi kidx, const store_state *st);
/* Tests only: TAIL_MAX for stores opened from now on (0: the default), and
 * whether mvcc_close flushes the tail (default true; false leaves the next
 * open to replay it, as after a crash). */
void mvcc_test_set_tail_max(size_t n);
void mvcc_test_set_close_flush(bool on);

/* ---------------------------------------------------------------- compact.c */

/* Whether a change at {main, sub} of key survives compaction at `at`:
 * of the changes at or below `at`, each key keeps only its newest, and a
 * deletion only if it happened at `at` itself (so a watcher starting at the
 * compact revision still sees it, as etcd >= 3.5.16 does). */
int change_kept(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t main, int64_t sub,
                bool is_delete, int64_t at, bool *kept);

#endif
