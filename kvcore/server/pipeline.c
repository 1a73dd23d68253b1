/* The write pipeline: two threads and two queues.
 *
 *   handlers --propose--> [log queue] --log thread: WAL append + fdatasync-->
 *   [apply queue] --apply thread: one store transaction per batch--> replies
 *
 * Group commit falls out of the shape: while the log thread waits for one
 * fdatasync, new proposals pile up and go to disk together in the next one.
 * While the apply thread applies batch N, batch N+1 is being synced.
 *
 * Replies wait for two things: the entry is durable (so kill -9 or power
 * loss cannot lose an acknowledged write) and the batch's store transaction
 * has committed (so any read that starts after the reply sees the write).
 *
 * Entries reach the apply stage with the proposal ID only; the proposer is
 * found in the waiter table, exactly as it will be once Raft hands back
 * committed entries that other members proposed. */
#include "pipeline.h"

#include "base.h"
#include "errors.h"
#include "kv.h"
#include "wal.h"
#include "watch.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Entries per store transaction during start-up replay. */
enum { REPLAY_BATCH = 1000, COMPACT_STEP = 1000, WAITER_BUCKETS = 4096 };

typedef struct entry {
  struct entry *next;
  uint64_t index, term, id;
  size_t len;
  uint8_t *data;
} entry;

typedef struct waiter {
  struct waiter *next;
  uint64_t id;
  rpc_call *call;
  const rpc_error *err;
  int64_t compact_rev; /* > 0: reply once compaction to this rev is physical */
} waiter;

struct pipeline {
  node *n;
  wal *w;
  pthread_t log_thread, apply_thread;

  pthread_mutex_t mu;
  pthread_cond_t log_cv, apply_cv;
  entry *log_head, *log_tail;
  entry *apply_head, *apply_tail;
  bool stopping, log_stopped;

  uint64_t last_index; /* log thread */
  uint64_t term;
  uint64_t released_to;
  _Atomic uint64_t committed, applied;
  _Atomic uint64_t next_id;

  pthread_mutex_t wmu;
  waiter *waiters[WAITER_BUCKETS];

  /* apply thread only */
  waiter *compact_waiters;
  bool compact_pending;
  arena *mem;
};

/* ---------------------------------------------------------------- waiters */

static void waiter_put(pipeline *p, waiter *w) {
  pthread_mutex_lock(&p->wmu);
  waiter **b = &p->waiters[w->id % WAITER_BUCKETS];
  w->next = *b;
  *b = w;
  pthread_mutex_unlock(&p->wmu);
}

static waiter *waiter_take(pipeline *p, uint64_t id) {
  pthread_mutex_lock(&p->wmu);
  waiter **b = &p->waiters[id % WAITER_BUCKETS];
  while (*b && (*b)->id != id) b = &(*b)->next;
  waiter *w = *b;
  if (w) *b = w->next;
  pthread_mutex_unlock(&p->wmu);
  if (w) w->next = NULL;
  return w;
}

static void waiter_finish(waiter *w) {
  if (w->err)
    rpc_fail_with(w->call, w->err);
  else
    rpc_send_deferred(w->call);
  free(w);
}

/* ---------------------------------------------------------------- apply */

static bool no_leases(void *arg, int64_t id) {
  (void)arg;
  (void)id;
  return false; /* the lease service does not exist yet */
}

static void fatal_store(const char *what, int rc) {
  log_fatal("store failure while %s: %s; stopping rather than diverge from the log", what, mvcc_strerror(rc));
}

/* Applies one committed entry inside the batch transaction. Returns the
 * local proposer waiting for it, if any, with its outcome recorded; the
 * caller answers it once the batch has committed. */
static waiter *apply_entry(pipeline *p, mvcc_txn *w, const entry *e) {
  node *n = p->n;
  waiter *wt = e->id ? waiter_take(p, e->id) : NULL;
  Synodpb__Request *req = synodpb__request__unpack(NULL, e->len, e->data);
  if (!req) {
    /* Checksummed by the WAL and written by us: a decode failure means a
     * bug or a version mismatch, and skipping the entry would diverge. */
    log_fatal("cannot decode log entry %" PRIu64 " (%zu bytes)", e->index, e->len);
  }
  kv_exec x = {.mem = p->mem, .copy = true, .lease_exists = no_leases};
  const rpc_error *err = NULL;
  ProtobufCMessage *resp = NULL;
  Etcdserverpb__ResponseHeader **hdr = NULL;
  int64_t compact_rev = 0;

  /* A compaction is a request of its own that changes no key: the store
   * refuses it inside a revision bracket. */
  bool bracket = req->op_case != SYNODPB__REQUEST__OP_COMPACTION;
  if (bracket) mvcc_rev_begin(w);
  switch (req->op_case) {
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
    } else {
      (*hdr)->revision = rev;
      node_fill_header(n, *hdr);
      rpc_reply_deferred(wt->call, resp); /* packed now: the map changes next */
      wt->compact_rev = compact_rev;
    }
  }
  synodpb__request__free_unpacked(req, NULL);
  arena_reset(p->mem);
  return wt;
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

/* Does this log entry hold a compaction? A look at the top-level field
 * numbers of the packed synodpb.Request, without decoding it: the apply loop
 * must know before applying it (see apply_batch). */
static bool entry_is_compaction(const entry *e) {
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
        while (p < end && (*p++ & 0x80)) {}
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

/* Commits the batch transaction with the applied index, and tells the
 * watch hub which revision is now visible. */
static void commit_batch(pipeline *p, mvcc_txn *w, uint64_t last, uint64_t last_term) {
  int64_t rev = mvcc_rev(w);
  mvcc_set_applied(w, last, last_term);
  int rc = mvcc_write_commit(w);
  if (rc) fatal_store("committing applied entries", rc);
  atomic_store(&p->applied, last);
  if (p->n->watch) watch_hub_notify(p->n->watch, rev);
}

/* Applies a list of entries in one store transaction, then answers their
 * proposers. Frees the entries. A compaction gets a transaction of its own
 * after the entries before it, and the watch hub keeps a snapshot of what
 * it has not delivered yet: live watchers never lose events to it. */
static void apply_batch(pipeline *p, entry *list) {
  mvcc_txn *w;
  int rc = mvcc_write_begin(p->n->store, &w);
  if (rc) fatal_store("starting a write", rc);
  waiter *done_head = NULL, **done_tail = &done_head;
  uint64_t last = 0, last_term = 0;
  for (entry *e = list; e; e = e->next) {
    if (p->n->watch && entry_is_compaction(e)) {
      if (e != list) {
        commit_batch(p, w, last, last_term);
        rc = mvcc_write_begin(p->n->store, &w);
        if (rc) fatal_store("starting a write", rc);
      }
      watch_hub_before_compaction(p->n->watch);
    }
    waiter *wt = apply_entry(p, w, e);
    if (wt) {
      *done_tail = wt;
      done_tail = &wt->next;
    }
    last = e->index;
    last_term = e->term;
  }
  commit_batch(p, w, last, last_term);

  for (waiter *wt = done_head, *next; wt; wt = next) {
    next = wt->next;
    if (!wt->err && wt->compact_rev > 0) {
      wt->next = p->compact_waiters;
      p->compact_waiters = wt;
    } else {
      waiter_finish(wt);
    }
  }
  for (entry *e = list, *next; e; e = next) {
    next = e->next;
    free(e);
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

static void *apply_main(void *arg) {
  pipeline *p = arg;
  pthread_setname_np(pthread_self(), "synod-apply");
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->apply_head && !p->compact_pending && !p->log_stopped) pthread_cond_wait(&p->apply_cv, &p->mu);
    entry *list = p->apply_head;
    p->apply_head = p->apply_tail = NULL;
    bool stop = !list && p->log_stopped;
    pthread_mutex_unlock(&p->mu);
    if (list) {
      apply_batch(p, list);
    } else if (stop) {
      break;
    } else if (p->compact_pending) {
      compact_step(p); /* only when no entries wait: writes come first */
    }
  }
  finish_compaction_waiters(p, 0, true);
  return NULL;
}

/* ---------------------------------------------------------------- log */

static void *log_main(void *arg) {
  pipeline *p = arg;
  pthread_setname_np(pthread_self(), "synod-wal");
  wal_entry *ents = NULL;
  size_t cap = 0;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->log_head && !p->stopping) pthread_cond_wait(&p->log_cv, &p->mu);
    entry *list = p->log_head;
    p->log_head = p->log_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    if (!list) break; /* stopping, and nothing left to write */

    size_t n = 0;
    for (entry *e = list; e; e = e->next) {
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        ents = xrealloc(ents, cap * sizeof *ents);
      }
      e->index = ++p->last_index;
      e->term = p->term;
      ents[n++] = (wal_entry){.index = e->index, .term = e->term, .type = 0, .data = e->data, .len = e->len};
    }
    wal_hard_state hs = {.term = p->term, .vote = p->n->member_id, .commit = p->last_index};
    if (wal_append(p->w, &hs, ents, n) < 0 || wal_sync(p->w) < 0)
      log_fatal("cannot write the WAL: %m; stopping (an unsynced write must not be acknowledged)");
    atomic_store(&p->committed, p->last_index);

    pthread_mutex_lock(&p->mu);
    entry *tail = list;
    while (tail->next) tail = tail->next;
    if (p->apply_tail) p->apply_tail->next = list; else p->apply_head = list;
    p->apply_tail = tail;
    pthread_cond_signal(&p->apply_cv);
    pthread_mutex_unlock(&p->mu);

    /* Segments wholly behind the store's last checkpoint are not needed. */
    uint64_t durable = mvcc_durable_index(p->n->store);
    if (durable > p->released_to && p->n->cfg.max_wals > 0) {
      wal_release_to(p->w, durable, (int)p->n->cfg.max_wals);
      p->released_to = durable;
    }
  }
  free(ents);
  pthread_mutex_lock(&p->mu);
  p->log_stopped = true;
  pthread_cond_signal(&p->apply_cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* ---------------------------------------------------------------- propose */

void pipeline_propose(pipeline *p, rpc_call *call, const Synodpb__Request *req) {
  Synodpb__Request copy = *req;
  copy.id = atomic_fetch_add(&p->next_id, 1);
  size_t len = synodpb__request__get_packed_size(&copy);
  if (len > p->n->cfg.max_request_bytes) {
    if (call) rpc_fail_with(call, &ERR_REQUEST_TOO_LARGE);
    return;
  }
  entry *e = xmalloc(sizeof *e + len);
  e->next = NULL;
  e->id = copy.id;
  e->len = len;
  e->data = (uint8_t *)(e + 1);
  synodpb__request__pack(&copy, e->data);

  waiter *w = NULL;
  if (call) {
    w = xcalloc(1, sizeof *w);
    w->id = copy.id;
    w->call = call;
  } else {
    e->id = 0; /* nobody waits */
  }

  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    free(e);
    free(w);
    if (call) rpc_fail_with(call, &ERR_STOPPED);
    return;
  }
  if (w) waiter_put(p, w);
  if (p->log_tail) p->log_tail->next = e; else p->log_head = e;
  p->log_tail = e;
  pthread_cond_signal(&p->log_cv);
  pthread_mutex_unlock(&p->mu);
}

/* ---------------------------------------------------------------- open/close */

static uint64_t id_prefix(uint64_t member_id) {
  /* etcd's request-ID scheme: member bits, then the start time, then a
   * counter, so IDs never repeat across restarts. */
  uint64_t ms = (uint64_t)(time_wall_ns() / 1000000);
  return (member_id & 0xffff) << 48 | (ms & 0xffffffffffULL) << 8;
}

static int replay(pipeline *p, const wal_recovered *rec, uint64_t applied, char *err, size_t err_len) {
  entry *head = NULL, **tail = &head;
  size_t n = 0;
  uint64_t expect = applied + 1;
  for (size_t i = 0; i < rec->n_entries; i++) {
    const wal_entry *we = &rec->entries[i];
    if (we->index <= applied) continue;
    if (we->index != expect) {
      snprintf(err, err_len, "WAL is missing entries %" PRIu64 "..%" PRIu64 " that the store has not applied",
               expect, we->index - 1);
      for (entry *e = head, *next; e; e = next) next = e->next, free(e);
      return -1;
    }
    expect++;
    entry *e = xmalloc(sizeof *e + we->len);
    e->id = 0; /* nobody waits for a replayed entry */
    e->next = NULL;
    e->index = we->index;
    e->term = we->term;
    e->len = we->len;
    e->data = (uint8_t *)(e + 1);
    memcpy(e->data, we->data, we->len);
    *tail = e;
    tail = &e->next;
    if (++n == REPLAY_BATCH) {
      apply_batch(p, head);
      head = NULL;
      tail = &head;
      n = 0;
    }
  }
  if (head) apply_batch(p, head);
  if (expect - 1 > applied) log_info("replayed WAL entries %" PRIu64 "..%" PRIu64, applied + 1, expect - 1);
  return 0;
}

int pipeline_open(node *n, const char *wal_dir, pipeline **out, char *err, size_t err_len) {
  pipeline *p = xcalloc(1, sizeof *p);
  p->n = n;
  p->term = 1;
  p->mem = arena_new();
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->wmu, NULL);
  pthread_cond_init(&p->log_cv, NULL);
  pthread_cond_init(&p->apply_cv, NULL);
  atomic_init(&p->next_id, id_prefix(n->member_id));

  mvcc_txn *t;
  uint64_t applied = 0, applied_term = 0;
  if (mvcc_read_begin(n->store, &t) == 0) {
    mvcc_applied(t, &applied, &applied_term);
    p->compact_pending = mvcc_compact_done_rev(t) < mvcc_compact_rev(t);
    mvcc_txn_end(t);
  }
  if (applied_term > p->term) p->term = applied_term;

  uint8_t meta[16];
  put_be64(meta, n->member_id);
  put_be64(meta + 8, n->cluster_id);
  if (!wal_exists(wal_dir) && wal_create(wal_dir, meta, sizeof meta, NULL) < 0) {
    snprintf(err, err_len, "cannot create WAL in %s: %m", wal_dir);
    goto fail;
  }
  wal_recovered rec;
  if (wal_open(wal_dir, (wal_snap){applied, applied_term}, NULL, &rec, &p->w, err, err_len) < 0) goto fail;
  if (rec.meta_len != sizeof meta || memcmp(rec.meta, meta, sizeof meta) != 0) {
    snprintf(err, err_len, "the WAL in %s belongs to another member or cluster (member %016" PRIx64 ", cluster %016" PRIx64 " expected)",
             wal_dir, n->member_id, n->cluster_id);
    wal_recovered_free(&rec);
    wal_close(p->w);
    goto fail;
  }
  if (rec.repaired) log_warn("WAL in %s had a torn tail (a crash during a write); it was cut off", wal_dir);
  if (rec.hs.term > p->term) p->term = rec.hs.term;
  int rc = replay(p, &rec, applied, err, err_len);
  wal_recovered_free(&rec);
  if (rc < 0) {
    wal_close(p->w);
    goto fail;
  }
  p->last_index = wal_last_index(p->w);
  if (p->last_index < applied) {
    /* The store is ahead of the log (the log was lost or replaced): the
     * store is the snapshot the log continues from. */
    if (wal_append_snapshot(p->w, (wal_snap){applied, applied_term}) < 0 || wal_sync(p->w) < 0) {
      snprintf(err, err_len, "cannot write to the WAL in %s: %m", wal_dir);
      wal_close(p->w);
      goto fail;
    }
    p->last_index = applied;
  }
  atomic_store(&p->committed, p->last_index);
  if (atomic_load(&p->applied) < applied) atomic_store(&p->applied, applied);
  atomic_store(&n->term, p->term);

  pthread_create(&p->log_thread, NULL, log_main, p);
  pthread_create(&p->apply_thread, NULL, apply_main, p);
  *out = p;
  return 0;

fail:
  arena_free(p->mem);
  free(p);
  return -1;
}

void pipeline_close(pipeline *p) {
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_cond_signal(&p->log_cv);
  pthread_mutex_unlock(&p->mu);
  /* The log thread drains what was already proposed (it is cheap and keeps
   * "proposed before stop" meaning "answered"), then the apply thread. */
  pthread_join(p->log_thread, NULL);
  pthread_join(p->apply_thread, NULL);
  for (size_t i = 0; i < WAITER_BUCKETS; i++) {
    for (waiter *w = p->waiters[i], *next; w; w = next) {
      next = w->next;
      w->err = &ERR_STOPPED;
      waiter_finish(w);
    }
  }
  wal_close(p->w);
  arena_free(p->mem);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->wmu);
  pthread_cond_destroy(&p->log_cv);
  pthread_cond_destroy(&p->apply_cv);
  free(p);
}

uint64_t pipeline_applied_index(pipeline *p) { return atomic_load(&p->applied); }
uint64_t pipeline_committed_index(pipeline *p) { return atomic_load(&p->committed); }
