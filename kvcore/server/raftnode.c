/* The Raft loop. See raftnode.h for the contract and docs/cluster.md for the
 * design. Everything raft, the in-memory log and the WAL own is touched by
 * the loop thread only; other threads talk to it through the mailbox. */
#include "raftnode.h"

#include "base.h"
#include "wal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
  IN_PROPOSE,
  IN_CONF,
  IN_STEP,
  IN_READ,
  IN_UNREACHABLE,
  IN_SNAP_SENT,
  IN_TRANSFER,
  IN_STEP_SNAP, /* data: the message (a bytes), then the image's path */
};

typedef struct item {
  struct item *next;
  uint8_t kind;
  bool proposal; /* IN_PROPOSE, or a follower's proposal (a PROP message) */
  uint64_t a, b;
  int64_t deadline; /* retries stop here (monotonic ns) */
  size_t len;
  uint8_t data[];
} item;

/* Applied positions the store reported, so compaction can pick an index
 * whose membership is known exactly. */
enum { APPLIED_HISTORY = 64, APPLIED_SPACING = 256 };
typedef struct {
  uint64_t index, term;
  raft_conf_state conf;
} applied_point;

struct raftnode {
  raftnode_options o;
  raft *r;
  raft_memstorage *ms;
  wal *w;
  pthread_t thread;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  item *head, *tail;
  bool stop;
  bool holding; /* proposals are being held: posting one wakes nobody */
  /* store progress, set by raftnode_store_applied */
  applied_point hist[APPLIED_HISTORY];
  size_t n_hist;
  uint64_t durable;

  /* loop-only */
  item *retry_head, **retry_tail; /* proposals dropped for want of a leader */
  uint64_t compacted_to, released_to;
  raft_decode_buf db;
  buf enc;
  uint64_t last_lead, last_term;
  int64_t request_timeout_ns;
  char *image_path;     /* a received snapshot's image while Raft considers it */
  uint64_t image_index; /* ... and its snapshot index */
  int64_t last_retry;
  item *held_head, **held_tail; /* proposals waiting for the next batch */
  int64_t hold_until; /* monotonic ns */
  int64_t window_start; /* a follower's pacing: proposals since then */
  size_t window_proposals;

  pthread_mutex_t vmu;
  raftnode_view view;
  _Atomic uint64_t lead, term;
  _Atomic bool sole_leader;
};

/* ---------------------------------------------------------------- mailbox */

static item *post_deadline(raftnode *rn, uint8_t kind, uint64_t a, uint64_t b, const void *data, size_t len,
                           int64_t deadline) {
  item *it = xmalloc(sizeof *it + len);
  it->next = NULL;
  it->kind = kind;
  it->a = a;
  it->b = b;
  it->deadline = deadline;
  it->len = len;
  it->proposal = kind == IN_PROPOSE || (kind == IN_STEP && raft_msg_peek_type(data, len) == RAFT_MSG_PROP);
  if (len) memcpy(it->data, data, len);
  pthread_mutex_lock(&rn->mu);
  if (rn->tail) rn->tail->next = it; else rn->head = it;
  rn->tail = it;
  bool wake = !(rn->holding && it->proposal);
  pthread_mutex_unlock(&rn->mu);
  if (wake) pthread_cond_signal(&rn->cv); /* after unlocking: see enqueue_locked in pipeline.c */
  return it;
}

static void post(raftnode *rn, uint8_t kind, uint64_t a, uint64_t b, const void *data, size_t len) {
  post_deadline(rn, kind, a, b, data, len, time_mono_ns() + rn->request_timeout_ns);
}

void raftnode_propose(raftnode *rn, const uint8_t *data, size_t len, int64_t deadline) {
  post_deadline(rn, IN_PROPOSE, 0, 0, data, len, deadline);
}

void raftnode_propose_conf_change(raftnode *rn, const raft_conf_change *cc) {
  buf b = {0};
  raft_cc_encode(cc, &b);
  post(rn, IN_CONF, 0, 0, b.data, b.len);
  buf_free(&b);
}

void raftnode_step(raftnode *rn, const uint8_t *msg, size_t len) { post(rn, IN_STEP, 0, 0, msg, len); }
void raftnode_step_snapshot(raftnode *rn, const uint8_t *msg, size_t len, const char *image_path) {
  size_t plen = strlen(image_path) + 1;
  uint8_t *data = xmalloc(len + plen);
  memcpy(data, msg, len);
  memcpy(data + len, image_path, plen);
  post(rn, IN_STEP_SNAP, len, 0, data, len + plen);
  free(data);
}

void raftnode_read_index(raftnode *rn, uint64_t ctx) { post(rn, IN_READ, ctx, 0, NULL, 0); }
void raftnode_unreachable(raftnode *rn, uint64_t peer) { post(rn, IN_UNREACHABLE, peer, 0, NULL, 0); }
void raftnode_snapshot_sent(raftnode *rn, uint64_t peer, bool ok) { post(rn, IN_SNAP_SENT, peer, ok, NULL, 0); }
void raftnode_transfer_leader(raftnode *rn, uint64_t to) { post(rn, IN_TRANSFER, to, 0, NULL, 0); }

void raftnode_store_applied(raftnode *rn, uint64_t index, uint64_t term, const raft_conf_state *conf,
                            uint64_t durable_index) {
  pthread_mutex_lock(&rn->mu);
  /* Points at least APPLIED_SPACING apart, so that the history reaches back
   * past the entries kept for followers however small the batches are
   * (64 batches of a few entries each would never let the log compact). */
  if (rn->n_hist >= 2 && index < rn->hist[rn->n_hist - 2].index + APPLIED_SPACING) rn->n_hist--;
  if (rn->n_hist == APPLIED_HISTORY) {
    memmove(rn->hist, rn->hist + 1, (APPLIED_HISTORY - 1) * sizeof *rn->hist);
    rn->n_hist--;
  }
  rn->hist[rn->n_hist++] = (applied_point){index, term, *conf};
  rn->durable = durable_index;
  pthread_mutex_unlock(&rn->mu);
}

/* ---------------------------------------------------------------- view */

void raftnode_get_view(raftnode *rn, raftnode_view *v) {
  pthread_mutex_lock(&rn->vmu);
  *v = rn->view;
  pthread_mutex_unlock(&rn->vmu);
}

uint64_t raftnode_lead(raftnode *rn) { return atomic_load(&rn->lead); }
uint64_t raftnode_term(raftnode *rn) { return atomic_load(&rn->term); }
bool raftnode_sole_leader(raftnode *rn) { return atomic_load(&rn->sole_leader); }

static void refresh_view(raftnode *rn) {
  raftnode_view v;
  raft_status_get(rn->r, &v.st);
  v.n_peers = raft_progress_get(rn->r, v.peers);
  raft_conf_get(rn->r, &v.conf, NULL);
  pthread_mutex_lock(&rn->vmu);
  rn->view = v;
  pthread_mutex_unlock(&rn->vmu);
  atomic_store(&rn->lead, v.st.lead);
  atomic_store(&rn->term, v.st.term);
  bool sole = v.st.role == RAFT_LEADER && v.conf.n_voters == 1 && v.conf.voters[0] == rn->o.id;
  atomic_store(&rn->sole_leader, sole);
  if (v.st.lead != rn->last_lead || v.st.term != rn->last_term) {
    rn->last_lead = v.st.lead;
    rn->last_term = v.st.term;
    if (rn->o.cb.leader_changed) rn->o.cb.leader_changed(rn->o.cb.arg, v.st.lead, v.st.term);
  }
}

/* ---------------------------------------------------------------- ready */

static void send_msgs(raftnode *rn, const raft_msg *msgs, size_t n, bool flush) {
  for (size_t i = 0; i < n; i++) {
    log_debug("raft: -> %s to %016" PRIx64 " term %" PRIu64 " index %" PRIu64 " log_term %" PRIu64 " commit %" PRIu64
              " entries %zu%s",
              raft_msg_type_name(msgs[i].type), msgs[i].to, msgs[i].term, msgs[i].index, msgs[i].log_term,
              msgs[i].commit, msgs[i].n_entries, msgs[i].reject ? " (reject)" : "");
    rn->enc.len = 0;
    if (raft_msg_encode(&msgs[i], &rn->enc) != RAFT_OK) {
      log_error("raft: cannot encode a %s message to %016" PRIx64, raft_msg_type_name(msgs[i].type), msgs[i].to);
      continue;
    }
    rn->o.cb.send(rn->o.cb.arg, msgs[i].to, rn->enc.data, rn->enc.len, msgs[i].type == RAFT_MSG_SNAP);
  }
  if (n && flush && rn->o.cb.flush) rn->o.cb.flush(rn->o.cb.arg);
}

static void fatal(const char *what) {
  log_fatal("raft loop: %s: %m; stopping (durable state can no longer be trusted)", what);
}

/* Committed entries go to the apply thread in one block it owns. */
static void hand_committed(raftnode *rn, const raft_entry *ents, size_t n) {
  size_t bytes = n * sizeof(raft_entry);
  for (size_t i = 0; i < n; i++) bytes += ents[i].len;
  raft_entry *copy = xmalloc(bytes ? bytes : 1);
  uint8_t *p = (uint8_t *)(copy + n);
  for (size_t i = 0; i < n; i++) {
    copy[i] = ents[i];
    if (ents[i].len) {
      memcpy(p, ents[i].data, ents[i].len);
      copy[i].data = p;
      p += ents[i].len;
    } else {
      copy[i].data = NULL;
    }
  }
  rn->o.cb.committed(rn->o.cb.arg, copy, n);
}

static void handle_ready(raftnode *rn) {
  raft_ready rd;
  if (raft_get_ready(rn->r, &rd) != RAFT_OK) return;
  /* The leader's appends go out before its own sync, so that followers
   * write in parallel. A follower's own messages (forwarded proposals and
   * read requests) can wait the sync's few hundred microseconds for its
   * answers to the leader: one peer batch, not two. */
  bool wait_for_answers = rd.n_msgs_after_persist && atomic_load(&rn->lead) != rn->o.id;
  send_msgs(rn, rd.msgs, rd.n_msgs, !wait_for_answers);

  if (rd.snapshot) {
    /* The state arrived through the transport as an image; the apply thread
     * puts it in place after the entries before it, and only then does the
     * log learn where it now starts. That order keeps a crash safe: a store
     * ahead of the WAL continues from itself at restart (open_log), while
     * a WAL marker past the store could never be filled. */
    if (!rn->image_path || rn->image_index != rd.snapshot->index)
      log_fatal("raft: a snapshot at index %" PRIu64 " without its image", rd.snapshot->index);
    if (rn->o.cb.install(rn->o.cb.arg, rn->image_path) != 0) fatal("installing a snapshot");
    free(rn->image_path);
    rn->image_path = NULL;
    if (wal_append_snapshot(rn->w, (wal_snap){rd.snapshot->index, rd.snapshot->term}) < 0) fatal("WAL snapshot");
    if (raft_memstorage_apply_snapshot(rn->ms, rd.snapshot) != RAFT_OK) fatal("installing a snapshot in the log");
  }
  if (rd.n_entries || rd.hard_state_changed) {
    wal_entry stack[64];
    wal_entry *we = rd.n_entries <= 64 ? stack : xmalloc(rd.n_entries * sizeof *we);
    for (size_t i = 0; i < rd.n_entries; i++)
      we[i] = (wal_entry){rd.entries[i].index, rd.entries[i].term, rd.entries[i].type, rd.entries[i].data,
                          rd.entries[i].len};
    wal_hard_state hs = {rd.hard_state.term, rd.hard_state.vote, rd.hard_state.commit};
    int rc = wal_append(rn->w, rd.hard_state_changed ? &hs : NULL, we, rd.n_entries);
    if (we != stack) free(we);
    if (rc < 0) fatal("WAL append");
  }
  if ((rd.must_sync || rd.snapshot) && wal_sync(rn->w) < 0) fatal("WAL sync");
  if (rd.n_entries && raft_memstorage_append(rn->ms, rd.entries, rd.n_entries) != RAFT_OK)
    fatal("appending to the in-memory log");
  if (rd.hard_state_changed) raft_memstorage_set_hard_state(rn->ms, &rd.hard_state);

  send_msgs(rn, rd.msgs_after_persist, rd.n_msgs_after_persist, true);
  if (rd.n_committed) hand_committed(rn, rd.committed, rd.n_committed);
  for (size_t i = 0; i < rd.n_read_states; i++) {
    if (rd.read_states[i].ctx_len != 8) continue;
    rn->o.cb.read_ready(rn->o.cb.arg, get_be64(rd.read_states[i].ctx), rd.read_states[i].index);
  }
  if (raft_advance(rn->r) != RAFT_OK) fatal("advancing raft");
}

/* ---------------------------------------------------------------- compaction */

/* Drops log entries the store has applied, keeping a tail for followers that
 * are a little behind (etcd keeps 5000); a follower further behind gets a
 * snapshot. With no followers nothing needs keeping. */
static void maybe_compact(raftnode *rn) {
  applied_point pick = {0};
  uint64_t durable;
  pthread_mutex_lock(&rn->mu);
  uint64_t keep = rn->view.conf.n_voters + rn->view.conf.n_learners > 1 ? 5000 : 0;
  if (keep > rn->o.snapshot_count) keep = rn->o.snapshot_count;
  uint64_t newest = rn->n_hist ? rn->hist[rn->n_hist - 1].index : 0;
  for (size_t i = rn->n_hist; i-- > 0;) {
    if (rn->hist[i].index + keep <= newest) {
      pick = rn->hist[i];
      break;
    }
  }
  durable = rn->durable;
  pthread_mutex_unlock(&rn->mu);

  /* Compact in steps of at least 1000 entries: it copies the remaining log. */
  if (pick.index > rn->compacted_to + 1000 && pick.index >= raft_memstorage_storage(rn->ms)->first_index(
                                                                   raft_memstorage_storage(rn->ms)->ctx)) {
    if (raft_memstorage_create_snapshot(rn->ms, pick.index, &pick.conf, NULL, 0) == RAFT_OK &&
        raft_memstorage_compact(rn->ms, pick.index) == RAFT_OK)
      rn->compacted_to = pick.index;
  }
  /* WAL segments wholly behind the store's durable point are not needed. */
  if (durable > rn->released_to) {
    wal_release_to(rn->w, durable, 1);
    rn->released_to = durable;
  }
}

/* ---------------------------------------------------------------- loop */

/* Keeps an item to try again on a later iteration, until the request
 * timeout (its proposer gives up at its own deadline anyway). */
static bool keep_for_retry(raftnode *rn, item *it) {
  if (time_mono_ns() >= it->deadline) return false;
  it->next = NULL;
  *rn->retry_tail = it;
  rn->retry_tail = &it->next;
  return true;
}

static void process(raftnode *rn, item *it) {
  int rc;
  raft_msg m;
  raft_conf_change cc;
  uint8_t ctx[8];
  switch (it->kind) {
    case IN_PROPOSE:
      rc = raft_propose(rn->r, it->data, it->len);
      /* No leader yet: try again once one is known. */
      if (rc == RAFT_EPROPOSAL_DROPPED && keep_for_retry(rn, it)) return;
      break;
    case IN_CONF:
      if (raft_cc_decode(it->data, it->len, &cc) == RAFT_OK) {
        rc = raft_propose_conf_change(rn->r, &cc);
        /* One change at a time, and not before a new leader has committed
         * in its term: wait for the previous one instead of failing. */
        if ((rc == RAFT_ECONF_PENDING || rc == RAFT_EPROPOSAL_DROPPED) && keep_for_retry(rn, it)) return;
        if (rc != RAFT_OK) log_warn("raft: membership change refused: %s", raft_strerror(rc));
      }
      break;
    case IN_STEP:
      if (raft_msg_decode(it->data, it->len, &m, &rn->db) == RAFT_OK) {
        log_debug("raft: <- %s from %016" PRIx64 " term %" PRIu64 " index %" PRIu64 " log_term %" PRIu64
                  " commit %" PRIu64 " entries %zu%s",
                  raft_msg_type_name(m.type), m.from, m.term, m.index, m.log_term, m.commit, m.n_entries,
                  m.reject ? " (reject)" : "");
        if (raft_step(rn->r, &m) == RAFT_ESTORAGE) fatal("stepping a message");
      } else {
        log_warn("raft: undecodable message (%zu bytes) from a peer", it->len);
      }
      break;
    case IN_STEP_SNAP: {
      const char *path = (const char *)it->data + it->a;
      bool installed = false;
      if (raft_msg_decode(it->data, it->a, &m, &rn->db) == RAFT_OK && m.type == RAFT_MSG_SNAP && m.snapshot) {
        log_info("raft: snapshot at index %" PRIu64 " term %" PRIu64 " from %016" PRIx64, m.snapshot->index,
                 m.snapshot->term, m.from);
        rn->image_path = xstrdup(path);
        rn->image_index = m.snapshot->index;
        if (raft_step(rn->r, &m) == RAFT_ESTORAGE) fatal("stepping a message");
        while (raft_has_ready(rn->r)) handle_ready(rn); /* installs it, if Raft takes it */
        installed = rn->image_path == NULL;
      }
      if (!installed) {
        log_info("raft: snapshot image %s not needed; discarded", path);
        unlink(path);
        free(rn->image_path);
        rn->image_path = NULL;
      }
      if (rn->o.cb.snapshot_done) rn->o.cb.snapshot_done(rn->o.cb.arg, installed);
      break;
    }
    case IN_READ:
      put_be64(ctx, it->a);
      raft_read_index(rn->r, ctx, sizeof ctx);
      break;
    case IN_UNREACHABLE:
      raft_report_unreachable(rn->r, it->a);
      break;
    case IN_SNAP_SENT:
      raft_report_snapshot(rn->r, it->a, it->b != 0);
      break;
    case IN_TRANSFER:
      raft_transfer_leader(rn->r, it->a);
      break;
  }
  free(it);
}

static void retry_dropped(raftnode *rn) {
  if (!rn->retry_head || raft_lead(rn->r) == 0) return;
  /* at most once per tick: retried items must not spin the loop */
  int64_t now = time_mono_ns();
  if (now - rn->last_retry < (int64_t)rn->o.heartbeat_ms * 1000000) return;
  rn->last_retry = now;
  item *list = rn->retry_head;
  rn->retry_head = NULL;
  rn->retry_tail = &rn->retry_head;
  for (item *it = list, *next; it; it = next) {
    next = it->next;
    if (now >= it->deadline) {
      free(it); /* its proposer has given up: the write must not happen now */
      continue;
    }
    process(rn, it);
  }
}

/* ---------------------------------------------------------------- group commit */

/* Every batch of proposals the leader appends costs a WAL fdatasync, a
 * store commit and a wake-up of each thread on the write path, however
 * many proposals it carries. Appending as soon as anything arrives makes
 * batches as small as the clients' round trips allow (about 16 proposals at
 * 100 clients). So once a batch carried pace_min_batch proposals or more,
 * the leader holds the proposals that follow until pace_interval_us after
 * it, and posting them wakes nobody meanwhile. A lone client never reaches
 * the threshold: its writes are never held. Peer messages, reads and
 * membership changes are never held; a read overtaking a held proposal is
 * fine, since nobody has been told that write happened. */
static void hold(raftnode *rn, item *it) {
  it->next = NULL;
  *rn->held_tail = it;
  rn->held_tail = &it->next;
}

/* Processes the held proposals; returns how many there were. */
static size_t release_held(raftnode *rn) {
  item *list = rn->held_head;
  size_t n = 0;
  rn->held_head = NULL;
  rn->held_tail = &rn->held_head;
  for (item *it = list, *next; it; it = next, n++) {
    next = it->next;
    process(rn, it);
  }
  return n;
}

/* A follower forwards its clients' proposals to the leader. They arrive one
 * by one, and forwarding each as it comes costs a peer message, a wake-up
 * of this loop and of the leader's gRPC thread, per proposal. So once
 * pace_min_batch proposals arrived within a window of four intervals (a
 * lone client never gets there), a follower holds the next ones, and lets
 * them go with the leader's next message, which it answers anyway: both
 * leave in one peer batch. Failing that, at the hold's end. The leader
 * holds what arrives until its own next batch, so the wait costs no extra
 * round. Returns the proposals seen in the current window. */
static size_t follower_recent(raftnode *rn, size_t proposals, int64_t now) {
  int64_t window_ns = (int64_t)rn->o.pace_interval_us * 1000 * 4;
  if (now - rn->window_start >= window_ns) {
    rn->window_start = now;
    rn->window_proposals = 0;
  }
  rn->window_proposals += proposals;
  return rn->window_proposals;
}

static void set_holding(raftnode *rn, bool on, int64_t now, size_t batch) {
  /* With followers a batch costs every member a sync, a store commit and
   * messages, and the leader's batches are smaller (it appends whatever
   * arrived since the last loop, not what a round trip brought): twice the
   * interval. Measured on three members, 100 clients: CPU per put -10% and
   * more, puts/s +5-14%; at 10 and 30 clients no loss. A batch of three
   * times the threshold means a busy cluster, where a client's wait is
   * mostly the queue in front of it: then three intervals (100 clients:
   * CPU per put -7%, the same puts/s). Smaller batches keep two: at 10 and
   * 30 clients three cost 5-8% of the throughput. */
  int64_t intervals = 2;
  if (atomic_load(&rn->sole_leader)) intervals = 1;
  else if (batch >= 3 * (size_t)rn->o.pace_min_batch) intervals = 3;
  int64_t interval_ns = (int64_t)rn->o.pace_interval_us * 1000 * intervals;
  if (on) rn->hold_until = now + interval_ns;
  pthread_mutex_lock(&rn->mu);
  rn->holding = on;
  pthread_mutex_unlock(&rn->mu);
}

/* Waits on the mailbox until `until` (monotonic ns). */
static void wait_until(raftnode *rn, int64_t until) {
  struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
  pthread_cond_timedwait(&rn->cv, &rn->mu, &ts);
}

static void *loop_main(void *arg) {
  raftnode *rn = arg;
  pthread_setname_np(pthread_self(), "synod-raft");
  int64_t tick_ns = (int64_t)rn->o.heartbeat_ms * 1000000;
  int64_t next_tick = time_mono_ns() + tick_ns;
  for (;;) {
    while (raft_has_ready(rn->r)) handle_ready(rn);
    pthread_mutex_lock(&rn->mu);
    int64_t now = time_mono_ns();
    while (!rn->head && !rn->stop && now < next_tick && !(rn->holding && now >= rn->hold_until)) {
      wait_until(rn, rn->holding && rn->hold_until < next_tick ? rn->hold_until : next_tick);
      now = time_mono_ns();
    }
    item *list = rn->head;
    rn->head = rn->tail = NULL;
    bool stop = rn->stop;
    bool holding = rn->holding;
    pthread_mutex_unlock(&rn->mu);
    if (stop) {
      for (item *it = list, *next; it; it = next) next = it->next, free(it);
      for (item *it = rn->held_head, *next; it; it = next) next = it->next, free(it);
      break;
    }
    if (now >= next_tick) {
      /* One tick per interval, however late: a paused process must not
       * fire a burst of ticks and start an election on wake-up. */
      raft_tick(rn->r);
      next_tick = now + tick_ns;
    }
    /* Held proposals go first; proposals arriving while the hold lasts
     * join them, in order. */
    size_t proposals = 0;
    bool release = holding && now >= rn->hold_until;
    bool leading = atomic_load(&rn->lead) == rn->o.id;
    /* A follower's held proposals leave with its next answer to the
     * leader: one peer message carries both (see follower_recent). */
    for (item *it = list; holding && !release && !leading && it; it = it->next)
      release = it->kind == IN_STEP && !it->proposal;
    if (release) proposals += release_held(rn);
    for (item *it = list, *next; it; it = next) {
      next = it->next;
      if (it->proposal && holding && !release) {
        hold(rn, it);
        continue;
      }
      proposals += it->proposal;
      process(rn, it);
    }
    if (proposals || release) {
      size_t recent = leading ? proposals : follower_recent(rn, proposals, now);
      bool pace = rn->o.pace_interval_us && recent >= rn->o.pace_min_batch;
      if (pace || holding) set_holding(rn, pace, now, leading ? proposals : 0);
    }
    retry_dropped(rn);
    while (raft_has_ready(rn->r)) handle_ready(rn);
    refresh_view(rn);
    maybe_compact(rn);
  }
  return NULL;
}

/* ---------------------------------------------------------------- start/stop */

static int open_log(raftnode *rn, char *err, size_t err_len) {
  const raftnode_options *o = &rn->o;
  bool fresh = !wal_exists(o->wal_dir);
  if (fresh && wal_create(o->wal_dir, o->wal_meta, o->wal_meta_len, NULL) < 0) {
    snprintf(err, err_len, "cannot create WAL in %s: %m", o->wal_dir);
    return -1;
  }
  wal_recovered rec;
  if (wal_open(o->wal_dir, (wal_snap){o->applied_index, o->applied_term}, NULL, &rec, &rn->w, err, err_len) < 0)
    return -1;
  if (rec.meta_len != o->wal_meta_len || memcmp(rec.meta, o->wal_meta, o->wal_meta_len) != 0) {
    snprintf(err, err_len, "the WAL in %s belongs to another member or cluster", o->wal_dir);
    wal_recovered_free(&rec);
    return -1;
  }
  if (rec.repaired) log_warn("WAL in %s had a torn tail (a crash during a write); it was cut off", o->wal_dir);

  /* The store is the snapshot the log continues from. */
  raft_snapshot snap = {.index = o->applied_index, .term = o->applied_term, .conf = o->applied_conf};
  if (o->applied_index > 0 && raft_memstorage_apply_snapshot(rn->ms, &snap) != RAFT_OK) {
    snprintf(err, err_len, "cannot start the log from the store's applied index %" PRIu64, o->applied_index);
    wal_recovered_free(&rec);
    return -1;
  }
  raft_hard_state hs = {rec.hs.term, rec.hs.vote, rec.hs.commit};
  if (rec.n_entries) {
    raft_entry *ents = xmalloc(rec.n_entries * sizeof *ents);
    for (size_t i = 0; i < rec.n_entries; i++)
      ents[i] = (raft_entry){rec.entries[i].term, rec.entries[i].index, (uint8_t *)rec.entries[i].data,
                             (uint32_t)rec.entries[i].len, (uint8_t)rec.entries[i].type};
    int rc = raft_memstorage_append(rn->ms, ents, rec.n_entries);
    free(ents);
    if (rc != RAFT_OK) {
      snprintf(err, err_len, "WAL entries do not follow the store's applied index %" PRIu64, o->applied_index);
      wal_recovered_free(&rec);
      return -1;
    }
  }
  wal_recovered_free(&rec);

  if (fresh && o->n_bootstrap) {
    /* A new cluster: every founding member writes the same founding log. */
    wal_entry *we = xmalloc(o->n_bootstrap * sizeof *we);
    for (size_t i = 0; i < o->n_bootstrap; i++)
      we[i] = (wal_entry){o->bootstrap[i].index, o->bootstrap[i].term, o->bootstrap[i].type, o->bootstrap[i].data,
                          o->bootstrap[i].len};
    hs = (raft_hard_state){1, 0, o->n_bootstrap};
    wal_hard_state whs = {hs.term, hs.vote, hs.commit};
    int rc = wal_append(rn->w, &whs, we, o->n_bootstrap);
    free(we);
    if (rc < 0 || wal_sync(rn->w) < 0 || raft_memstorage_append(rn->ms, o->bootstrap, o->n_bootstrap) != RAFT_OK) {
      snprintf(err, err_len, "cannot write the founding log: %m");
      return -1;
    }
  } else if (wal_last_index(rn->w) < o->applied_index) {
    /* The store is ahead of the log (it was restored, or the log lost its
     * tail): the log continues from the store. */
    if (wal_append_snapshot(rn->w, (wal_snap){o->applied_index, o->applied_term}) < 0 || wal_sync(rn->w) < 0) {
      snprintf(err, err_len, "cannot write to the WAL in %s: %m", o->wal_dir);
      return -1;
    }
  }
  if (hs.commit < o->applied_index) hs.commit = o->applied_index;
  raft_memstorage_set_hard_state(rn->ms, &hs);
  return 0;
}

int raftnode_start(const raftnode_options *o, raftnode **out, char *err, size_t err_len) {
  raftnode *rn = xcalloc(1, sizeof *rn);
  rn->o = *o;
  rn->ms = raft_memstorage_new();
  rn->retry_tail = &rn->retry_head;
  rn->held_tail = &rn->held_head;
  rn->compacted_to = o->applied_index;
  rn->request_timeout_ns = (5000 + 2 * (int64_t)o->heartbeat_ms * o->election_ticks) * 1000000LL;
  pthread_mutex_init(&rn->mu, NULL);
  pthread_mutex_init(&rn->vmu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&rn->cv, &ca);
  pthread_condattr_destroy(&ca);

  if (open_log(rn, err, err_len) < 0) goto fail;
  raft_config rc = {
      .id = o->id,
      .storage = raft_memstorage_storage(rn->ms),
      .election_tick = o->election_ticks,
      .heartbeat_tick = 1,
      .applied = o->applied_index,
      .check_quorum = true,
      .pre_vote = o->pre_vote,
      .read_mode = RAFT_READ_SAFE,
      .seed = o->id ^ (uint64_t)time_wall_ns(),
  };
  int r = raft_new(&rc, &rn->r);
  if (r != RAFT_OK) {
    snprintf(err, err_len, "cannot start raft: %s", raft_strerror(r));
    goto fail;
  }
  /* A lone voter need not wait an election timeout to lead (etcd's
   * initial election tick advance has the same effect). */
  raft_conf_state cs;
  raft_conf_get(rn->r, &cs, NULL);
  if (cs.n_voters == 1 && cs.voters[0] == o->id) raft_campaign(rn->r);
  refresh_view(rn);
  *out = rn; /* before the loop runs: its callbacks may need the pointer */
  pthread_create(&rn->thread, NULL, loop_main, rn);
  return 0;
fail:
  if (rn->w) wal_close(rn->w);
  raft_memstorage_free(rn->ms);
  free(rn);
  return -1;
}

void raftnode_stop(raftnode *rn) {
  pthread_mutex_lock(&rn->mu);
  rn->stop = true;
  pthread_cond_signal(&rn->cv);
  pthread_mutex_unlock(&rn->mu);
  pthread_join(rn->thread, NULL);
  for (item *it = rn->retry_head, *next; it; it = next) next = it->next, free(it);
  free(rn->image_path);
  raft_free(rn->r);
  raft_memstorage_free(rn->ms);
  wal_close(rn->w);
  raft_decode_buf_free(&rn->db);
  buf_free(&rn->enc);
  pthread_mutex_destroy(&rn->mu);
  pthread_mutex_destroy(&rn->vmu);
  pthread_cond_destroy(&rn->cv);
  free(rn);
}
