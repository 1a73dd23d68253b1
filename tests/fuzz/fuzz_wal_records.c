/* Fuzz target: a stream of well-formed records, then damage.
 *
 * Random bytes almost never pass a CRC, so fuzz_wal_segment mostly exercises
 * the framing and torn-tail scan. Here the input is a program that encodes
 * records properly (right seeds, CRCs, segment headers): entries with any
 * index (rewrites, gaps, zero), hard states, snapshot markers ahead of or
 * behind the log, new batches, new segments whose header fields may be
 * perturbed -- and bit flips, zeroed ranges and cuts. That reaches the replay
 * rules (gaps, batch consistency, segment continuity, snapshot checks) with
 * valid-looking data.
 *
 * Each op is one byte, followed by the bytes it consumes:
 *   0-2 entry       delta (index = last + 1 + delta%7 - 4), term, data length
 *   3   hard state  term, vote, commit
 *   4   snapshot    delta (index = last + delta%5 - 2), term
 *   5   new batch   (the next records start a batch at the current offset)
 *   6   new segment perturb (0: exact header; else one field off)
 *   7   damage      kind, offset lo, offset hi */
#include "wal_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEGS 4

typedef struct {
  buf segs[MAX_SEGS];
  int n;
  uint64_t wal_id, last, batch;
  wal_hard_state hs;
  wal_snap snap;
  uint32_t seed;
  const uint8_t *in;
  size_t left;
} gen;

static uint8_t next(gen *g) {
  if (!g->left) return 0;
  g->left--;
  return *g->in++;
}

static buf *cur(gen *g) { return &g->segs[g->n - 1]; }

static void put(gen *g, unsigned type, const void *fixed, size_t nf, const void *d, size_t nd) {
  buf *b = cur(g);
  buf_reserve(b, rec_size(nf + nd));
  b->len += rec_encode(b->data + b->len, type == REC_SEGMENT ? 0 : g->seed, type, g->batch, fixed, nf, d, nd);
}

static void new_segment(gen *g, uint8_t perturb) {
  if (g->n == MAX_SEGS) return;
  size_t prev_end = g->n ? cur(g)->len : 0;
  seg_info si = {g->wal_id, (uint64_t)g->n, g->n ? g->last + 1 : 0, g->last, prev_end};
  switch (perturb % 6) {
    case 1: si.wal_id ^= 1; break;
    case 2: si.seq += 1; break;
    case 3: si.name_index += 1; break;
    case 4: si.last_index ^= 2; break;
    case 5: si.prev_end += 8; break;
  }
  g->n++;
  g->seed = seg_seed(si.wal_id, si.seq);
  g->batch = 0;
  uint8_t s[SEG_RECORD_LEN], h[HS_RECORD_LEN], sn[SNAP_RECORD_LEN];
  seg_info_encode(&si, s);
  put_le64(h, g->hs.term);
  put_le64(h + 8, g->hs.vote);
  put_le64(h + 16, g->hs.commit);
  put_le64(sn, g->snap.index);
  put_le64(sn + 8, g->snap.term);
  put(g, REC_SEGMENT, s, sizeof s, NULL, 0);
  put(g, REC_META, "m", 1, NULL, 0);
  put(g, REC_HARDSTATE, h, sizeof h, NULL, 0);
  put(g, REC_SNAPSHOT, sn, sizeof sn, NULL, 0);
  g->batch = cur(g)->len;
}

static void damage(gen *g) {
  buf *b = cur(g);
  uint8_t kind = next(g);
  size_t lo = next(g) | (size_t)next(g) << 8;
  if (!b->len) return;
  lo %= b->len;
  switch (kind % 3) {
    case 0: b->data[lo] ^= (uint8_t)(1u << (kind >> 5)); break;
    case 1: memset(b->data + lo, 0, b->len - lo < 64 ? b->len - lo : 64); break;
    case 2: b->len = lo; break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  gen g = {.wal_id = 0x1234, .in = data + 1, .left = size - 1};
  wal_snap from = {data[0] % 16, data[0] % 16 ? 1 : 0};
  uint8_t payload[256];
  new_segment(&g, 0);
  while (g.left) {
    uint8_t op = next(&g) % 8;
    if (op <= 2) {
      uint64_t index = g.last + 1 + next(&g) % 7 - 4;
      uint8_t fixed[ENTRY_FIXED_LEN] = {0};
      put_le64(fixed, index);
      put_le64(fixed + 8, next(&g));
      size_t n = next(&g) % 64;
      for (size_t i = 0; i < n; i++) payload[i] = next(&g);
      put(&g, REC_ENTRY, fixed, sizeof fixed, payload, n);
      if (index - 1 <= g.last) g.last = index; /* as the writer would */
    } else if (op == 3) {
      g.hs = (wal_hard_state){next(&g), next(&g), next(&g)};
      uint8_t h[HS_RECORD_LEN];
      put_le64(h, g.hs.term);
      put_le64(h + 8, g.hs.vote);
      put_le64(h + 16, g.hs.commit);
      put(&g, REC_HARDSTATE, h, sizeof h, NULL, 0);
    } else if (op == 4) {
      uint64_t d = next(&g) % 5;
      g.snap = (wal_snap){g.last + d >= 2 ? g.last + d - 2 : 0, next(&g) % 3};
      uint8_t s[SNAP_RECORD_LEN];
      put_le64(s, g.snap.index);
      put_le64(s + 8, g.snap.term);
      put(&g, REC_SNAPSHOT, s, sizeof s, NULL, 0);
      if (g.snap.index > g.last) g.last = g.snap.index;
    } else if (op == 5) {
      g.batch = cur(&g)->len;
    } else if (op == 6) {
      new_segment(&g, next(&g));
    } else {
      damage(&g);
    }
  }
  /* A final segment is usually followed by zeroed preallocated space. */
  buf_reserve(cur(&g), 64);
  memset(cur(&g)->data + cur(&g)->len, 0, 64);
  cur(&g)->len += 64;

  uint8_t *segs[MAX_SEGS];
  size_t lens[MAX_SEGS];
  for (int i = 0; i < g.n; i++) {
    lens[i] = g.segs[i].len;
    segs[i] = malloc(lens[i] ? lens[i] : 1); /* exact size: overreads are caught */
    if (lens[i]) memcpy(segs[i], g.segs[i].data, lens[i]);
    buf_free(&g.segs[i]);
  }
  fuzz_recover(segs, lens, (size_t)g.n, from);
  for (int i = 0; i < g.n; i++) free(segs[i]);
  return 0;
}
