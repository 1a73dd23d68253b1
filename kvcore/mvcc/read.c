/* Reads: range, changes, get_before, lease_keys, hash.
 *
 * Every read of keys goes through the key index: keys are walked in
 * `kidx`, and per key the newest entry at or below the revision read (at
 * the current revision, simply the newest) comes from the index's tail
 * (tail.c) if it has one there, else from `kidx`; skipped if it is a
 * delete, its value looked up in `hist`. */
#include <string.h>

#include "mvcc_int.h"

/* ---------------------------------------------------------------- spans */

static bool span_single(const mvcc_span *sp) { return !sp->end && !sp->open_end; }

static int span_check(const mvcc_span *sp) {
  if (span_single(sp)) return mvcc_check_key(sp->key, sp->key_len);
  if ((sp->key_len && !sp->key) || (!sp->open_end && sp->end_len && !sp->end)) return MVCC_EINVAL;
  return MVCC_OK;
}

static bool span_empty(const mvcc_span *sp) {
  return !sp->open_end && sp->end && bytes_cmp(sp->end, sp->end_len, sp->key, sp->key_len) <= 0;
}

/* Every key there is: etcd's "get --prefix ''" arrives as ["\0", open). */
static bool span_everything(const mvcc_span *sp) {
  return sp->open_end && (sp->key_len == 0 || (sp->key_len == 1 && sp->key[0] == 0));
}

/* Walks the keys of a span in either direction over `kidx` (dups per key:
 * move by key). Span bounds may be longer than any stored key; LMDB is only
 * ever asked about at most MVCC_MAX_KEY bytes. */
typedef struct {
  MDB_cursor *c;
  const mvcc_span *sp;
  bool reverse;
  MDB_cursor_op next, prev;
} walker;

int kidx_seek_ge(MDB_cursor *c, const uint8_t *target, size_t n, MDB_val *k, MDB_val *d) {
  if (n == 0) return mdb_cursor_get(c, k, d, MDB_FIRST);
  k->mv_data = (void *)target;
  k->mv_size = n > MVCC_MAX_KEY ? MVCC_MAX_KEY : n;
  int rc = mdb_cursor_get(c, k, d, MDB_SET_RANGE);
  /* A target longer than any stored key was cut: skip what sorts below it. */
  while (rc == 0 && bytes_cmp(k->mv_data, k->mv_size, target, n) < 0)
    rc = mdb_cursor_get(c, k, d, MDB_NEXT_NODUP);
  return rc;
}

static int walk_check(walker *w, int rc, const MDB_val *k) {
  if (rc) return rc;
  const mvcc_span *sp = w->sp;
  if (w->reverse) return bytes_cmp(k->mv_data, k->mv_size, sp->key, sp->key_len) >= 0 ? 0 : MDB_NOTFOUND;
  if (sp->open_end) return 0;
  return bytes_cmp(k->mv_data, k->mv_size, sp->end, sp->end_len) < 0 ? 0 : MDB_NOTFOUND;
}

static int walk_first(walker *w, MDB_val *k, MDB_val *d) {
  const mvcc_span *sp = w->sp;
  int rc;
  if (!w->reverse) {
    rc = kidx_seek_ge(w->c, sp->key, sp->key_len, k, d);
  } else if (sp->open_end) {
    rc = mdb_cursor_get(w->c, k, d, MDB_LAST);
  } else {
    rc = kidx_seek_ge(w->c, sp->end, sp->end_len, k, d);
    if (rc == 0) rc = mdb_cursor_get(w->c, k, d, w->prev);
    else if (rc == MDB_NOTFOUND) rc = mdb_cursor_get(w->c, k, d, MDB_LAST);
  }
  return walk_check(w, rc, k);
}

static int walk_next(walker *w, MDB_val *k, MDB_val *d) {
  return walk_check(w, mdb_cursor_get(w->c, k, d, w->reverse ? w->prev : w->next), k);
}

/* ---------------------------------------------------------------- visiting */

typedef struct {
  mvcc_visit_fn fn;
  void *arg;
  int64_t limit;
  bool counting; /* the caller wants the full count */
  int64_t n;     /* keys found so far */
  bool stopped;  /* fn asked to stop */
} visit_state;

static bool will_visit(const visit_state *v) {
  return v->fn && !v->stopped && (v->limit == 0 || v->n < v->limit);
}
static bool wants_more(const visit_state *v) { return v->counting || will_visit(v); }

static void visit(visit_state *v, const mvcc_kv *kv) {
  if (v->fn(v->arg, kv) != 0) v->stopped = true;
}

int kidx_version_at(MDB_cursor *c, MDB_val *key, int64_t rev, int64_t *main, int64_t *sub,
                    bool *is_delete) {
  MDB_val k = *key, d;
  int rc = mdb_cursor_get(c, &k, &d, MDB_LAST_DUP);
  if (rc) return rc;
  if (kidx_decode(d.mv_data, d.mv_size, main, sub, is_delete) < 0) return MDB_CORRUPTED;
  if (*main <= rev) return 0; /* the common case: nothing newer than rev */
  uint8_t probe[KIDX_LEN];
  kidx_encode(probe, rev + 1, 0, false); /* the first entry above rev */
  k = *key;
  d.mv_data = probe;
  d.mv_size = KIDX_LEN;
  rc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
  if (rc == 0) rc = mdb_cursor_get(c, &k, &d, MDB_PREV_DUP);
  if (rc) return rc; /* MDB_NOTFOUND: every version is newer than rev */
  if (kidx_decode(d.mv_data, d.mv_size, main, sub, is_delete) < 0) return MDB_CORRUPTED;
  return 0;
}

int hist_get(mvcc_txn *t, int64_t main, int64_t sub, hist_rec *out) {
  uint8_t hk[HIST_KEY_LEN];
  hist_key_encode(hk, main, sub);
  MDB_val k = {HIST_KEY_LEN, hk}, d;
  int rc = mdb_get(t->txn, t->s->dbi[DB_HIST], &k, &d);
  if (rc == MDB_NOTFOUND) {
    log_error("mvcc: the key index names revision {%lld, %lld}, which history lacks",
              (long long)main, (long long)sub);
    return MVCC_EIO;
  }
  if (rc) return mvcc_lmdb_err(rc, "reading history");
  if (hist_rec_decode(d.mv_data, d.mv_size, out) < 0) return mvcc_corrupt("hist", hk, HIST_KEY_LEN);
  return MVCC_OK;
}

int latest_get(mvcc_txn *t, const uint8_t *key, size_t key_len, mvcc_kv *kv, int64_t *sub_out,
               bool *indexed) {
  int64_t main, sub;
  bool del;
  if (indexed) *indexed = false;
  if (tail_lookup(t, key, key_len, INT64_MAX, 0, &main, &sub, &del)) {
    if (indexed) *indexed = true; /* the tail names only keys kidx holds */
  } else {
    MDB_cursor *c;
    int rc = mvcc_cursor(t, DB_KIDX, &c);
    if (rc) return rc;
    MDB_val k = {key_len, (void *)key}, d;
    int lrc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
    if (lrc == 0) {
      if (indexed) *indexed = true;
      lrc = mdb_cursor_get(c, &k, &d, MDB_LAST_DUP);
    }
    if (lrc) return lrc == MDB_NOTFOUND ? MVCC_ENOTFOUND : mvcc_lmdb_err(lrc, "reading the key index");
    if (kidx_decode(d.mv_data, d.mv_size, &main, &sub, &del) < 0) return mvcc_corrupt("kidx", key, key_len);
  }
  if (del) return MVCC_ENOTFOUND;
  int rc;
  hist_rec h;
  rc = hist_get(t, main, sub, &h);
  if (rc) return rc;
  if (h.is_delete || bytes_cmp(h.key, h.key_len, key, key_len) != 0)
    return mvcc_corrupt("kidx", key, key_len);
  *kv = (mvcc_kv){h.key, h.key_len, h.value, h.value_len, h.create, main, h.version, h.lease};
  if (sub_out) *sub_out = sub;
  return MVCC_OK;
}

/* The key under the kidx cursor, as of rev: counted and visited if it
 * existed then. */
static int past_key(mvcc_txn *t, MDB_cursor *c, MDB_val *k, int64_t rev, visit_state *v) {
  int64_t main, sub;
  bool del;
  int rc = tail_lookup(t, k->mv_data, k->mv_size, rev + 1, 0, &main, &sub, &del)
               ? 0
               : kidx_version_at(c, k, rev, &main, &sub, &del);
  if (rc == MDB_NOTFOUND) return MVCC_OK;
  if (rc == MDB_CORRUPTED) return mvcc_corrupt("kidx", k->mv_data, k->mv_size);
  if (rc) return mvcc_lmdb_err(rc, "range");
  if (del) return MVCC_OK;
  if (will_visit(v)) {
    hist_rec h;
    rc = hist_get(t, main, sub, &h);
    if (rc) return rc;
    if (h.is_delete || bytes_cmp(h.key, h.key_len, k->mv_data, k->mv_size) != 0)
      return mvcc_corrupt("kidx", k->mv_data, k->mv_size);
    mvcc_kv kv = {h.key, h.key_len, h.value, h.value_len, h.create, main, h.version, h.lease};
    visit(v, &kv);
  }
  v->n++;
  return MVCC_OK;
}

/* Per key, the newest kidx entry at or below rev. */
static int range_at(mvcc_txn *t, const mvcc_span *sp, int64_t rev, unsigned flags, visit_state *v) {
  walker w = {.sp = sp, .reverse = flags & MVCC_RANGE_REVERSE, .next = MDB_NEXT_NODUP,
              .prev = MDB_PREV_NODUP};
  int rc = mvcc_cursor(t, DB_KIDX, &w.c);
  if (rc) return rc;
  MDB_val k, d;
  if (span_single(sp)) {
    k.mv_data = (void *)sp->key;
    k.mv_size = sp->key_len;
    int lrc = mdb_cursor_get(w.c, &k, &d, MDB_SET_KEY);
    if (lrc == MDB_NOTFOUND) return MVCC_OK;
    if (lrc) return mvcc_lmdb_err(lrc, "range");
    return past_key(t, w.c, &k, rev, v);
  }
  int lrc = wants_more(v) ? walk_first(&w, &k, &d) : MDB_NOTFOUND;
  for (; lrc == 0; lrc = walk_next(&w, &k, &d)) {
    rc = past_key(t, w.c, &k, rev, v);
    if (rc) return rc;
    if (!wants_more(v)) break;
  }
  if (lrc && lrc != MDB_NOTFOUND) return mvcc_lmdb_err(lrc, "range");
  return MVCC_OK;
}

int mvcc_range(mvcc_txn *t, const mvcc_span *sp, int64_t rev, int64_t limit, unsigned flags,
               mvcc_visit_fn fn, void *arg, int64_t *count) {
  if (!t || !sp || limit < 0 || (flags & ~(unsigned)MVCC_RANGE_REVERSE)) return MVCC_EINVAL;
  if (t->err) return t->err;
  int rc = span_check(sp);
  if (rc) return rc;
  int64_t cur = txn_rev(t);
  if (rev > cur) return MVCC_EFUTURE;
  if (rev <= 0) rev = cur;
  if (rev < t->st.compact_rev) return MVCC_ECOMPACTED;
  if (count) *count = 0;
  if (span_empty(sp)) return MVCC_OK;
  visit_state v = {.fn = fn, .arg = arg, .limit = limit, .counting = count != NULL};
  if (!wants_more(&v)) return MVCC_OK;
  /* The whole keyspace now: the live-key count in the state is O(1); walk
   * only for what is visited. */
  int64_t total = -1;
  if (v.counting && rev == cur && span_everything(sp)) {
    total = t->st.live_keys;
    v.counting = false;
  }
  rc = wants_more(&v) ? range_at(t, sp, rev, flags, &v) : MVCC_OK;
  if (!rc && count) *count = total >= 0 ? total : v.n;
  return rc;
}

/* ---------------------------------------------------------------- changes */

int mvcc_changes(mvcc_txn *t, int64_t from, int64_t to, mvcc_change_fn fn, void *arg) {
  if (!t || !fn) return MVCC_EINVAL;
  if (t->err) return t->err;
  if (from < t->st.compact_rev) return MVCC_ECOMPACTED;
  int64_t cur = txn_rev(t);
  if (to <= 0 || to > cur) to = cur;
  if (from < 1) from = 1;
  MDB_cursor *c;
  int rc = mvcc_cursor(t, DB_HIST, &c);
  if (rc) return rc;
  uint8_t hk[HIST_KEY_LEN];
  hist_key_encode(hk, from, 0);
  MDB_val k = {HIST_KEY_LEN, hk}, d;
  int lrc;
  for (lrc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); lrc == 0;
       lrc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
    mvcc_change ch = {0};
    hist_rec h;
    if (hist_key_decode(k.mv_data, k.mv_size, &ch.main, &ch.sub) < 0)
      return mvcc_corrupt("hist key", k.mv_data, k.mv_size);
    if (ch.main > to) break;
    if (hist_rec_decode(d.mv_data, d.mv_size, &h) < 0) return mvcc_corrupt("hist", k.mv_data, k.mv_size);
    /* At the compact revision itself, physical compaction may or may not
     * have removed what it drops: show exactly what it keeps. */
    if (ch.main <= t->st.compact_rev) {
      bool kept;
      rc = change_kept(t, h.key, h.key_len, ch.main, ch.sub, h.is_delete, t->st.compact_rev, &kept);
      if (rc) return rc;
      if (!kept) continue;
    }
    ch.is_delete = h.is_delete;
    ch.kv.key = h.key;
    ch.kv.key_len = h.key_len;
    ch.kv.mod_rev = ch.main;
    if (!h.is_delete) {
      ch.kv.value = h.value;
      ch.kv.value_len = h.value_len;
      ch.kv.create_rev = h.create;
      ch.kv.version = h.version;
      ch.kv.lease = h.lease;
    }
    if (fn(arg, &ch) != 0) return MVCC_OK;
  }
  if (lrc && lrc != MDB_NOTFOUND) return mvcc_lmdb_err(lrc, "changes");
  return MVCC_OK;
}

/* ---------------------------------------------------------------- get_before */

/* The version an index entry of key names: ENOTFOUND for a delete. */
static int version_of(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t main, int64_t sub, bool del,
                      mvcc_kv *out) {
  if (del) return MVCC_ENOTFOUND;
  hist_rec h;
  int rc = hist_get(t, main, sub, &h);
  if (rc) return rc;
  if (h.is_delete || bytes_cmp(h.key, h.key_len, key, key_len) != 0)
    return mvcc_corrupt("kidx", key, key_len);
  *out = (mvcc_kv){h.key, h.key_len, h.value, h.value_len, h.create, main, h.version, h.lease};
  return MVCC_OK;
}

int mvcc_get_before(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t main, int64_t sub,
                    mvcc_kv *out) {
  if (!t || !out || main < 1 || sub < 0) return MVCC_EINVAL;
  if (t->err) return t->err;
  int rc = mvcc_check_key(key, key_len);
  if (rc) return rc;
  /* The answer is a version below main; compaction keeps those intact only
   * while main is above the compact revision. */
  if (main <= t->st.compact_rev) return MVCC_ECOMPACTED;
  if (main > txn_rev(t) + 1) return MVCC_EFUTURE;
  int64_t vm, vs;
  bool del;
  if (tail_lookup(t, key, key_len, main, sub, &vm, &vs, &del)) return version_of(t, key, key_len, vm, vs, del, out);
  MDB_cursor *c;
  rc = mvcc_cursor(t, DB_KIDX, &c);
  if (rc) return rc;
  MDB_val k = {key_len, (void *)key}, d;
  int lrc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
  if (lrc) return lrc == MDB_NOTFOUND ? MVCC_ENOTFOUND : mvcc_lmdb_err(lrc, "get_before");
  uint8_t probe[KIDX_LEN];
  kidx_encode(probe, main, sub, false);
  d.mv_data = probe;
  d.mv_size = KIDX_LEN;
  lrc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
  if (lrc == 0) {
    lrc = mdb_cursor_get(c, &k, &d, MDB_PREV_DUP);
  } else if (lrc == MDB_NOTFOUND) { /* every version is older: the newest one */
    k.mv_data = (void *)key;
    k.mv_size = key_len;
    lrc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
    if (lrc == 0) lrc = mdb_cursor_get(c, &k, &d, MDB_LAST_DUP);
  }
  if (lrc) return lrc == MDB_NOTFOUND ? MVCC_ENOTFOUND : mvcc_lmdb_err(lrc, "get_before");
  if (kidx_decode(d.mv_data, d.mv_size, &vm, &vs, &del) < 0) return mvcc_corrupt("kidx", key, key_len);
  return version_of(t, key, key_len, vm, vs, del, out);
}

/* ---------------------------------------------------------------- lease_keys */

int mvcc_lease_keys(mvcc_txn *t, int64_t lease, mvcc_visit_fn fn, void *arg) {
  if (!t || !fn) return MVCC_EINVAL;
  if (t->err) return t->err;
  uint8_t lk[8];
  put_be64(lk, (uint64_t)lease);
  uint8_t last[MVCC_MAX_KEY];
  size_t last_len = 0;
  for (;;) {
    /* Re-seek after every visit, past the key visited last, so fn may
     * delete keys (revoking a lease does exactly that). */
    MDB_cursor *c;
    int rc = mvcc_cursor(t, DB_LEASE_KEYS, &c);
    if (rc) return rc;
    MDB_val k = {8, lk}, d;
    int lrc;
    if (last_len == 0) {
      lrc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
    } else {
      d.mv_data = last;
      d.mv_size = last_len;
      lrc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
      if (lrc == 0 && bytes_cmp(d.mv_data, d.mv_size, last, last_len) == 0)
        lrc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP);
    }
    if (lrc == MDB_NOTFOUND) return MVCC_OK;
    if (lrc) return mvcc_lmdb_err(lrc, "lease_keys");
    if (d.mv_size < 1 || d.mv_size > MVCC_MAX_KEY) return mvcc_corrupt("lease_keys", lk, 8);
    memcpy(last, d.mv_data, d.mv_size);
    last_len = d.mv_size;
    mvcc_kv kv;
    rc = latest_get(t, last, last_len, &kv, NULL, NULL);
    if (rc == MVCC_ENOTFOUND || (rc == MVCC_OK && kv.lease != lease)) {
      log_error("mvcc: lease %lld lists a key that is not attached to it", (long long)lease);
      return MVCC_EIO;
    }
    if (rc) return rc;
    if (fn(arg, &kv) != 0) return MVCC_OK;
  }
}

/* ---------------------------------------------------------------- hash */

int mvcc_hash_kv(mvcc_txn *t, int64_t rev, uint32_t *hash) {
  if (!t || !hash) return MVCC_EINVAL;
  if (t->err) return t->err;
  int64_t cur = txn_rev(t);
  if (rev > cur) return MVCC_EFUTURE;
  if (rev <= 0) rev = cur;
  if (rev < t->st.compact_rev) return MVCC_ECOMPACTED;
  MDB_cursor *c;
  int rc = mvcc_cursor(t, DB_HIST, &c);
  if (rc) return rc;
  uint32_t crc = 0;
  MDB_val k, d;
  int lrc;
  for (lrc = mdb_cursor_get(c, &k, &d, MDB_FIRST); lrc == 0;
       lrc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
    int64_t main, sub;
    hist_rec h;
    if (hist_key_decode(k.mv_data, k.mv_size, &main, &sub) < 0)
      return mvcc_corrupt("hist key", k.mv_data, k.mv_size);
    if (main > rev) break;
    if (hist_rec_decode(d.mv_data, d.mv_size, &h) < 0) return mvcc_corrupt("hist", k.mv_data, k.mv_size);
    /* Below the compact revision count what compaction keeps, whether or
     * not the physical pass got here yet, so every member agrees. */
    if (main <= t->st.compact_rev) {
      bool kept;
      rc = change_kept(t, h.key, h.key_len, main, sub, h.is_delete, t->st.compact_rev, &kept);
      if (rc) return rc;
      if (!kept) continue;
    }
    crc = crc32c_update(crc, k.mv_data, k.mv_size);
    crc = crc32c_update(crc, d.mv_data, d.mv_size);
  }
  if (lrc && lrc != MDB_NOTFOUND) return mvcc_lmdb_err(lrc, "hash");
  *hash = crc;
  return MVCC_OK;
}
