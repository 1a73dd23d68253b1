/* libFuzzer target: the image header check that runs before LMDB is let
 * near a snapshot file from the network or a user (record.c's
 * image_header_parse). Input: LE64 file size, then the file's first bytes.
 * Whatever is accepted must describe pages inside the file. */
#include <stdlib.h>
#include <string.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8) return 0;
  uint64_t file_size = get_le64(data);
  size_t n = size - 8;
  uint8_t *in = malloc(n ? n : 1); /* a private copy: ASan sees reads past n */
  memcpy(in, data + 8, n);
  image_header h;
  if (image_header_parse(in, n, file_size, &h) == 0) {
    if (h.psize < 512 || (h.psize & (h.psize - 1)) != 0) abort();
    if (file_size % h.psize != 0 || h.last_pg >= file_size / h.psize) abort();
    if (n < 2 * (size_t)h.psize) abort();
  }
  free(in);
  return 0;
}
