/* A Lock or Campaign call from arrival to its reply (see contend.h). */
#include "contend.h"

#include "base.h"
#include "errors.h"
#include "lease_service.h"
#include "pipeline.h"
#include "raftnode.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  ST_GRANTING,    /* lease 0: a lease grant in flight */
  ST_ACQUIRING,   /* the acquire Txn in flight */
  ST_PROCLAIMING, /* campaign: the value update in flight */
  ST_REGISTERING, /* inside cc_wait */
  ST_DECIDED,     /* decided inside cc_wait; the registering code replies */
  ST_WAITING,     /* in the table */
  ST_DONE,        /* replied, or replying */
};

/* One lock orders every contender's state against its cancel callback. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* etcd's session TTL when Lock/Campaign come without a lease. */
enum { DEFAULT_SESSION_TTL = 60, CLEANUP_ATTEMPTS = 5 };

bool contend_transient(const rpc_error *e) {
  return e == &ERR_TIMEOUT || e == &ERR_NO_LEADER || e == &ERR_LEADER_CHANGED;
}

void contender_key(rpc_call *call, const ProtobufCBinaryData *name, int64_t lease, uint8_t **pfx, size_t *pfx_len,
                   uint8_t **key, size_t *key_len) {
  size_t n = name->len;
  uint8_t *p = rpc_call_alloc(call, n + 1);
  *pfx_len = cc_prefix(name->data, n, p);
  *pfx = p;
  /* Go's %x of an int64: lower-case hex, a minus sign if negative. */
  char hex[24];
  int h = lease < 0 ? snprintf(hex, sizeof hex, "-%" PRIx64, (uint64_t)0 - (uint64_t)lease)
                    : snprintf(hex, sizeof hex, "%" PRIx64, (uint64_t)lease);
  uint8_t *k = rpc_call_alloc(call, n + 1 + (size_t)h);
  memcpy(k, p, n + 1);
  memcpy(k + n + 1, hex, (size_t)h);
  *key = k;
  *key_len = n + 1 + (size_t)h;
}

/* ---------------------------------------------------------------- cleanup */

/* The guarded delete of a withdrawn contender's key: it outlives the call. */
typedef struct {
  node *n;
  int64_t create_rev;
  int attempts;
  size_t key_len;
  uint8_t key[];
} cleanup;

static void cleanup_submit(cleanup *u);

static void cleanup_done(void *arg, const rpc_error *err, const ProtobufCMessage *resp) {
  (void)resp;
  cleanup *u = arg;
  if (err && contend_transient(err) && ++u->attempts < CLEANUP_ATTEMPTS && !atomic_load(&u->n->stopping)) {
    cleanup_submit(u);
    return;
  }
  if (err)
    log_warn("lock: could not delete a withdrawn contender's key (%s); its lease will", err->message);
  free(u);
}

static void cleanup_submit(cleanup *u) {
  Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
  cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
  cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
  cmp.key = (ProtobufCBinaryData){u->key_len, u->key};
  cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
  cmp.create_revision = u->create_rev;
  Etcdserverpb__Compare *cmps[] = {&cmp};
  Etcdserverpb__DeleteRangeRequest del = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
  del.key = cmp.key;
  Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
  op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
  op.request_delete_range = &del;
  Etcdserverpb__RequestOp *ops[] = {&op};
  Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
  txn.n_compare = 1;
  txn.compare = cmps;
  txn.n_success = 1;
  txn.success = ops;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_TXN;
  req.txn = &txn;
  pipeline_submit(u->n->pipe, &req, 0, cleanup_done, u);
}

/* Deletes c's key if this call created it (a key that existed before the
 * call belongs to an earlier call with the same lease). Copies what it
 * needs: c may go away as soon as the call is answered. */
static void withdraw(contender *c) {
  if (!c->created || c->create_rev <= 0) return;
  cleanup *u = xcalloc(1, sizeof *u + c->key_len);
  u->n = c->n;
  u->create_rev = c->create_rev;
  u->key_len = c->key_len;
  memcpy(u->key, c->key, c->key_len);
  cleanup_submit(u);
}

/* ---------------------------------------------------------------- the flow */

static void finish(contender *c) {
  if (c->outcome == CC_GRANTED) c->granted(c, c->outcome_rev);
  else rpc_fail_with(c->call, c->lost_err);
}

/* The end of a decided call: answered, or, if it was cancelled meanwhile
 * (nobody will learn of a grant), its key withdrawn. */
static void conclude(contender *c, bool cancelled) {
  if (cancelled) {
    withdraw(c);
    rpc_fail_with(c->call, &ERR_CANCELED);
  } else {
    finish(c);
  }
}

static void decided(cc_waiter *w, cc_outcome o, int64_t rev) {
  contender *c = w->arg;
  pthread_mutex_lock(&mu);
  c->outcome = o;
  c->outcome_rev = rev;
  if (c->state == ST_REGISTERING) {
    c->state = ST_DECIDED; /* cc_wait's caller answers */
    pthread_mutex_unlock(&mu);
    return;
  }
  c->state = ST_DONE;
  bool cancelled = c->cancelled;
  pthread_mutex_unlock(&mu);
  conclude(c, cancelled);
}

/* The key exists with create_rev: wait for it to own. Apply thread. */
static void wait_for_ownership(contender *c) {
  pthread_mutex_lock(&mu);
  if (c->cancelled) {
    c->state = ST_DONE;
    pthread_mutex_unlock(&mu);
    conclude(c, true);
    return;
  }
  c->state = ST_REGISTERING;
  pthread_mutex_unlock(&mu);
  c->w.decided = decided;
  c->w.arg = c;
  cc_wait(c->n->cc, &c->w, c->pfx, c->pfx_len, c->key, c->key_len, c->create_rev);
  pthread_mutex_lock(&mu);
  if (c->state == ST_DECIDED) {
    c->state = ST_DONE;
    bool cancelled = c->cancelled;
    pthread_mutex_unlock(&mu);
    conclude(c, cancelled);
    return;
  }
  c->state = ST_WAITING;
  if (c->cancelled && cc_cancel(c->n->cc, &c->w)) {
    c->state = ST_DONE;
    pthread_mutex_unlock(&mu);
    withdraw(c);
    rpc_fail_with(c->call, &ERR_CANCELED);
    return;
  }
  pthread_mutex_unlock(&mu);
}

void contend_fail_kv(rpc_call *call, const rpc_error *err) { rpc_fail(call, RPC_UNKNOWN, err->message); }

/* An error from a proposal: propose again if it is worth it, else answer.
 * Returns true if the caller should propose again. */
static bool failed_step(contender *c, const rpc_error *err) {
  pthread_mutex_lock(&mu);
  bool retry = contend_transient(err) && !c->cancelled && time_mono_ns() < c->deadline &&
               !atomic_load(&c->n->stopping);
  if (!retry) c->state = ST_DONE;
  bool cancelled = c->cancelled;
  pthread_mutex_unlock(&mu);
  if (!retry) {
    withdraw(c);
    if (cancelled) rpc_fail_with(c->call, &ERR_CANCELED);
    else contend_fail_kv(c->call, err);
  }
  return retry;
}

static void submit_acquire(contender *c);

static void proclaimed(void *arg, const rpc_error *err, const ProtobufCMessage *resp) {
  contender *c = arg;
  if (err) {
    if (failed_step(c, err)) submit_acquire(c); /* from the top: idempotent */
    return;
  }
  const Etcdserverpb__TxnResponse *r = (const Etcdserverpb__TxnResponse *)resp;
  if (!r->succeeded) {
    /* The key went between the two proposals (etcd: "not leader"). */
    pthread_mutex_lock(&mu);
    c->state = ST_DONE;
    pthread_mutex_unlock(&mu);
    rpc_fail_with(c->call, &ERR_ELECTION_NOT_LEADER);
    return;
  }
  wait_for_ownership(c);
}

/* Proposes Txn{if CreateRevision(key) == create_rev then Put(key, value,
 * lease) else Get(key)} for the contender; `done` gets the TxnResponse.
 * Both steps of acquiring are this: create the key if it does not exist
 * (create_rev 0), and rewrite the value of the key it already has. */
static void submit_guarded_put(contender *c, int64_t create_rev, bool with_value, pipeline_done_fn done) {
  Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
  cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
  cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
  cmp.key = (ProtobufCBinaryData){c->key_len, c->key};
  cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
  cmp.create_revision = create_rev;
  Etcdserverpb__Compare *cmps[] = {&cmp};
  Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
  put.key = cmp.key;
  if (with_value) put.value = c->value;
  put.lease = c->lease;
  Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
  get.key = cmp.key;
  Etcdserverpb__RequestOp then = ETCDSERVERPB__REQUEST_OP__INIT;
  then.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
  then.request_put = &put;
  Etcdserverpb__RequestOp els = ETCDSERVERPB__REQUEST_OP__INIT;
  els.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
  els.request_range = &get;
  Etcdserverpb__RequestOp *succ[] = {&then}, *fail[] = {&els};
  Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
  txn.n_compare = 1;
  txn.compare = cmps;
  txn.n_success = 1;
  txn.success = succ;
  txn.n_failure = 1;
  txn.failure = fail;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_TXN;
  req.txn = &txn;
  pipeline_submit(c->n->pipe, &req, c->deadline, done, c);
}

/* Campaign again with another value: etcd's Proclaim of the candidate's
 * own key (guarded by its create revision, whether it leads or not). */
static void submit_value_update(contender *c) {
  pthread_mutex_lock(&mu);
  c->state = ST_PROCLAIMING;
  pthread_mutex_unlock(&mu);
  submit_guarded_put(c, c->create_rev, true, proclaimed);
}

static void acquired(void *arg, const rpc_error *err, const ProtobufCMessage *resp) {
  contender *c = arg;
  if (err) {
    if (failed_step(c, err)) {
      c->uncertain = true;
      submit_acquire(c);
    }
    return;
  }
  const Etcdserverpb__TxnResponse *r = (const Etcdserverpb__TxnResponse *)resp;
  bool value_differs = false;
  if (r->succeeded) {
    c->created = true;
    c->create_rev = r->header->revision;
  } else {
    const Etcdserverpb__RangeResponse *g =
        r->n_responses == 1 && r->responses[0]->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE
            ? r->responses[0]->response_range
            : NULL;
    if (!g || g->n_kvs != 1) {
      /* Cannot happen: the key existed when the Txn ran. */
      pthread_mutex_lock(&mu);
      c->state = ST_DONE;
      pthread_mutex_unlock(&mu);
      rpc_fail_with(c->call, &ERR_INTERNAL);
      return;
    }
    c->create_rev = g->kvs[0]->create_revision;
    /* A key created after this call arrived, found by a retry whose
     * earlier attempt timed out, is that attempt's: ours to withdraw.
     * (Another call with the same lease racing with this one would be
     * mistaken for it: it then loses its key, never safety.) */
    if (c->uncertain && c->create_rev > c->start_rev) c->created = true;
    value_differs = c->campaign && (g->kvs[0]->value.len != c->value.len ||
                                    (c->value.len && memcmp(g->kvs[0]->value.data, c->value.data, c->value.len)));
  }
  if (value_differs) {
    submit_value_update(c);
    return;
  }
  wait_for_ownership(c);
}

static void submit_acquire(contender *c) {
  pthread_mutex_lock(&mu);
  c->state = ST_ACQUIRING;
  pthread_mutex_unlock(&mu);
  submit_guarded_put(c, 0, c->campaign, acquired);
}

static void submit_lease(contender *c);

static void lease_granted(void *arg, const rpc_error *err, const ProtobufCMessage *resp) {
  contender *c = arg;
  if (err) {
    if (failed_step(c, err)) submit_lease(c);
    return;
  }
  c->lease = ((const Etcdserverpb__LeaseGrantResponse *)resp)->id;
  contender_key(c->call, &c->name, c->lease, &c->pfx, &c->pfx_len, &c->key, &c->key_len);
  submit_acquire(c);
}

/* etcd's NewSession without a lease: grant one of 60 s that nobody keeps
 * alive (the server orphans the session). */
static void submit_lease(contender *c) {
  pthread_mutex_lock(&mu);
  c->state = ST_GRANTING;
  pthread_mutex_unlock(&mu);
  Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
  g.ttl = DEFAULT_SESSION_TTL;
  if (lease_grant_ttl(c->n->lease->table, g.ttl, &g.ttl) != LEASE_OK) g.ttl = DEFAULT_SESSION_TTL;
  while (g.id == 0) g.id = (int64_t)((atomic_fetch_add(&c->n->lease->next_id, 1) + 1) & INT64_MAX);
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_LEASE_GRANT;
  req.lease_grant = &g;
  pipeline_submit(c->n->pipe, &req, c->deadline, lease_granted, c);
}

static void on_cancel(void *arg) {
  contender *c = arg;
  pthread_mutex_lock(&mu);
  c->cancelled = true;
  if (c->state == ST_WAITING && cc_cancel(c->n->cc, &c->w)) {
    c->state = ST_DONE;
    pthread_mutex_unlock(&mu);
    withdraw(c);
    rpc_fail_with(c->call, &ERR_CANCELED);
    return;
  }
  /* In flight (a proposal, a registration) or already decided: whoever
   * holds it next sees `cancelled` and answers. */
  pthread_mutex_unlock(&mu);
}

void contender_start(contender *c) {
  c->deadline = rpc_call_deadline(c->call);
  c->start_rev = node_current_rev(c->n);
  size_t hl;
  const uint8_t *h = rpc_call_metadata(c->call, "hasleader", &hl);
  if (h && hl == 4 && memcmp(h, "true", 4) == 0 && (!c->n->rn || raftnode_lead(c->n->rn) == 0)) {
    rpc_fail_with(c->call, &ERR_NO_LEADER);
    return;
  }
  if (c->name.len + 1 + 17 > MVCC_MAX_KEY) {
    contend_fail_kv(c->call, &ERR_KEY_TOO_LONG);
    return;
  }
  c->state = ST_ACQUIRING;
  if (!rpc_call_on_cancel(c->call, on_cancel, c)) {
    rpc_fail_with(c->call, &ERR_CANCELED);
    return;
  }
  if (c->lease == 0) {
    submit_lease(c);
    return;
  }
  contender_key(c->call, &c->name, c->lease, &c->pfx, &c->pfx_len, &c->key, &c->key_len);
  submit_acquire(c);
}
