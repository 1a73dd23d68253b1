/* Writes: requests (revision brackets), put, delete_range.
 *
 * One change touches: `hist` (the change record with the value, appended:
 * revisions only grow, so it lands on the rightmost page), the key index
 * (one 17-byte entry, which becomes the key's newest: in `kidx` for a key
 * it lacks, else in the index's tail in memory, tail.c) and, when the
 * lease changes, `lease_keys`. The store state (revision, applied
 * index, live keys) is written once per commit, not per change.
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
 * {rev+1, sub}: to the index's tail if kidx holds the key (indexed), else
 * to kidx. c, if not NULL, is t's kidx cursor still where the key would
 * be (from latest_get): LMDB then finds the spot within the page it is on. */
static int record_change(mvcc_txn *t, MDB_cursor *c, const hist_rec *h, bool indexed) {
  int64_t main = t->st.rev + 1, sub = t->sub;
  uint8_t hk[HIST_KEY_LEN], dup[KIDX_LEN];
  hist_key_encode(hk, main, sub);
  MDB_val k = {HIST_KEY_LEN, hk}, d = {hist_rec_size(h->key_len, h->value_len), NULL};
  /* MDB_APPEND: revisions only grow, so every change lands at the end of
   * `hist` and pages fill completely. */
  int lrc = mdb_put(t->txn, t->s->dbi[DB_HIST], &k, &d, MDB_APPEND | MDB_RESERVE);
  if (lrc) return fail(t, lrc, "writing history");
  hist_rec_encode(d.mv_data, h);
  tail_count_change(t);
  if (indexed) {
    tail_append(t, h->key, h->key_len, main, sub, h->is_delete);
    t->sub++;
    return MVCC_OK;
  }
  kidx_encode(dup, main, sub, h->is_delete);
  MDB_val ik = {h->key_len, (void *)h->key}, id = {KIDX_LEN, dup};
  /* A key kidx lacks: its first entry there (MDB_APPENDDUP still has LMDB
   * check that nothing of the key sorts after it). */
  if (c) lrc = mdb_cursor_put(c, &ik, &id, MDB_APPENDDUP);
  else lrc = mdb_put(t->txn, t->s->dbi[DB_KIDX], &ik, &id, MDB_APPENDDUP);
  if (lrc == MDB_KEYEXIST) {
    log_error("mvcc: the key index holds a revision above the store's");
    lrc = MDB_CORRUPTED;
  }
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
static void copy_prev(mvcc_txn *t, const mvcc_kv *old, mvcc_kv *prev) {
  buf *b = &t->scratch;
  b->len = 0;
  buf_append(b, old->key, old->key_len);
  buf_append(b, old->value, old->value_len);
  *prev = *old;
  prev->key = b->data;
  prev->value = b->data + old->key_len;
}

int mvcc_put(mvcc_txn *t, const uint8_t *key, size_t key_len, const uint8_t *value,
             size_t value_len, int64_t lease, mvcc_kv *prev) {
  int rc = write_check(t);
  if (rc) return rc;
  rc = mvcc_check_key(key, key_len);
  if (rc) return rc;
  if (value_len && !value) return MVCC_EINVAL;
  /* The current version (one kidx descent, one hist lookup) gives the
   * create revision, the version number, the lease and *prev. */
  mvcc_kv old;
  bool indexed;
  rc = latest_get(t, key, key_len, &old, NULL, &indexed);
  bool existed = rc == MVCC_OK;
  if (rc && rc != MVCC_ENOTFOUND) return rc; /* nothing written yet: not poisoned */
  if (prev) {
    if (existed) copy_prev(t, &old, prev);
    else *prev = (mvcc_kv){0};
  }
  int64_t old_lease = existed ? old.lease : 0;

  bool implicit = !t->in_request;
  t->in_request = true;
  int64_t main = t->st.rev + 1;
  hist_rec h = {.key = key, .key_len = key_len, .create = existed ? old.create_rev : main,
                .version = existed ? old.version + 1 : 1, .lease = lease, .value = value,
                .value_len = value_len};
  rc = space_reserve(t, space_change_pages(t->s, key_len, value_len));
  if (rc) return rc;
  MDB_cursor *c = indexed ? NULL : t->cur[DB_KIDX]; /* where the key would be */
  rc = record_change(t, c, &h, indexed);
  if (!rc) rc = lease_move(t, key, key_len, old_lease, lease);
  if (rc) return rc;
  if (!existed) {
    t->st.live_keys++;
    t->state_dirty = true;
  }
  if (implicit) mvcc_rev_end(t);
  return MVCC_OK;
}

/* Deletes one live key: tombstone, index, lease. By key, not through the
 * walking cursor: the visitor ran in between and may have read through this
 * transaction. */
static int delete_one(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t lease) {
  hist_rec h = {.is_delete = true, .key = key, .key_len = key_len};
  int rc = space_reserve(t, space_change_pages(t->s, key_len, 0));
  if (!rc) rc = record_change(t, NULL, &h, true); /* found by walking kidx */
  if (!rc) rc = lease_move(t, key, key_len, lease, 0);
  if (!rc) {
    t->st.live_keys--;
    t->state_dirty = true;
  }
  return rc;
}

/* From the key under the kidx cursor on, the first whose newest entry (in
 * the tail, else in kidx) is not a delete, within the span; MDB_NOTFOUND if
 * none. */
static int next_live(mvcc_txn *t, MDB_cursor *c, const mvcc_span *sp, bool single, int lrc,
                     MDB_val *k, int64_t *main, int64_t *sub) {
  for (; lrc == 0; lrc = mdb_cursor_get(c, k, &(MDB_val){0}, MDB_NEXT_NODUP)) {
    if (!single && !sp->open_end && bytes_cmp(k->mv_data, k->mv_size, sp->end, sp->end_len) >= 0)
      return MDB_NOTFOUND;
    bool del;
    if (tail_lookup(t, k->mv_data, k->mv_size, INT64_MAX, 0, main, sub, &del)) {
      if (!del) return 0;
      if (single) return MDB_NOTFOUND;
      continue;
    }
    MDB_val d;
    lrc = mdb_cursor_get(c, k, &d, MDB_LAST_DUP);
    if (lrc) return lrc;
    if (kidx_decode(d.mv_data, d.mv_size, main, sub, &del) < 0) {
      mvcc_corrupt("kidx", k->mv_data, k->mv_size);
      return MDB_CORRUPTED;
    }
    if (!del) return 0;
    if (single) return MDB_NOTFOUND;
  }
  return lrc;
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

  bool implicit = !t->in_request;
  t->in_request = true;
  /* Keys stay in kidx (a delete adds a tombstone entry), so after each
   * deletion the walk re-seeks past a copy of the deleted key: the visitor
   * ran in between and may have moved the shared cursor. */
  uint8_t from[MVCC_MAX_KEY];
  size_t from_len = 0;
  int64_t n = 0;
  for (;;) {
    MDB_cursor *c;
    rc = mvcc_cursor(t, DB_KIDX, &c);
    if (rc) return rc;
    MDB_val k, d;
    int lrc;
    if (single) {
      k = (MDB_val){sp->key_len, (void *)sp->key};
      lrc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
    } else if (n == 0) {
      lrc = kidx_seek_ge(c, sp->key, sp->key_len, &k, &d);
    } else {
      k = (MDB_val){from_len, from};
      lrc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
      if (lrc == 0 && bytes_cmp(k.mv_data, k.mv_size, from, from_len) == 0)
        lrc = mdb_cursor_get(c, &k, &d, MDB_NEXT_NODUP);
    }
    int64_t main, sub;
    lrc = next_live(t, c, sp, single, lrc, &k, &main, &sub);
    if (lrc == MDB_NOTFOUND) break;
    /* Keys before this one may be gone already: never commit half a request. */
    if (lrc == MDB_CORRUPTED) return t->err = MVCC_EIO;
    if (lrc) return fail(t, lrc, "delete");
    from_len = k.mv_size;
    memcpy(from, k.mv_data, from_len);
    hist_rec h;
    rc = hist_get(t, main, sub, &h);
    if (!rc && (h.is_delete || bytes_cmp(h.key, h.key_len, from, from_len) != 0))
      rc = mvcc_corrupt("kidx", from, from_len);
    if (rc) return t->err = rc;
    if (on_deleted) {
      mvcc_kv kv = {h.key, h.key_len, h.value, h.value_len, h.create, main, h.version, h.lease};
      on_deleted(arg, &kv); /* a notification: every key in the span goes */
    }
    rc = delete_one(t, from, from_len, h.lease);
    if (rc) return rc;
    n++;
    if (single) break;
  }
  if (implicit) mvcc_rev_end(t);
  if (deleted) *deleted = n;
  return MVCC_OK;
}
