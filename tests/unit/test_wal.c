/* Unit tests for kvcore/wal: the API's semantics on healthy files -- round
 * trips, reopening, segment rollover, hard state, snapshot markers, Raft
 * rewrites, purging, and the errors a caller can provoke. Damage and crash
 * recovery are in test_wal_recovery.c. */
#include "wal_testutil.h"

static const char META[] = "member=8e9e05c52164694d cluster=cdf818194e3a8c32";

static char *new_wal(const wal_options *opt) {
  char *dir = xstrdup(testing_tmpdir());
  char sub[PATH_MAX];
  snprintf(sub, sizeof sub, "%s/member/wal", dir); /* wal_create makes the parents */
  if (wal_create(sub, META, sizeof META - 1, opt) < 0) {
    perror("wal_create");
    exit(2);
  }
  free(dir);
  return xstrdup(sub);
}

static void remove_wal(char *dir) {
  char top[PATH_MAX];
  snprintf(top, sizeof top, "%s", dir);
  *strstr(top, "/member/wal") = 0;
  testing_rmdir(top);
  free(dir);
}

static const wal_snap START = {0, 0};

/* 64 KiB segments: creating a default one zero-fills 64 MiB, which only
 * test_create_and_open_empty needs to see. */
static const wal_options SMALL = {.segment_bytes = 65536};

static void test_create_and_open_empty(void) {
  char *dir = new_wal(NULL);
  CHECK(wal_exists(dir));
  CHECK_INT(count_wal_files(dir), ==, 1);
  char first[PATH_MAX];
  seg_path(dir, 0, first, sizeof first);
  CHECK(strstr(first, "0000000000000000-0000000000000000.wal") != NULL);
  CHECK_INT(file_size(first), ==, WAL_DEFAULT_SEGMENT_BYTES); /* preallocated */

  errno = 0;
  CHECK_INT(wal_create(dir, "x", 1, NULL), ==, -1);
  CHECK_INT(errno, ==, EEXIST);

  wal_recovered rec;
  wal *w = open_ok(dir, START, NULL, &rec);
  REQUIRE(w);
  CHECK_MEM(rec.meta, rec.meta_len, META, sizeof META - 1);
  CHECK_INT(rec.n_entries, ==, 0);
  CHECK_INT(rec.hs.term, ==, 0);
  CHECK_INT(rec.hs.commit, ==, 0);
  CHECK_INT(rec.snap.index, ==, 0);
  CHECK(!rec.repaired);
  CHECK_INT(wal_last_index(w), ==, 0);
  wal_close(w);
  wal_recovered_free(&rec);
  remove_wal(dir);
}

static void test_round_trip(void) {
  char *dir = new_wal(&SMALL);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  CHECK_INT(append_range(w, 1, 250, 3, 7), ==, 0);
  wal_hard_state hs = {3, 2, 240};
  CHECK_INT(wal_append(w, &hs, NULL, 0), ==, 0);
  CHECK_INT(wal_sync(w), ==, 0);
  CHECK_INT(wal_last_index(w), ==, 250);
  wal_close(w);

  w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 1, 250, 3);
  CHECK_INT(rec.hs.term, ==, 3);
  CHECK_INT(rec.hs.vote, ==, 2);
  CHECK_INT(rec.hs.commit, ==, 240);
  CHECK_MEM(rec.meta, rec.meta_len, META, sizeof META - 1);
  CHECK_INT(wal_last_index(w), ==, 250);
  CHECK(!rec.repaired);
  wal_close(w);
  wal_recovered_free(&rec);
  remove_wal(dir);
}

static void test_empty_metadata_and_empty_entries(void) {
  char *dir = xstrdup(testing_tmpdir());
  CHECK_INT(wal_create(dir, NULL, 0, &SMALL), ==, 0);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  CHECK_INT(rec.meta_len, ==, 0);
  wal_recovered_free(&rec);
  wal_entry e = {.index = 1, .term = 1, .type = 0, .data = NULL, .len = 0};
  CHECK_INT(wal_append(w, NULL, &e, 1), ==, 0);
  CHECK_INT(wal_append(w, NULL, NULL, 0), ==, 0); /* nothing: a no-op */
  wal_close(w);                                   /* close syncs */
  w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  CHECK_INT(rec.n_entries, ==, 1);
  CHECK_INT(rec.entries[0].len, ==, 0);
  wal_close(w);
  wal_recovered_free(&rec);
  testing_rmdir(dir);
  free(dir);
}

static void test_reopen_and_continue(void) {
  char *dir = new_wal(&SMALL);
  wal_recovered rec;
  for (uint64_t round = 0; round < 4; round++) {
    wal *w = open_ok(dir, START, &SMALL, &rec);
    REQUIRE(w);
    CHECK_RANGE(&rec, 1, round * 30, 1);
    CHECK_INT(wal_last_index(w), ==, round * 30);
    wal_recovered_free(&rec);
    CHECK_INT(append_range(w, round * 30 + 1, round * 30 + 30, 1, 4), ==, 0);
    CHECK_INT(wal_sync(w), ==, 0);
    wal_close(w);
  }
  CHECK_INT(count_wal_files(dir), ==, 1);
  remove_wal(dir);
}

static uint64_t term_by_third(uint64_t i) { return i <= 100 ? 1 : i <= 200 ? 2 : 3; }

static void test_segment_rollover(void) {
  wal_options opt = small_segments(8192);
  char *dir = new_wal(&opt);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  for (uint64_t i = 1; i <= 300; i += 10) {
    CHECK_INT(append_range(w, i, i + 9, term_by_third(i), 10), ==, 0);
    if (i % 30 == 1) CHECK_INT(wal_sync(w), ==, 0);
  }
  CHECK_INT(wal_sync(w), ==, 0);
  int files = count_wal_files(dir);
  CHECK_INT(files, >, 10);

  /* Names follow etcd: sequence, then the index of the first entry it was
   * begun for (last index + 1); all but the last are cut to their data. */
  char names[64][SEG_NAME_LEN + 1];
  int n = list_wal_files(dir, names, 64);
  uint64_t prev_index = 0;
  for (int k = 0; k < n; k++) {
    uint64_t seq, index;
    CHECK(seg_name_parse(names[k], &seq, &index));
    CHECK_INT(seq, ==, k);
    CHECK_INT(index % 10, ==, k > 0 ? 1 : 0); /* cuts happen between calls of 10 */
    CHECK_INT(index, >=, prev_index);
    prev_index = index;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, names[k]);
    if (k + 1 < n) CHECK_INT(file_size(p), <=, 8192);
    else CHECK_INT(file_size(p), ==, 8192);
  }
  wal_close(w);

  w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 1, 300, term_by_third(i));
  wal_recovered_free(&rec);
  /* Keep going across more cuts after a reopen. */
  CHECK_INT(append_range(w, 301, 400, 3, 3), ==, 0);
  wal_close(w);
  w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 1, 400, term_by_third(i));
  wal_close(w);
  wal_recovered_free(&rec);
  remove_wal(dir);
}

static void test_big_entry_larger_than_segment(void) {
  wal_options opt = small_segments(4096);
  char *dir = new_wal(&opt);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  size_t big = 20000;
  uint8_t *data = xmalloc(big);
  for (size_t i = 0; i < big; i++) data[i] = (uint8_t)(i * 7);
  wal_entry e = {.index = 1, .term = 1, .data = data, .len = big};
  CHECK_INT(append_range(w, 1, 5, 1, 5), ==, 0);
  e.index = 6;
  CHECK_INT(wal_append(w, NULL, &e, 1), ==, 0);
  CHECK_INT(append_range(w, 7, 20, 1, 2), ==, 0);
  wal_close(w);
  w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK_INT(rec.n_entries, ==, 20);
  if (rec.n_entries == 20) {
    CHECK_MEM(rec.entries[5].data, rec.entries[5].len, data, big);
    CHECK(ent_matches(&rec.entries[19], 20, 1, 0));
  }
  wal_close(w);
  wal_recovered_free(&rec);
  free(data);
  remove_wal(dir);
}

static void test_hard_state_newest_wins(void) {
  wal_options opt = small_segments(8192);
  char *dir = new_wal(&opt);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  wal_hard_state hs1 = {1, 1, 0}, hs2 = {2, 3, 5}, hs3 = {4, 0, 17};
  static uint8_t st[ENT_MAX];
  wal_entry e;
  ent_make(&e, st, 1, 1, 0);
  CHECK_INT(wal_append(w, &hs1, &e, 1), ==, 0);
  CHECK_INT(append_range(w, 2, 10, 1, 3), ==, 0);
  CHECK_INT(wal_append(w, &hs2, NULL, 0), ==, 0);
  CHECK_INT(wal_append(w, &hs3, NULL, 0), ==, 0);
  /* Many segments without another hard state record: the newest one lives on
   * in each new segment's header. */
  CHECK_INT(append_range(w, 11, 200, 1, 5), ==, 0);
  CHECK_INT(wal_append_snapshot(w, (wal_snap){150, 1}), ==, 0);
  CHECK_INT(append_range(w, 201, 260, 1, 5), ==, 0);
  wal_close(w);
  CHECK_INT(count_wal_files(dir), >, 4);

  w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK_INT(rec.hs.term, ==, 4);
  CHECK_INT(rec.hs.vote, ==, 0);
  CHECK_INT(rec.hs.commit, ==, 17);
  wal_close(w);
  wal_recovered_free(&rec);
  /* From the snapshot, only later segments are read. */
  w = open_ok(dir, (wal_snap){150, 1}, &opt, &rec);
  REQUIRE(w);
  CHECK_INT(rec.hs.term, ==, 4);
  CHECK_INT(rec.hs.commit, ==, 17);
  CHECK_RANGE(&rec, 151, 260, 1);
  wal_close(w);
  wal_recovered_free(&rec);
  remove_wal(dir);
}

static void test_snapshot_marker_and_open_from_it(void) {
  char *dir = new_wal(&SMALL);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  CHECK_INT(append_range(w, 1, 50, 2, 8), ==, 0);
  CHECK_INT(wal_append_snapshot(w, (wal_snap){20, 2}), ==, 0);
  CHECK_INT(append_range(w, 51, 60, 2, 8), ==, 0);
  wal_close(w);

  w = open_ok(dir, (wal_snap){20, 2}, &SMALL, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 21, 60, 2);
  CHECK_INT(rec.snap.index, ==, 20);
  CHECK_INT(rec.snap.term, ==, 2);
  CHECK_INT(wal_last_index(w), ==, 60);
  wal_close(w);
  wal_recovered_free(&rec);

  w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 1, 60, 2);
  CHECK_INT(rec.snap.index, ==, 0);
  wal_close(w);
  wal_recovered_free(&rec);

  const char *e = open_fails(dir, (wal_snap){20, 3}, &SMALL);
  CHECK(e && strstr(e, "has term 2, not 3"));
  /* From a position without a marker (a store's applied index): the entries
   * after it, and the newest marker before it. */
  w = open_ok(dir, (wal_snap){30, 2}, &SMALL, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 31, 60, 2);
  CHECK_INT(rec.snap.index, ==, 20);
  wal_close(w);
  wal_recovered_free(&rec);
  w = open_ok(dir, (wal_snap){10, 2}, &SMALL, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 11, 60, 2);
  CHECK_INT(rec.snap.index, ==, 0);
  wal_close(w);
  wal_recovered_free(&rec);
  remove_wal(dir);
}

static void test_snapshot_past_the_log(void) {
  /* A follower installs a leader's snapshot far ahead of its log. */
  char *dir = new_wal(&SMALL);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  CHECK_INT(append_range(w, 1, 5, 1, 5), ==, 0);
  CHECK_INT(wal_append_snapshot(w, (wal_snap){100, 3}), ==, 0);
  CHECK_INT(wal_last_index(w), ==, 100);
  CHECK_INT(append_range(w, 101, 103, 3, 5), ==, 0);
  wal_close(w);
  w = open_ok(dir, (wal_snap){100, 3}, &SMALL, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 101, 103, 3);
  wal_close(w);
  wal_recovered_free(&rec);
  const char *e = open_fails(dir, START, &SMALL);
  CHECK(e && strstr(e, "past the log's end"));
  remove_wal(dir);
}

static void test_rewrite_semantics(void) {
  wal_options opt = small_segments(4096);
  char *dir = new_wal(&opt);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  CHECK_INT(append_range(w, 1, 10, 1, 10), ==, 0);
  /* A new leader overwrites 6.. with a shorter suffix. */
  CHECK_INT(append_range(w, 6, 8, 2, 10), ==, 0);
  CHECK_INT(wal_last_index(w), ==, 8);
  wal_close(w);
  w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 1, 8, (i < 6 ? 1 : 2));
  wal_recovered_free(&rec);

  /* Holes are refused at the door, so the reader never has to. */
  static uint8_t st[ENT_MAX];
  wal_entry e;
  ent_make(&e, st, 10, 2, 0);
  errno = 0;
  CHECK_INT(wal_append(w, NULL, &e, 1), ==, -1);
  CHECK_INT(errno, ==, EINVAL);
  ent_make(&e, st, 0, 2, 0);
  CHECK_INT(wal_append(w, NULL, &e, 1), ==, -1);
  wal_entry two[2];
  static uint8_t st2[ENT_MAX];
  ent_make(&two[0], st, 9, 3, 0);
  ent_make(&two[1], st2, 11, 3, 0);
  CHECK_INT(wal_append(w, NULL, two, 2), ==, -1);
  CHECK_INT(wal_last_index(w), ==, 8);

  /* A rewrite that reaches back across segment boundaries. */
  CHECK_INT(append_range(w, 9, 120, 3, 4), ==, 0);
  CHECK_INT(count_wal_files(dir), >, 3);
  CHECK_INT(append_range(w, 9, 12, 4, 4), ==, 0);
  wal_close(w);
  w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 1, 12, (i < 6 ? 1 : i < 9 ? 2 : 4));
  CHECK_INT(wal_last_index(w), ==, 12);
  wal_recovered_free(&rec);
  /* The next segment is named after the shorter log (etcd: last index + 1). */
  CHECK_INT(append_range(w, 13, 200, 4, 4), ==, 0);
  wal_close(w);
  w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 1, 200, (i < 6 ? 1 : i < 9 ? 2 : 4));
  wal_close(w);
  wal_recovered_free(&rec);
  remove_wal(dir);
}

static void test_release_and_purge(void) {
  wal_options opt = small_segments(8192);
  char *dir = new_wal(&opt);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &opt, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  CHECK_INT(append_range(w, 1, 400, 1, 10), ==, 0);
  CHECK_INT(wal_append_snapshot(w, (wal_snap){300, 1}), ==, 0);
  CHECK_INT(append_range(w, 401, 420, 1, 10), ==, 0);
  CHECK_INT(wal_sync(w), ==, 0);
  int before = count_wal_files(dir);
  CHECK_INT(before, >, 12);

  /* keep_min wins over the release point: nothing goes below it. */
  CHECK_INT(wal_release_to(w, 1000, before), ==, 0);
  CHECK_INT(count_wal_files(dir), ==, before);
  /* Nothing before the first segment holding index 1 can go. */
  CHECK_INT(wal_release_to(w, 0, 1), ==, 0);
  CHECK_INT(count_wal_files(dir), ==, before);

  CHECK_INT(wal_release_to(w, 300, 2), ==, 0);
  int after = count_wal_files(dir);
  CHECK_INT(after, <, before);
  CHECK_INT(after, >=, 2);
  /* What is left still opens from the snapshot... */
  char first[PATH_MAX];
  seg_path(dir, 0, first, sizeof first);
  uint64_t seq, index;
  CHECK(seg_name_parse(strrchr(first, '/') + 1, &seq, &index));
  CHECK_INT(index, <=, 301);
  CHECK_INT(seq, >, 0);
  wal_close(w);
  w = open_ok(dir, (wal_snap){300, 1}, &opt, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 301, 420, 1);
  wal_recovered_free(&rec);
  /* ...and keeps working, purging again later with etcd's default of 5. */
  CHECK_INT(append_range(w, 421, 900, 1, 10), ==, 0);
  CHECK_INT(wal_append_snapshot(w, (wal_snap){850, 1}), ==, 0);
  CHECK_INT(wal_release_to(w, 850, 5), ==, 0);
  CHECK_INT(count_wal_files(dir), >=, 5);
  CHECK_INT(count_wal_files(dir), <=, 7);
  wal_close(w);
  w = open_ok(dir, (wal_snap){850, 1}, &opt, &rec);
  REQUIRE(w);
  CHECK_RANGE(&rec, 851, 900, 1);
  wal_close(w);
  wal_recovered_free(&rec);

  /* The start of the log is gone: opening from index 0 says so. */
  const char *e = open_fails(dir, START, &opt);
  CHECK(e && strstr(e, "purged"));
  remove_wal(dir);
}

static void test_wrong_directory(void) {
  char *tmp = xstrdup(testing_tmpdir());
  char path[PATH_MAX];
  const char *e;

  snprintf(path, sizeof path, "%s/does-not-exist", tmp);
  CHECK(!wal_exists(path));
  e = open_fails(path, START, NULL);
  CHECK(e && strstr(e, "does-not-exist") && strstr(e, "No such file"));

  e = open_fails(tmp, START, NULL); /* exists, holds no WAL */
  CHECK(e && strstr(e, "no WAL segment"));
  testing_rmdir(tmp);
  free(tmp);
}

static void test_not_a_directory(void) {
  char *tmp = xstrdup(testing_tmpdir());
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/plain-file", tmp);
  int fd = open(path, O_CREAT | O_WRONLY, 0600);
  close(fd);
  const char *e = open_fails(path, START, NULL);
  CHECK(e && strstr(e, "plain-file") && strstr(e, "Not a directory"));
  CHECK(!wal_exists(path));
  testing_rmdir(tmp);
  free(tmp);
}

static void test_locked_against_second_open(void) {
  char *dir = new_wal(&SMALL);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  wal_recovered_free(&rec);
  const char *e = open_fails(dir, START, &SMALL);
  CHECK(e && strstr(e, "in use"));
  wal_close(w);
  w = open_ok(dir, START, &SMALL, &rec);
  CHECK(w != NULL);
  wal_close(w);
  wal_recovered_free(&rec);
  remove_wal(dir);
}

static void test_leftover_tmp_removed_and_strangers_ignored(void) {
  char *dir = new_wal(&SMALL);
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/1.tmp", dir);
  int fd = open(p, O_CREAT | O_WRONLY, 0600);
  CHECK(write(fd, "junk", 4) == 4);
  close(fd);
  snprintf(p, sizeof p, "%s/README", dir);
  fd = open(p, O_CREAT | O_WRONLY, 0600);
  close(fd);
  wal_recovered rec;
  wal *w = open_ok(dir, START, &SMALL, &rec);
  REQUIRE(w);
  wal_close(w);
  wal_recovered_free(&rec);
  snprintf(p, sizeof p, "%s/1.tmp", dir);
  CHECK(access(p, F_OK) != 0);
  snprintf(p, sizeof p, "%s/README", dir);
  CHECK(access(p, F_OK) == 0);
  remove_wal(dir);
}

static void test_bad_options(void) {
  char *tmp = xstrdup(testing_tmpdir());
  wal_options tiny = small_segments(100);
  errno = 0;
  CHECK_INT(wal_create(tmp, "m", 1, &tiny), ==, -1);
  CHECK_INT(errno, ==, EINVAL);
  CHECK(!wal_exists(tmp));
  testing_rmdir(tmp);
  free(tmp);
}

int main(void) {
  log_set_level(LOG_ERROR);
  RUN(test_create_and_open_empty);
  RUN(test_round_trip);
  RUN(test_empty_metadata_and_empty_entries);
  RUN(test_reopen_and_continue);
  RUN(test_segment_rollover);
  RUN(test_big_entry_larger_than_segment);
  RUN(test_hard_state_newest_wins);
  RUN(test_snapshot_marker_and_open_from_it);
  RUN(test_snapshot_past_the_log);
  RUN(test_rewrite_semantics);
  RUN(test_release_and_purge);
  RUN(test_wrong_directory);
  RUN(test_not_a_directory);
  RUN(test_locked_against_second_open);
  RUN(test_leftover_tmp_removed_and_strangers_ignored);
  RUN(test_bad_options);
  return testing_done();
}
