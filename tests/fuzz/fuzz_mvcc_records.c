/* libFuzzer target: every decoder of kvcore/mvcc's on-disk formats.
 *
 * The first input byte picks the decoder, the rest is the record. Anything
 * must be rejected cleanly (no crash, no read past the end: ASan watches),
 * and whatever decodes must encode back to exactly the same bytes, so no
 * two byte strings mean the same record. */
#include <stdlib.h>
#include <string.h>

#include "record.h"

static void same(const uint8_t *a, const uint8_t *b, size_t n) {
  if (memcmp(a, b, n) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  /* A private copy: the decoders must stay inside [p, p + n). */
  uint8_t *in = malloc(n ? n : 1);
  memcpy(in, p, n);
  uint8_t *out = malloc(n + 64);
  switch (data[0] % 8) {
  case 0: {
    store_state st;
    if (cstate_decode(in, n, &st) == 0) {
      cstate_encode(out, &st);
      same(out, in, n);
    }
    break;
  }
  case 1: {
    hist_rec r;
    if (hist_rec_decode(in, n, &r) == 0) {
      if (hist_rec_size(r.key_len, r.value_len) != n) abort();
      hist_rec_encode(out, &r);
      same(out, in, n);
    }
    break;
  }
  case 2: {
    int64_t main, sub;
    if (hist_key_decode(in, n, &main, &sub) == 0) {
      hist_key_encode(out, main, sub);
      same(out, in, n);
    }
    break;
  }
  case 3: {
    int64_t main, sub;
    bool del;
    if (kidx_decode(in, n, &main, &sub, &del) == 0) {
      kidx_encode(out, main, sub, del);
      same(out, in, n);
    }
    break;
  }
  case 4: {
    store_state st;
    if (state_decode(in, n, &st) == 0) {
      state_encode(out, &st);
      same(out, in, n);
    }
    break;
  }
  case 5: {
    ckpt_file c;
    if (ckpt_decode(in, n, &c) == 0) {
      buf b = {0};
      ckpt_encode(&b, &c);
      if (b.len != n) abort();
      same(b.data, in, n);
      buf_free(&b);
    }
    break;
  }
  case 6: {
    marker m;
    if (marker_decode(in, n, &m) == 0) {
      char text[128];
      int len = marker_encode(text, sizeof text, &m);
      if (len < 0 || (size_t)len != n) abort();
      same((const uint8_t *)text, in, n);
    }
    break;
  }
  default: {
    lmdb_meta m;
    (void)lmdb_meta_parse(in, n, &m);
  }
  }
  free(in);
  free(out);
  return 0;
}
