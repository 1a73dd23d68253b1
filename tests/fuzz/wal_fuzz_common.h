/* wal_fuzz_common.h - runs the WAL's recovery (scan + replay) over in-memory
 * segment images and checks what it returns, for the fuzz targets. */
#ifndef SYNOD_WAL_FUZZ_COMMON_H
#define SYNOD_WAL_FUZZ_COMMON_H

#include "wal_int.h"

#include <stdlib.h>
#include <string.h>

/* Recovers from segs[0..n) (oldest first; the last is the final one). The
 * "file name" of each is taken from its own SEGMENT record when it has one,
 * so that well-formed inputs get past the name check to the deeper rules.
 * Aborts if recovery breaks a promise instead of reporting an error. */
static inline void fuzz_recover(uint8_t *const *segs, const size_t *lens, size_t n, wal_snap from) {
  wal_recovered rec;
  replay r;
  char err[512];
  replay_init(&r, from, &rec);
  for (size_t i = 0; i < n; i++) {
    uint64_t seq = i, index = 0;
    rec_view v;
    seg_info si;
    if (rec_decode(segs[i], lens[i], 0, 0, &v) == REC_OK && seg_info_parse(&v, &si) == 0) {
      seq = si.seq;
      index = si.name_index;
    }
    char name[SEG_NAME_LEN + 1];
    seg_name_format(name, seq, index);
    seg_result res;
    err[0] = 0;
    if (replay_segment(&r, name, seq, index, segs[i], lens[i], i + 1 == n, &res, err, sizeof err) < 0) {
      if (!err[0]) abort(); /* every refusal says why */
      goto out;
    }
    if (res.end > lens[i] || res.end % 8 || res.header_end > res.end) abort();
    if (res.torn && (i + 1 != n || res.dirty_end <= res.end || res.dirty_end > lens[i])) abort();
  }
  if (replay_finish(&r, err, sizeof err) == 0) {
    for (size_t k = 0; k < rec.n_entries; k++)
      if (rec.entries[k].index != from.index + 1 + k) abort(); /* contiguous after `from` */
    if (rec.n_entries && rec.entries[rec.n_entries - 1].index != r.last) abort();
  }
out:
  wal_recovered_free(&rec);
}

#endif
