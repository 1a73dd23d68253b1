/* wal.h - the write-ahead log: Synod's durability point.
 *
 * A WAL is a directory of segment files (seq-firstindex.wal, 64 MiB each,
 * preallocated and zero-filled). Each holds length-prefixed, CRC-32C-checked
 * records: the caller's metadata (member and cluster IDs), Raft hard state,
 * log entries and snapshot markers. Appends go to the OS; wal_sync makes
 * everything appended so far durable with one fdatasync, so concurrent
 * writers share it (group commit). Format and rules: docs/wal.md.
 *
 * Recovery (wal_open) reads every record from the segment that holds `from`
 * on. A torn tail -- the unsynced last batch of the last segment, cut short
 * or with sectors missing after a crash -- is repaired by cutting it off
 * (rec->repaired says so). Any other damage (a bad record followed by a
 * record of a later sync batch, a bad record in any segment but the last, a
 * missing or truncated middle segment, an index gap, a segment of another
 * WAL) is refused with a message that names the file and offset, never
 * silently skipped. The one thing no reader can tell from a torn write is
 * damage confined to the very last batch with nothing written after it:
 * that batch is cut off like a torn one.
 *
 * Raft semantics: entries may be rewritten. A record for index i replaces
 * every previously read entry with index >= i (a new leader overwrote an
 * uncommitted suffix).
 *
 * Not thread-safe: one thread (the server's log loop) owns a wal. (Inside,
 * a helper thread prepares the next segment file.) One open wal per
 * directory: a second wal_open of it fails (flock).
 *
 * Errors: functions returning int give 0, or -1 with errno set. After an I/O
 * error while writing or syncing, the wal refuses further appends and syncs
 * (EIO): a failed fsync may have dropped data, and only a restart (wal_open)
 * can find out what reached the disk.
 */
#ifndef SYNOD_WAL_H
#define SYNOD_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wal wal;

typedef struct {
  uint64_t index;
  uint64_t term;
  uint32_t type; /* opaque to the WAL (Raft: normal or conf change) */
  const uint8_t *data;
  size_t len;
} wal_entry;

typedef struct {
  uint64_t term, vote, commit;
} wal_hard_state;

/* A snapshot covers the log up to and including {index, term}. */
typedef struct {
  uint64_t index, term;
} wal_snap;

typedef struct {
  uint64_t segment_bytes; /* 0: 64 MiB; at least 4096. Size of new segments. */
} wal_options;

/* What wal_open found. Owned by the caller; release with wal_recovered_free. */
typedef struct {
  uint8_t *meta;
  size_t meta_len;
  wal_hard_state hs;    /* the newest hard state; zeros if none */
  wal_snap snap;        /* the newest marker at or before `from`; {0, 0} if none */
  wal_entry *entries;   /* entries with index > from.index, ascending, contiguous
                           from from.index + 1; data owned by rec */
  size_t n_entries;
  bool repaired;        /* a torn tail was cut off */
} wal_recovered;

bool wal_exists(const char *dir);

/* Creates a WAL in dir (created if missing; must not already hold one:
 * EEXIST). The first segment appears complete or not at all. */
int wal_create(const char *dir, const void *meta, size_t meta_len, const wal_options *opt);

/* Opens an existing WAL and reads the entries after `from` ({0, 0}: from
 * the start). `from` is where the caller's state already stands: a snapshot,
 * or the store's applied index, which need not be a marker (the store
 * records the applied index with every batch). A marker written at
 * from.index must carry from.term. Fails if entries after from.index were
 * purged, or if a marker past the log's end lies after `from` (open from
 * that snapshot instead). On error returns -1,
 * leaves rec empty and, if err is not NULL, writes a reason naming the file
 * and offset into err. On success the recovered records are durable (a
 * repaired tail included). */
int wal_open(const char *dir, wal_snap from, const wal_options *opt, wal_recovered *rec, wal **out,
             char *err, size_t err_len);
void wal_recovered_free(wal_recovered *rec);

/* Appends entries (may be none), then a hard state (may be NULL): entries
 * first, so that a torn batch can never keep a hard state whose commit index
 * points past the entries that survived. Written to the OS with one write,
 * not yet durable. Each entry's index must be >= 1 and at most one past the
 * previous entry (or wal_last_index for the first): lower rewrites the log
 * from there (Raft), higher would be a hole and is refused (EINVAL). */
int wal_append(wal *w, const wal_hard_state *hs, const wal_entry *ents, size_t n);
/* Records that a snapshot now covers the log up to s. If s.index is past the
 * last entry (a follower installed a leader's snapshot), the next entry is
 * s.index + 1. */
int wal_append_snapshot(wal *w, wal_snap s);
/* Makes everything appended durable: one fdatasync, or nothing if nothing
 * was appended since the last. (New segments and their directory entries
 * are made durable when they are created.) */
int wal_sync(wal *w);

/* Deletes segment files holding only entries <= index, oldest first, keeping
 * at least `keep_min` (< 1: 1) segment files in total -- pass etcd's
 * --max-wals (default 5) -- and never the active one. Afterwards the WAL
 * may no longer open from a snapshot before `index`. */
int wal_release_to(wal *w, uint64_t index, int keep_min);

/* Index of the last entry appended (0 if none), or of a snapshot marker
 * past it. */
uint64_t wal_last_index(const wal *w);

/* Syncs what was appended, then closes. */
void wal_close(wal *w);

#endif
