/* The write pipeline: proposals into Raft, committed entries out of it into
 * the apply thread, replies after the store transaction commits.
 *
 *   handlers --propose--> Raft loop (WAL append + fdatasync, replication)
 *            --committed entries--> apply thread: one store transaction per
 *            batch --> replies, watchers, read waiters
 *
 * Group commit falls out of the shape: while the Raft loop waits for one
 * fdatasync, new proposals pile up in its mailbox and go to disk together.
 * While the apply thread applies batch N, batch N+1 is being synced. */
#include "pipeline.h"

#include "alarms.h"
#include "base.h"
#include "errors.h"
#include "kv.h"
#include "lease_service.h"
#include "membership.h"
#include "raftnode.h"
#include "services.h"
#include "snapshot.h"
#include "watch.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COMPACT_STEP = 1000, WAITER_BUCKETS = 4096 };

/* What the apply thread works through, in order: committed entries, and
 * the store replacements that must fall between them. */
enum { WORK_ENTRIES, WORK_INSTALL, WORK_DEFRAG };
enum { APPLY_MERGE_ENTRIES = 1024 }; /* most entries applied in one store transaction */
typedef struct batch {
  struct batch *next;
  int kind;
  raft_entry *ents; /* WORK_ENTRIES: one block (raftnode's hand_committed) */
  size_t n;
  const char *path; /* WORK_INSTALL: the image */
  int rc;           /* WORK_INSTALL, WORK_DEFRAG: the outcome, once done */
  bool done;        /* the poster waits on work_cv for it (and frees it) */
} batch;

typedef struct waiter {
  struct waiter *next;             /* hash bucket */
  struct waiter *fifo_prev, *fifo_next; /* by deadline */
  uint64_t id;
  rpc_call *call;
  /* internal proposals (pipeline_submit): the response packed at apply
   * time, decoded for done() once the batch has committed */
  pipeline_done_fn done;
  void *done_arg;
  uint8_t *packed;
  size_t packed_len;
  const ProtobufCMessageDescriptor *desc;
  const rpc_error *err;
  int64_t deadline;
  int64_t compact_rev; /* > 0: reply once compaction to this rev is physical */
  bool in_table;
} waiter;

typedef struct conf_waiter {
  struct conf_waiter *next;
  uint8_t type;
  uint64_t node_id;
  int64_t deadline;
  pipeline_conf_done done;
  void *arg;
  bool applied;
} conf_waiter;

struct pipeline {
  node *n;
  raftnode *rn;
  pthread_t apply_thread;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  batch *head, *tail;
  bool stopping;
  _Atomic uint64_t committed, applied, applied_term;
  _Atomic uint64_t next_id;
  pthread_cond_t applied_cv; /* pipeline_wait_applied */
  pthread_cond_t work_cv;    /* a store replacement is done */

  pthread_mutex_t wmu;
  waiter *waiters[WAITER_BUCKETS];
  waiter *fifo_head, *fifo_tail;
  conf_waiter *conf_waiters;

  /* apply thread only */
  waiter *compact_waiters;
  bool compact_pending;
  arena *mem;
  raft_conf_state conf; /* membership as of the applied index */
};

int64_t pipeline_request_timeout_ms(const node *n) { return 5000 + 2 * (int64_t)n->cfg.election_ms; }

/* ---------------------------------------------------------------- waiters */

static void waiter_put(pipeline *p, waiter *w) {
  pthread_mutex_lock(&p->wmu);
  waiter **b = &p->waiters[w->id % WAITER_BUCKETS];
  w->next = *b;
  *b = w;
  w->in_table = true;
  w->fifo_next = NULL;
  w->fifo_prev = p->fifo_tail;
  if (p->fifo_tail) p->fifo_tail->fifo_next = w; else p->fifo_head = w;
  p->fifo_tail = w;
  pthread_mutex_unlock(&p->wmu);
}

static void waiter_unlink_locked(pipeline *p, waiter *w) {
  waiter **b = &p->waiters[w->id % WAITER_BUCKETS];
  while (*b && *b != w) b = &(*b)->next;
  if (*b) *b = w->next;
  if (w->fifo_prev) w->fifo_prev->fifo_next = w->fifo_next; else p->fifo_head = w->fifo_next;
  if (w->fifo_next) w->fifo_next->fifo_prev = w->fifo_prev; else p->fifo_tail = w->fifo_prev;
  w->next = w->fifo_prev = w->fifo_next = NULL;
  w->in_table = false;
}

static waiter *waiter_take(pipeline *p, uint64_t id) {
  pthread_mutex_lock(&p->wmu);
  waiter *w = p->waiters[id % WAITER_BUCKETS];
  while (w && w->id != id) w = w->next;
  if (w) waiter_unlink_locked(p, w);
  pthread_mutex_unlock(&p->wmu);
  return w;
}

static void waiter_finish(waiter *w) {
  if (w->done) {
    ProtobufCMessage *m = NULL;
    const rpc_error *err = w->err;
    if (!err && w->packed) {
      m = protobuf_c_message_unpack(w->desc, NULL, w->packed_len, w->packed);
      if (!m) err = &ERR_INTERNAL;
    } else if (!err) {
      err = &ERR_INTERNAL; /* applied without a response: cannot happen */
    }
    w->done(w->done_arg, err, m);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    free(w->packed);
  } else if (w->err) {
    rpc_fail_with(w->call, w->err);
  } else {
    rpc_send_deferred(w->call);
  }
  free(w);
}

/* Requests whose entry never came back in time: the leader changed, or there
 * has been none (etcd's "no leader" / "request timed out"). */
static void expire_waiters(pipeline *p) {
  int64_t now = time_mono_ns();
  waiter *expired = NULL;
  pthread_mutex_lock(&p->wmu);
  while (p->fifo_head && p->fifo_head->deadline <= now) {
    waiter *w = p->fifo_head;
    waiter_unlink_locked(p, w);
    w->next = expired;
    expired = w;
  }
  conf_waiter **cp = &p->conf_waiters, *conf_expired = NULL;
  while (*cp) {
    conf_waiter *c = *cp;
    if (c->deadline <= now) {
      *cp = c->next;
      c->next = conf_expired;
      conf_expired = c;
    } else {
      cp = &c->next;
    }
  }
  pthread_mutex_unlock(&p->wmu);
  bool leaderless = (expired || conf_expired) && raftnode_lead(p->rn) == 0;
  for (waiter *w = expired, *next; w; w = next) {
    next = w->next;
    w->err = leaderless ? &ERR_NO_LEADER : &ERR_TIMEOUT;
    waiter_finish(w);
  }
  for (conf_waiter *c = conf_expired, *next; c; c = next) {
    next = c->next;
    c->done(c->arg, false);
    free(c);
  }
}

/* ---------------------------------------------------------------- apply */

static void fatal_store(const char *what, int rc) {
  log_fatal("store failure while %s: %s; stopping rather than diverge from the log", what, mvcc_strerror(rc));
}

/* Applies one committed request; returns its local proposer, if any, with
 * the outcome recorded (answered after the batch commits). */
static waiter *apply_request(pipeline *p, mvcc_txn *w, const raft_entry *e, bool *members_changed) {
  Synodpb__Request *req = synodpb__request__unpack(NULL, e->len, e->data);
  if (!req) {
    /* Checksummed by the WAL and written by a member: a decode failure
     * means a bug or a version mismatch, and skipping it would diverge. */
    log_fatal("cannot decode log entry %" PRIu64 " (%u bytes)", e->index, e->len);
  }
  waiter *wt = req->id ? waiter_take(p, req->id) : NULL;
  kv_exec x = {.mem = p->mem, .copy = true, .lease_exists = p->n->lease_exists, .lease_arg = p->n->lease_arg};
  const rpc_error *err = NULL;
  ProtobufCMessage *resp = NULL;
  Etcdserverpb__ResponseHeader **hdr = NULL;
  int64_t compact_rev = 0;

  /* A compaction changes no key and the store refuses it inside a revision
   * bracket; so does a membership attribute update. */
  bool bracket = req->op_case != SYNODPB__REQUEST__OP_COMPACTION &&
                 req->op_case != SYNODPB__REQUEST__OP_MEMBER_ATTRIBUTES && req->op_case != SYNODPB__REQUEST__OP_ALARM;
  /* etcd's capped applier: with NOSPACE raised, nothing that adds data. */
  bool capped = alarms_nospace(p->n) &&
                (req->op_case == SYNODPB__REQUEST__OP_PUT || req->op_case == SYNODPB__REQUEST__OP_LEASE_GRANT ||
                 (req->op_case == SYNODPB__REQUEST__OP_TXN && alarms_cost_txn(req->txn) > 0));
  if (capped) {
    err = &ERR_NO_SPACE_ALARM;
    bracket = false;
  }
  if (bracket) mvcc_rev_begin(w);
  switch (capped ? SYNODPB__REQUEST__OP__NOT_SET : req->op_case) {
    case SYNODPB__REQUEST__OP__NOT_SET:
      break;
    case SYNODPB__REQUEST__OP_PUT: {
      Etcdserverpb__PutResponse *r = NULL;
      err = kv_put(&x, w, req->put, &r);
      if (r) resp = &r->base, hdr = &r->header;
      break;
    }
    case SYNODPB__REQUEST__OP_DELETE_RANGE: {
      Etcdserverpb__DeleteRangeResponse *r = NULL;
      err = kv_delete(&x, w, req->delete_range, &r);
      if (r) resp = &r->base, hdr = &r->header;
      break;
    }
    case SYNODPB__REQUEST__OP_TXN: {
      Etcdserverpb__TxnResponse *r = NULL;
      err = kv_txn(&x, w, true, req->txn, &r);
      if (r) resp = &r->base, hdr = &r->header;
      break;
    }
    case SYNODPB__REQUEST__OP_COMPACTION: {
      Etcdserverpb__CompactionResponse *r = NULL;
      err = kv_compact(&x, w, req->compaction, &r);
      if (r) resp = &r->base, hdr = &r->header;
      if (!err) {
        p->compact_pending = true;
        if (req->compaction->physical) compact_rev = req->compaction->revision;
      }
      break;
    }
    case SYNODPB__REQUEST__OP_ALARM: {
      Etcdserverpb__AlarmResponse *r = NULL;
      int rc = alarms_apply(p->n, w, req->alarm, p->mem, &r);
      if (rc) fatal_store("recording an alarm", rc);
      resp = &r->base, hdr = &r->header;
      break;
    }
    case SYNODPB__REQUEST__OP_LEASE_GRANT:
    case SYNODPB__REQUEST__OP_LEASE_REVOKE:
    case SYNODPB__REQUEST__OP_LEASE_CHECKPOINT:
      err = lease_service_apply(p->n, p->mem, w, req, &resp, &hdr);
      break;
    case SYNODPB__REQUEST__OP_MEMBER_ATTRIBUTES: {
      int rc = members_apply_attributes(w, req->member_attributes);
      if (rc) fatal_store("recording member attributes", rc);
      *members_changed = true;
      break;
    }
    default:
      err = &ERR_NOT_SUPPORTED_YET;
      break;
  }
  int64_t rev = bracket ? mvcc_rev_end(w) : mvcc_rev(w);
  /* Deterministic request errors (a missing lease, a compacted revision)
   * leave the store untouched; a store failure cannot be answered. */
  if (err == &ERR_INTERNAL || err == &ERR_NO_SPACE) fatal_store("applying an entry", MVCC_EIO);

  if (wt) {
    if (err) {
      wt->err = err;
    } else if (resp) {
      (*hdr)->revision = rev;
      node_fill_header(p->n, *hdr);
      if (wt->done) {
        /* packed now: the map changes next */
        wt->desc = resp->descriptor;
        wt->packed_len = protobuf_c_message_get_packed_size(resp);
        wt->packed = xmalloc(wt->packed_len ? wt->packed_len : 1);
        protobuf_c_message_pack(resp, wt->packed);
      } else {
        rpc_reply_deferred(wt->call, resp); /* packed now: the map changes next */
        wt->compact_rev = compact_rev;
      }
    }
  }
  synodpb__request__free_unpacked(req, NULL);
  arena_reset(p->mem);
  return wt;
}

static void apply_conf_change(pipeline *p, mvcc_txn *w, const raft_entry *e, conf_waiter **done_list) {
  raft_conf_change cc;
  if (raft_cc_decode(e->data, e->len, &cc) != RAFT_OK) log_fatal("cannot decode conf change entry %" PRIu64, e->index);
  /* Raft only lets changes that apply into the log, but compute the same
   * way every member does anyway. */
  raft_conf_apply(&p->conf, &cc);
  int rc = members_apply_conf_change(w, &cc);
  if (rc) fatal_store("applying a membership change", rc);
  pthread_mutex_lock(&p->wmu);
  for (conf_waiter **cp = &p->conf_waiters; *cp; cp = &(*cp)->next) {
    conf_waiter *c = *cp;
    if (c->type == cc.type && c->node_id == cc.node_id) {
      *cp = c->next;
      c->applied = true;
      c->next = *done_list;
      *done_list = c;
      break;
    }
  }
  pthread_mutex_unlock(&p->wmu);
}

static void finish_compaction_waiters(pipeline *p, int64_t done_rev, bool all) {
  waiter **pp = &p->compact_waiters;
  while (*pp) {
    waiter *w = *pp;
    if (all || w->compact_rev <= done_rev) {
      *pp = w->next;
      if (all && w->compact_rev > done_rev) w->err = &ERR_STOPPED;
      waiter_finish(w);
    } else {
      pp = &w->next;
    }
  }
}

/* Whether a packed synodpb.Request is a compaction, without decoding it:
 * walks the top-level fields of the protobuf wire format. */
static bool entry_is_compaction(const raft_entry *e) {
  if (e->type != RAFT_ENTRY_NORMAL) return false;
  const uint8_t *p = e->data, *end = e->data + e->len;
  while (p < end) {
    uint64_t tag = 0, len = 0;
    for (int shift = 0; p < end && shift < 64; shift += 7) {
      tag |= (uint64_t)(*p & 0x7f) << shift;
      if (!(*p++ & 0x80)) break;
    }
    if (tag >> 3 == SYNODPB__REQUEST__OP_COMPACTION) return true;
    switch (tag & 7) {
      case 0:
        while (p < end && (*p++ & 0x80)) {
        }
        break;
      case 1: p += 8; break;
      case 5: p += 4; break;
      case 2:
        for (int shift = 0; p < end && shift < 64; shift += 7) {
          len |= (uint64_t)(*p & 0x7f) << shift;
          if (!(*p++ & 0x80)) break;
        }
        if (len > (uint64_t)(end - p)) return false;
        p += len;
        break;
      default: return false;
    }
  }
  return false;
}

/* Commits the batch transaction with the applied index, publishes it, and
 * tells the watch hub which revision is now visible. */
static void commit_batch(pipeline *p, mvcc_txn *w, uint64_t have, uint64_t last, uint64_t last_term) {
  int64_t rev = mvcc_rev(w);
  if (last > have) mvcc_set_applied(w, last, last_term);
  int rc = mvcc_write_commit(w);
  if (rc) fatal_store("committing applied entries", rc);
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->applied, last);
  atomic_store(&p->applied_term, last_term);
  pthread_cond_broadcast(&p->applied_cv);
  pthread_mutex_unlock(&p->mu);
  if (p->n->watch) watch_hub_notify(p->n->watch, rev);
}

/* Applies committed entries, then answers their proposers. Entries the
 * store already has (replayed after a restart, or covered by an installed
 * snapshot) are skipped. A compaction gets a transaction of its own after
 * the entries before it, and the watch hub first keeps a snapshot of what
 * it has not delivered yet: live watchers never lose events to it.
 *
 * The chain is WORK_ENTRIES batches linked by next, applied in one store
 * transaction: when the apply thread falls behind Raft, the batches that
 * queued meanwhile share one commit (its page writes, the watch hub's
 * wake-up, the applied index), so the apply thread catches up faster the
 * further behind it is. */
static void apply_batch(pipeline *p, batch *chain) {
  mvcc_txn *w;
  int rc = mvcc_write_begin(p->n->store, &w);
  if (rc) fatal_store("starting a write", rc);
  uint64_t have, have_term;
  mvcc_applied(w, &have, &have_term);
  waiter *done_head = NULL, **done_tail = &done_head;
  conf_waiter *conf_done = NULL;
  bool members_changed = false, dirty = false;
  uint64_t last = have, last_term = have_term;
  for (batch *b = chain; b; b = b->next) {
    for (size_t i = 0; i < b->n; i++) {
      const raft_entry *e = &b->ents[i];
      if (e->index <= have) continue;
      if (p->n->watch && entry_is_compaction(e)) {
        if (dirty) {
          commit_batch(p, w, have, last, last_term);
          have = last;
          dirty = false;
          rc = mvcc_write_begin(p->n->store, &w);
          if (rc) fatal_store("starting a write", rc);
        }
        watch_hub_before_compaction(p->n->watch);
      }
      if (e->type == RAFT_ENTRY_CONF_CHANGE) {
        apply_conf_change(p, w, e, &conf_done);
        members_changed = true;
      } else if (e->len > 0) {
        waiter *wt = apply_request(p, w, e, &members_changed);
        if (wt) {
          *done_tail = wt;
          done_tail = &wt->next;
        }
      } else {
        /* A new leader's no-op: everything of earlier terms is applied. */
        lease_service_term_started(p->n, e->term);
      }
      last = e->index;
      last_term = e->term;
      dirty = true;
    }
  }
  commit_batch(p, w, have, last, last_term);
  raftnode_store_applied(p->rn, last, last_term, &p->conf, mvcc_durable_index(p->n->store));
  if (members_changed) node_members_changed(p->n);
  rpc_reply_group_begin(); /* lock and election grants (node_applied) first, then the writers */
  node_applied(p->n, last);

  for (waiter *wt = done_head, *next; wt; wt = next) {
    next = wt->next;
    if (!wt->err && wt->compact_rev > 0) {
      wt->next = p->compact_waiters;
      p->compact_waiters = wt;
    } else {
      waiter_finish(wt);
    }
  }
  rpc_reply_group_end();
  for (conf_waiter *c = conf_done, *next; c; c = next) {
    next = c->next;
    c->done(c->arg, true);
    free(c);
  }
  for (batch *b = chain, *next; b; b = next) {
    next = b->next;
    free(b->ents);
    free(b);
  }
}

/* One bounded step of physical compaction in its own transaction. */
static void compact_step(pipeline *p) {
  mvcc_txn *w;
  int rc = mvcc_write_begin(p->n->store, &w);
  if (rc) fatal_store("starting compaction", rc);
  int more = mvcc_compact_step(w, COMPACT_STEP);
  if (more < 0) fatal_store("compacting", more);
  int64_t done = mvcc_compact_done_rev(w);
  rc = mvcc_write_commit(w);
  if (rc) fatal_store("committing compaction", rc);
  p->compact_pending = more > 0;
  finish_compaction_waiters(p, done, false);
}

/* Reads where the store now stands (applied index, membership) after its
 * contents were replaced, and tells everyone who caches any of it. */
static void after_replace(pipeline *p) {
  mvcc_txn *t;
  uint64_t applied = 0, term = 0;
  member_list members = {0};
  int rc = mvcc_read_begin(p->n->store, &t);
  if (rc) fatal_store("reading the replaced store", rc);
  mvcc_applied(t, &applied, &term);
  p->compact_pending = mvcc_compact_done_rev(t) < mvcc_compact_rev(t);
  rc = members_load(t, &members);
  mvcc_txn_end(t);
  if (rc) fatal_store("reading the replaced store's members", rc);
  memset(&p->conf, 0, sizeof p->conf);
  for (size_t i = 0; i < members.n; i++) {
    if (members.v[i].is_learner) p->conf.learners[p->conf.n_learners++] = members.v[i].id;
    else p->conf.voters[p->conf.n_voters++] = members.v[i].id;
  }
  member_list_free(&members);
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->applied, applied);
  atomic_store(&p->applied_term, term);
  if (applied > atomic_load(&p->committed)) atomic_store(&p->committed, applied);
  pthread_cond_broadcast(&p->applied_cv);
  pthread_mutex_unlock(&p->mu);
  raftnode_store_applied(p->rn, applied, term, &p->conf, mvcc_durable_index(p->n->store));
  node_store_replaced(p->n);
  node_applied(p->n, applied);
}

/* A snapshot from the leader: the store becomes the image, whose applied
 * index is at or past the snapshot's; entries up to it are then skipped as
 * already applied. A failure here cannot be undone (Raft has moved to the
 * snapshot), so it stops the member; on restart the old store is whole and
 * the leader sends the snapshot again. */
static int install_image(pipeline *p, const char *path) {
  if (p->n->watch) watch_hub_before_replace(p->n->watch);
  int rc = mvcc_replace(p->n->store, path);
  if (rc) fatal_store("installing a snapshot", rc);
  after_replace(p);
  atomic_fetch_add(&p->n->snapshots_installed, 1);
  log_info("installed a snapshot from the leader: applied index %" PRIu64 ", term %" PRIu64,
           atomic_load(&p->applied), atomic_load(&p->applied_term));
  return 0;
}

/* Between batches: no write is in flight, and new ones wait. */
static int defragment(pipeline *p) {
  if (p->n->watch) watch_hub_before_replace(p->n->watch);
  mvcc_stats before = {0}, after = {0};
  mvcc_stats_get(p->n->store, &before);
  int rc = mvcc_defragment(p->n->store);
  if (p->n->watch) watch_hub_after_replace(p->n->watch);
  if (rc == MVCC_OK) {
    mvcc_stats_get(p->n->store, &after);
    log_info("defragmented the store: %" PRId64 " -> %" PRId64 " bytes", before.db_size, after.db_size);
  } else {
    log_warn("defragmentation failed: %s", mvcc_strerror(rc));
  }
  return rc;
}

static void *apply_main(void *arg) {
  pipeline *p = arg;
  pthread_setname_np(pthread_self(), "synod-apply");
  for (;;) {
    pthread_mutex_lock(&p->mu);
    if (!p->head && !p->compact_pending && !p->stopping) {
      /* Wake now and then to expire requests that never came back. */
      struct timespec ts = time_after_ms(CLOCK_MONOTONIC, 100);
      pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    batch *b = p->head;
    if (b) {
      p->head = b->next;
      b->next = NULL;
      /* Entry batches queued behind it join it, up to a bound that keeps
       * the first batch's replies from waiting long. */
      size_t n = b->n;
      for (batch *last = b; b->kind == WORK_ENTRIES && p->head && p->head->kind == WORK_ENTRIES &&
                            n + p->head->n <= APPLY_MERGE_ENTRIES;) {
        last->next = p->head;
        last = p->head;
        p->head = last->next;
        last->next = NULL;
        n += last->n;
      }
      if (!p->head) p->tail = NULL;
    }
    bool stop = p->stopping && !b;
    pthread_mutex_unlock(&p->mu);
    if (b && b->kind == WORK_ENTRIES) {
      apply_batch(p, b);
    } else if (b) {
      int rc = b->kind == WORK_INSTALL ? install_image(p, b->path) : defragment(p);
      pthread_mutex_lock(&p->mu);
      b->rc = rc;
      b->done = true;
      pthread_cond_broadcast(&p->work_cv);
      pthread_mutex_unlock(&p->mu);
    } else if (stop) {
      break;
    } else if (p->compact_pending) {
      compact_step(p); /* only when no entries wait: writes come first */
    }
    expire_waiters(p);
  }
  finish_compaction_waiters(p, 0, true);
  return NULL;
}

/* ---------------------------------------------------------------- Raft callbacks */

/* The caller signals p->cv after unlocking: a thread woken while the mutex
 * is still held only blocks again on the mutex (two more futex calls and a
 * context switch per batch with glibc's condition variables). */
static void enqueue_locked(pipeline *p, batch *b) {
  if (p->tail) p->tail->next = b; else p->head = b;
  p->tail = b;
}

static void on_committed(void *arg, raft_entry *ents, size_t n) {
  pipeline *p = arg;
  batch *b = xcalloc(1, sizeof *b);
  b->kind = WORK_ENTRIES;
  b->ents = ents;
  b->n = n;
  pthread_mutex_lock(&p->mu);
  enqueue_locked(p, b);
  if (n && ents[n - 1].index > atomic_load(&p->committed)) atomic_store(&p->committed, ents[n - 1].index);
  pthread_mutex_unlock(&p->mu);
  pthread_cond_signal(&p->cv);
}

/* Queues a store replacement behind everything already handed over, and
 * waits for the apply thread to do it. */
static int replace_in_order(pipeline *p, int kind, const char *path) {
  batch *b = xcalloc(1, sizeof *b);
  b->kind = kind;
  b->path = path;
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    free(b);
    return MVCC_EIO;
  }
  enqueue_locked(p, b);
  pthread_cond_signal(&p->cv); /* rare: waking under the lock costs nothing here */
  while (!b->done) pthread_cond_wait(&p->work_cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
  int rc = b->rc;
  free(b);
  return rc;
}

static int on_install(void *arg, const char *path) { return replace_in_order(arg, WORK_INSTALL, path); }

static void on_snapshot_done(void *arg, bool installed) {
  (void)installed;
  pipeline *p = arg;
  snapshot_released(p->n);
}

int pipeline_defragment(pipeline *p) { return replace_in_order(p, WORK_DEFRAG, NULL); }

static void on_read_ready(void *arg, uint64_t ctx, uint64_t index) {
  pipeline *p = arg;
  node_read_ready(p->n, ctx, index);
}

static void on_leader_changed(void *arg, uint64_t lead, uint64_t term) {
  pipeline *p = arg;
  atomic_store(&p->n->term, term);
  node_leader_changed(p->n, lead, term);
}

static void on_send(void *arg, uint64_t to, const uint8_t *msg, size_t len, bool is_snapshot) {
  pipeline *p = arg;
  node_send(p->n, to, msg, len, is_snapshot);
}

static void on_flush(void *arg) {
  pipeline *p = arg;
  node_flush(p->n);
}

/* ---------------------------------------------------------------- propose */

/* Answers a proposal that never reaches the log. */
static void refuse(rpc_call *call, pipeline_done_fn done, void *arg, const rpc_error *e) {
  if (done) done(arg, e, NULL);
  else if (call) rpc_fail_with(call, e);
}

static void propose(pipeline *p, rpc_call *call, pipeline_done_fn done, void *arg, const Synodpb__Request *req,
                    int64_t deadline) {
  bool answered = call || done;
  Synodpb__Request copy = *req;
  copy.id = answered ? atomic_fetch_add(&p->next_id, 1) : 0;
  size_t len = synodpb__request__get_packed_size(&copy);
  if (len > p->n->cfg.max_request_bytes) return refuse(call, done, arg, &ERR_REQUEST_TOO_LARGE);
  uint8_t stack[512];
  uint8_t *data = len <= sizeof stack ? stack : xmalloc(len);
  synodpb__request__pack(&copy, data);
  pthread_mutex_lock(&p->mu);
  bool stopping = p->stopping;
  pthread_mutex_unlock(&p->mu);
  if (stopping) {
    refuse(call, done, arg, &ERR_STOPPED);
  } else {
    /* The proposer waits up to the request timeout, or less if its client
     * gives up sooner; a retry after that would commit a write the client
     * was told timed out. */
    int64_t max = time_mono_ns() + pipeline_request_timeout_ms(p->n) * 1000000;
    if (deadline > max || deadline <= 0) deadline = max;
    if (answered) {
      waiter *w = xcalloc(1, sizeof *w);
      w->id = copy.id;
      w->call = call;
      w->done = done;
      w->done_arg = arg;
      w->deadline = deadline;
      waiter_put(p, w);
    }
    raftnode_propose(p->rn, data, len, deadline);
  }
  if (data != stack) free(data);
}

void pipeline_propose(pipeline *p, rpc_call *call, const Synodpb__Request *req) {
  if (call) {
    size_t hl;
    const uint8_t *h = rpc_call_metadata(call, "hasleader", &hl);
    if (h && hl == 4 && memcmp(h, "true", 4) == 0 && raftnode_lead(p->rn) == 0) {
      rpc_fail_with(call, &ERR_NO_LEADER);
      return;
    }
  }
  propose(p, call, NULL, NULL, req, call ? rpc_call_deadline(call) : 0);
}

void pipeline_submit(pipeline *p, const Synodpb__Request *req, int64_t deadline_ns, pipeline_done_fn done,
                     void *arg) {
  propose(p, NULL, done, arg, req, deadline_ns);
}

void pipeline_propose_conf_change(pipeline *p, const raft_conf_change *cc, pipeline_conf_done done, void *arg) {
  conf_waiter *c = xcalloc(1, sizeof *c);
  c->type = cc->type;
  c->node_id = cc->node_id;
  c->deadline = time_mono_ns() + pipeline_request_timeout_ms(p->n) * 1000000;
  c->done = done;
  c->arg = arg;
  pthread_mutex_lock(&p->wmu);
  c->next = p->conf_waiters;
  p->conf_waiters = c;
  pthread_mutex_unlock(&p->wmu);
  raftnode_propose_conf_change(p->rn, cc);
}

bool pipeline_wait_applied(pipeline *p, uint64_t index, int64_t timeout_ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t end = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + timeout_ms * 1000000;
  ts.tv_sec = end / 1000000000;
  ts.tv_nsec = end % 1000000000;
  pthread_mutex_lock(&p->mu);
  while (atomic_load(&p->applied) < index && !p->stopping)
    if (pthread_cond_timedwait(&p->applied_cv, &p->mu, &ts) != 0) break;
  bool ok = atomic_load(&p->applied) >= index;
  pthread_mutex_unlock(&p->mu);
  return ok;
}

/* ---------------------------------------------------------------- open/close */

static uint64_t id_prefix(uint64_t member_id) {
  /* etcd's request-ID scheme: member bits, then the start time, then a
   * counter, so IDs never repeat across restarts. */
  uint64_t ms = (uint64_t)(time_wall_ns() / 1000000);
  return (member_id & 0xffff) << 48 | (ms & 0xffffffffffULL) << 8;
}

/* Group commit under load (raftnode.h, docs/cluster.md "Group commit"):
 * from 8 proposals a batch, the leader starts a batch at most every
 * millisecond. SYNOD_PACE_US overrides the interval for benchmarks (0: off). */
enum { PACE_MIN_BATCH = 8, PACE_INTERVAL_US = 1000 };

static uint32_t pace_interval_us(void) {
  const char *s = getenv("SYNOD_PACE_US");
  if (!s || !*s) return PACE_INTERVAL_US;
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  return *end || v > 1000000 ? PACE_INTERVAL_US : (uint32_t)v;
}

int pipeline_open(node *n, const char *wal_dir, const raft_entry *bootstrap, size_t n_bootstrap, pipeline **out,
                  char *err, size_t err_len) {
  pipeline *p = xcalloc(1, sizeof *p);
  p->n = n;
  p->mem = arena_new();
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->wmu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &ca);
  pthread_cond_init(&p->applied_cv, &ca);
  pthread_cond_init(&p->work_cv, NULL);
  pthread_condattr_destroy(&ca);
  atomic_init(&p->next_id, id_prefix(n->member_id));

  mvcc_txn *t;
  uint64_t applied = 0, applied_term = 0;
  member_list members = {0};
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) {
    snprintf(err, err_len, "cannot read the store");
    goto fail;
  }
  mvcc_applied(t, &applied, &applied_term);
  p->compact_pending = mvcc_compact_done_rev(t) < mvcc_compact_rev(t);
  int rc = members_load(t, &members);
  mvcc_txn_end(t);
  if (rc) {
    snprintf(err, err_len, "cannot read the member list: %s", mvcc_strerror(rc));
    goto fail;
  }
  for (size_t i = 0; i < members.n; i++) {
    if (members.v[i].is_learner) p->conf.learners[p->conf.n_learners++] = members.v[i].id;
    else p->conf.voters[p->conf.n_voters++] = members.v[i].id;
  }
  member_list_free(&members);
  atomic_store(&p->applied, applied);
  atomic_store(&p->applied_term, applied_term);
  atomic_store(&p->committed, applied);

  uint8_t meta[16];
  put_be64(meta, n->member_id);
  put_be64(meta + 8, n->cluster_id);
  uint32_t ticks = (uint32_t)(n->cfg.election_ms / n->cfg.heartbeat_ms);
  raftnode_options ro = {
      .id = n->member_id,
      .wal_dir = wal_dir,
      .wal_meta = meta,
      .wal_meta_len = sizeof meta,
      .heartbeat_ms = (uint32_t)n->cfg.heartbeat_ms,
      .election_ticks = ticks,
      .pre_vote = n->cfg.pre_vote,
      .snapshot_count = n->cfg.snapshot_count,
      .pace_interval_us = pace_interval_us(),
      .pace_min_batch = PACE_MIN_BATCH,
      .applied_index = applied,
      .applied_term = applied_term,
      .applied_conf = p->conf,
      .bootstrap = bootstrap,
      .n_bootstrap = n_bootstrap,
      .cb = {on_committed, on_read_ready, on_leader_changed, on_send, on_install, on_snapshot_done, on_flush, p},
  };
  /* The apply thread must be running before Raft hands out entries. */
  pthread_create(&p->apply_thread, NULL, apply_main, p);
  if (raftnode_start(&ro, &p->rn, err, err_len) < 0) {
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->apply_thread, NULL);
    goto fail;
  }
  n->rn = p->rn;
  *out = p;
  return 0;

fail:
  arena_free(p->mem);
  free(p);
  return -1;
}

void pipeline_close(pipeline *p) {
  /* Raft first: no more committed entries; then drain the apply thread. */
  raftnode_stop(p->rn);
  p->n->rn = NULL;
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_cond_broadcast(&p->cv);
  pthread_cond_broadcast(&p->applied_cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->apply_thread, NULL);
  for (size_t i = 0; i < WAITER_BUCKETS; i++) {
    for (waiter *w = p->waiters[i], *next; w; w = next) {
      next = w->next;
      w->err = &ERR_STOPPED;
      waiter_finish(w);
    }
  }
  for (conf_waiter *c = p->conf_waiters, *next; c; c = next) {
    next = c->next;
    c->done(c->arg, false);
    free(c);
  }
  arena_free(p->mem);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->wmu);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->applied_cv);
  pthread_cond_destroy(&p->work_cv);
  free(p);
}

uint64_t pipeline_applied_index(pipeline *p) { return atomic_load(&p->applied); }
uint64_t pipeline_committed_index(pipeline *p) { return atomic_load(&p->committed); }
