/* wal_int.h - the WAL's insides, shared by its .c files, its tests and its
 * fuzz targets. Not a public interface: the server uses wal.h only.
 *
 * Layers, bottom up:
 *   record.c  one record: encode, check a header, check a whole record
 *   scan.c    one segment image: its valid prefix, and whether what follows
 *             is a torn tail (repairable) or damage (refused)
 *   replay.c  a run of segments: Raft semantics (rewrites, gaps, snapshot
 *             markers, hard state) into a wal_recovered
 *   prep.c    a helper thread that creates and zero-fills the next segment
 *   wal.c     files: create, open (recovery + repair), append, sync, cut,
 *             purge
 * The format and the recovery rules are described in docs/wal.md. */
#ifndef SYNOD_WAL_INT_H
#define SYNOD_WAL_INT_H

#include "base.h"
#include "wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- records */

enum {
  REC_SEGMENT = 1,   /* first record of every segment: identity, position */
  REC_META = 2,      /* the caller's metadata; second record of every segment */
  REC_HARDSTATE = 3, /* term, vote, commit */
  REC_ENTRY = 4,     /* index, term, type, data */
  REC_SNAPSHOT = 5,  /* a snapshot covers the log up to index, term */
};

/* Header, little-endian:
 *   0  u32 len       payload bytes (the record takes REC_HEADER + len
 *                    rounded up to 8 bytes; the padding is zero)
 *   4  u8  type      REC_*
 *   5  u8  zero[3]
 *   8  u64 batch     offset in the segment where this record's sync batch
 *                    begins (the batch = the records between two fdatasyncs)
 *   16 u32 data_crc  CRC-32C of payload and padding
 *   20 u32 head_crc  CRC-32C of bytes 0..19, seeded per segment (seg_seed) */
#define REC_HEADER 24u
#define REC_MAX_PAYLOAD (1u << 30)

#define SEG_MAGIC "SYNODWAL"
#define SEG_VERSION 1u
#define SEG_RECORD_LEN 56u   /* magic, version, flags, wal_id, seq, name_index, last_index, prev_end */
#define HS_RECORD_LEN 24u
#define SNAP_RECORD_LEN 16u
#define ENTRY_FIXED_LEN 24u  /* index, term, type, zero; then data */
#define SEG_HEADER_RECORDS 4 /* SEGMENT, META, HARDSTATE, SNAPSHOT */

#define WAL_DEFAULT_SEGMENT_BYTES (64ull << 20)
#define WAL_MIN_SEGMENT_BYTES 4096ull

static inline size_t rec_size(size_t len) { return REC_HEADER + ((len + 7) & ~(size_t)7); }

/* The SEGMENT record's header CRC is seeded with 0 (it tells who the segment
 * belongs to); every later record's with seg_seed(wal_id, seq), so a record
 * copied from another WAL or another segment -- or user data that happens to
 * contain a record -- does not validate here. */
uint32_t seg_seed(uint64_t wal_id, uint64_t seq);

/* Encodes a record at dst (rec_size(nf + nd) bytes): payload = fixed || data. */
size_t rec_encode(uint8_t *dst, uint32_t seed, unsigned type, uint64_t batch, const void *fixed,
                  size_t nf, const void *data, size_t nd);

typedef struct {
  unsigned type;
  uint64_t batch;
  const uint8_t *payload;
  uint32_t len;
  uint64_t off;  /* where the record starts in its segment */
  size_t size;   /* bytes it takes, header and padding included */
} rec_view;

typedef enum {
  REC_OK,         /* a whole valid record */
  REC_SHORT_HEAD, /* not even a header's worth of bytes left */
  REC_BAD_HEAD,   /* header CRC, type, reserved bytes or length wrong */
  REC_SHORT_BODY, /* valid header, but the record runs past the end */
  REC_BAD_BODY,   /* valid header, payload CRC wrong */
} rec_status;

/* Looks for a record at off. For REC_OK, REC_SHORT_BODY and REC_BAD_BODY the
 * header is genuine and out->type, batch, len, size are filled in. */
rec_status rec_decode(const uint8_t *buf, size_t n, size_t off, uint32_t seed, rec_view *out);
const char *rec_status_str(rec_status s);

/* ---------------------------------------------------------------- segments */

typedef struct {
  uint64_t wal_id, seq, name_index, last_index, prev_end;
} seg_info;

/* Parses a SEGMENT record's payload. Returns -1 if malformed. */
int seg_info_parse(const rec_view *r, seg_info *out);
void seg_info_encode(const seg_info *s, uint8_t out[SEG_RECORD_LEN]);

typedef struct {
  size_t end;        /* offset just past the last valid record */
  size_t header_end; /* offset past the SEGMENT..SNAPSHOT header batch */
  size_t dirty_end;  /* torn: offset past the last non-zero byte at or after end */
  bool torn;         /* bytes after end were judged a torn final batch */
  uint32_t seed;     /* seg_seed of this segment */
  uint64_t wal_id;
} seg_result;

/* Called for each valid record in order; returns -1 (with err) to stop. */
typedef int (*rec_fn)(void *ctx, const rec_view *r, char *err, size_t err_len);

/* Offset just past the last non-zero byte of buf in [from, n), or from if
 * none; a word at a time. */
size_t nonzero_end(const uint8_t *buf, size_t from, size_t n);

/* Scans a whole segment image. `final`: this is the newest segment, the only
 * one a crash can tear. Returns 0 with *res filled in, or -1 with err naming
 * `name` and the offset. Never reads outside buf[0..n). */
int seg_scan(const char *name, const uint8_t *buf, size_t n, bool final, rec_fn fn, void *ctx,
             seg_result *res, char *err, size_t err_len);
/* The same, told where the last non-zero byte ends (SIZE_MAX: unknown). */
int seg_scan_hinted(const char *name, const uint8_t *buf, size_t n, size_t nonzero, bool final, rec_fn fn,
                    void *ctx, seg_result *res, char *err, size_t err_len);

/* Segment file names, as etcd's: %016x-%016x.wal (sequence, first index). */
#define SEG_NAME_LEN 37
bool seg_name_parse(const char *name, uint64_t *seq, uint64_t *index);
void seg_name_format(char out[SEG_NAME_LEN + 1], uint64_t seq, uint64_t index);

/* ---------------------------------------------------------------- replay */

typedef struct {
  wal_snap from;
  wal_recovered *rec;
  size_t cap;          /* allocated rec->entries */
  uint64_t last;       /* index of the last entry read, or of a snapshot past it */
  bool started;        /* a segment has been read */
  uint64_t wal_id;
  uint64_t seq;        /* of the segment being read */
  uint64_t name_index; /* likewise */
  size_t prev_end;     /* valid bytes of the previous segment */
  wal_snap best;       /* the newest snapshot marker at or before `from` */
  /* The segment being replayed is mapped here; pages already consumed are
   * released as the scan moves on, so a full segment never sits in memory
   * whole (entries are copied out as they are read). */
  const uint8_t *map_base;
  size_t released;
  size_t nonzero_hint; /* where the segment's non-zero bytes end; SIZE_MAX: unknown */
  wal_snap latest;     /* the newest snapshot marker read */
  char name[4096];     /* segment being read (a copy), for messages */
} replay;

/* rec is zeroed here and owned by the caller (wal_recovered_free) whatever
 * the outcome. */
void replay_init(replay *r, wal_snap from, wal_recovered *rec);
/* Feeds one segment image, oldest first, starting at the one the caller
 * chose for `from` (wal_select_start). */
int replay_segment(replay *r, const char *name, uint64_t seq, uint64_t name_index,
                   const uint8_t *buf, size_t n, bool final, seg_result *res, char *err,
                   size_t err_len);
int replay_finish(replay *r, char *err, size_t err_len);

/* ---------------------------------------------------------------- prep */

/* Creates, fallocates and zero-fills the next segment file in the
 * background, so that a cut finds it ready and appends into it never change
 * the file's metadata (fdatasync then costs one device flush, not a journal
 * commit: on ext4, writing into merely fallocated space converts extents). */
typedef struct prep prep;
prep *prep_start(const char *dir, uint64_t size);
/* Asks the helper to prepare the next file (no-op if one is on its way). */
void prep_request(prep *p);
/* Hands over the prepared file, waiting for it if it is on its way, making
 * it now if it was never requested or the helper failed: *fd is open
 * read-write, path names it (a .tmp the caller renames). */
int prep_take(prep *p, int *fd, char *path, size_t path_len);
/* Stops the helper and removes a prepared file nobody took. */
void prep_stop(prep *p);
/* Synchronous version: makes `path` a zero-filled file of `size` bytes,
 * fsynced. Returns an open read-write fd, or -1 with errno. */
int prep_make_file(const char *path, uint64_t size);
/* Writes zeros over [from, to) of fd. */
int zero_range(int fd, uint64_t from, uint64_t to);

/* ---------------------------------------------------------------- tests */

/* Where the active segment stands: its path, the offset appends have reached
 * and the offset known durable (everything before it was fdatasync'ed). For
 * crash simulation in tests. */
void wal_debug_tail(const wal *w, char *path, size_t path_len, uint64_t *write_off,
                    uint64_t *synced_off);

#endif
