/* Scanning one segment image: the valid prefix, then a verdict on the rest.
 *
 * The writer's discipline makes the verdict possible:
 *  - a segment's header records (batch 0) are fdatasync'ed before the file
 *    gets its .wal name, so they are never torn;
 *  - every record carries `batch`, the offset where its sync batch (the
 *    records written between two fdatasyncs) began, and a batch starts only
 *    after the previous one was synced;
 *  - a segment is synced, and truncated to its data, before the next one is
 *    created, so only the last segment can hold unsynced data;
 *  - unused space is zeros (preallocation zero-fills, repair zeroes the torn
 *    bytes it drops).
 * A crash therefore damages at most the last batch of the last segment,
 * sectors of it landing or not in any order. At the first bad record, at
 * offset p, that batch began either at the batch of the last good record or
 * at p itself. Any genuine header after p naming another batch proves that p
 * was followed by a later batch, hence was synced: that is damage, refused.
 * Otherwise everything from p on is the torn last batch, cut off.
 *
 * Cost: linear in n. A genuine header (own CRC) lets the search skip its
 * record; anything else advances 8 bytes, and zero words are skipped cheaply. */
#include "wal_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int scan_fail(char *err, size_t err_len, const char *name, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int scan_fail(char *err, size_t err_len, const char *name, size_t off, const char *fmt, ...) {
  if (err && err_len) {
    int k = snprintf(err, err_len, "wal: %s: offset %zu: ", name, off);
    if (k >= 0 && (size_t)k < err_len) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(err + k, err_len - (size_t)k, fmt, ap);
      va_end(ap);
    }
  }
  return -1;
}

static bool word_is_zero(const uint8_t *buf, size_t n, size_t q) {
  if (n - q >= 8) {
    uint64_t w;
    memcpy(&w, buf + q, 8);
    return w == 0;
  }
  for (size_t i = q; i < n; i++)
    if (buf[i]) return false;
  return true;
}

size_t nonzero_end(const uint8_t *buf, size_t from, size_t n) {
  size_t i = n;
  while (i > from && (i & 7)) {
    if (buf[i - 1]) return i;
    i--;
  }
  while (i >= from + 8) {
    uint64_t w;
    memcpy(&w, buf + i - 8, 8);
    if (w) break;
    i -= 8;
  }
  while (i > from && !buf[i - 1]) i--;
  return i;
}

static const unsigned header_types[SEG_HEADER_RECORDS] = {REC_SEGMENT, REC_META, REC_HARDSTATE,
                                                          REC_SNAPSHOT};

int seg_scan(const char *name, const uint8_t *buf, size_t n, bool final, rec_fn fn, void *ctx,
             seg_result *res, char *err, size_t err_len) {
  return seg_scan_hinted(name, buf, n, SIZE_MAX, final, fn, ctx, res, err, err_len);
}

int seg_scan_hinted(const char *name, const uint8_t *buf, size_t n, size_t nonzero, bool final, rec_fn fn,
                    void *ctx, seg_result *res, char *err, size_t err_len) {
  memset(res, 0, sizeof *res);
  size_t off = 0;
  int nrec = 0;
  uint64_t last_batch = 0;
  uint32_t seed = 0;
  rec_view v;
  rec_status st;

  for (;;) {
    st = rec_decode(buf, n, off, seed, &v);
    if (st != REC_OK) break;
    if (nrec < SEG_HEADER_RECORDS) {
      if (v.type != header_types[nrec] || v.batch != 0)
        return scan_fail(err, err_len, name, off, "segment header record %d has type %u, batch %llu",
                         nrec, v.type, (unsigned long long)v.batch);
      if (nrec == 0) {
        seg_info si;
        if (seg_info_parse(&v, &si) < 0)
          return scan_fail(err, err_len, name, off, "malformed segment record (not a Synod WAL segment?)");
        seed = seg_seed(si.wal_id, si.seq);
        res->wal_id = si.wal_id;
      }
    } else {
      if (v.type == REC_SEGMENT || v.type == REC_META)
        return scan_fail(err, err_len, name, off, "record type %u outside the segment header", v.type);
      /* A record continues the previous batch or starts a new one right here. */
      bool continues = nrec > SEG_HEADER_RECORDS && v.batch == last_batch;
      if (!continues && v.batch != off)
        return scan_fail(err, err_len, name, off,
                         "record claims sync batch %llu, previous record's batch is %llu",
                         (unsigned long long)v.batch, (unsigned long long)last_batch);
    }
    if (fn && fn(ctx, &v, err, err_len) < 0) return -1;
    last_batch = v.batch;
    off += v.size;
    nrec++;
    if (nrec == SEG_HEADER_RECORDS) res->header_end = off;
  }

  size_t p = off;
  /* A caller that already knows where the non-zero bytes end (found without
   * touching the zero tail) spares the backward walk over it. */
  size_t nz = nonzero == SIZE_MAX ? nonzero_end(buf, p, n) : (nonzero > p ? nonzero : p);
  res->seed = seed;
  res->end = p;
  if (nrec < SEG_HEADER_RECORDS) {
    /* The header was synced before the file got its name: never torn. */
    if (p == 0 && nz == 0)
      return scan_fail(err, err_len, name, 0, "empty segment: no segment header");
    return scan_fail(err, err_len, name, p, "%s in the segment header", rec_status_str(st));
  }
  if (nz == p) return 0; /* a clean end: EOF or zeroed preallocated space */
  if (!final)
    return scan_fail(err, err_len, name, p, "%s in a segment that is not the last (its data was synced)",
                     rec_status_str(st));

  /* The last segment: is anything after p evidence that p was synced? */
  bool have_tail_batch = false;
  uint64_t tail_batch = 0;
  size_t q = p;
  while (q < nz) {
    if (word_is_zero(buf, n, q)) {
      q += 8;
      continue;
    }
    rec_view h;
    rec_status s = rec_decode(buf, n, q, seed, &h);
    if (s != REC_OK && s != REC_SHORT_BODY && s != REC_BAD_BODY) {
      q += 8;
      continue;
    }
    bool same_batch = h.batch == p || (nrec > SEG_HEADER_RECORDS && h.batch == last_batch);
    if (!same_batch)
      return scan_fail(err, err_len, name, p,
                       "%s, but the record at offset %zu belongs to sync batch %llu, "
                       "so the data at offset %zu was synced: corruption, not a torn write",
                       rec_status_str(st), q, (unsigned long long)h.batch, p);
    if (have_tail_batch && h.batch != tail_batch)
      return scan_fail(err, err_len, name, p,
                       "%s, and records after it disagree on their sync batch (%llu, %llu)",
                       rec_status_str(st), (unsigned long long)tail_batch, (unsigned long long)h.batch);
    have_tail_batch = true;
    tail_batch = h.batch;
    if (s == REC_SHORT_BODY) break;
    q += h.size;
  }
  res->torn = true;
  res->dirty_end = nz;
  return 0;
}
