/* On-disk record layouts: encoders and validating decoders (see record.h). */
#include "record.h"

#include <stdio.h>
#include <string.h>

#include "mvcc.h"

/* Revisions, versions and create revisions are positive int64 stored as
 * unsigned: anything with the top bit set is corrupt. */
static bool fits_int64(uint64_t v) { return v <= (uint64_t)INT64_MAX; }

/* ---------------------------------------------------------------- hist */

void hist_key_encode(uint8_t out[HIST_KEY_LEN], int64_t main, int64_t sub) {
  put_be64(out, (uint64_t)main);
  put_be64(out + 8, (uint64_t)sub);
}

int hist_key_decode(const uint8_t *p, size_t n, int64_t *main, int64_t *sub) {
  if (n != HIST_KEY_LEN) return -1;
  uint64_t m = get_be64(p), s = get_be64(p + 8);
  if (!fits_int64(m) || !fits_int64(s) || m < 1) return -1;
  *main = (int64_t)m;
  *sub = (int64_t)s;
  return 0;
}

void hist_rec_encode(uint8_t *out, const hist_rec *r) {
  out[0] = r->is_delete ? 1 : 0;
  out[1] = (uint8_t)r->key_len;
  out[2] = (uint8_t)(r->key_len >> 8);
  put_le64(out + 3, (uint64_t)r->create);
  put_le64(out + 11, (uint64_t)r->version);
  put_le64(out + 19, (uint64_t)r->lease);
  memcpy(out + HIST_REC_HDR, r->key, r->key_len);
  if (r->value_len) memcpy(out + HIST_REC_HDR + r->key_len, r->value, r->value_len);
}

int hist_rec_decode(const uint8_t *p, size_t n, hist_rec *out) {
  if (n < HIST_REC_HDR || p[0] > 1) return -1;
  size_t key_len = (size_t)p[1] | (size_t)p[2] << 8;
  if (key_len < 1 || key_len > MVCC_MAX_KEY || n - HIST_REC_HDR < key_len) return -1;
  uint64_t create = get_le64(p + 3), version = get_le64(p + 11), lease = get_le64(p + 19);
  bool is_delete = p[0] == 1;
  size_t value_len = n - HIST_REC_HDR - key_len;
  if (is_delete) {
    if (create || version || lease || value_len) return -1;
  } else {
    if (!fits_int64(create) || !fits_int64(version) || create < 1 || version < 1) return -1;
  }
  out->is_delete = is_delete;
  out->key = p + HIST_REC_HDR;
  out->key_len = key_len;
  out->create = (int64_t)create;
  out->version = (int64_t)version;
  out->lease = (int64_t)lease;
  out->value = p + HIST_REC_HDR + key_len;
  out->value_len = value_len;
  return 0;
}

/* ---------------------------------------------------------------- kidx */

void kidx_encode(uint8_t out[KIDX_LEN], int64_t main, int64_t sub, bool is_delete) {
  hist_key_encode(out, main, sub);
  out[16] = is_delete ? 1 : 0;
}

int kidx_decode(const uint8_t *p, size_t n, int64_t *main, int64_t *sub, bool *is_delete) {
  if (n != KIDX_LEN || p[16] > 1) return -1;
  if (hist_key_decode(p, HIST_KEY_LEN, main, sub) < 0) return -1;
  *is_delete = p[16] == 1;
  return 0;
}

/* ---------------------------------------------------------------- state */

void state_encode(uint8_t out[STATE_LEN], const store_state *st) {
  put_le64(out, (uint64_t)st->rev);
  put_le64(out + 8, st->applied_index);
  put_le64(out + 16, st->applied_term);
  put_le64(out + 24, (uint64_t)st->live_keys);
}

int state_decode(const uint8_t *p, size_t n, store_state *st) {
  if (n != STATE_LEN) return -1;
  uint64_t rev = get_le64(p), live = get_le64(p + 24);
  if (!fits_int64(rev) || rev < 1 || !fits_int64(live)) return -1;
  st->rev = (int64_t)rev;
  st->applied_index = get_le64(p + 8);
  st->applied_term = get_le64(p + 16);
  st->live_keys = (int64_t)live;
  return 0;
}

void cstate_encode(uint8_t out[CSTATE_LEN], const store_state *st) {
  put_le32(out, STATE_FORMAT);
  put_le32(out + 4, 0);
  put_le64(out + 8, (uint64_t)st->compact_rev);
  put_le64(out + 16, (uint64_t)st->compact_done_rev);
  put_le64(out + 24, (uint64_t)st->compact_pos_main);
  put_le64(out + 32, (uint64_t)st->compact_pos_sub);
  put_le64(out + 40, (uint64_t)st->kidx_flushed);
}

int cstate_decode(const uint8_t *p, size_t n, store_state *st) {
  if (n < 4) return -1;
  if (get_le32(p) != STATE_FORMAT) return -2;
  if (n != CSTATE_LEN || get_le32(p + 4) != 0) return -1;
  uint64_t v[5];
  for (int i = 0; i < 5; i++) {
    v[i] = get_le64(p + 8 + 8 * i);
    if (!fits_int64(v[i])) return -1;
  }
  if (v[1] > v[0]) return -1; /* physically ahead of the logical compaction */
  st->compact_rev = (int64_t)v[0];
  st->compact_done_rev = (int64_t)v[1];
  st->compact_pos_main = (int64_t)v[2];
  st->compact_pos_sub = (int64_t)v[3];
  st->kidx_flushed = (int64_t)v[4];
  return 0;
}

int state_check(const store_state *st) {
  return st->compact_done_rev >= 0 && st->compact_done_rev <= st->compact_rev &&
                 st->compact_rev <= st->rev && st->kidx_flushed >= 0 && st->kidx_flushed <= st->rev
             ? 0
             : -1;
}

/* ---------------------------------------------------------------- lmdb meta */

/* Offsets in LMDB 0.9's meta page on an LP64 little-endian host: a 16-byte
 * page header (pgno, pad, flags, lower, upper), then MDB_meta: magic,
 * version, address, mapsize, two MDB_db of 48 bytes (pad = page size for the
 * free DB, ..., root at +40), last_pg, txnid. */
enum {
  PG_FLAGS = 10,
  META = 16,
  M_MAGIC = META + 0,
  M_VERSION = META + 4,
  M_FREE_DB = META + 24,
  M_MAIN_DB = META + 24 + 48,
  DB_ROOT = 40,
  M_LAST_PG = META + 120,
  M_TXNID = META + 128,
  P_META_FLAG = 0x08,
  LMDB_MAGIC = (int)0xBEEFC0DE,
};

static bool valid_psize(uint64_t psize) {
  return psize >= 512 && psize <= 65536 && (psize & (psize - 1)) == 0;
}

int lmdb_meta_parse(const uint8_t *page, size_t n, lmdb_meta *out) {
  if (n < LMDB_META_MIN) return -1;
  uint16_t flags = (uint16_t)(page[PG_FLAGS] | page[PG_FLAGS + 1] << 8);
  if (!(flags & P_META_FLAG)) return -1;
  if (get_le32(page + M_MAGIC) != (uint32_t)LMDB_MAGIC || get_le32(page + M_VERSION) != 1) return -1;
  uint32_t psize = get_le32(page + M_FREE_DB);
  if (!valid_psize(psize)) return -1;
  out->psize = psize;
  out->last_pg = get_le64(page + M_LAST_PG);
  out->txnid = get_le64(page + M_TXNID);
  out->free_root = get_le64(page + M_FREE_DB + DB_ROOT);
  out->main_root = get_le64(page + M_MAIN_DB + DB_ROOT);
  if (out->last_pg < 1) return -1; /* pages 0 and 1 are always the metas */
  return 0;
}

/* ---------------------------------------------------------------- image header */

int image_header_parse(const uint8_t *p, size_t n, uint64_t file_size, image_header *out) {
  lmdb_meta m0, m1;
  if (lmdb_meta_parse(p, n, &m0) < 0) return -1;
  uint32_t psize = m0.psize;
  if (file_size % psize != 0 || file_size / psize < 2 || n < 2 * (size_t)psize) return -1;
  if (lmdb_meta_parse(p + psize, n - psize, &m1) < 0 || m1.psize != psize) return -1;
  const lmdb_meta *m = m1.txnid >= m0.txnid ? &m1 : &m0;
  uint64_t pages = file_size / psize;
  if (m->last_pg >= pages) return -1;
  if (m->main_root != LMDB_NO_ROOT && (m->main_root < 2 || m->main_root > m->last_pg)) return -1;
  if (m->free_root != LMDB_NO_ROOT && (m->free_root < 2 || m->free_root > m->last_pg)) return -1;
  out->psize = psize;
  out->txnid = m->txnid;
  out->last_pg = m->last_pg;
  return 0;
}

/* ---------------------------------------------------------------- checkpoint */

static const char ckpt_magic[8] = {'S', 'Y', 'N', 'D', 'C', 'K', 'P', 'T'};

void ckpt_encode(buf *b, const ckpt_file *c) {
  size_t start = b->len, n = ckpt_size(c->psize);
  buf_reserve(b, n);
  uint8_t *p = b->data + start;
  memcpy(p, ckpt_magic, 8);
  put_le32(p + 8, CKPT_FORMAT);
  put_le32(p + 12, c->psize);
  put_le64(p + 16, c->txnid);
  put_le64(p + 24, c->applied_index);
  put_le64(p + 32, c->applied_term);
  put_le64(p + 40, (uint64_t)c->rev);
  memcpy(p + CKPT_HDR, c->meta[0], c->psize);
  memcpy(p + CKPT_HDR + c->psize, c->meta[1], c->psize);
  put_le32(p + n - 4, crc32c(p, n - 4));
  b->len += n;
}

int ckpt_decode(const uint8_t *p, size_t n, ckpt_file *out) {
  if (n < CKPT_HDR + 4 || memcmp(p, ckpt_magic, 8) != 0 || get_le32(p + 8) != CKPT_FORMAT)
    return -1;
  uint32_t psize = get_le32(p + 12);
  if (!valid_psize(psize) || n != ckpt_size(psize)) return -1;
  if (get_le32(p + n - 4) != crc32c(p, n - 4)) return -1;
  uint64_t rev = get_le64(p + 40);
  if (!fits_int64(rev) || rev < 1) return -1;
  out->psize = psize;
  out->txnid = get_le64(p + 16);
  out->applied_index = get_le64(p + 24);
  out->applied_term = get_le64(p + 32);
  out->rev = (int64_t)rev;
  out->meta[0] = p + CKPT_HDR;
  out->meta[1] = p + CKPT_HDR + psize;
  /* The pages must be LMDB metas of this page size, the newer one being
   * the checkpointed transaction: restoring anything else would point LMDB
   * at pages nobody protected. */
  lmdb_meta m0, m1;
  if (lmdb_meta_parse(out->meta[0], psize, &m0) < 0 || lmdb_meta_parse(out->meta[1], psize, &m1) < 0)
    return -1;
  if (m0.psize != psize || m1.psize != psize) return -1;
  uint64_t newest = m0.txnid > m1.txnid ? m0.txnid : m1.txnid;
  if (newest != out->txnid || m0.txnid == m1.txnid) return -1;
  return 0;
}

/* ---------------------------------------------------------------- marker */

static bool boot_id_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

static bool valid_boot_id(const char *s, size_t n) {
  if (n < 1 || n > BOOT_ID_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (!boot_id_char(s[i])) return false;
  return true;
}

int marker_encode(char *out, size_t cap, const marker *m) {
  size_t id_len = strnlen(m->boot_id, sizeof m->boot_id);
  if (!valid_boot_id(m->boot_id, id_len)) return -1;
  int n = snprintf(out, cap, "%s %s\n", m->running ? "running" : "clean", m->boot_id);
  if (n < 0 || (size_t)n >= cap) return -1;
  return n;
}

int marker_decode(const uint8_t *p, size_t n, marker *out) {
  const char *s = (const char *)p;
  size_t word;
  if (n > 8 && memcmp(s, "running ", 8) == 0) {
    out->running = true;
    word = 8;
  } else if (n > 6 && memcmp(s, "clean ", 6) == 0) {
    out->running = false;
    word = 6;
  } else {
    return -1;
  }
  if (s[n - 1] != '\n') return -1;
  size_t id_len = n - word - 1;
  if (!valid_boot_id(s + word, id_len)) return -1;
  memcpy(out->boot_id, s + word, id_len);
  out->boot_id[id_len] = 0;
  return 0;
}
