/* The Raft loop of kvcore/server on a real WAL: group commit pacing. As the
 * one voter (the leader): once a batch of proposals reached the threshold,
 * the next ones are held until the pacing interval has passed, and go out
 * together; a lone proposal is never held; reads are not held behind held
 * proposals; and the hold ends by itself when nothing more arrives. As a
 * follower of a leader played by the test: proposals are forwarded at once
 * until enough arrived within a window, then held until the leader's next
 * message, whose answer carries them, or the hold's end. As a leader whose
 * follower the test plays: the hold is two intervals, three after a big
 * batch.
 *
 * Intervals here are 0.4-2 seconds and "at once" means within one, so the
 * assertions are about behaviour, not speed. */
#include <pthread.h>
#include <unistd.h>

#include "base.h"
#include "raftnode.h"
#include "testing.h"

enum { INTERVAL_MS = 2000, AT_ONCE_MS = 1000, MAX_SEEN = 64, MAX_SENT = 64 };

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
/* Messages the member sent: type, the flush that carried them (messages
 * with the same number left together), and when. */
static int n_sent, n_flushes;
static int sent_type[MAX_SENT], sent_flush[MAX_SENT];
static int64_t sent_ms[MAX_SENT];
/* When set, the test plays member 2 as a follower that grants every vote
 * and acknowledges every append and heartbeat at once. */
static bool play_follower;
static raftnode *the_member;

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
static void answer_as_follower(const uint8_t *bytes, size_t len) {
  raft_msg m, r = {0};
  raft_decode_buf db = {0};
  if (raft_msg_decode(bytes, len, &m, &db) == RAFT_OK) {
    r = (raft_msg){.from = 2, .to = 1, .term = m.term};
    if (m.type == RAFT_MSG_VOTE) r.type = RAFT_MSG_VOTE_RESP;
    if (m.type == RAFT_MSG_APP) r.type = RAFT_MSG_APP_RESP, r.index = m.index + m.n_entries;
    if (m.type == RAFT_MSG_HEARTBEAT) r.type = RAFT_MSG_HEARTBEAT_RESP, r.index = m.index;
  }
  raft_decode_buf_free(&db);
  if (!r.type) return;
  buf b = {0};
  raft_msg_encode(&r, &b);
  raftnode_step(the_member, b.data, b.len);
  buf_free(&b);
}

static void on_send(void *arg, uint64_t to, const uint8_t *m, size_t len, bool snap) {
  (void)arg, (void)to, (void)snap;
  if (play_follower) answer_as_follower(m, len);
  pthread_mutex_lock(&mu);
  if (n_sent < MAX_SENT) {
    sent_type[n_sent] = raft_msg_peek_type(m, len);
    sent_flush[n_sent] = n_flushes;
    sent_ms[n_sent++] = time_mono_ms();
  }
  pthread_mutex_unlock(&mu);
}
static int on_install(void *arg, const char *path) { return (void)arg, (void)path, -1; }
static void on_snapshot_done(void *arg, bool installed) { (void)arg, (void)installed; }
static void on_flush(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  n_flushes++;
  pthread_mutex_unlock(&mu);
}

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

/* How many messages of a type were sent; the index of the nth (from 1) in
 * *at, if asked. */
static int count_sent(int type, int nth, int *at) {
  int n = 0;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < n_sent; i++)
    if (sent_type[i] == type && ++n == nth && at) *at = i;
  pthread_mutex_unlock(&mu);
  return n;
}

/* Waits up to ms for `count` messages of a type to be sent. */
static int wait_sent(int type, int count, int64_t ms) {
  int64_t until = time_mono_ms() + ms;
  int n;
  while ((n = count_sent(type, 0, NULL)) < count && time_mono_ms() < until) usleep(2000);
  return n;
}

static void propose(raftnode *rn, char c) {
  uint8_t d[1] = {(uint8_t)c};
  raftnode_propose(rn, d, 1, time_mono_ns() + 60 * 1000000000LL);
}

/* Member 1 of a cluster of voters 1..n_voters. Alone it elects itself;
 * with others it waits (a long election timeout) for the test to lead. */
static raftnode *start_member(const char *dir, uint32_t pace_us, uint32_t min_batch, int n_voters) {
  raft_entry boot[2];
  buf data[2] = {{0}};
  for (int i = 0; i < n_voters; i++) {
    raft_conf_change cc = {.type = RAFT_CC_ADD_VOTER, .node_id = (uint64_t)i + 1};
    raft_cc_encode(&cc, &data[i]);
    boot[i] = (raft_entry){.term = 1, .index = (uint64_t)i + 1, .data = data[i].data, .len = (uint32_t)data[i].len,
                           .type = RAFT_ENTRY_CONF_CHANGE};
  }
  uint8_t meta[16] = {1};
  raftnode_options o = {
      .id = 1,
      .wal_dir = dir,
      .wal_meta = meta,
      .wal_meta_len = sizeof meta,
      .heartbeat_ms = 100,
      .election_ticks = n_voters == 1 || play_follower ? 10 : 1000,
      .snapshot_count = 10000,
      .pace_interval_us = pace_us,
      .pace_min_batch = min_batch,
      .bootstrap = boot,
      .n_bootstrap = (size_t)n_voters,
      .cb = {on_committed, on_read_ready, on_leader_changed, on_send, on_install, on_snapshot_done, on_flush, NULL},
  };
  raftnode *rn = NULL;
  char err[256];
  /* (elections start after a second: the_member is set by then) */
  if (raftnode_start(&o, &the_member, err, sizeof err) == 0) rn = the_member;
  else {
    fprintf(stderr, "raftnode_start: %s\n", err);
    rn = NULL;
  }
  for (int i = 0; i < n_voters; i++) buf_free(&data[i]);
  for (int i = 0; rn && n_voters == 1 && i < 500 && raftnode_lead(rn) != 1; i++) usleep(10000);
  return rn;
}

static raftnode *start(const char *dir, uint32_t pace_us, uint32_t min_batch) {
  return start_member(dir, pace_us, min_batch, 1);
}

/* A heartbeat from member 2, leader in term 2. */
static void heartbeat_from_leader(raftnode *rn) {
  raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1, .term = 2};
  buf b = {0};
  raft_msg_encode(&m, &b);
  raftnode_step(rn, b.data, b.len);
  buf_free(&b);
}

static void reset(void) {
  pthread_mutex_lock(&mu);
  n_seen = n_calls = 0;
  n_sent = n_flushes = 0;
  read_ctx = 0;
  play_follower = false;
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

/* A follower forwards proposals at once until min_batch of them arrived
 * within its window (four intervals); then it holds the next ones until the
 * leader's next message, and they leave in the same flush as its answer;
 * failing that, when the hold (twice the interval) ends. */
static void test_follower_holds_until_the_leader_speaks(void) {
  char *dir = xstrdup(testing_tmpdir());
  reset();
  enum { PACE_MS = 1000, HOLD_MS = 2 * PACE_MS, QUIET_MS = 300 };
  raftnode *rn = start_member(dir, PACE_MS * 1000, 3, 2);
  REQUIRE(rn);
  heartbeat_from_leader(rn);
  for (int i = 0; i < 500 && raftnode_lead(rn) != 2; i++) usleep(10000);
  REQUIRE(raftnode_lead(rn) == 2);

  /* Below the threshold, each is forwarded at once. */
  for (int i = 0; i < 3; i++) {
    propose(rn, (char)('a' + i));
    CHECK_INT(wait_sent(RAFT_MSG_PROP, i + 1, AT_ONCE_MS), ==, i + 1);
  }
  /* The threshold is met: the next two wait... */
  propose(rn, 'd');
  propose(rn, 'e');
  usleep(QUIET_MS * 1000);
  CHECK_INT(count_sent(RAFT_MSG_PROP, 0, NULL), ==, 3);
  /* ... for the leader's next message, and leave with the answer to it. */
  heartbeat_from_leader(rn);
  CHECK_INT(wait_sent(RAFT_MSG_PROP, 5, AT_ONCE_MS), ==, 5);
  int d = -1, e = -1, answer = -1;
  count_sent(RAFT_MSG_PROP, 4, &d);
  count_sent(RAFT_MSG_PROP, 5, &e);
  CHECK_INT(wait_sent(RAFT_MSG_HEARTBEAT_RESP, 2, AT_ONCE_MS), ==, 2);
  count_sent(RAFT_MSG_HEARTBEAT_RESP, 2, &answer);
  REQUIRE(d >= 0 && e >= 0 && answer >= 0);
  CHECK_INT(sent_flush[d], ==, sent_flush[answer]);
  CHECK_INT(sent_flush[e], ==, sent_flush[answer]);

  /* Without a word from the leader, the hold ends by itself. */
  int64_t t = time_mono_ms();
  propose(rn, 'f');
  usleep(QUIET_MS * 1000);
  CHECK_INT(count_sent(RAFT_MSG_PROP, 0, NULL), ==, 5);
  CHECK_INT(wait_sent(RAFT_MSG_PROP, 6, 3 * HOLD_MS), ==, 6);
  int f = -1;
  count_sent(RAFT_MSG_PROP, 6, &f);
  REQUIRE(f >= 0);
  CHECK(sent_ms[f] - t < 2 * HOLD_MS);
  raftnode_stop(rn);
  testing_rmdir(dir);
  free(dir);
}

/* A leader with followers holds for two intervals after a batch, and for
 * three after a batch of three times the threshold. */
static void test_busy_leader_holds_longer(void) {
  char *dir = xstrdup(testing_tmpdir());
  reset();
  play_follower = true;
  enum { PACE_MS = 400, SLACK_MS = 100 };
  raftnode *rn = start_member(dir, PACE_MS * 1000, 1, 2);
  REQUIRE(rn);
  for (int i = 0; i < 1000 && raftnode_lead(rn) != 1; i++) usleep(10000);
  REQUIRE(raftnode_lead(rn) == 1);

  propose(rn, 'a'); /* a batch of one: the next hold is two intervals */
  CHECK_INT(wait_seen(1, AT_ONCE_MS), ==, 1);
  propose(rn, 'b');
  propose(rn, 'c');
  propose(rn, 'd');
  CHECK_INT(wait_seen(4, 4 * PACE_MS + AT_ONCE_MS), ==, 4);
  CHECK_INT(seen_call[1], ==, seen_call[3]);
  int64_t two = seen_ms[1] - seen_ms[0];
  CHECK(two >= 2 * PACE_MS - SLACK_MS && two < 3 * PACE_MS - SLACK_MS);
  propose(rn, 'e'); /* after a batch of three: three intervals */
  CHECK_INT(wait_seen(5, 5 * PACE_MS + AT_ONCE_MS), ==, 5);
  int64_t three = seen_ms[4] - seen_ms[1];
  CHECK(three >= 3 * PACE_MS - SLACK_MS);
  raftnode_stop(rn);
  play_follower = false;
  testing_rmdir(dir);
  free(dir);
}

int main(void) {
  RUN(test_pacing_holds_then_lets_go);
  RUN(test_small_batches_are_never_held);
  RUN(test_follower_holds_until_the_leader_speaks);
  RUN(test_busy_leader_holds_longer);
  return testing_done();
}
