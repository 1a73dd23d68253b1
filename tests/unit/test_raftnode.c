/* The Raft loop of kvcore/server as one voter on a real WAL: group commit
 * pacing. Once a batch of proposals reached the threshold, the next ones are
 * held until the pacing interval has passed, and go out together; a lone
 * proposal is never held; reads are not held behind held proposals; and the
 * hold ends by itself when nothing more arrives.
 *
 * The interval here is two seconds and "at once" means within one, so the
 * assertions are about behaviour, not speed. */
#include <pthread.h>
#include <unistd.h>

#include "base.h"
#include "raftnode.h"
#include "testing.h"

enum { INTERVAL_MS = 2000, AT_ONCE_MS = 1000, MAX_SEEN = 64 };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
/* Application entries committed so far: their first byte, the time, and
 * the number of the committed() call that carried them. */
static int n_seen, n_calls;
static uint8_t seen[MAX_SEEN];
static int64_t seen_ms[MAX_SEEN];
static int seen_call[MAX_SEEN];
static uint64_t read_ctx;
static int64_t read_ms;

static void on_committed(void *arg, raft_entry *ents, size_t n) {
  (void)arg;
  pthread_mutex_lock(&mu);
  n_calls++;
  for (size_t i = 0; i < n; i++) {
    if (ents[i].type != RAFT_ENTRY_NORMAL || !ents[i].len || n_seen == MAX_SEEN) continue;
    seen[n_seen] = ents[i].data[0];
    seen_ms[n_seen] = time_mono_ms();
    seen_call[n_seen++] = n_calls;
  }
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  free(ents);
}

static void on_read_ready(void *arg, uint64_t ctx, uint64_t index) {
  (void)arg, (void)index;
  pthread_mutex_lock(&mu);
  read_ctx = ctx;
  read_ms = time_mono_ms();
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void on_leader_changed(void *arg, uint64_t lead, uint64_t term) { (void)arg, (void)lead, (void)term; }
static void on_send(void *arg, uint64_t to, const uint8_t *m, size_t len, bool snap) {
  (void)arg, (void)to, (void)m, (void)len, (void)snap;
}
static int on_install(void *arg, const char *path) { return (void)arg, (void)path, -1; }
static void on_snapshot_done(void *arg, bool installed) { (void)arg, (void)installed; }
static void on_flush(void *arg) { (void)arg; }

/* Waits up to ms for `count` entries to be seen (or the read to be ready). */
static int wait_seen(int count, int64_t ms) {
  int64_t until = time_mono_ms() + ms;
  pthread_mutex_lock(&mu);
  while (n_seen < count && time_mono_ms() < until) {
    pthread_mutex_unlock(&mu);
    usleep(2000);
    pthread_mutex_lock(&mu);
  }
  int n = n_seen;
  pthread_mutex_unlock(&mu);
  return n;
}

static void propose(raftnode *rn, char c) {
  uint8_t d[1] = {(uint8_t)c};
  raftnode_propose(rn, d, 1, time_mono_ns() + 60 * 1000000000LL);
}

static raftnode *start(const char *dir, uint32_t pace_us, uint32_t min_batch) {
  raft_conf_change cc = {.type = RAFT_CC_ADD_VOTER, .node_id = 1};
  buf data = {0};
  raft_cc_encode(&cc, &data);
  raft_entry boot = {.term = 1, .index = 1, .data = data.data, .len = (uint32_t)data.len,
                     .type = RAFT_ENTRY_CONF_CHANGE};
  uint8_t meta[16] = {1};
  raftnode_options o = {
      .id = 1,
      .wal_dir = dir,
      .wal_meta = meta,
      .wal_meta_len = sizeof meta,
      .heartbeat_ms = 100,
      .election_ticks = 10,
      .snapshot_count = 10000,
      .pace_interval_us = pace_us,
      .pace_min_batch = min_batch,
      .bootstrap = &boot,
      .n_bootstrap = 1,
      .cb = {on_committed, on_read_ready, on_leader_changed, on_send, on_install, on_snapshot_done, on_flush, NULL},
  };
  raftnode *rn = NULL;
  char err[256];
  if (raftnode_start(&o, &rn, err, sizeof err) < 0) {
    fprintf(stderr, "raftnode_start: %s\n", err);
    rn = NULL;
  }
  buf_free(&data);
  for (int i = 0; rn && i < 500 && raftnode_lead(rn) != 1; i++) usleep(10000);
  return rn;
}

static void reset(void) {
  pthread_mutex_lock(&mu);
  n_seen = n_calls = 0;
  read_ctx = 0;
  pthread_mutex_unlock(&mu);
}

static void test_pacing_holds_then_lets_go(void) {
  char *dir = xstrdup(testing_tmpdir());
  reset();
  raftnode *rn = start(dir, INTERVAL_MS * 1000, 1);
  REQUIRE(rn);
  REQUIRE(raftnode_lead(rn) == 1);

  /* A proposal while nothing is held goes out at once... */
  int64_t t = time_mono_ms();
  propose(rn, 'a');
  CHECK_INT(wait_seen(1, AT_ONCE_MS), ==, 1);
  CHECK(seen_ms[0] - t < AT_ONCE_MS);

  /* ... and, having met the threshold, holds the next ones until the
   * interval has passed; they go out in one batch. */
  propose(rn, 'b');
  propose(rn, 'c');
  CHECK_INT(wait_seen(3, AT_ONCE_MS), ==, 1);
  /* a read is not held behind them */
  t = time_mono_ms();
  raftnode_read_index(rn, 42);
  pthread_mutex_lock(&mu);
  while (read_ctx != 42 && time_mono_ms() - t < AT_ONCE_MS) {
    pthread_mutex_unlock(&mu);
    usleep(2000);
    pthread_mutex_lock(&mu);
  }
  CHECK_INT(read_ctx, ==, 42);
  CHECK_INT(n_seen, ==, 1);
  pthread_mutex_unlock(&mu);
  CHECK_INT(wait_seen(3, 3 * INTERVAL_MS), ==, 3);
  CHECK(seen[1] == 'b' && seen[2] == 'c');
  CHECK_INT(seen_call[1], ==, seen_call[2]);
  CHECK(seen_ms[1] - seen_ms[0] >= INTERVAL_MS - 100);

  /* With nothing more arriving, the hold ends by itself: the next lone
   * proposal goes out at once. */
  usleep((INTERVAL_MS + 500) * 1000);
  t = time_mono_ms();
  propose(rn, 'd');
  CHECK_INT(wait_seen(4, AT_ONCE_MS), ==, 4);
  CHECK(seen[3] == 'd');
  CHECK(seen_ms[3] - t < AT_ONCE_MS);
  raftnode_stop(rn);
  testing_rmdir(dir);
  free(dir);
}

/* Below the threshold nothing is ever held: proposals one after another
 * each go out at once. */
static void test_small_batches_are_never_held(void) {
  char *dir = xstrdup(testing_tmpdir());
  reset();
  raftnode *rn = start(dir, INTERVAL_MS * 1000, 8);
  REQUIRE(rn);
  for (int i = 0; i < 5; i++) {
    int64_t t = time_mono_ms();
    propose(rn, (char)('a' + i));
    CHECK_INT(wait_seen(i + 1, AT_ONCE_MS), ==, i + 1);
    CHECK(seen_ms[i] - t < AT_ONCE_MS);
  }
  raftnode_stop(rn);
  testing_rmdir(dir);
  free(dir);
}

int main(void) {
  RUN(test_pacing_holds_then_lets_go);
  RUN(test_small_batches_are_never_held);
  return testing_done();
}
