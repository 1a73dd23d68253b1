/* Unit tests for kvcore/wal recovery: torn tails are repaired, everything
 * else is refused with the file and offset named.
 *
 * A crash is simulated by copying the WAL's files while it is open (the copy
 * sees every write, as the page cache does) and then undoing part of the
 * unsynced region [synced, written) of the last segment the way a power cut
 * can: cut the file short, zero a suffix, or drop arbitrary 512-byte sectors.
 * Bytes before `synced` are never touched: fdatasync promised them. */
#include "wal_testutil.h"

#include <signal.h>
#include <sys/resource.h>

static const wal_snap START = {0, 0};

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }

typedef struct {
  char name[SEG_NAME_LEN + 1]; /* the last segment's file name */
  uint64_t written, synced;
} tail_info;

static tail_info tail_of(const wal *w) {
  tail_info t;
  char path[PATH_MAX];
  wal_debug_tail(w, path, sizeof path, &t.written, &t.synced);
  snprintf(t.name, sizeof t.name, "%s", strrchr(path, '/') + 1);
  return t;
}

static char *fresh_wal(const wal_options *opt, wal **w) {
  char *dir = xstrdup(testing_tmpdir());
  if (wal_create(dir, "meta", 4, opt) < 0) { perror("wal_create"); exit(2); }
  wal_recovered rec;
  *w = open_ok(dir, START, opt, &rec);
  if (!*w) exit(2);
  wal_recovered_free(&rec);
  return dir;
}

static void drop(char *dir) {
  testing_rmdir(dir);
  free(dir);
}

enum tear { TEAR_NONE, TEAR_TRUNCATE, TEAR_ZERO_SUFFIX, TEAR_SECTORS };

/* Start of the middle record among those beginning in [lo, hi) of a segment. */
static uint64_t middle_record(const char *path, uint64_t lo, uint64_t hi) {
  uint8_t *data;
  size_t n;
  if (read_file(path, &data, &n) < 0) { perror(path); exit(2); }
  rec_view v;
  seg_info si;
  uint64_t offs[4096], off = 0;
  size_t k = 0;
  uint32_t seed = 0;
  while (off < hi && rec_decode(data, n, off, seed, &v) == REC_OK) {
    if (off == 0 && seg_info_parse(&v, &si) == 0) seed = seg_seed(si.wal_id, si.seq);
    if (off >= lo && k < 4096) offs[k++] = off;
    off += v.size;
  }
  free(data);
  return k ? offs[k / 2] : lo;
}

/* Applies a crash to the copy's last segment, in [t.synced, t.written).
 * `sure`: tear so that the damage is certain to be visible (a cut inside a
 * record, a zeroed record header, the batch's first sector lost and its last
 * kept); otherwise anything goes, including a clean cut at a record boundary,
 * which recovery cannot (and need not) tell from "never written". */
static void tear(const char *copy, const tail_info *t, enum tear how, bool sure) {
  char p[PATH_MAX];
  path_join(p, sizeof p, copy, t->name);
  uint64_t lo = t->synced, hi = t->written;
  if (hi <= lo) return;
  uint64_t off = lo + rnd_below(hi - lo);
  switch (how) {
    case TEAR_NONE: break;
    case TEAR_TRUNCATE: truncate_file(p, sure ? (lo + (hi - lo) / 2) | 3 : off); break;
    case TEAR_ZERO_SUFFIX: zero_file_range(p, sure ? middle_record(p, lo, hi) + 4 : off, hi); break;
    case TEAR_SECTORS:
      for (uint64_t s = lo & ~511ull; s < hi; s += 512) {
        bool lost = rnd() % 2;
        if (sure) lost = s <= lo ? true : s + 512 >= hi ? false : lost;
        if (lost) zero_file_range(p, s < lo ? lo : s, s + 512 < hi ? s + 512 : hi);
      }
      break;
  }
}

/* ---------------------------------------------------------------- torn tails */

static void torn_tail_case(enum tear how) {
  wal_options opt = small_segments(65536);
  wal *w;
  char *dir = fresh_wal(&opt, &w);
  wal_hard_state hs = {1, 1, 40};
  CHECK_INT(append_range(w, 1, 40, 1, 5), ==, 0);
  CHECK_INT(wal_append(w, &hs, NULL, 0), ==, 0);
  CHECK_INT(wal_sync(w), ==, 0);
  CHECK_INT(append_range(w, 41, 70, 1, 3), ==, 0); /* never synced */
  wal_hard_state hs2 = {2, 2, 70};
  CHECK_INT(wal_append(w, &hs2, NULL, 0), ==, 0);
  tail_info t = tail_of(w);
  CHECK_INT(t.written, >, t.synced);
  char *copy = copy_wal_dir(dir);
  tear(copy, &t, how, true);
  wal_close(w);
  drop(dir);

  wal_recovered rec;
  w = open_ok(copy, START, &opt, &rec);
  REQUIRE(w);
  CHECK(rec.repaired);
  CHECK_INT(rec.n_entries, >=, 40);
  CHECK_INT(rec.n_entries, <=, 70); /* a cut inside the final hard state keeps all */
  uint64_t k = rec.n_entries;
  CHECK_RANGE(&rec, 1, k, 1);
  CHECK_INT(rec.hs.commit, ==, 40); /* the second hard state came after entry 70 */
  CHECK_INT(wal_last_index(w), ==, k);
  wal_recovered_free(&rec);

  /* The repaired WAL takes appends, and a reopen finds no damage. */
  CHECK_INT(append_range(w, k + 1, k + 20, 2, 4), ==, 0);
  CHECK_INT(wal_sync(w), ==, 0);
  wal_close(w);
  w = open_ok(copy, START, &opt, &rec);
  REQUIRE(w);
  CHECK(!rec.repaired);
  CHECK_RANGE(&rec, 1, k + 20, (i <= k ? 1 : 2));
  wal_close(w);
  wal_recovered_free(&rec);
  drop(copy);
}

static void test_torn_tail_truncated_mid_record(void) { torn_tail_case(TEAR_TRUNCATE); }
static void test_torn_tail_zeroed_suffix(void) { torn_tail_case(TEAR_ZERO_SUFFIX); }
static void test_torn_tail_scrambled_sectors(void) {
  /* The batch's first sector is lost while later ones landed: recovery must
   * see through the hole to the records behind it and find them all of the
   * same, last batch. */
  torn_tail_case(TEAR_SECTORS);
}

static void test_unsynced_but_complete_tail_is_kept(void) {
  wal_options opt = small_segments(65536);
  wal *w;
  char *dir = fresh_wal(&opt, &w);
  CHECK_INT(append_range(w, 1, 30, 1, 5), ==, 0);
  tail_info t = tail_of(w);
  char *copy = copy_wal_dir(dir);
  tear(copy, &t, TEAR_NONE, false);
  wal_close(w);
  drop(dir);
  wal_recovered rec;
  w = open_ok(copy, START, &opt, &rec);
  REQUIRE(w);
  CHECK(!rec.repaired);
  CHECK_RANGE(&rec, 1, 30, 1);
  wal_close(w);
  wal_recovered_free(&rec);
  drop(copy);
}

/* ---------------------------------------------------------------- damage */

/* Three synced batches in one segment; returns their starts. */
static char *three_batches(const wal_options *opt, uint64_t starts[3], char *last_name) {
  wal *w;
  char *dir = fresh_wal(opt, &w);
  for (int b = 0; b < 3; b++) {
    starts[b] = tail_of(w).written;
    CHECK_INT(append_range(w, (uint64_t)b * 10 + 1, (uint64_t)b * 10 + 10, 1, 10), ==, 0);
    CHECK_INT(wal_sync(w), ==, 0);
  }
  snprintf(last_name, SEG_NAME_LEN + 1, "%s", tail_of(w).name);
  wal_close(w);
  return dir;
}

static void test_flipped_bit_in_synced_record_refused(void) {
  wal_options opt = small_segments(65536);
  uint64_t starts[3];
  char name[SEG_NAME_LEN + 1], p[PATH_MAX];
  for (int b = 0; b < 2; b++) {
    for (uint64_t delta = 3; delta < 200; delta += 61) { /* header, payload */
      char *dir = three_batches(&opt, starts, name);
      snprintf(p, sizeof p, "%s/%s", dir, name);
      flip_bit(p, starts[b] + delta, (int)(delta % 8));
      const char *e = open_fails(dir, START, &opt);
      CHECK(e != NULL);
      if (e) {
        CHECK(strstr(e, name) != NULL);
        CHECK(strstr(e, "offset") != NULL);
        CHECK(strstr(e, "synced") != NULL);
      }
      drop(dir);
    }
  }
}

static void test_bad_record_before_a_later_batch_refused(void) {
  /* The bad record is the last of its batch; only the next batch's records
   * follow. A sync-epoch count could not tell this from a torn first record
   * of that next batch; the batch offset can. */
  wal_options opt = small_segments(65536);
  uint64_t starts[3];
  char name[SEG_NAME_LEN + 1], p[PATH_MAX];
  char *dir = three_batches(&opt, starts, name);
  snprintf(p, sizeof p, "%s/%s", dir, name);
  flip_bit(p, starts[2] - 5, 0); /* inside the last record of batch 2 */
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "corruption, not a torn write"));
  drop(dir);
}

static void test_damage_in_last_batch_is_taken_as_torn(void) {
  /* The documented limit: damage confined to the last batch, with nothing
   * written after it, looks exactly like a torn write (no later write can
   * testify that the batch's fdatasync completed). It is cut off, and
   * recovery says so. */
  wal_options opt = small_segments(65536);
  uint64_t starts[3];
  char name[SEG_NAME_LEN + 1], p[PATH_MAX];
  char *dir = three_batches(&opt, starts, name);
  snprintf(p, sizeof p, "%s/%s", dir, name);
  flip_bit(p, starts[2] + 100, 3);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK(rec.repaired);
  CHECK_RANGE(&rec, 1, 20, 1);
  wal_close(w);
  wal_recovered_free(&rec);
  drop(dir);
}

static char *several_segments(wal_options *opt, int min_files) {
  wal *w;
  char *dir = fresh_wal(opt, &w);
  uint64_t i = 1;
  while (count_wal_files(dir) < min_files) {
    CHECK_INT(append_range(w, i, i + 9, 1, 5), ==, 0);
    i += 10;
  }
  CHECK_INT(append_range(w, i, i + 9, 1, 5), ==, 0);
  CHECK_INT(wal_sync(w), ==, 0);
  wal_close(w);
  return dir;
}

static void test_flipped_bit_in_older_segment_refused(void) {
  wal_options opt = small_segments(8192);
  char *dir = several_segments(&opt, 4);
  char p[PATH_MAX];
  seg_path(dir, 1, p, sizeof p);
  flip_bit(p, (uint64_t)file_size(p) - 50, 6); /* near the end of a sealed segment */
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, strrchr(p, '/') + 1) && strstr(e, "not the last"));
  drop(dir);
}

static void test_damaged_segment_header_refused(void) {
  wal_options opt = small_segments(8192);
  char *dir = several_segments(&opt, 3);
  char p[PATH_MAX];
  seg_path(dir, -1, p, sizeof p); /* even the last segment: its header was synced */
  flip_bit(p, 30, 1);
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "segment header"));
  drop(dir);
}

/* Offset of the last record in a segment file. */
static uint64_t last_record_offset(const char *path) {
  uint8_t *data;
  size_t n;
  if (read_file(path, &data, &n) < 0) return 0;
  seg_result res;
  if (seg_scan(path, data, n, true, NULL, NULL, &res, NULL, 0) < 0) { free(data); return 0; }
  rec_view v;
  uint64_t off = 0, last = 0;
  uint32_t seed = 0;
  while (rec_decode(data, n, off, seed, &v) == REC_OK) {
    last = off;
    off += v.size;
    seed = res.seed;
  }
  free(data);
  return last;
}

static void test_truncated_middle_segment_refused(void) {
  wal_options opt = small_segments(8192);
  char p[PATH_MAX];
  /* Mid-record. */
  char *dir = several_segments(&opt, 4);
  seg_path(dir, 1, p, sizeof p);
  truncate_file(p, (uint64_t)file_size(p) - 13);
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, strrchr(p, '/') + 1));
  drop(dir);
  /* Exactly at a record boundary: the file itself looks fine, but its
   * successor's header says how much it held. */
  dir = several_segments(&opt, 4);
  seg_path(dir, 1, p, sizeof p);
  uint64_t cut = last_record_offset(p);
  CHECK_INT(cut, >, 0);
  truncate_file(p, cut);
  e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "truncated"));
  drop(dir);
}

static void test_missing_middle_segment_refused(void) {
  wal_options opt = small_segments(8192);
  char *dir = several_segments(&opt, 5);
  char p[PATH_MAX];
  seg_path(dir, 2, p, sizeof p);
  CHECK_INT(unlink(p), ==, 0);
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "missing"));
  drop(dir);
}

static void test_duplicate_sequence_refused(void) {
  wal_options opt = small_segments(8192);
  char *dir = several_segments(&opt, 3);
  char p[PATH_MAX], q[PATH_MAX];
  seg_path(dir, 1, p, sizeof p);
  snprintf(q, sizeof q, "%s", p);
  memcpy(strrchr(q, '-') + 1, "00000000000000ff", 16); /* same sequence, another index */
  copy_file(p, q);
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "two segments with sequence"));
  drop(dir);
}

static void test_garbage_file_refused(void) {
  char *dir = xstrdup(testing_tmpdir());
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/0000000000000000-0000000000000000.wal", dir);
  uint8_t junk[10000];
  rng_state = 42;
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rnd();
  int fd = open(p, O_CREAT | O_WRONLY, 0600);
  CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
  close(fd);
  const char *e = open_fails(dir, START, NULL);
  CHECK(e && strstr(e, "0000000000000000-0000000000000000.wal") && strstr(e, "offset 0"));

  /* All zeros: an empty file, never a valid (if empty) log. */
  zero_file_range(p, 0, sizeof junk);
  e = open_fails(dir, START, NULL);
  CHECK(e && strstr(e, "no segment header"));
  truncate_file(p, 0);
  e = open_fails(dir, START, NULL);
  CHECK(e && strstr(e, "no segment header"));
  drop(dir);

  /* Garbage as the newest of several segments. */
  wal_options opt = small_segments(8192);
  dir = several_segments(&opt, 3);
  seg_path(dir, -1, p, sizeof p);
  patch_file(p, 0, junk, sizeof junk);
  e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, strrchr(p, '/') + 1));
  drop(dir);
}

static void test_segment_of_another_wal_refused(void) {
  wal_options opt = small_segments(8192);
  char *a = several_segments(&opt, 3);
  char *b = several_segments(&opt, 3);
  char pa[PATH_MAX], pb[PATH_MAX];
  seg_path(a, 1, pa, sizeof pa);
  seg_path(b, 1, pb, sizeof pb);
  CHECK_STR(strrchr(pa, '/'), strrchr(pb, '/')); /* same name, different WAL */
  copy_file(pb, pa);
  const char *e = open_fails(a, START, &opt);
  CHECK(e && strstr(e, "another WAL"));
  drop(a);
  drop(b);
}

/* Writes a well-formed record (right seed and CRCs) into a segment at off:
 * damage that a writer bug, not a disk, would leave. */
static void write_crafted(const char *path, uint64_t off, unsigned type, uint64_t batch,
                          const uint8_t *payload, size_t n) {
  uint8_t *data;
  size_t len;
  if (read_file(path, &data, &len) < 0) { perror(path); exit(2); }
  rec_view v;
  seg_info si;
  if (rec_decode(data, len, 0, 0, &v) != REC_OK || seg_info_parse(&v, &si) < 0) { fprintf(stderr, "no header\n"); exit(2); }
  free(data);
  uint8_t rec[256];
  size_t size = rec_encode(rec, seg_seed(si.wal_id, si.seq), type, batch, payload, n, NULL, 0);
  patch_file(path, off, rec, size);
}

static char *five_entries(const wal_options *opt, char *path, uint64_t *end) {
  wal *w;
  char *dir = fresh_wal(opt, &w);
  CHECK_INT(append_range(w, 1, 5, 1, 5), ==, 0);
  CHECK_INT(wal_sync(w), ==, 0);
  tail_info t = tail_of(w);
  *end = t.written;
  path_join(path, PATH_MAX, dir, t.name);
  wal_close(w);
  return dir;
}

static void test_crafted_index_gap_refused(void) {
  wal_options opt = small_segments(65536);
  char path[PATH_MAX];
  uint64_t end;
  char *dir = five_entries(&opt, path, &end);
  uint8_t ent[ENTRY_FIXED_LEN] = {0};
  put_le64(ent, 7); /* after 5: index 6 is missing */
  put_le64(ent + 8, 1);
  write_crafted(path, end, REC_ENTRY, end, ent, sizeof ent);
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "gap") && strstr(e, "offset"));
  drop(dir);
}

static void test_crafted_inconsistent_batch_refused(void) {
  wal_options opt = small_segments(65536);
  char path[PATH_MAX];
  uint64_t end;
  char *dir = five_entries(&opt, path, &end);
  uint8_t ent[ENTRY_FIXED_LEN] = {0};
  put_le64(ent, 6);
  put_le64(ent + 8, 1);
  write_crafted(path, end, REC_ENTRY, 8, ent, sizeof ent); /* batch must be `end` */
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "claims sync batch"));
  drop(dir);
}

static void test_crafted_metadata_record_refused(void) {
  /* Metadata belongs in segment headers only. */
  wal_options opt = small_segments(65536);
  char path[PATH_MAX];
  uint64_t end;
  char *dir = five_entries(&opt, path, &end);
  write_crafted(path, end, REC_META, end, (const uint8_t *)"meta", 4);
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "outside the segment header"));
  drop(dir);
}

static void test_write_error_refuses_further_writes(void) {
  /* RLIMIT_FSIZE makes the write of a record bigger than the segment (which
   * must grow the file) fail part-way: EFBIG. */
  wal_options opt = small_segments(65536);
  wal *w;
  char *dir = fresh_wal(&opt, &w);
  CHECK_INT(append_range(w, 1, 10, 1, 5), ==, 0);
  CHECK_INT(wal_sync(w), ==, 0);
  struct rlimit old, lim;
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
  lim = old;
  lim.rlim_cur = 100000;
  signal(SIGXFSZ, SIG_IGN);
  REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  size_t big = 200000;
  uint8_t *data = xcalloc(1, big);
  wal_entry e = {.index = 11, .term = 1, .data = data, .len = big};
  errno = 0;
  CHECK_INT(wal_append(w, NULL, &e, 1), ==, -1);
  CHECK_INT(errno, ==, EFBIG);
  setrlimit(RLIMIT_FSIZE, &old);
  /* The file's state is unknown now: everything is refused. */
  static uint8_t st[ENT_MAX];
  ent_make(&e, st, 11, 1, 0);
  errno = 0;
  CHECK_INT(wal_append(w, NULL, &e, 1), ==, -1);
  CHECK_INT(errno, ==, EIO);
  CHECK_INT(wal_sync(w), ==, -1);
  CHECK_INT(wal_append_snapshot(w, (wal_snap){5, 1}), ==, -1);
  wal_close(w);
  free(data);
  /* A restart sorts it out: the synced entries, and the half-written record
   * cut off as a torn tail. */
  wal_recovered rec;
  w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 1, 10, 1);
  CHECK(rec.repaired);
  wal_close(w);
  wal_recovered_free(&rec);
  drop(dir);
}

/* ---------------------------------------------------------------- random */

/* The model: the log and hard state a reader must find, and the records
 * written since the last sync (any prefix of which may survive a crash). */
typedef struct {
  uint64_t term, salt;
} model_ent;

typedef struct {
  model_ent *log; /* log[i - 1] is entry i */
  size_t n, cap;
  wal_hard_state hs;
} model_state;

typedef struct {
  bool is_hs;
  uint64_t index, term, salt;
  wal_hard_state hs;
} model_rec;

static void state_copy(model_state *dst, const model_state *src) {
  if (dst->cap < src->n) {
    dst->cap = src->n + 64;
    dst->log = xrealloc(dst->log, dst->cap * sizeof *dst->log);
  }
  if (src->n) memcpy(dst->log, src->log, src->n * sizeof *src->log);
  dst->n = src->n;
  dst->hs = src->hs;
}

static void state_apply(model_state *s, const model_rec *r) {
  if (r->is_hs) {
    s->hs = r->hs;
    return;
  }
  s->n = r->index - 1;
  if (s->n == s->cap) {
    s->cap = 2 * s->cap + 64;
    s->log = xrealloc(s->log, s->cap * sizeof *s->log);
  }
  s->log[s->n++] = (model_ent){r->term, r->salt};
}

static bool state_matches(const model_state *s, const wal_recovered *rec) {
  if (rec->n_entries != s->n || memcmp(&rec->hs, &s->hs, sizeof s->hs) != 0) return false;
  for (size_t k = 0; k < s->n; k++)
    if (!ent_matches(&rec->entries[k], k + 1, s->log[k].term, s->log[k].salt)) return false;
  return true;
}

static void test_random_crashes(void) {
  uint64_t seed = testing_seed(0x5eed);
  rng_state = seed | 1;
  wal_options opt = small_segments(16384);
  wal *w;
  char *dir = fresh_wal(&opt, &w);
  model_state synced = {0}, cur = {0}, probe = {0};
  model_rec *pending = NULL;
  size_t n_pending = 0, cap_pending = 0;
  uint64_t term = 1, salt = 0;
  static uint8_t storage[8][ENT_MAX];
  int repaired = 0, full = 0, failures_before = testing_failures;

  for (int round = 0; round < 60 && testing_failures == failures_before; round++) {
    int ops = 1 + (int)rnd_below(25);
    for (int op = 0; op < ops; op++) {
      if (rnd() % 4 == 0) {
        CHECK_INT(wal_sync(w), ==, 0);
        state_copy(&synced, &cur);
        n_pending = 0;
        continue;
      }
      /* Append 0-6 entries, sometimes rewriting a suffix, maybe a hard state. */
      wal_entry ents[8];
      size_t n = rnd_below(7);
      uint64_t first = cur.n + 1;
      if (rnd() % 5 == 0) {
        uint64_t back = rnd_below(4);
        first = first > back + 1 ? first - back : 1;
        term++;
      }
      for (size_t k = 0; k < n; k++) ent_make(&ents[k], storage[k], first + k, term, ++salt);
      wal_hard_state hs = {term, rnd_below(3), first > 1 ? first - 1 : 0};
      bool with_hs = rnd() % 3 == 0 || n == 0;
      CHECK_INT(wal_append(w, with_hs ? &hs : NULL, ents, n), ==, 0);
      for (size_t k = 0; k <= n; k++) {
        if (k == n && !with_hs) break;
        if (n_pending == cap_pending) {
          cap_pending = 2 * cap_pending + 64;
          pending = xrealloc(pending, cap_pending * sizeof *pending);
        }
        model_rec *r = &pending[n_pending++];
        *r = k < n ? (model_rec){false, first + k, term, salt - n + 1 + k, {0}}
                   : (model_rec){true, 0, 0, 0, hs};
        state_apply(&cur, r);
      }
    }

    /* Crash, and recover from what the disk would hold. */
    tail_info t = tail_of(w);
    enum tear how = (enum tear)rnd_below(4);
    char *copy = copy_wal_dir(dir);
    tear(copy, &t, how, rnd() % 2);
    wal_close(w);
    drop(dir);
    dir = copy;

    wal_recovered rec;
    w = open_ok(dir, START, &opt, &rec);
    if (!w) {
      fprintf(stderr, "round %d, tear %d, seed 0x%llx\n", round, how, (unsigned long long)seed);
      CHECK(w != NULL);
      break;
    }
    /* Everything synced, plus some prefix of what was not. */
    state_copy(&probe, &synced);
    bool found = state_matches(&probe, &rec);
    size_t k = 0;
    for (; !found && k < n_pending; k++) {
      state_apply(&probe, &pending[k]);
      found = state_matches(&probe, &rec);
    }
    if (!found || (how == TEAR_NONE && !state_matches(&cur, &rec))) {
      fprintf(stderr, "round %d, tear %d: recovered %zu entries, synced %zu, written %zu; seed 0x%llx\n",
              round, how, rec.n_entries, synced.n, cur.n, (unsigned long long)seed);
      CHECK(found);
    }
    CHECK_INT(wal_last_index(w), ==, probe.n);
    repaired += rec.repaired;
    full += k == n_pending;
    wal_recovered_free(&rec);
    state_copy(&cur, &probe);
    state_copy(&synced, &probe);
    n_pending = 0;
  }
  CHECK_INT(count_wal_files(dir), >, 3); /* the run crossed segments */
  CHECK_INT(repaired, >, 5);            /* and actually tore tails */
  wal_close(w);
  drop(dir);
  free(synced.log);
  free(cur.log);
  free(probe.log);
  free(pending);
  (void)full;
}

int main(void) {
  log_set_level(LOG_ERROR);
  rng_state = testing_seed(7) | 1;
  RUN(test_torn_tail_truncated_mid_record);
  RUN(test_torn_tail_zeroed_suffix);
  RUN(test_torn_tail_scrambled_sectors);
  RUN(test_unsynced_but_complete_tail_is_kept);
  RUN(test_flipped_bit_in_synced_record_refused);
  RUN(test_bad_record_before_a_later_batch_refused);
  RUN(test_damage_in_last_batch_is_taken_as_torn);
  RUN(test_flipped_bit_in_older_segment_refused);
  RUN(test_damaged_segment_header_refused);
  RUN(test_truncated_middle_segment_refused);
  RUN(test_missing_middle_segment_refused);
  RUN(test_duplicate_sequence_refused);
  RUN(test_garbage_file_refused);
  RUN(test_segment_of_another_wal_refused);
  RUN(test_crafted_index_gap_refused);
  RUN(test_crafted_inconsistent_batch_refused);
  RUN(test_crafted_metadata_record_refused);
  RUN(test_write_error_refuses_further_writes);
  RUN(test_random_crashes);
  return testing_done();
}
