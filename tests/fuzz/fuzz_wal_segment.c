/* Fuzz target: arbitrary bytes as WAL segment files.
 *
 * Input: [nseg-1 (low 2 bits)] [from.index] [len0 u16 le] [len1 u16 le] data.
 * The data is cut into up to three segment images (len0, len1, the rest),
 * each copied into its own exact-size allocation so that any read past an
 * image's end is caught. Recovery must refuse or succeed, never crash, leak
 * or hang. Seeds (real segments) come from wal_fuzz_seeds. */
#include "wal_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 6) return 0;
  size_t nseg = 1 + data[0] % 3;
  wal_snap from = {data[1], data[1] ? 1 : 0};
  size_t want[2] = {data[2] | (size_t)data[3] << 8, data[4] | (size_t)data[5] << 8};
  data += 6;
  size -= 6;
  uint8_t *segs[3];
  size_t lens[3];
  for (size_t i = 0; i < nseg; i++) {
    size_t k = i + 1 == nseg ? size : (want[i] < size ? want[i] : size);
    lens[i] = k;
    segs[i] = malloc(k ? k : 1);
    if (k) memcpy(segs[i], data, k);
    data += k;
    size -= k;
  }
  fuzz_recover(segs, lens, nseg, from);
  for (size_t i = 0; i < nseg; i++) free(segs[i]);
  return 0;
}
