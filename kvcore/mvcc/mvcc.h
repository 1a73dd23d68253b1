/* mvcc.h - Synod's multi-version key-value store, on LMDB.
 *
 * The store keeps every version of every key until compaction. Each change
 * has a revision {main, sub}: main counts the requests that changed
 * something (an empty store is at revision 1, the first put makes it 2), sub
 * numbers the changes inside one request (a Txn writing three keys makes
 * three changes at the same main revision, sub 0, 1, 2).
 *
 * Threads: one writer (the server's apply thread) and any number of readers
 * at once. Readers see a consistent snapshot and never wait for the writer.
 * A write transaction stays on the thread that began it (LMDB's writer lock
 * is per thread); read transactions may move between threads. A visitor
 * must not call back into the store with its own transaction (another
 * transaction is fine), except that mvcc_changes' may call mvcc_get_before
 * (a watcher's prev_kv), mvcc_delete_range's may read, and
 * mvcc_lease_keys' may delete the key it is shown.
 *
 * Durability: commits do not fsync. The caller's log (WAL or Raft log) is
 * the durability point: it records every request before it is applied, and
 * the applied index is committed atomically with the changes it caused
 * (mvcc_set_applied), so after a crash the caller replays what the store
 * lacks. A background checkpoint makes the store itself durable every
 * options.checkpoint_ms, and sooner when the data file has grown by 64 MiB
 * since the last one; mvcc_durable_index() says up to where, and the
 * caller must keep its log from there on. After power loss (detected at
 * open) the store rolls back to its last checkpoint, which is intact by
 * construction; see docs/storage.md. A checkpoint pins its snapshot until
 * the next one, so LMDB cannot reuse pages freed meanwhile: a writer much
 * faster than the disk waits in mvcc_write_begin once the file has grown by
 * 512 MiB since the last checkpoint.
 *
 * Memory: kv pointers handed out (mvcc_kv.key/value, aux values) point into
 * the map and stay valid until the transaction ends or, in a write
 * transaction, until its next change.
 *
 * Errors: a write call that fails part-way (ENOSPACE, EIO) poisons its
 * write transaction: every later call on it returns the same error and
 * commit aborts, so half a request is never committed. Errors found before
 * anything is written (EINVAL, EKEYTOOLONG, a corrupt record read first)
 * leave the transaction usable.
 */
#ifndef SYNOD_MVCC_H
#define SYNOD_MVCC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mvcc_store mvcc_store;
typedef struct mvcc_txn mvcc_txn;

/* Return codes: 0 or a negative MVCC_E*. */
enum {
  MVCC_OK = 0,
  MVCC_ECOMPACTED = -1,  /* the revision asked for has been compacted */
  MVCC_EFUTURE = -2,     /* the revision asked for is ahead of the store */
  MVCC_ENOSPACE = -3,    /* the map or the disk is full */
  MVCC_EKEYTOOLONG = -4, /* key longer than MVCC_MAX_KEY */
  MVCC_ENOTFOUND = -5,
  MVCC_EIO = -6,         /* storage failure; details were logged */
  MVCC_EINVAL = -7,
};

/* LMDB keys are at most 511 bytes; longer etcd keys are refused. */
#define MVCC_MAX_KEY 511

const char *mvcc_strerror(int rc);

typedef struct {
  const uint8_t *key;
  size_t key_len;
  const uint8_t *value;
  size_t value_len;
  int64_t create_rev; /* main revision at which this life of the key began */
  int64_t mod_rev;    /* main revision of this version */
  int64_t version;    /* 1 for the first write since creation */
  int64_t lease;      /* 0: none */
} mvcc_kv;

/* Which keys an operation covers, in etcd's terms:
 *   end == NULL, !open_end   the single key `key`: 1..MVCC_MAX_KEY bytes
 *                            (MVCC_EINVAL if empty, MVCC_EKEYTOOLONG above)
 *   end != NULL              [key, end): empty if end <= key
 *   open_end                 every key >= key (etcd's range_end "\0"); end
 *                            is then ignored
 * Range bounds may be empty (key: from the first key) and longer than
 * MVCC_MAX_KEY: they are compared, never stored. */
typedef struct {
  const uint8_t *key;
  size_t key_len;
  const uint8_t *end;
  size_t end_len;
  bool open_end;
} mvcc_span;

typedef struct {
  const char *dir;        /* created if missing */
  uint64_t map_size;      /* upper bound for the data file; 0: 8 GiB */
  int checkpoint_ms;      /* 0: 250; negative: MVCC_EINVAL */
} mvcc_options;

/* Opens (or creates) the store and checkpoints it before returning. One
 * process per directory: MVCC_EIO if another holds it. MVCC_EIO (and a log
 * line saying why) if the machine crashed while the store was open and the
 * checkpoint needed to recover is missing or corrupt. */
int mvcc_open(const mvcc_options *opt, mvcc_store **out);
/* Makes the store durable (a final checkpoint), marks it closed cleanly
 * and frees it. Every transaction must have ended. */
void mvcc_close(mvcc_store *s);

/* ---------------------------------------------------------------- reading */

int mvcc_read_begin(mvcc_store *s, mvcc_txn **out);
/* Ends a read transaction, or aborts a write transaction. */
void mvcc_txn_end(mvcc_txn *t);

/* Current main revision seen by t; in a write transaction, counting the
 * request in progress once it has changed something. */
int64_t mvcc_rev(const mvcc_txn *t);
int64_t mvcc_compact_rev(const mvcc_txn *t); /* reads below this fail; 0: never compacted */

/* Visitors return 0 to continue, non-zero to stop early. */
typedef int (*mvcc_visit_fn)(void *arg, const mvcc_kv *kv);

enum { MVCC_RANGE_REVERSE = 1 }; /* visit in descending key order */

/* Visits the keys of `span` as of main revision `rev` (<= 0: the current
 * one), in key order, at most `limit` of them (0: all; negative:
 * MVCC_EINVAL). With count != NULL, *count receives how many keys the span
 * holds at rev regardless of limit, and of fn stopping early. fn may be NULL
 * (count only). Returns MVCC_ECOMPACTED if rev is below the compact
 * revision, MVCC_EFUTURE if above the current one. Works in write
 * transactions too, seeing their own uncommitted changes. */
int mvcc_range(mvcc_txn *t, const mvcc_span *span, int64_t rev, int64_t limit, unsigned flags,
               mvcc_visit_fn fn, void *arg, int64_t *count);

/* One change, as watchers see it. For deletions kv holds the key and
 * mod_rev == main; the other fields are 0. */
typedef struct {
  int64_t main, sub;
  bool is_delete;
  mvcc_kv kv;
} mvcc_change;
typedef int (*mvcc_change_fn)(void *arg, const mvcc_change *c);

/* Visits every change with main revision in [from, to] in revision order
 * (to <= 0 or beyond: up to the current revision). MVCC_ECOMPACTED if from
 * is below the compact revision. At the compact revision itself it shows
 * exactly what compaction keeps (each key's last change there, deletions
 * included), whatever the physical progress. */
int mvcc_changes(mvcc_txn *t, int64_t from, int64_t to, mvcc_change_fn fn, void *arg);

/* The version of `key` that was current just before revision {main, sub}
 * (for a watcher's prev_kv). MVCC_ENOTFOUND if the key did not exist then;
 * MVCC_ECOMPACTED if main <= the compact revision (the answer may be gone);
 * MVCC_EFUTURE if main > mvcc_rev(t) + 1. */
int mvcc_get_before(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t main, int64_t sub,
                    mvcc_kv *out);

/* Keys currently attached to `lease`, in key order (kept as an index, so
 * revoking a lease never scans the keyspace; lease 0, "none", lists
 * nothing). Unlike other visitors, fn may delete the key it is shown (in a
 * write transaction): revocation visits and deletes. */
int mvcc_lease_keys(mvcc_txn *t, int64_t lease, mvcc_visit_fn fn, void *arg);

/* ---------------------------------------------------------------- writing */

/* Only one write transaction exists at a time; a second caller blocks
 * (first come, first served). May also wait for a checkpoint: see the top. */
int mvcc_write_begin(mvcc_store *s, mvcc_txn **out);
/* Publishes the changes to new readers. Not durable by itself (see top). On
 * error the transaction is aborted. Either way t is gone. A request still
 * open is ended first. */
int mvcc_write_commit(mvcc_txn *t);

/* Brackets one request: the changes between them share the next main
 * revision. rev_end returns the store's revision afterwards, which grew by
 * one iff something changed. A put or delete_range outside a bracket is a
 * request of its own. */
void mvcc_rev_begin(mvcc_txn *t);
int64_t mvcc_rev_end(mvcc_txn *t);

/* Writes a new version of key. *prev (if not NULL) receives the version it
 * replaced; prev->version == 0 if the key did not exist. */
int mvcc_put(mvcc_txn *t, const uint8_t *key, size_t key_len, const uint8_t *value,
             size_t value_len, int64_t lease, mvcc_kv *prev);

/* Deletes every key in span; on_deleted (may be NULL) sees each one's last
 * version before it goes, in key order (its return value is ignored: every
 * key goes). *deleted (may be NULL) receives the count. */
int mvcc_delete_range(mvcc_txn *t, const mvcc_span *span, mvcc_visit_fn on_deleted, void *arg,
                      int64_t *deleted);

/* Compaction, etcd's semantics: afterwards reads below rev fail, and of the
 * versions at or below rev only each key's newest survives (not even that if
 * it is a deletion, unless the deletion happened at rev itself: as in etcd
 * >= 3.5.16, so a watcher starting at rev still sees it). The logical part
 * is immediate; MVCC_ECOMPACTED if rev <= the compact revision, MVCC_EFUTURE
 * if rev > the current revision, MVCC_EINVAL inside a request bracket. */
int mvcc_compact(mvcc_txn *t, int64_t rev);
/* Physical removal, examining at most max_changes (> 0) history entries so
 * the writer never stalls. Returns 1 while work remains, 0 when done, or a
 * negative MVCC_E*. A newer mvcc_compact restarts the pass. */
int mvcc_compact_step(mvcc_txn *t, size_t max_changes);
/* Highest revision whose compaction is physically complete. */
int64_t mvcc_compact_done_rev(const mvcc_txn *t);

/* The log position of the last request applied; committed atomically with
 * the changes. */
void mvcc_set_applied(mvcc_txn *t, uint64_t index, uint64_t term);
void mvcc_applied(const mvcc_txn *t, uint64_t *index, uint64_t *term);

/* ---------------------------------------------------------------- aux tables */

/* Small tables other modules keep in the same transactions as the keys, so
 * their state is applied atomically with it (leases, members, alarms...).
 * Keys are 1..MVCC_MAX_KEY bytes; get/del return MVCC_ENOTFOUND for a
 * missing key; put/del need a write transaction (MVCC_EINVAL otherwise). */
typedef enum {
  MVCC_AUX_META,
  MVCC_AUX_LEASES,
  MVCC_AUX_MEMBERS,
  MVCC_AUX_ALARMS,
  MVCC_AUX_AUTH,
  MVCC_AUX_COUNT
} mvcc_aux_table;

int mvcc_aux_get(mvcc_txn *t, mvcc_aux_table tbl, const void *key, size_t key_len,
                 const uint8_t **val, size_t *val_len);
int mvcc_aux_put(mvcc_txn *t, mvcc_aux_table tbl, const void *key, size_t key_len,
                 const void *val, size_t val_len);
int mvcc_aux_del(mvcc_txn *t, mvcc_aux_table tbl, const void *key, size_t key_len);
typedef int (*mvcc_aux_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                           size_t val_len);
int mvcc_aux_scan(mvcc_txn *t, mvcc_aux_table tbl, mvcc_aux_fn fn, void *arg);

/* ---------------------------------------------------------------- maintenance */

/* Applied index that survives power loss: the caller's log must be kept from
 * the entry after it. */
uint64_t mvcc_durable_index(mvcc_store *s);
/* Makes the store durable now (before purging the log, on shutdown). Not
 * from a thread that holds the write transaction (it needs the writer lock
 * for a moment). */
int mvcc_checkpoint(mvcc_store *s);

typedef struct {
  int64_t db_size;        /* bytes of the data file's pages in use or free (not its
                           * length: with MDB_WRITEMAP that is the map's, sparse) */
  int64_t db_size_in_use; /* bytes of pages not on LMDB's free list */
  int64_t keys;           /* live keys */
} mvcc_stats;
int mvcc_stats_get(mvcc_store *s, mvcc_stats *out);
/* db_size without a transaction (as of the last commit): cheap enough to
 * check before every write (the backend quota). */
int64_t mvcc_db_size(mvcc_store *s);

/* ---------------------------------------------------------------- images
 *
 * An image is the whole store in one file: a compact LMDB data file (every
 * record rewritten in order: full pages, none free) whose state record carries the applied index and term of the
 * commit it was taken from. Images go from a leader to a member that fell
 * behind its log, to operators (etcd's Maintenance.Snapshot) and back
 * (restore); a defragmentation is an image of the store put in its place. */
typedef struct {
  uint64_t applied_index, applied_term;
  int64_t rev, compact_rev;
  int64_t keys;   /* live keys */
  uint64_t bytes; /* size of the image file */
} mvcc_image_info;

/* Writes an image of the newest commit to fd, an empty regular file open
 * for reading and writing. Readers and the writer go on meanwhile; the image
 * is of the commit that was newest when the copy began. Not synced (the
 * caller syncs what it keeps). info may be NULL. */
int mvcc_image_write(mvcc_store *s, int fd, mvcc_image_info *info);

/* Checks that the file at path is an image this build can use: its LMDB
 * meta pages (checked before LMDB reads anything else), every database,
 * the state records, every history and index record, and the live-key
 * count. MVCC_EIO and a log line saying what is wrong otherwise. LMDB
 * trusts the pages themselves: a file crafted to pass these checks could
 * still crash it, so images come with a checksum (transfer CRC, etcd's
 * SHA-256) that is verified first. info may be NULL. */
int mvcc_image_check(const char *path, mvcc_image_info *info);

/* Changes what an image carries before it is put in place (a member's own
 * identity, a restore clearing membership): opens the image file alone,
 * runs fn in one write transaction (fn returning non-zero aborts it and is
 * returned), commits and syncs the file. No other process or handle may
 * use the file meanwhile. */
typedef int (*mvcc_update_fn)(void *arg, mvcc_txn *w);
int mvcc_image_update(const char *path, mvcc_update_fn fn, void *arg);

/* Replaces the store's contents with the image at image_path (on the
 * store's filesystem: it is renamed into place, not copied). Waits for the
 * open write transaction and holds new ones back, makes the store durable
 * and marks it clean, waits for open read transactions and holds new ones
 * back, renames the image over the data file, reopens and checkpoints. A
 * crash at any step leaves either the old store or the new one, whole
 * (docs/storage.md, "Replacing the store"). The handle stays valid and
 * transactions begun afterwards see the image. The caller must hold no
 * transaction of s. MVCC_EIO, store unchanged, if the image fails
 * mvcc_image_check; MVCC_EIO after the swap if the store cannot be
 * reopened (then the handle can only be closed). */
int mvcc_replace(mvcc_store *s, const char *image_path);

/* Rewrites the store compactly: an image of it, taken while writers wait,
 * replaces it as in mvcc_replace, so the file shrinks to the pages in use.
 * Readers go on until the swap. Same rules and errors as mvcc_replace. */
int mvcc_defragment(mvcc_store *s);

/* CRC-32C over the key-value history up to rev (<= 0: current), counting for
 * revisions at or below the compact revision only what compaction keeps, so
 * members agree whatever their physical compaction progress. MVCC_ECOMPACTED
 * if rev < the compact revision, MVCC_EFUTURE if beyond the current one. */
int mvcc_hash_kv(mvcc_txn *t, int64_t rev, uint32_t *hash);

#endif
