/* record.h - the byte layouts kvcore/mvcc writes to disk, and their parsers.
 *
 * Everything here is a pure function over caller-provided bytes: no LMDB, no
 * I/O, so the fuzzer can feed it anything. Decoders validate every length
 * and field and return -1 for bytes that no encoder could have produced; the
 * store turns that into MVCC_EIO and a log line. For valid input, encoding
 * the decoded form gives back the same bytes (the fuzzer checks this).
 *
 * Integers inside records are little-endian; LMDB keys are big-endian so
 * that memcmp order is numeric order.
 */
#ifndef SYNOD_MVCC_RECORD_H
#define SYNOD_MVCC_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* ---------------------------------------------------------------- hist
 * `hist` key: BE64 main | BE64 sub. Value: one change, the only copy of
 * its value (a key's current version is its newest `kidx` entry).
 *   u8 type (0 put, 1 delete) | LE16 key_len | LE64 create | LE64 version | LE64 lease | key | value
 * A delete has create = version = lease = 0 and no value. */
enum { HIST_KEY_LEN = 16, HIST_REC_HDR = 27 };
typedef struct {
  bool is_delete;
  const uint8_t *key;
  size_t key_len;
  int64_t create, version, lease;
  const uint8_t *value;
  size_t value_len;
} hist_rec;
void hist_key_encode(uint8_t out[HIST_KEY_LEN], int64_t main, int64_t sub);
int hist_key_decode(const uint8_t *p, size_t n, int64_t *main, int64_t *sub);
static inline size_t hist_rec_size(size_t key_len, size_t value_len) {
  return HIST_REC_HDR + key_len + value_len;
}
void hist_rec_encode(uint8_t *out, const hist_rec *r);
int hist_rec_decode(const uint8_t *p, size_t n, hist_rec *out);

/* ---------------------------------------------------------------- kidx
 * `kidx` duplicate (per user key, sorted = revision order): BE64 main |
 * BE64 sub | u8 type (0 put, 1 delete). The newest is the key's current
 * version; a key whose newest is a delete does not exist now. */
enum { KIDX_LEN = 17 };
void kidx_encode(uint8_t out[KIDX_LEN], int64_t main, int64_t sub, bool is_delete);
int kidx_decode(const uint8_t *p, size_t n, int64_t *main, int64_t *sub, bool *is_delete);

/* ---------------------------------------------------------------- state
 * The store's counters, as two records in LMDB's main database (beside the
 * named databases' own records, whose page every commit rewrites anyway):
 *
 * "mvcc.state", written by every commit that changes it:
 *   LE64 rev | LE64 applied_index | LE64 applied_term | LE64 live_keys
 * "mvcc.compact", written only when compaction moves; it carries the
 * format, so a store of another layout is refused at open:
 *   LE32 format (3) | LE32 flags (0) | LE64 compact_rev |
 *   LE64 compact_done_rev | LE64 compact_pos_main | LE64 compact_pos_sub |
 *   LE64 kidx_flushed
 * (kidx_flushed also moves only rarely: at a flush of the key index's
 * tail, tail.c). */
enum { STATE_LEN = 32, CSTATE_LEN = 48, STATE_FORMAT = 3 };
typedef struct {
  int64_t rev;              /* current main revision (1 when empty) */
  uint64_t applied_index, applied_term;
  int64_t live_keys;        /* keys whose newest version is not a delete */
  int64_t compact_rev;      /* logical compaction: reads below fail */
  int64_t compact_done_rev; /* physical compaction finished up to here */
  int64_t compact_pos_main; /* next hist entry the physical pass examines */
  int64_t compact_pos_sub;
  int64_t kidx_flushed;     /* kidx holds every entry at or below this revision (tail.c) */
} store_state;
void state_encode(uint8_t out[STATE_LEN], const store_state *st);
int state_decode(const uint8_t *p, size_t n, store_state *st);
void cstate_encode(uint8_t out[CSTATE_LEN], const store_state *st);
/* Returns -2 (not -1) for a well-formed record of another format, so the
 * caller can say so. */
int cstate_decode(const uint8_t *p, size_t n, store_state *st);
/* Checks what relates the two records: 0 <= compact_done_rev <=
 * compact_rev <= rev, and 0 <= kidx_flushed <= rev. */
int state_check(const store_state *st);

/* ---------------------------------------------------------------- lmdb meta
 * The fields of an LMDB 0.9 meta page (pages 0 and 1 of data.mdb) that the
 * checkpoint logic needs. The layout is LMDB's (MDB_page header, then
 * MDB_meta); parse refuses anything that does not look like one. */
enum { LMDB_META_MIN = 152 }; /* the meta struct ends at byte 152 */
typedef struct {
  uint32_t psize;
  uint64_t last_pg, txnid, free_root, main_root;
} lmdb_meta;
#define LMDB_NO_ROOT UINT64_MAX
int lmdb_meta_parse(const uint8_t *page, size_t n, lmdb_meta *out);

/* ---------------------------------------------------------------- image header
 * A store image is a compacted LMDB data file (mvcc_image_write). Before
 * LMDB is let near a file that came over the network or from a user, its
 * first two pages are checked here: both metas parse with the same page
 * size, and the newer one's last page and database roots lie inside a file
 * of file_size bytes, which holds whole pages. `p` holds the file's first
 * n bytes (n >= 2 pages, or the whole file if shorter). */
enum { IMAGE_HEADER_MAX = 2 * 65536 }; /* two metas of the largest page size */
typedef struct {
  uint32_t psize;
  uint64_t txnid, last_pg;
} image_header;
int image_header_parse(const uint8_t *p, size_t n, uint64_t file_size, image_header *out);

/* ---------------------------------------------------------------- checkpoint file
 *   "SYNDCKPT" | LE32 format (1) | LE32 psize | LE64 txnid | LE64 applied_index |
 *   LE64 applied_term | LE64 rev | meta page 0 | meta page 1 | LE32 crc32c(all before) */
enum { CKPT_HDR = 48, CKPT_FORMAT = 1 };
typedef struct {
  uint32_t psize;
  uint64_t txnid, applied_index, applied_term;
  int64_t rev;
  const uint8_t *meta[2]; /* psize bytes each */
} ckpt_file;
static inline size_t ckpt_size(uint32_t psize) { return CKPT_HDR + 2 * (size_t)psize + 4; }
/* Appends the encoded file to b. */
void ckpt_encode(buf *b, const ckpt_file *c);
/* Also checks that the meta pages parse and that the newer one is txnid. */
int ckpt_decode(const uint8_t *p, size_t n, ckpt_file *out);

/* ---------------------------------------------------------------- marker file
 * One text line: "running <boot-id>\n" while a process has the store open,
 * "clean <boot-id>\n" after a clean close. */
enum { BOOT_ID_MAX = 63 };
typedef struct {
  bool running;
  char boot_id[BOOT_ID_MAX + 1];
} marker;
/* Returns the length written (< cap), or -1 if the boot id is unusable. */
int marker_encode(char *out, size_t cap, const marker *m);
int marker_decode(const uint8_t *p, size_t n, marker *out);

#endif
