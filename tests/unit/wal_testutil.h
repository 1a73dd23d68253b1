/* wal_testutil.h - helpers shared by the WAL's unit tests: deterministic
 * entry contents, checking recovered entries, and the file surgery that
 * simulates crashes and damage (copy a directory, truncate, zero, flip). */
#ifndef SYNOD_WAL_TESTUTIL_H
#define SYNOD_WAL_TESTUTIL_H

#include "base.h"
#include "testing.h"
#include "wal.h"
#include "wal_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

/* Entry contents are a function of (index, term, salt), so a test can
 * rebuild what it expects. Up to ENT_MAX bytes. */
#define ENT_MAX 600

static inline size_t ent_len(uint64_t index, uint64_t term, uint64_t salt) {
  return (size_t)((index * 37 + term * 11 + salt * 7) % ENT_MAX);
}

static inline void ent_fill(uint8_t *p, size_t n, uint64_t index, uint64_t term, uint64_t salt) {
  uint64_t x = index * 0x9E3779B97F4A7C15ull ^ term * 0xC2B2AE3D27D4EB4Full ^ salt;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (uint8_t)x;
  }
}

/* Fills e (with storage) for (index, term, salt). */
static inline void ent_make(wal_entry *e, uint8_t *storage, uint64_t index, uint64_t term, uint64_t salt) {
  e->index = index;
  e->term = term;
  e->type = (uint32_t)(index % 3);
  e->len = ent_len(index, term, salt);
  ent_fill(storage, e->len, index, term, salt);
  e->data = storage;
}

/* Appends entries [first, last] with `term`, `per_call` per wal_append. */
static inline int append_range(wal *w, uint64_t first, uint64_t last, uint64_t term, size_t per_call) {
  static uint8_t storage[64][ENT_MAX];
  wal_entry ents[64];
  if (per_call > 64) per_call = 64;
  for (uint64_t i = first; i <= last;) {
    size_t n = 0;
    for (; n < per_call && i <= last; n++, i++) ent_make(&ents[n], storage[n], i, term, 0);
    if (wal_append(w, NULL, ents, n) < 0) return -1;
  }
  return 0;
}

/* Does e hold what ent_make(index, term, salt) made? */
static inline bool ent_matches(const wal_entry *e, uint64_t index, uint64_t term, uint64_t salt) {
  uint8_t want[ENT_MAX];
  size_t n = ent_len(index, term, salt);
  ent_fill(want, n, index, term, salt);
  return e->index == index && e->term == term && e->type == (uint32_t)(index % 3) && e->len == n &&
         (n == 0 || memcmp(e->data, want, n) == 0);
}

/* Checks rec holds exactly entries [first, last], with term term_of(i). */
#define CHECK_RANGE(rec, first, last, term_of)                                       \
  do {                                                                               \
    uint64_t _f = (first), _l = (last);                                              \
    CHECK_INT((rec)->n_entries, ==, _l >= _f ? _l - _f + 1 : 0);                     \
    size_t _bad = 0;                                                                 \
    for (size_t _k = 0; _k < (rec)->n_entries && _k + _f <= _l; _k++) {              \
      uint64_t i = _f + _k;                                                          \
      if (!ent_matches(&(rec)->entries[_k], i, (term_of), 0)) _bad++;                \
    }                                                                                \
    CHECK_INT(_bad, ==, 0);                                                          \
  } while (0)

static inline wal_options small_segments(uint64_t bytes) {
  wal_options o = {.segment_bytes = bytes};
  return o;
}

/* ---------------------------------------------------------------- files */

/* dir/name into out; exits if it does not fit (tests use short paths). */
static inline void path_join(char *out, size_t n, const char *dir, const char *name) {
  if (snprintf(out, n, "%s/%s", dir, name) >= (int)n) {
    fprintf(stderr, "path too long: %s/%s\n", dir, name);
    exit(2);
  }
}

/* The segment files of dir, sorted (their names sort by sequence). */
static inline int list_wal_files(const char *dir, char names[][SEG_NAME_LEN + 1], int max) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    uint64_t s, i;
    if (seg_name_parse(de->d_name, &s, &i) && n < max) memcpy(names[n++], de->d_name, SEG_NAME_LEN + 1);
  }
  closedir(d);
  for (int a = 1; a < n; a++)
    for (int b = a; b > 0 && strcmp(names[b - 1], names[b]) > 0; b--) {
      char t[SEG_NAME_LEN + 1];
      memcpy(t, names[b], sizeof t);
      memcpy(names[b], names[b - 1], sizeof t);
      memcpy(names[b - 1], t, sizeof t);
    }
  return n;
}

static inline int count_wal_files(const char *dir) {
  static char names[4096][SEG_NAME_LEN + 1];
  return list_wal_files(dir, names, 4096);
}

/* Path of the k-th segment file of dir (negative k: from the end). */
static inline void seg_path(const char *dir, int k, char *out, size_t n) {
  static char names[4096][SEG_NAME_LEN + 1];
  int cnt = list_wal_files(dir, names, 4096);
  if (k < 0) k += cnt;
  path_join(out, n, dir, (k >= 0 && k < cnt) ? names[k] : "missing");
}

static inline long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) < 0 ? -1 : (long long)st.st_size;
}

static inline void copy_file(const char *from, const char *to) {
  uint8_t *data;
  size_t n;
  if (read_file(from, &data, &n) < 0) { perror(from); exit(2); }
  int fd = open(to, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (fd < 0 || write(fd, data, n) != (ssize_t)n) { perror(to); exit(2); }
  close(fd);
  free(data);
}

/* Copies dir's segment files into a new temporary directory: what the disk
 * holds if the machine stopped now and the page cache had reached it. */
static inline char *copy_wal_dir(const char *dir) {
  static char names[4096][SEG_NAME_LEN + 1];
  char *dst = xstrdup(testing_tmpdir());
  int n = list_wal_files(dir, names, 4096);
  for (int i = 0; i < n; i++) {
    char a[PATH_MAX], b[PATH_MAX];
    path_join(a, sizeof a, dir, names[i]);
    path_join(b, sizeof b, dst, names[i]);
    copy_file(a, b);
  }
  return dst;
}

static inline void patch_file(const char *path, uint64_t off, const void *p, size_t n) {
  int fd = open(path, O_WRONLY);
  if (fd < 0 || pwrite(fd, p, n, (off_t)off) != (ssize_t)n) { perror(path); exit(2); }
  close(fd);
}

static inline void zero_file_range(const char *path, uint64_t from, uint64_t to) {
  static const uint8_t z[4096];
  while (from < to) {
    size_t k = to - from < sizeof z ? (size_t)(to - from) : sizeof z;
    patch_file(path, from, z, k);
    from += k;
  }
}

static inline void flip_bit(const char *path, uint64_t off, int bit) {
  int fd = open(path, O_RDWR);
  uint8_t b;
  if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1) { perror(path); exit(2); }
  b ^= (uint8_t)(1u << bit);
  if (pwrite(fd, &b, 1, (off_t)off) != 1) { perror(path); exit(2); }
  close(fd);
}

static inline void truncate_file(const char *path, uint64_t size) {
  if (truncate(path, (off_t)size) < 0) { perror(path); exit(2); }
}

/* Opens dir expecting success. */
static inline wal *open_ok(const char *dir, wal_snap from, const wal_options *opt, wal_recovered *rec) {
  wal *w = NULL;
  char err[512];
  if (wal_open(dir, from, opt, rec, &w, err, sizeof err) < 0) {
    fprintf(stderr, "%s: unexpected wal_open failure: %s\n", testing_current, err);
    return NULL;
  }
  return w;
}

/* Opens dir expecting failure; returns the message (static). */
static inline const char *open_fails(const char *dir, wal_snap from, const wal_options *opt) {
  static char err[512];
  wal_recovered rec;
  wal *w = NULL;
  err[0] = 0;
  if (wal_open(dir, from, opt, &rec, &w, err, sizeof err) == 0) {
    wal_close(w);
    wal_recovered_free(&rec);
    return NULL;
  }
  return err;
}

#endif
