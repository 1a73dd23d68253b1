/* One WAL record: encoding, and checking one that may be damaged.
 *
 * The header has its own CRC so that a reader can tell a genuine header
 * (written by us, at this place) from garbage in O(1), without trusting the
 * length field to checksum a payload. The torn-tail scan relies on that to
 * stay linear on arbitrary input. */
#include "wal_int.h"

#include <stdio.h>
#include <string.h>

uint32_t seg_seed(uint64_t wal_id, uint64_t seq) {
  uint8_t b[16];
  put_le64(b, wal_id);
  put_le64(b + 8, seq);
  return crc32c(b, sizeof b);
}

size_t rec_encode(uint8_t *dst, uint32_t seed, unsigned type, uint64_t batch, const void *fixed,
                  size_t nf, const void *data, size_t nd) {
  size_t len = nf + nd, size = rec_size(len);
  uint8_t *p = dst + REC_HEADER;
  if (nf) memcpy(p, fixed, nf);
  if (nd) memcpy(p + nf, data, nd);
  memset(p + len, 0, size - REC_HEADER - len);
  put_le32(dst, (uint32_t)len);
  dst[4] = (uint8_t)type;
  dst[5] = dst[6] = dst[7] = 0;
  put_le64(dst + 8, batch);
  put_le32(dst + 16, crc32c(p, size - REC_HEADER));
  put_le32(dst + 20, crc32c_update(seed, dst, 20));
  return size;
}

rec_status rec_decode(const uint8_t *buf, size_t n, size_t off, uint32_t seed, rec_view *out) {
  if (off > n || n - off < REC_HEADER) return REC_SHORT_HEAD;
  const uint8_t *h = buf + off;
  if (get_le32(h + 20) != crc32c_update(seed, h, 20)) return REC_BAD_HEAD;
  uint32_t len = get_le32(h);
  unsigned type = h[4];
  /* A header with a right CRC and wrong fields was written wrong, not torn;
   * the caller sees it as a bad record like any other. */
  if (type < REC_SEGMENT || type > REC_SNAPSHOT || h[5] || h[6] || h[7] || len > REC_MAX_PAYLOAD)
    return REC_BAD_HEAD;
  out->type = type;
  out->batch = get_le64(h + 8);
  out->len = len;
  out->off = off;
  out->size = rec_size(len);
  out->payload = h + REC_HEADER;
  if (n - off < out->size) return REC_SHORT_BODY;
  if (get_le32(h + 16) != crc32c(out->payload, out->size - REC_HEADER)) return REC_BAD_BODY;
  return REC_OK;
}

const char *rec_status_str(rec_status s) {
  switch (s) {
    case REC_OK: return "valid record";
    case REC_SHORT_HEAD: return "file ends inside a record header";
    case REC_BAD_HEAD: return "bad record header (CRC or fields)";
    case REC_SHORT_BODY: return "file ends inside a record";
    case REC_BAD_BODY: return "bad record payload CRC";
  }
  return "?";
}

int seg_info_parse(const rec_view *r, seg_info *out) {
  const uint8_t *p = r->payload;
  if (r->type != REC_SEGMENT || r->len != SEG_RECORD_LEN) return -1;
  if (memcmp(p, SEG_MAGIC, 8) != 0 || get_le32(p + 8) != SEG_VERSION || get_le32(p + 12) != 0)
    return -1;
  out->wal_id = get_le64(p + 16);
  out->seq = get_le64(p + 24);
  out->name_index = get_le64(p + 32);
  out->last_index = get_le64(p + 40);
  out->prev_end = get_le64(p + 48);
  return 0;
}

void seg_info_encode(const seg_info *s, uint8_t out[SEG_RECORD_LEN]) {
  memcpy(out, SEG_MAGIC, 8);
  put_le32(out + 8, SEG_VERSION);
  put_le32(out + 12, 0);
  put_le64(out + 16, s->wal_id);
  put_le64(out + 24, s->seq);
  put_le64(out + 32, s->name_index);
  put_le64(out + 40, s->last_index);
  put_le64(out + 48, s->prev_end);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static bool parse_hex16(const char *s, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    int d = hexval(s[i]);
    if (d < 0) return false;
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return true;
}

bool seg_name_parse(const char *name, uint64_t *seq, uint64_t *index) {
  if (strlen(name) != SEG_NAME_LEN || name[16] != '-' || strcmp(name + 33, ".wal") != 0) return false;
  return parse_hex16(name, seq) && parse_hex16(name + 17, index);
}

void seg_name_format(char out[SEG_NAME_LEN + 1], uint64_t seq, uint64_t index) {
  snprintf(out, SEG_NAME_LEN + 1, "%016llx-%016llx.wal", (unsigned long long)seq,
           (unsigned long long)index);
}
