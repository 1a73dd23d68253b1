/* testing.h - the whole unit-test framework: checks that report file:line and
 * keep going, and a runner that prints one line per test.
 *
 *   static void test_put(void) { CHECK_INT(rev, ==, 2); }
 *   int main(void) { RUN(test_put); return testing_done(); }
 *
 * Randomized tests take their seed from SYNOD_SEED (default: fixed) and print
 * it on failure so a run can be replayed. */
#ifndef SYNOD_TESTING_H
#define SYNOD_TESTING_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int testing_failures;
static int testing_checks;
static const char *testing_current = "";

#define CHECK(cond)                                                             \
  do {                                                                          \
    testing_checks++;                                                           \
    if (!(cond)) {                                                              \
      testing_failures++;                                                       \
      fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__,      \
              testing_current, #cond);                                          \
    }                                                                           \
  } while (0)

#define CHECK_INT(a, op, b)                                                     \
  do {                                                                          \
    long long _a = (long long)(a), _b = (long long)(b);                         \
    testing_checks++;                                                           \
    if (!(_a op _b)) {                                                          \
      testing_failures++;                                                       \
      fprintf(stderr, "%s:%d: %s: check failed: %s %s %s (%lld vs %lld)\n",     \
              __FILE__, __LINE__, testing_current, #a, #op, #b, _a, _b);        \
    }                                                                           \
  } while (0)

#define CHECK_STR(a, b)                                                         \
  do {                                                                          \
    const char *_a = (a), *_b = (b);                                            \
    testing_checks++;                                                           \
    if (!_a || !_b || strcmp(_a, _b) != 0) {                                    \
      testing_failures++;                                                       \
      fprintf(stderr, "%s:%d: %s: check failed: %s == %s (\"%s\" vs \"%s\")\n", \
              __FILE__, __LINE__, testing_current, #a, #b, _a ? _a : "(null)",  \
              _b ? _b : "(null)");                                              \
    }                                                                           \
  } while (0)

#define CHECK_MEM(a, alen, b, blen)                                             \
  do {                                                                          \
    size_t _al = (alen), _bl = (blen);                                          \
    testing_checks++;                                                           \
    if (_al != _bl || (_al && memcmp((a), (b), _al) != 0)) {                    \
      testing_failures++;                                                       \
      fprintf(stderr, "%s:%d: %s: check failed: %s == %s (lengths %zu, %zu)\n", \
              __FILE__, __LINE__, testing_current, #a, #b, _al, _bl);           \
    }                                                                           \
  } while (0)

/* Stops the current test: for when continuing would crash. Evaluates cond
 * once, so it may have side effects (REQUIRE(read_file(...) == 0)). */
#define REQUIRE(cond)                                                           \
  do {                                                                          \
    int _ok = !!(cond);                                                         \
    testing_checks++;                                                           \
    if (!_ok) {                                                                 \
      testing_failures++;                                                       \
      fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__,      \
              testing_current, #cond);                                          \
      return;                                                                   \
    }                                                                           \
  } while (0)

#define RUN(fn)                                                                 \
  do {                                                                          \
    int _before = testing_failures;                                             \
    testing_current = #fn;                                                      \
    fn();                                                                       \
    printf("%s %s\n", testing_failures == _before ? "ok  " : "FAIL", #fn);      \
    fflush(stdout);                                                             \
  } while (0)

static inline int testing_done(void) {
  printf("%d checks, %d failures\n", testing_checks, testing_failures);
  return testing_failures ? 1 : 0;
}

static inline uint64_t testing_seed(uint64_t fallback) {
  const char *s = getenv("SYNOD_SEED");
  return s ? strtoull(s, NULL, 0) : fallback;
}

/* A temporary directory, removed by testing_rmdir. */
static inline char *testing_tmpdir(void) {
  static char path[256];
  const char *base = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/synod-test-XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(path)) { perror("mkdtemp"); exit(2); }
  return path;
}

static inline void testing_rmdir(const char *path) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

#endif
