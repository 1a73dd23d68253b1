/* Linearizable reads through Raft's ReadIndex, batched.
 *
 * A read must reflect every write acknowledged before it started, on any
 * member, and a deposed leader must never serve stale data. So: reads queue
 * up; one ReadIndex request covers every read queued before it (the leader
 * confirms it still leads with one heartbeat round, however many reads
 * wait); once the store here has applied up to the index it returns, the
 * reads run against a snapshot on this thread. A member that is the only
 * voter needs no round: its callers read directly.
 *
 * A ReadIndex answer can be lost (the leader changed, or there was none
 * yet): a batch is asked again under a new context once a different leader
 * is known, and after waiting an election timeout in any case; reads
 * give up at the request timeout with "etcdserver: no leader" (no leader
 * known) or "etcdserver: request timed out". */
#include "reads.h"

#include "base.h"
#include "errors.h"
#include "pipeline.h"
#include "raftnode.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct read_req {
  struct read_req *next;
  rpc_call *call;
  const ProtobufCMessage *req;
  reads_run_fn run;
  int64_t deadline;
} read_req;

typedef struct read_batch {
  struct read_batch *next;
  uint64_t ctx;
  uint64_t index; /* 0 until the read point is known */
  int64_t asked_at;
  uint64_t asked_lead; /* the leader known when it asked (0: none) */
  read_req *reqs;
} read_batch;

struct reads {
  node *n;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  read_req *pending, **pending_tail;
  read_req *local, **local_tail; /* reads_submit_long: no read point needed */
  read_batch *batches; /* oldest first */
  uint64_t next_ctx;
  uint64_t applied;
  bool stop;
};

static read_req *new_req(rpc_call *call, const ProtobufCMessage *req, reads_run_fn run, int64_t deadline) {
  read_req *q = xmalloc(sizeof *q);
  *q = (read_req){.call = call, .req = req, .run = run, .deadline = deadline};
  return q;
}

void reads_submit(reads *r, rpc_call *call, const ProtobufCMessage *req, reads_run_fn run) {
  size_t hl;
  const uint8_t *h = rpc_call_metadata(call, "hasleader", &hl);
  if (h && hl == 4 && memcmp(h, "true", 4) == 0 && raftnode_lead(r->n->rn) == 0) {
    rpc_fail_with(call, &ERR_NO_LEADER);
    return;
  }
  read_req *q = new_req(call, req, run, time_mono_ns() + pipeline_request_timeout_ms(r->n) * 1000000);
  pthread_mutex_lock(&r->mu);
  *r->pending_tail = q;
  r->pending_tail = &q->next;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void reads_submit_long(reads *r, rpc_call *call, const ProtobufCMessage *req, reads_run_fn run) {
  if (node_local_reads_ok(r->n)) {
    run(r->n, call, req);
    return;
  }
  read_req *q = new_req(call, req, run, 0);
  pthread_mutex_lock(&r->mu);
  *r->local_tail = q;
  r->local_tail = &q->next;
  pthread_mutex_unlock(&r->mu);
  pthread_cond_signal(&r->cv);
}

static void run_reqs(reads *r, read_req *q) {
  for (read_req *next; q; q = next) {
    next = q->next;
    q->run(r->n, q->call, q->req);
    free(q);
  }
}

void reads_ready(reads *r, uint64_t ctx, uint64_t index) {
  pthread_mutex_lock(&r->mu);
  /* A read point for ctx serves every batch asked before it too. */
  for (read_batch *b = r->batches; b; b = b->next)
    if (b->ctx <= ctx && (b->index == 0 || index > b->index)) b->index = index;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void reads_applied(reads *r, uint64_t index) {
  pthread_mutex_lock(&r->mu);
  r->applied = index;
  if (r->batches) pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void fail_all(read_req *q, const rpc_error *e) {
  for (read_req *next; q; q = next) {
    next = q->next;
    rpc_fail_with(q->call, e);
    free(q);
  }
}

static void *reads_main(void *arg) {
  reads *r = arg;
  pthread_setname_np(pthread_self(), "synod-read");
  int64_t retry_ns = (int64_t)r->n->cfg.election_ms * 1000000;
  pthread_mutex_lock(&r->mu);
  for (;;) {
    if (r->stop) break;
    if (r->local) {
      read_req *q = r->local;
      r->local = NULL;
      r->local_tail = &r->local;
      pthread_mutex_unlock(&r->mu);
      rpc_reply_group_begin();
      run_reqs(r, q);
      rpc_reply_group_end();
      pthread_mutex_lock(&r->mu);
      continue;
    }
    int64_t now = time_mono_ns();
    /* New reads form a batch and ask for a read point. */
    if (r->pending) {
      read_batch *b = xcalloc(1, sizeof *b);
      b->ctx = ++r->next_ctx;
      b->asked_at = now;
      b->asked_lead = raftnode_lead(r->n->rn);
      b->reqs = r->pending;
      r->pending = NULL;
      r->pending_tail = &r->pending;
      read_batch **t = &r->batches;
      while (*t) t = &(*t)->next;
      *t = b;
      uint64_t ctx = b->ctx;
      pthread_mutex_unlock(&r->mu);
      raftnode_read_index(r->n->rn, ctx);
      pthread_mutex_lock(&r->mu);
      continue;
    }
    /* Batches whose read point the store has reached run now; batches that
     * waited too long ask again; reads past their deadline give up. */
    read_batch *ready = NULL, **rt = &ready;
    read_req *expired = NULL;
    for (read_batch **bp = &r->batches; *bp;) {
      read_batch *b = *bp;
      if (b->index && b->index <= r->applied) {
        *bp = b->next;
        b->next = NULL;
        *rt = b;
        rt = &b->next;
        continue;
      }
      for (read_req **qp = &b->reqs; *qp;) {
        if ((*qp)->deadline <= now) {
          read_req *q = *qp;
          *qp = q->next;
          q->next = expired;
          expired = q;
        } else {
          qp = &(*qp)->next;
        }
      }
      if (!b->reqs) {
        *bp = b->next;
        free(b);
        continue;
      }
      /* Asked again after an election timeout, or as soon as a leader
       * other than the one it asked under is known: a request made with
       * no leader (a member just restarted) went nowhere. */
      uint64_t lead = raftnode_lead(r->n->rn);
      if (!b->index && (now - b->asked_at > retry_ns || (lead && lead != b->asked_lead))) {
        b->ctx = ++r->next_ctx;
        b->asked_at = now;
        b->asked_lead = lead;
        uint64_t ctx = b->ctx;
        pthread_mutex_unlock(&r->mu);
        raftnode_read_index(r->n->rn, ctx);
        pthread_mutex_lock(&r->mu);
        /* the list may have changed while unlocked: start over */
        bp = &r->batches;
        continue;
      }
      bp = &b->next;
    }
    if (ready || expired) {
      pthread_mutex_unlock(&r->mu);
      rpc_reply_group_begin();
      for (read_batch *b = ready, *next; b; b = next) {
        next = b->next;
        run_reqs(r, b->reqs);
        free(b);
      }
      fail_all(expired, raftnode_lead(r->n->rn) == 0 ? &ERR_NO_LEADER : &ERR_TIMEOUT);
      rpc_reply_group_end();
      pthread_mutex_lock(&r->mu);
      continue;
    }
    struct timespec ts = time_after_ms(CLOCK_MONOTONIC, 50);
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
  }
  read_req *left = r->pending;
  r->pending = NULL;
  read_req *local = r->local;
  r->local = NULL;
  read_batch *batches = r->batches;
  r->batches = NULL;
  pthread_mutex_unlock(&r->mu);
  fail_all(left, &ERR_STOPPED);
  fail_all(local, &ERR_STOPPED);
  for (read_batch *b = batches, *next; b; b = next) {
    next = b->next;
    fail_all(b->reqs, &ERR_STOPPED);
    free(b);
  }
  return NULL;
}

reads *reads_start(node *n) {
  reads *r = xcalloc(1, sizeof *r);
  r->n = n;
  r->pending_tail = &r->pending;
  r->local_tail = &r->local;
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_create(&r->thread, NULL, reads_main, r);
  return r;
}

void reads_stop(reads *r) {
  pthread_mutex_lock(&r->mu);
  r->stop = true;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  pthread_join(r->thread, NULL);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}
