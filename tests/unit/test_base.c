/* Unit tests for kvcore/base: checksums against published vectors, arena,
 * atomic file writes. */
#include "base.h"
#include "testing.h"

static void test_crc32c_vectors(void) {
  /* RFC 3720 B.4 and the common "123456789" check value. */
  CHECK_INT(crc32c("123456789", 9), ==, 0xE3069283u);
  uint8_t zeros[32] = {0};
  CHECK_INT(crc32c(zeros, 32), ==, 0x8A9136AAu);
  uint8_t ones[32];
  memset(ones, 0xff, sizeof ones);
  CHECK_INT(crc32c(ones, 32), ==, 0x62A8AB43u);
  /* Incremental equals one-shot, at every split point. */
  const char *s = "The quick brown fox jumps over the lazy dog";
  size_t n = strlen(s);
  for (size_t i = 0; i <= n; i++) CHECK_INT(crc32c_update(crc32c(s, i), s + i, n - i), ==, crc32c(s, n));
}

static void hex(const uint8_t *d, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha1_vectors(void) {
  const struct { const char *in; const char *out; } v[] = {
      {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
      {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    sha1_ctx c;
    uint8_t d[20];
    char h[41];
    sha1_init(&c);
    sha1_update(&c, v[i].in, strlen(v[i].in));
    sha1_final(&c, d);
    hex(d, 20, h);
    CHECK_STR(h, v[i].out);
  }
  /* One million 'a', fed in odd-sized pieces. */
  sha1_ctx c;
  uint8_t d[20];
  char h[41], chunk[997];
  memset(chunk, 'a', sizeof chunk);
  sha1_init(&c);
  size_t left = 1000000;
  while (left) {
    size_t k = left < sizeof chunk ? left : sizeof chunk;
    sha1_update(&c, chunk, k);
    left -= k;
  }
  sha1_final(&c, d);
  hex(d, 20, h);
  CHECK_STR(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

static void test_arena(void) {
  arena *a = arena_new();
  char *p = arena_alloc(a, 10);
  memset(p, 1, 10);
  uint8_t *big = arena_alloc(a, 100000);
  CHECK(((uintptr_t)big & 15) == 0);
  CHECK(big[99999] == 0);
  for (int i = 0; i < 1000; i++) {
    int *q = arena_alloc(a, sizeof(int) * 3);
    CHECK(((uintptr_t)q & 15) == 0);
    q[2] = i;
  }
  CHECK(p[9] == 1);
  arena_reset(a);
  CHECK_INT(arena_used(a), ==, 0);
  char *r = arena_memdup(a, "hello", 6);
  CHECK_STR(r, "hello");
  arena_free(a);
}

static void test_files(void) {
  char *dir = testing_tmpdir();
  char path[512], sub[512];
  snprintf(path, sizeof path, "%s/f", dir);
  CHECK_INT(write_file_atomic(path, "abc", 3), ==, 0);
  CHECK_INT(write_file_atomic(path, "defg", 4), ==, 0);
  uint8_t *d;
  size_t n;
  REQUIRE(read_file(path, &d, &n) == 0);
  CHECK_MEM(d, n, "defg", 4);
  free(d);
  snprintf(sub, sizeof sub, "%s/a/b/c", dir);
  CHECK_INT(mkdir_all(sub, 0700), ==, 0);
  CHECK_INT(mkdir_all(sub, 0700), ==, 0);
  testing_rmdir(dir);
}

static void test_bytes_cmp(void) {
  CHECK(bytes_cmp("a", 1, "b", 1) < 0);
  CHECK(bytes_cmp("a", 1, "a\0", 2) < 0);
  CHECK(bytes_cmp("", 0, "", 0) == 0);
  CHECK(bytes_cmp("\xff", 1, "\x01", 1) > 0);
}

int main(void) {
  RUN(test_crc32c_vectors);
  RUN(test_sha1_vectors);
  RUN(test_arena);
  RUN(test_files);
  RUN(test_bytes_cmp);
  return testing_done();
}
