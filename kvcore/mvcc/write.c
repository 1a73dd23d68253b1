/* Writes: requests (revision brackets), put, delete_range.
 *
 * One change touches: `kv` (latest version, or its removal), `hist` (the
 * change record, appended: revisions only grow), `kidx` (one 17-byte dup)
 * and, when the lease changes, `lease_keys`. The store state (revision,
 * applied index) is written once per commit, not per change.
 */
#include <string.h>

#include "mvcc_int.h"

/* A failed LMDB write leaves the transaction half-applied: poison it, so
 * every later call fails the same way and commit aborts. */
static int fail(mvcc_txn *t, int lrc, const char *what) {
  t->err = mvcc_lmdb_err(lrc, what);
  return t->err;
}

static int write_check(mvcc_txn *t) {
  if (!t || !t->write) return MVCC_EINVAL;
  return t->err;
}

void mvcc_rev_begin(mvcc_txn *t) {
  if (!t || !t->write) return;
  t->in_request = true;
}

int64_t mvcc_rev_end(mvcc_txn *t) {
  if (!t) return 0;
  if (!t->write) return t->st.rev;
  if (t->sub > 0) {
    t->st.rev++;
    t->state_dirty = true;
  }
  t->sub = 0;
  t->in_request = false;
  return t->st.rev;
}

/* Writes the history record and the key-index entry of one change at
 * {rev+1, sub}. */
static int record_change(mvcc_txn *t, const hist_rec *h) {
  int64_t main = t->st.rev + 1, sub = t->sub;
  uint8_t hk[HIST_KEY_LEN], dup[KIDX_LEN];
  hist_key_encode(hk, main, sub);
  MDB_val k = {HIST_KEY_LEN, hk}, d = {hist_rec_size(h->key_len, h->value_len), NULL};
  /* MDB_APPEND: revisions only grow, so every change lands at the end of
   * `hist` and pages fill completely. */
  int lrc = mdb_put(t->txn, t->s->dbi[DB_HIST], &k, &d, MDB_APPEND | MDB_RESERVE);
  if (lrc) return fail(t, lrc, "writing history");
  hist_rec_encode(d.mv_data, h);
  kidx_encode(dup, main, sub, h->is_delete);
  MDB_val ik = {h->key_len, (void *)h->key}, id = {KIDX_LEN, dup};
  lrc = mdb_put(t->txn, t->s->dbi[DB_KIDX], &ik, &id, 0);
  if (lrc) return fail(t, lrc, "writing the key index");
  t->sub++;
  return MVCC_OK;
}

/* Moves key between leases in the lease index (0: none). */
static int lease_move(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t from, int64_t to) {
  if (from == to) return MVCC_OK;
  MDB_dbi dbi = t->s->dbi[DB_LEASE_KEYS];
  uint8_t lk[8];
  MDB_val k = {8, lk}, d = {key_len, (void *)key};
  if (from) {
    put_be64(lk, (uint64_t)from);
    int lrc = mdb_del(t->txn, dbi, &k, &d);
    if (lrc == MDB_NOTFOUND)
      log_error("mvcc: lease index lacked a key of lease %lld; continuing", (long long)from);
    else if (lrc)
      return fail(t, lrc, "updating the lease index");
  }
  if (to) {
    put_be64(lk, (uint64_t)to);
    int lrc = mdb_put(t->txn, dbi, &k, &d, MDB_NODUPDATA);
    if (lrc && lrc != MDB_KEYEXIST) return fail(t, lrc, "updating the lease index");
  }
  return MVCC_OK;
}

/* Copies a version into the transaction's scratch buffer, so *prev
 * survives the write that replaces it. */
static void copy_prev(mvcc_txn *t, const uint8_t *key, size_t key_len, const kv_rec *r, mvcc_kv *prev) {
  buf *b = &t->scratch;
  b->len = 0;
  buf_append(b, key, key_len);
  buf_append(b, r->value, r->value_len);
  *prev = (mvcc_kv){b->data, key_len, b->data + key_len, r->value_len, r->create, r->mod,
                    r->version, r->lease};
}

int mvcc_put(mvcc_txn *t, const uint8_t *key, size_t key_len, const uint8_t *value,
             size_t value_len, int64_t lease, mvcc_kv *prev) {
  int rc = write_check(t);
  if (rc) return rc;
  rc = mvcc_check_key(key, key_len);
  if (rc) return rc;
  if (value_len && !value) return MVCC_EINVAL;
  /* One cursor finds the old version and, for an existing key, overwrites
   * it in place (MDB_CURRENT): one descent of `kv`, not two. */
  MDB_cursor *c;
  rc = mvcc_cursor(t, DB_KV, &c);
  if (rc) return rc;
  MDB_val k = {key_len, (void *)key}, d;
  kv_rec old;
  int lrc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
  bool existed = lrc == 0;
  if (lrc && lrc != MDB_NOTFOUND) return fail(t, lrc, "put");
  if (existed && kv_rec_decode(d.mv_data, d.mv_size, &old) < 0) return mvcc_corrupt("kv", key, key_len);
  if (prev) {
    if (existed) copy_prev(t, key, key_len, &old, prev);
    else *prev = (mvcc_kv){0};
  }

  bool implicit = !t->in_request;
  t->in_request = true;
  int64_t main = t->st.rev + 1;
  kv_rec r = {.create = existed ? old.create : main, .mod = main, .mod_sub = t->sub,
              .version = existed ? old.version + 1 : 1, .lease = lease, .value = value,
              .value_len = value_len};
  int64_t old_lease = existed ? old.lease : 0;
  d.mv_size = kv_rec_size(value_len);
  d.mv_data = NULL;
  k.mv_data = (void *)key;
  k.mv_size = key_len;
  lrc = mdb_cursor_put(c, &k, &d, MDB_RESERVE | (existed ? MDB_CURRENT : 0));
  if (lrc) return fail(t, lrc, "put");
  kv_rec_encode(d.mv_data, &r);
  hist_rec h = {.key = key, .key_len = key_len, .create = r.create, .version = r.version,
                .lease = lease, .value = value, .value_len = value_len};
  rc = record_change(t, &h);
  if (!rc) rc = lease_move(t, key, key_len, old_lease, lease);
  if (rc) return rc;
  if (implicit) mvcc_rev_end(t);
  return MVCC_OK;
}

/* Deletes one live key: tombstone, index, lease. By key, not through the
 * walking cursor: the visitor ran in between and may have read through this
 * transaction. */
static int delete_one(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t lease) {
  MDB_val k = {key_len, (void *)key};
  int lrc = mdb_del(t->txn, t->s->dbi[DB_KV], &k, NULL);
  if (lrc) return fail(t, lrc, "delete");
  hist_rec h = {.is_delete = true, .key = key, .key_len = key_len};
  int rc = record_change(t, &h);
  if (!rc) rc = lease_move(t, key, key_len, lease, 0);
  return rc;
}

int mvcc_delete_range(mvcc_txn *t, const mvcc_span *sp, mvcc_visit_fn on_deleted, void *arg,
                      int64_t *deleted) {
  int rc = write_check(t);
  if (rc) return rc;
  if (!sp) return MVCC_EINVAL;
  bool single = !sp->end && !sp->open_end;
  if (single) rc = mvcc_check_key(sp->key, sp->key_len);
  else if ((sp->key_len && !sp->key) || (!sp->open_end && sp->end_len && !sp->end)) rc = MVCC_EINVAL;
  if (rc) return rc;
  if (deleted) *deleted = 0;
  if (!sp->open_end && sp->end && bytes_cmp(sp->end, sp->end_len, sp->key, sp->key_len) <= 0)
    return MVCC_OK;

  MDB_cursor *c;
  rc = mvcc_cursor(t, DB_KV, &c);
  if (rc) return rc;
  bool implicit = !t->in_request;
  t->in_request = true;
  /* Re-seek after each deletion from a copy of the deleted key: no cursor
   * state is trusted across a delete. */
  uint8_t from[MVCC_MAX_KEY];
  size_t from_len = sp->key_len > MVCC_MAX_KEY ? MVCC_MAX_KEY : sp->key_len;
  if (from_len) memcpy(from, sp->key, from_len);
  int64_t n = 0;
  for (;;) {
    MDB_val k = {from_len, from}, d;
    int lrc;
    if (single) lrc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
    else if (from_len == 0) lrc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
    else lrc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    /* A start key longer than any stored key was cut: skip what sorts below it. */
    while (lrc == 0 && !single && n == 0 && bytes_cmp(k.mv_data, k.mv_size, sp->key, sp->key_len) < 0)
      lrc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    if (lrc == MDB_NOTFOUND) break;
    if (lrc) return fail(t, lrc, "delete");
    if (!single && !sp->open_end && bytes_cmp(k.mv_data, k.mv_size, sp->end, sp->end_len) >= 0) break;
    kv_rec r;
    if (kv_rec_decode(d.mv_data, d.mv_size, &r) < 0) {
      /* Keys before this one may be gone already: never commit half a request. */
      t->err = mvcc_corrupt("kv", k.mv_data, k.mv_size);
      return t->err;
    }
    if (on_deleted) {
      mvcc_kv kv = {k.mv_data, k.mv_size, r.value, r.value_len, r.create, r.mod, r.version, r.lease};
      on_deleted(arg, &kv); /* a notification: every key in the span goes */
    }
    from_len = k.mv_size;
    memcpy(from, k.mv_data, from_len);
    rc = delete_one(t, from, from_len, r.lease);
    if (rc) return rc;
    n++;
    if (single) break;
  }
  if (implicit) mvcc_rev_end(t);
  if (deleted) *deleted = n;
  return MVCC_OK;
}
