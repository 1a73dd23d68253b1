/* Execution of KV requests with etcd's semantics (its applier, in C).
 * Everything a response points to lives in x->mem, or in the map for read
 * transactions (x->copy == false), which outlive the reply's packing. */
#include "errors.h"
#include "kv.h"

#include <stdlib.h>
#include <string.h>

const rpc_error *kv_mvcc_error(int rc) {
  switch (rc) {
    case MVCC_OK: return NULL;
    case MVCC_ECOMPACTED: return &ERR_COMPACTED;
    case MVCC_EFUTURE: return &ERR_FUTURE_REV;
    case MVCC_ENOSPACE: return &ERR_NO_SPACE;
    case MVCC_EKEYTOOLONG: return &ERR_KEY_TOO_LONG;
    default: return &ERR_INTERNAL;
  }
}

static Etcdserverpb__ResponseHeader *new_header(arena *a, int64_t rev) {
  Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof *h);
  etcdserverpb__response_header__init(h);
  h->revision = rev;
  return h;
}

/* etcd's range_end conventions: empty = the one key, "\0" = every key from
 * `key` on, anything else = [key, range_end). */
static mvcc_span span_of(const ProtobufCBinaryData *key, const ProtobufCBinaryData *end) {
  mvcc_span s = {.key = key->data, .key_len = key->len};
  if (end->len == 1 && end->data[0] == 0) s.open_end = true;
  else if (end->len > 0) s.end = end->data, s.end_len = end->len;
  return s;
}

static ProtobufCBinaryData bin(const kv_exec *x, const uint8_t *p, size_t n) {
  ProtobufCBinaryData b = {.len = n, .data = (uint8_t *)p};
  if (x->copy && n) b.data = arena_memdup(x->mem, p, n);
  return b;
}

static Mvccpb__KeyValue *kv_msg(const kv_exec *x, const mvcc_kv *kv) {
  Mvccpb__KeyValue *m = arena_alloc(x->mem, sizeof *m);
  mvccpb__key_value__init(m);
  m->key = bin(x, kv->key, kv->key_len);
  m->value = bin(x, kv->value, kv->value_len);
  m->create_revision = kv->create_rev;
  m->mod_revision = kv->mod_rev;
  m->version = kv->version;
  m->lease = kv->lease;
  return m;
}

/* ---------------------------------------------------------------- Range */

typedef struct {
  const kv_exec *x;
  Mvccpb__KeyValue **kvs;
  size_t n, cap;
} collector;

static int collect(void *arg, const mvcc_kv *kv) {
  collector *c = arg;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    Mvccpb__KeyValue **kvs = arena_alloc(c->x->mem, cap * sizeof *kvs);
    if (c->n) memcpy(kvs, c->kvs, c->n * sizeof *kvs);
    c->kvs = kvs;
    c->cap = cap;
  }
  c->kvs[c->n++] = kv_msg(c->x, kv);
  return 0;
}

static int cmp_i64(int64_t a, int64_t b) { return a < b ? -1 : a > b; }

static int kv_compare(const void *pa, const void *pb, void *arg) {
  int sort_target = *(const int *)arg;
  const Mvccpb__KeyValue *a = *(Mvccpb__KeyValue *const *)pa, *b = *(Mvccpb__KeyValue *const *)pb;
  int c = 0;
  switch (sort_target) {
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION: c = cmp_i64(a->version, b->version); break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE: c = cmp_i64(a->create_revision, b->create_revision); break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD: c = cmp_i64(a->mod_revision, b->mod_revision); break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
      c = bytes_cmp(a->value.data, a->value.len, b->value.data, b->value.len);
      break;
    default: break;
  }
  /* Ties (and sorting by key) fall back to key order: deterministic. */
  return c ? c : bytes_cmp(a->key.data, a->key.len, b->key.data, b->key.len);
}

static void sort_kvs(Mvccpb__KeyValue **kvs, size_t n, int target, bool descend) {
  if (n < 2) return;
  qsort_r(kvs, n, sizeof *kvs, kv_compare, &target);
  if (descend)
    for (size_t i = 0, j = n - 1; i < j; i++, j--) {
      Mvccpb__KeyValue *t = kvs[i];
      kvs[i] = kvs[j];
      kvs[j] = t;
    }
}

static size_t prune(Mvccpb__KeyValue **kvs, size_t n, const Etcdserverpb__RangeRequest *r) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const Mvccpb__KeyValue *kv = kvs[i];
    if (r->max_mod_revision && kv->mod_revision > r->max_mod_revision) continue;
    if (r->min_mod_revision && kv->mod_revision < r->min_mod_revision) continue;
    if (r->max_create_revision && kv->create_revision > r->max_create_revision) continue;
    if (r->min_create_revision && kv->create_revision < r->min_create_revision) continue;
    kvs[k++] = kvs[i];
  }
  return k;
}

const rpc_error *kv_range(const kv_exec *x, mvcc_txn *t, const Etcdserverpb__RangeRequest *r,
                          Etcdserverpb__RangeResponse **out) {
  Etcdserverpb__RangeResponse *resp = arena_alloc(x->mem, sizeof *resp);
  etcdserverpb__range_response__init(resp);
  mvcc_span span = span_of(&r->key, &r->range_end);

  bool filtered = r->min_mod_revision || r->max_mod_revision || r->min_create_revision || r->max_create_revision;
  int order = r->sort_order;
  if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY && order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
    order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
  bool by_key = r->sort_target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
  bool descend = order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;

  /* The store yields keys in order, so sorting by key (either way) needs no
   * sort and can stop at limit+1; anything else reads the whole range first,
   * as etcd does. */
  int64_t limit = 0;
  unsigned flags = 0;
  bool need_sort = !by_key && order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
  if (!filtered && !need_sort) {
    if (r->limit > 0) limit = r->limit + 1;
    if (by_key && descend) flags |= MVCC_RANGE_REVERSE;
  }

  collector c = {.x = x};
  int64_t count = 0;
  int rc = mvcc_range(t, &span, r->revision, limit, flags, r->count_only ? NULL : collect, &c, &count);
  if (rc) return kv_mvcc_error(rc);
  if (filtered) c.n = prune(c.kvs, c.n, r);
  if (need_sort) sort_kvs(c.kvs, c.n, r->sort_target, descend);
  else if (filtered && by_key && descend) sort_kvs(c.kvs, c.n, r->sort_target, true);
  if (r->limit > 0 && c.n > (size_t)r->limit) {
    c.n = (size_t)r->limit;
    resp->more = true;
  }
  if (r->keys_only)
    for (size_t i = 0; i < c.n; i++) c.kvs[i]->value = (ProtobufCBinaryData){0, NULL};
  resp->kvs = c.kvs;
  resp->n_kvs = c.n;
  resp->count = count;
  resp->header = new_header(x->mem, mvcc_rev(t));
  *out = resp;
  return NULL;
}

/* ---------------------------------------------------------------- Put */

typedef struct {
  mvcc_kv kv;
  bool found;
} one_kv;

static int take_one(void *arg, const mvcc_kv *kv) {
  one_kv *o = arg;
  o->kv = *kv;
  o->found = true;
  return 1;
}

static bool lease_ok(const kv_exec *x, int64_t lease) {
  return lease == 0 || (x->lease_exists && x->lease_exists(x->lease_arg, lease));
}

/* Checks a put can go ahead; etcd does this for every put of a Txn before
 * any of them runs, so a failing put leaves the whole Txn unapplied. */
static const rpc_error *precheck_put(const kv_exec *x, mvcc_txn *w, const Etcdserverpb__PutRequest *r) {
  if (r->ignore_value || r->ignore_lease) {
    one_kv prev = {0};
    mvcc_span s = {.key = r->key.data, .key_len = r->key.len};
    int rc = mvcc_range(w, &s, 0, 1, 0, take_one, &prev, NULL);
    if (rc) return kv_mvcc_error(rc);
    if (!prev.found) return &ERR_KEY_NOT_FOUND;
  }
  if (!lease_ok(x, r->lease)) return &ERR_LEASE_NOT_FOUND;
  return NULL;
}

const rpc_error *kv_put(const kv_exec *x, mvcc_txn *w, const Etcdserverpb__PutRequest *r,
                        Etcdserverpb__PutResponse **out) {
  Etcdserverpb__PutResponse *resp = arena_alloc(x->mem, sizeof *resp);
  etcdserverpb__put_response__init(resp);
  if (r->key.len > MVCC_MAX_KEY) return &ERR_KEY_TOO_LONG;
  if (!lease_ok(x, r->lease)) return &ERR_LEASE_NOT_FOUND;

  const uint8_t *val = r->value.data;
  size_t val_len = r->value.len;
  int64_t lease = r->lease;
  if (r->ignore_value || r->ignore_lease) {
    one_kv prev = {0};
    mvcc_span s = {.key = r->key.data, .key_len = r->key.len};
    int rc = mvcc_range(w, &s, 0, 1, 0, take_one, &prev, NULL);
    if (rc) return kv_mvcc_error(rc);
    if (!prev.found) return &ERR_KEY_NOT_FOUND;
    if (r->ignore_value) {
      /* The page holding it is about to change: copy first. */
      val = arena_memdup(x->mem, prev.kv.value, prev.kv.value_len);
      val_len = prev.kv.value_len;
    }
    if (r->ignore_lease) lease = prev.kv.lease;
  }
  mvcc_kv prev;
  int rc = mvcc_put(w, r->key.data, r->key.len, val, val_len, lease, &prev);
  if (rc) return kv_mvcc_error(rc);
  if (r->prev_kv && prev.version > 0) {
    kv_exec copying = *x;
    copying.copy = true;
    resp->prev_kv = kv_msg(&copying, &prev);
  }
  resp->header = new_header(x->mem, mvcc_rev(w));
  *out = resp;
  return NULL;
}

/* ---------------------------------------------------------------- DeleteRange */

const rpc_error *kv_delete(const kv_exec *x, mvcc_txn *w, const Etcdserverpb__DeleteRangeRequest *r,
                           Etcdserverpb__DeleteRangeResponse **out) {
  Etcdserverpb__DeleteRangeResponse *resp = arena_alloc(x->mem, sizeof *resp);
  etcdserverpb__delete_range_response__init(resp);
  mvcc_span span = span_of(&r->key, &r->range_end);
  kv_exec copying = *x;
  copying.copy = true; /* deleted versions leave the map as we go */
  collector c = {.x = &copying};
  int64_t deleted = 0;
  int rc = mvcc_delete_range(w, &span, r->prev_kv ? collect : NULL, &c, &deleted);
  if (rc) return kv_mvcc_error(rc);
  resp->deleted = deleted;
  resp->prev_kvs = c.kvs;
  resp->n_prev_kvs = c.n;
  resp->header = new_header(x->mem, mvcc_rev(w));
  *out = resp;
  return NULL;
}

/* ---------------------------------------------------------------- Txn */

typedef struct {
  const Etcdserverpb__Compare *cmp;
  bool ok;
  bool any;
} compare_state;

static bool compare_kv(const Etcdserverpb__Compare *c, const mvcc_kv *kv) {
  int result = 0;
  int64_t want = 0;
  switch (c->target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
      const uint8_t *v = NULL;
      size_t vlen = 0;
      if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE) v = c->value.data, vlen = c->value.len;
      result = bytes_cmp(kv->value, kv->value_len, v, vlen);
      break;
    }
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
      if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION) want = c->create_revision;
      result = cmp_i64(kv->create_rev, want);
      break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
      if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION) want = c->mod_revision;
      result = cmp_i64(kv->mod_rev, want);
      break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
      if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION) want = c->version;
      result = cmp_i64(kv->version, want);
      break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
      if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE) want = c->lease;
      result = cmp_i64(kv->lease, want);
      break;
    default: break;
  }
  switch (c->result) {
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL: return result == 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL: return result != 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER: return result > 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS: return result < 0;
    default: return true;
  }
}

static int compare_visit(void *arg, const mvcc_kv *kv) {
  compare_state *s = arg;
  s->any = true;
  if (!compare_kv(s->cmp, kv)) {
    s->ok = false;
    return 1;
  }
  return 0;
}

static bool apply_compare(mvcc_txn *t, const Etcdserverpb__Compare *c) {
  compare_state s = {.cmp = c, .ok = true};
  mvcc_span span = span_of(&c->key, &c->range_end);
  if (mvcc_range(t, &span, 0, 0, 0, compare_visit, &s, NULL) != MVCC_OK) return false;
  if (!s.any) {
    /* A missing key compares as all-zero, except by value: "no value" is
     * not the empty string, so a value compare on a missing key fails. */
    if (c->target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE) return false;
    mvcc_kv zero = {0};
    return compare_kv(c, &zero);
  }
  return s.ok;
}

/* The branch each (nested) transaction takes, decided up front against the
 * state before any write, in depth-first order: etcd's "txn path". */
typedef struct {
  bool *v;
  size_t n, cap;
} txn_path;

static void path_push(arena *a, txn_path *p, bool b) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 8;
    bool *v = arena_alloc(a, cap);
    if (p->n) memcpy(v, p->v, p->n);
    p->v = v;
    p->cap = cap;
  }
  p->v[p->n++] = b;
}

static void compare_to_path(arena *a, mvcc_txn *t, const Etcdserverpb__TxnRequest *r, txn_path *p) {
  bool ok = true;
  for (size_t i = 0; i < r->n_compare && ok; i++) ok = apply_compare(t, r->compare[i]);
  path_push(a, p, ok);
  Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
  size_t n = ok ? r->n_success : r->n_failure;
  for (size_t i = 0; i < n; i++)
    if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
      compare_to_path(a, t, ops[i]->request_txn, p);
}

/* Walks the chosen branches; `pos` is the index of r's own path entry.
 * Returns how many path entries r and its nested transactions used. */
typedef const rpc_error *(*op_check)(const kv_exec *x, mvcc_txn *t, const Etcdserverpb__RequestOp *op);

static const rpc_error *check_path(const kv_exec *x, mvcc_txn *t, const Etcdserverpb__TxnRequest *r,
                                   const txn_path *p, size_t *pos, op_check f) {
  bool ok = p->v[(*pos)++];
  Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
  size_t n = ok ? r->n_success : r->n_failure;
  for (size_t i = 0; i < n; i++) {
    const rpc_error *e;
    if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
      e = check_path(x, t, ops[i]->request_txn, p, pos, f);
    else
      e = f(x, t, ops[i]);
    if (e) return e;
  }
  return NULL;
}

static const rpc_error *check_put_op(const kv_exec *x, mvcc_txn *t, const Etcdserverpb__RequestOp *op) {
  if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) return NULL;
  return precheck_put(x, t, op->request_put);
}

static const rpc_error *check_range_op(const kv_exec *x, mvcc_txn *t, const Etcdserverpb__RequestOp *op) {
  (void)x;
  if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE) return NULL;
  int64_t rev = op->request_range->revision;
  if (rev == 0) return NULL;
  if (rev > mvcc_rev(t)) return &ERR_FUTURE_REV;
  if (rev < mvcc_compact_rev(t)) return &ERR_COMPACTED;
  return NULL;
}

static const rpc_error *run_path(const kv_exec *x, mvcc_txn *w, const Etcdserverpb__TxnRequest *r,
                                 const txn_path *p, size_t *pos, Etcdserverpb__TxnResponse **out) {
  Etcdserverpb__TxnResponse *resp = arena_alloc(x->mem, sizeof *resp);
  etcdserverpb__txn_response__init(resp);
  bool ok = p->v[(*pos)++];
  resp->succeeded = ok;
  Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
  size_t n = ok ? r->n_success : r->n_failure;
  resp->responses = arena_alloc(x->mem, (n ? n : 1) * sizeof *resp->responses);
  resp->n_responses = n;
  for (size_t i = 0; i < n; i++) {
    Etcdserverpb__ResponseOp *ro = arena_alloc(x->mem, sizeof *ro);
    etcdserverpb__response_op__init(ro);
    resp->responses[i] = ro;
    const Etcdserverpb__RequestOp *op = ops[i];
    const rpc_error *e = NULL;
    switch (op->request_case) {
      case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
        ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
        e = kv_range(x, w, op->request_range, &ro->response_range);
        break;
      case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
        ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
        e = kv_put(x, w, op->request_put, &ro->response_put);
        break;
      case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
        ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
        e = kv_delete(x, w, op->request_delete_range, &ro->response_delete_range);
        break;
      case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
        ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
        e = run_path(x, w, op->request_txn, p, pos, &ro->response_txn);
        break;
      default: break;
    }
    if (e) return e;
  }
  resp->header = new_header(x->mem, mvcc_rev(w));
  *out = resp;
  return NULL;
}

const rpc_error *kv_txn(const kv_exec *x, mvcc_txn *w, bool writable, const Etcdserverpb__TxnRequest *r,
                        Etcdserverpb__TxnResponse **out) {
  txn_path p = {0};
  compare_to_path(x->mem, w, r, &p);
  size_t pos = 0;
  const rpc_error *e;
  if (writable && (e = check_path(x, w, r, &p, &pos, check_put_op))) return e;
  pos = 0;
  if ((e = check_path(x, w, r, &p, &pos, check_range_op))) return e;
  pos = 0;
  e = run_path(x, w, r, &p, &pos, out);
  if (e && writable) {
    /* Every check passed, so a failure here is the store failing: etcd
     * panics rather than leave a half-applied transaction. */
    log_error("txn failed after its checks passed: %s", e->message);
  }
  return e;
}

/* ---------------------------------------------------------------- Compact */

const rpc_error *kv_compact(const kv_exec *x, mvcc_txn *w, const Etcdserverpb__CompactionRequest *r,
                            Etcdserverpb__CompactionResponse **out) {
  Etcdserverpb__CompactionResponse *resp = arena_alloc(x->mem, sizeof *resp);
  etcdserverpb__compaction_response__init(resp);
  int rc = mvcc_compact(w, r->revision);
  if (rc) return kv_mvcc_error(rc);
  resp->header = new_header(x->mem, mvcc_rev(w));
  *out = resp;
  return NULL;
}
