/* Request validation, exactly as etcd's gRPC layer does it before a request
 * reaches consensus: empty keys, conflicting put options, the txn operation
 * limit, and the rule that one transaction may not write a key twice. */
#include "errors.h"
#include "kv.h"

#include <stdlib.h>
#include <string.h>

const rpc_error *kv_check_range(const Etcdserverpb__RangeRequest *r) {
  if (r->key.len == 0) return &ERR_EMPTY_KEY;
  return NULL;
}

const rpc_error *kv_check_put(const Etcdserverpb__PutRequest *r) {
  if (r->key.len == 0) return &ERR_EMPTY_KEY;
  if (r->ignore_value && r->value.len != 0) return &ERR_VALUE_PROVIDED;
  if (r->ignore_lease && r->lease != 0) return &ERR_LEASE_PROVIDED;
  if (r->key.len > MVCC_MAX_KEY) return &ERR_KEY_TOO_LONG;
  return NULL;
}

const rpc_error *kv_check_delete(const Etcdserverpb__DeleteRangeRequest *r) {
  if (r->key.len == 0) return &ERR_EMPTY_KEY;
  return NULL;
}

static const rpc_error *check_op(const Etcdserverpb__RequestOp *op, size_t max_txn_ops) {
  switch (op->request_case) {
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE: return kv_check_range(op->request_range);
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT: return kv_check_put(op->request_put);
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE: return kv_check_delete(op->request_delete_range);
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: return kv_check_txn(op->request_txn, max_txn_ops);
    default: return &ERR_KEY_NOT_FOUND; /* an empty op: etcd's answer */
  }
}

static const rpc_error *check_ops_limits(const Etcdserverpb__TxnRequest *r, size_t max_txn_ops) {
  size_t opc = r->n_compare;
  if (opc < r->n_success) opc = r->n_success;
  if (opc < r->n_failure) opc = r->n_failure;
  if (opc > max_txn_ops) return &ERR_TOO_MANY_OPS;
  for (size_t i = 0; i < r->n_compare; i++)
    if (r->compare[i]->key.len == 0) return &ERR_EMPTY_KEY;
  /* etcd passes the remaining budget down to nested transactions. */
  size_t rest = max_txn_ops - opc;
  for (size_t i = 0; i < r->n_success; i++) {
    const rpc_error *e = check_op(r->success[i], rest);
    if (e) return e;
  }
  for (size_t i = 0; i < r->n_failure; i++) {
    const rpc_error *e = check_op(r->failure[i], rest);
    if (e) return e;
  }
  return NULL;
}

/* ---- the duplicate-key rule ----
 * Within one branch of a transaction (including the branches of nested
 * transactions that could run together), no key may be put twice, and no
 * key may be both put and deleted. Then/else branches of a nested txn are
 * exclusive, so the same key may be put in both. Intervals compare as
 * etcd's: an empty end means "to infinity"; a point is [k, k\0). */

typedef struct {
  const ProtobufCBinaryData *begin, *end; /* end NULL: a point */
} interval;

typedef struct {
  const ProtobufCBinaryData **puts;
  size_t n_puts, cap_puts;
  interval *dels;
  size_t n_dels, cap_dels;
} key_sets;

static void sets_free(key_sets *s) {
  free(s->puts);
  free(s->dels);
  memset(s, 0, sizeof *s);
}

static int bcmp_bin(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
  return bytes_cmp(a->data, a->len, b->data, b->len);
}

static bool has_put(const key_sets *s, const ProtobufCBinaryData *k) {
  for (size_t i = 0; i < s->n_puts; i++)
    if (bcmp_bin(s->puts[i], k) == 0) return true;
  return false;
}

static void add_put(key_sets *s, const ProtobufCBinaryData *k) {
  if (s->n_puts == s->cap_puts) {
    s->cap_puts = s->cap_puts ? 2 * s->cap_puts : 8;
    s->puts = xrealloc(s->puts, s->cap_puts * sizeof *s->puts);
  }
  s->puts[s->n_puts++] = k;
}

static void add_del(key_sets *s, interval iv) {
  if (s->n_dels == s->cap_dels) {
    s->cap_dels = s->cap_dels ? 2 * s->cap_dels : 8;
    s->dels = xrealloc(s->dels, s->cap_dels * sizeof *s->dels);
  }
  s->dels[s->n_dels++] = iv;
}

static bool dels_contain(const key_sets *s, const ProtobufCBinaryData *k) {
  for (size_t i = 0; i < s->n_dels; i++) {
    const interval *iv = &s->dels[i];
    if (!iv->end) {
      if (bcmp_bin(iv->begin, k) == 0) return true;
      continue;
    }
    if (bcmp_bin(iv->begin, k) > 0) continue;
    if (iv->end->len == 0 || bcmp_bin(k, iv->end) < 0) return true;
  }
  return false;
}

static const rpc_error *check_intervals(Etcdserverpb__RequestOp **ops, size_t n, key_sets *out) {
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < n; i++) {
    if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE) continue;
    const Etcdserverpb__DeleteRangeRequest *d = ops[i]->request_delete_range;
    add_del(out, (interval){&d->key, d->range_end.len ? &d->range_end : NULL});
  }
  for (size_t i = 0; i < n; i++) {
    if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) continue;
    const Etcdserverpb__TxnRequest *t = ops[i]->request_txn;
    key_sets then_s, else_s;
    const rpc_error *e = check_intervals(t->success, t->n_success, &then_s);
    if (e) return sets_free(&then_s), e;
    e = check_intervals(t->failure, t->n_failure, &else_s);
    if (e) return sets_free(&then_s), sets_free(&else_s), e;
    for (size_t k = 0; k < then_s.n_puts && !e; k++) {
      if (has_put(out, then_s.puts[k]) || dels_contain(out, then_s.puts[k])) e = &ERR_DUPLICATE_KEY;
      else add_put(out, then_s.puts[k]);
    }
    for (size_t k = 0; k < else_s.n_puts && !e; k++) {
      if (has_put(out, else_s.puts[k]) && !has_put(&then_s, else_s.puts[k])) e = &ERR_DUPLICATE_KEY;
      else if (dels_contain(out, else_s.puts[k])) e = &ERR_DUPLICATE_KEY;
      else add_put(out, else_s.puts[k]);
    }
    for (size_t k = 0; k < then_s.n_dels; k++) add_del(out, then_s.dels[k]);
    for (size_t k = 0; k < else_s.n_dels; k++) add_del(out, else_s.dels[k]);
    sets_free(&then_s);
    sets_free(&else_s);
    if (e) return e;
  }
  for (size_t i = 0; i < n; i++) {
    if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) continue;
    const ProtobufCBinaryData *k = &ops[i]->request_put->key;
    if (has_put(out, k) || dels_contain(out, k)) return &ERR_DUPLICATE_KEY;
    add_put(out, k);
  }
  return NULL;
}

const rpc_error *kv_check_txn(const Etcdserverpb__TxnRequest *r, size_t max_txn_ops) {
  const rpc_error *e = check_ops_limits(r, max_txn_ops);
  if (e) return e;
  key_sets s;
  e = check_intervals(r->success, r->n_success, &s);
  sets_free(&s);
  if (e) return e;
  e = check_intervals(r->failure, r->n_failure, &s);
  sets_free(&s);
  return e;
}

bool kv_txn_is_readonly(const Etcdserverpb__TxnRequest *r) {
  Etcdserverpb__RequestOp **branches[2] = {r->success, r->failure};
  size_t counts[2] = {r->n_success, r->n_failure};
  for (int b = 0; b < 2; b++) {
    for (size_t i = 0; i < counts[b]; i++) {
      const Etcdserverpb__RequestOp *op = branches[b][i];
      if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE) continue;
      if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN && kv_txn_is_readonly(op->request_txn))
        continue;
      return false;
    }
  }
  return true;
}

bool kv_txn_is_serializable(const Etcdserverpb__TxnRequest *r) {
  Etcdserverpb__RequestOp **branches[2] = {r->success, r->failure};
  size_t counts[2] = {r->n_success, r->n_failure};
  for (int b = 0; b < 2; b++) {
    for (size_t i = 0; i < counts[b]; i++) {
      const Etcdserverpb__RequestOp *op = branches[b][i];
      if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE && op->request_range->serializable)
        continue;
      if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN && kv_txn_is_serializable(op->request_txn))
        continue;
      return false;
    }
  }
  return true;
}
