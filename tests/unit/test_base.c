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

static void sha256_hex(const void *in, size_t n, char out[65]) {
  sha256_ctx c;
  uint8_t d[32];
  sha256_init(&c);
  sha256_update(&c, in, n);
  sha256_final(&c, d);
  hex(d, 32, out);
}

/* FIPS 180-2 appendix B and NIST's example vectors, plus padding edges. */
static void test_sha256_vectors(void) {
  const struct { const char *in; const char *out; } v[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
      {"The quick brown fox jumps over the lazy dog",
       "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"},
  };
  char h[65];
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    sha256_hex(v[i].in, strlen(v[i].in), h);
    CHECK_STR(h, v[i].out);
  }
  /* 55, 56, 63 and 64 bytes: the padding spills into a second block or not. */
  char a64[64];
  memset(a64, 'a', sizeof a64);
  sha256_hex(a64, 55, h);
  CHECK_STR(h, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  sha256_hex(a64, 56, h);
  CHECK_STR(h, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  sha256_hex(a64, 64, h);
  CHECK_STR(h, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
  /* One million 'a' in odd-sized pieces equals one-shot, at every split. */
  sha256_ctx c;
  uint8_t d[32];
  char chunk[997];
  memset(chunk, 'a', sizeof chunk);
  sha256_init(&c);
  size_t left = 1000000;
  while (left) {
    size_t k = left < sizeof chunk ? left : sizeof chunk;
    sha256_update(&c, chunk, k);
    left -= k;
  }
  sha256_final(&c, d);
  hex(d, 32, h);
  CHECK_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  const char *s = "The quick brown fox jumps over the lazy dog";
  for (size_t i = 0; i <= strlen(s); i++) {
    sha256_init(&c);
    sha256_update(&c, s, i);
    sha256_update(&c, s + i, strlen(s) - i);
    sha256_final(&c, d);
    hex(d, 32, h);
    CHECK_STR(h, v[4].out);
  }
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
  RUN(test_sha256_vectors);
  RUN(test_arena);
  RUN(test_files);
  RUN(test_bytes_cmp);
  return testing_done();
}
