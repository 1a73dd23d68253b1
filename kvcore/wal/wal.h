/* wal.h - the write-ahead log: Synod's durability point.
 *
 * A WAL is a directory of segment files (seq-firstindex.wal, 64 MiB each,
 * preallocated). Each holds length-prefixed, CRC-32C-checked records: the
 * caller's metadata (member and cluster IDs), Raft hard state, log entries
 * and snapshot markers. Appends go to the OS; wal_sync makes everything
 * appended so far durable with one fdatasync, so concurrent writers share it
 * (group commit).
 *
 * Recovery (wal_open) reads every record. A torn tail -- the unsynced last
 * batch cut short by a crash -- is repaired by truncating it; any other
 * damage (a bad record followed by good ones, a missing or truncated middle
 * segment, a flipped bit in synced data) is refused with a message that says
 * which file and offset, never silently skipped.
 *
 * Raft semantics: entries may be rewritten. A record for index i replaces
 * every previously read entry with index >= i (a new leader overwrote an
 * uncommitted suffix).
 *
 * Not thread-safe: one thread (the server's log loop) owns a wal.
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
  uint64_t segment_bytes; /* 0: 64 MiB */
} wal_options;

/* What wal_open found. Owned by the caller; release with wal_recovered_free. */
typedef struct {
  uint8_t *meta;
  size_t meta_len;
  wal_hard_state hs;    /* the newest hard state; zeros if none */
  wal_snap snap;        /* the newest snapshot marker at or before `from` */
  wal_entry *entries;   /* entries with index > from.index, ascending, contiguous */
  size_t n_entries;
  bool repaired;        /* a torn tail was cut off */
} wal_recovered;

bool wal_exists(const char *dir);

/* Creates a WAL in dir (created if missing; must not already hold one). */
int wal_create(const char *dir, const void *meta, size_t meta_len, const wal_options *opt);

/* Opens an existing WAL and reads it from the snapshot marker `from` on
 * ({0, 0}: from the start). On error returns -1 and, if err is not NULL,
 * writes a human-readable reason into err. */
int wal_open(const char *dir, wal_snap from, const wal_options *opt, wal_recovered *rec, wal **out,
             char *err, size_t err_len);
void wal_recovered_free(wal_recovered *rec);

/* Appends a hard state (may be NULL) and entries (may be none), in that
 * order. Written to the OS, not yet durable. */
int wal_append(wal *w, const wal_hard_state *hs, const wal_entry *ents, size_t n);
/* Records that a snapshot now covers the log up to s. */
int wal_append_snapshot(wal *w, wal_snap s);
/* Makes everything appended durable (fdatasync; a new segment's directory
 * entry too). */
int wal_sync(wal *w);

/* Deletes segment files holding only entries <= index, keeping at least
 * `keep_min` segment files in total (etcd's --max-wals applies on top). */
int wal_release_to(wal *w, uint64_t index, int keep_min);

/* Index of the last entry appended (0 if none). */
uint64_t wal_last_index(const wal *w);

void wal_close(wal *w);

#endif
