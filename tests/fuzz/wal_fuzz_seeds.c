/* wal_fuzz_seeds - writes the seed corpora of the WAL fuzz targets.
 *
 *   wal_fuzz_seeds tests/fuzz/corpus
 *
 * fuzz_wal_segment seeds are real segments made by the real writer (small
 * segments, entries, rewrites, hard states, a snapshot marker, a torn tail),
 * in that target's input format. fuzz_wal_records seeds are short op
 * programs. Rerun after a format change and commit the result. */
#include "wal.h"
#include "wal_int.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void write_seed(const char *dir, const char *name, const uint8_t *head, size_t nh, const buf *body) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) die("path");
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(head, 1, nh, f) != nh || (body->len && fwrite(body->data, 1, body->len, f) != body->len))
    die(path);
  fclose(f);
}

/* Appends a segment file to out, cut 64 bytes after its last non-zero byte
 * (the zeros of the preallocation are represented, not all of them).
 * Returns the bytes appended. */
static size_t add_segment(buf *out, const char *path) {
  uint8_t *d;
  size_t n;
  if (read_file(path, &d, &n) < 0) die(path);
  size_t end = n;
  while (end && !d[end - 1]) end--;
  end = (end + 64 + 7) & ~(size_t)7;
  if (end > n) end = n;
  buf_append(out, d, end);
  free(d);
  return end;
}

/* The name of the segment with sequence seq in dir. */
static void find_segment(const char *dir, uint64_t seq, char *out, size_t n) {
  DIR *d = opendir(dir);
  struct dirent *de;
  uint64_t s, i;
  while (d && (de = readdir(d)))
    if (seg_name_parse(de->d_name, &s, &i) && s == seq) {
      if (snprintf(out, n, "%s/%s", dir, de->d_name) >= (int)n) die("path");
      closedir(d);
      return;
    }
  die("segment not found");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  log_set_level(LOG_ERROR);
  char tmp[] = "/tmp/wal-seeds-XXXXXX";
  if (!mkdtemp(tmp)) die("mkdtemp");
  wal_options opt = {.segment_bytes = 4096};
  if (wal_create(tmp, "meta", 4, &opt) < 0) die("wal_create");
  wal_recovered rec;
  wal *w;
  char err[256];
  if (wal_open(tmp, (wal_snap){0, 0}, &opt, &rec, &w, err, sizeof err) < 0) die(err);
  wal_recovered_free(&rec);
  uint8_t data[200];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)i;
  uint64_t index = 0;
  for (int round = 0; round < 30; round++) {
    wal_entry e[3];
    uint64_t first = round % 7 == 6 ? index - 1 : index + 1; /* a rewrite now and then */
    for (int k = 0; k < 3; k++)
      e[k] = (wal_entry){.index = first + (uint64_t)k, .term = 1 + (uint64_t)round / 7, .data = data, .len = (size_t)(round * 13 % 200)};
    index = first + 2;
    wal_hard_state hs = {1 + (uint64_t)round / 7, 1, index - 1};
    if (wal_append(w, &hs, e, 3) < 0) die("append");
    if (round == 12 && wal_append_snapshot(w, (wal_snap){10, 2}) < 0) die("snapshot");
    if (round % 3 == 0 && wal_sync(w) < 0) die("sync");
  }
  wal_sync(w);
  wal_close(w);

  char seg_dir[PATH_MAX], rec_dir[PATH_MAX], p[PATH_MAX];
  snprintf(seg_dir, sizeof seg_dir, "%s/fuzz_wal_segment", argv[1]);
  snprintf(rec_dir, sizeof rec_dir, "%s/fuzz_wal_records", argv[1]);
  /* One segment, from the start. */
  buf b = {0};
  find_segment(tmp, 0, p, sizeof p);
  add_segment(&b, p);
  uint8_t head[6] = {0, 0, 0, 0, 0, 0};
  write_seed(seg_dir, "one-segment", head, 6, &b);
  /* The same with its last batch torn (bytes zeroed in the middle of it). */
  if (b.len > 200) memset(b.data + b.len - 200, 0, 40);
  write_seed(seg_dir, "one-segment-torn", head, 6, &b);
  /* Three segments. */
  buf three = {0};
  size_t lens[3];
  for (int s = 0; s < 3; s++) {
    find_segment(tmp, (uint64_t)s, p, sizeof p);
    lens[s] = add_segment(&three, p);
  }
  uint8_t head3[6] = {2, 0, (uint8_t)lens[0], (uint8_t)(lens[0] >> 8), (uint8_t)lens[1], (uint8_t)(lens[1] >> 8)};
  write_seed(seg_dir, "three-segments", head3, 6, &three);
  head3[1] = 10; /* from the snapshot marker at 10 */
  write_seed(seg_dir, "three-segments-from-10", head3, 6, &three);

  /* Op programs for fuzz_wal_records: see that file for the op codes. */
  static const uint8_t prog1[] = {0, 0, 4, 1, 5, 0, 4, 2, 3, 3, 1, 1, 2, 5, 4, 3, 0, 4, 1, 2, 3, 1, 2, 2};
  static const uint8_t prog2[] = {3, 0, 4, 1, 8, 0, 4, 1, 0, 6, 0, 0, 4, 1, 4, 5, 0, 4, 2, 1, 7, 0, 60, 0};
  static const uint8_t prog3[] = {5, 0, 4, 1, 3, 5, 0, 4, 1, 3, 4, 2, 1, 6, 0, 0, 4, 1, 0, 0, 1, 1, 0};
  static const uint8_t prog4[] = {0, 0, 4, 1, 9, 5, 0, 4, 1, 9, 7, 2, 90, 0, 0, 4, 1, 9};
  const uint8_t *progs[] = {prog1, prog2, prog3, prog4};
  size_t prog_lens[] = {sizeof prog1, sizeof prog2, sizeof prog3, sizeof prog4};
  for (int i = 0; i < 4; i++) {
    char name[32];
    snprintf(name, sizeof name, "program-%d", i + 1);
    buf empty = {0};
    write_seed(rec_dir, name, progs[i], prog_lens[i], &empty);
  }
  buf_free(&b);
  buf_free(&three);
  snprintf(p, sizeof p, "rm -rf '%s'", tmp);
  if (system(p) != 0) return 1;
  return 0;
}
