/* Compaction.
 *
 * mvcc_compact is logical and immediate: it moves the compact revision C,
 * below which reads fail. Whether a change at or below C is still visible
 * is decided by change_kept, never by what is physically left, so reads,
 * changes() and hashes are the same at every stage of the physical pass.
 *
 * mvcc_compact_step does the physical removal: it walks `hist` in revision
 * order from where the last step stopped (kept in the store state) and
 * removes, with their kidx entries, the changes change_kept drops. Going in
 * revision order means a key's older versions always go before the newer
 * change that supersedes them, so every committed intermediate state still
 * answers reads at or above C correctly. A new compaction restarts the
 * pass from the beginning: changes the previous one kept may now be
 * superseded.
 */
#include <string.h>

#include "mvcc_int.h"

int change_kept(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t main, int64_t sub,
                bool is_delete, int64_t at, bool *kept) {
  MDB_cursor *c;
  int rc = mvcc_cursor(t, DB_KIDX, &c);
  if (rc) return rc;
  /* The first kidx entry after {main, sub}: type byte 0xff sorts above
   * both real types of {main, sub} itself. */
  uint8_t probe[KIDX_LEN];
  kidx_encode(probe, main, sub, false);
  probe[KIDX_LEN - 1] = 0xff;
  MDB_val k = {key_len, (void *)key}, d = {KIDX_LEN, probe};
  int lrc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
  if (lrc == 0) {
    int64_t nm, ns;
    bool ndel;
    if (kidx_decode(d.mv_data, d.mv_size, &nm, &ns, &ndel) < 0) return mvcc_corrupt("kidx", key, key_len);
    if (nm <= at) {
      *kept = false; /* superseded at or below the compact revision */
      return MVCC_OK;
    }
  } else if (lrc != MDB_NOTFOUND) {
    return mvcc_lmdb_err(lrc, "compaction");
  }
  *kept = !is_delete || main == at;
  return MVCC_OK;
}

int mvcc_compact(mvcc_txn *t, int64_t rev) {
  if (!t || !t->write) return MVCC_EINVAL;
  if (t->err) return t->err;
  /* Compaction is a request of its own and changes nothing visible: inside
   * a bracket, C could land on changes not yet complete. */
  if (t->in_request) return MVCC_EINVAL;
  if (rev <= t->st.compact_rev) return MVCC_ECOMPACTED;
  if (rev > t->st.rev) return MVCC_EFUTURE;
  /* change_kept reads only kidx: every entry at or below rev goes there. */
  int rc = tail_flush(t);
  if (rc) return rc;
  t->st.compact_rev = rev;
  t->st.compact_pos_main = 0;
  t->st.compact_pos_sub = 0;
  t->compact_dirty = true;
  return MVCC_OK;
}

/* An entry the current step removes: its hist key, kidx dup and user key,
 * packed into t->work as [16][17][2 key_len][key]. */
static void work_add(buf *w, const uint8_t *hk, int64_t main, int64_t sub, bool del,
                     const uint8_t *key, size_t key_len) {
  uint8_t hdr[HIST_KEY_LEN + KIDX_LEN + 2];
  memcpy(hdr, hk, HIST_KEY_LEN);
  kidx_encode(hdr + HIST_KEY_LEN, main, sub, del);
  hdr[HIST_KEY_LEN + KIDX_LEN] = (uint8_t)key_len;
  hdr[HIST_KEY_LEN + KIDX_LEN + 1] = (uint8_t)(key_len >> 8);
  buf_append(w, hdr, sizeof hdr);
  buf_append(w, key, key_len);
}

static int work_apply(mvcc_txn *t, size_t entries) {
  int rc = space_reserve(t, entries * SPACE_DELETE_PAGES);
  if (rc) return rc;
  const uint8_t *p = t->work.data, *end = p + t->work.len;
  while (p < end) {
    size_t key_len = (size_t)p[HIST_KEY_LEN + KIDX_LEN] | (size_t)p[HIST_KEY_LEN + KIDX_LEN + 1] << 8;
    const uint8_t *key = p + HIST_KEY_LEN + KIDX_LEN + 2;
    MDB_val hk = {HIST_KEY_LEN, (void *)p};
    int lrc = mdb_del(t->txn, t->s->dbi[DB_HIST], &hk, NULL);
    if (lrc) {
      t->err = mvcc_lmdb_err(lrc, "compaction: removing history");
      return t->err;
    }
    MDB_val ik = {key_len, (void *)key}, id = {KIDX_LEN, (void *)(p + HIST_KEY_LEN)};
    lrc = mdb_del(t->txn, t->s->dbi[DB_KIDX], &ik, &id);
    if (lrc) {
      t->err = mvcc_lmdb_err(lrc, "compaction: removing a key index entry");
      return t->err;
    }
    p = key + key_len;
  }
  return MVCC_OK;
}

int mvcc_compact_step(mvcc_txn *t, size_t max_changes) {
  if (!t || !t->write || max_changes == 0) return MVCC_EINVAL;
  if (t->err) return t->err;
  int64_t at = t->st.compact_rev;
  if (t->st.compact_done_rev >= at) return 0;
  /* A key whose last kidx entries this step removes must have none left in
   * the tail (tail.c): flush it first. */
  int rc = tail_flush(t);
  if (rc) return rc;
  MDB_cursor *c;
  rc = mvcc_cursor(t, DB_HIST, &c);
  if (rc) return rc;

  /* Decide first, delete after: the scan never runs a cursor across its
   * own deletions. Later versions of a key come later in hist, so a
   * decision cannot depend on an entry this step removes before it. */
  t->work.len = 0;
  uint8_t start[HIST_KEY_LEN];
  hist_key_encode(start, t->st.compact_pos_main, t->st.compact_pos_sub);
  MDB_val k = {HIST_KEY_LEN, start}, d;
  int lrc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
  size_t examined = 0, removed = 0;
  bool done = false;
  int64_t main = 0, sub = 0;
  for (;;) {
    if (lrc == MDB_NOTFOUND) {
      done = true;
      break;
    }
    if (lrc) return mvcc_lmdb_err(lrc, "compaction");
    if (hist_key_decode(k.mv_data, k.mv_size, &main, &sub) < 0)
      return mvcc_corrupt("hist key", k.mv_data, k.mv_size);
    if (main > at) {
      done = true;
      break;
    }
    if (examined == max_changes) break; /* resume here next step */
    hist_rec h;
    if (hist_rec_decode(d.mv_data, d.mv_size, &h) < 0) return mvcc_corrupt("hist", k.mv_data, k.mv_size);
    bool kept;
    rc = change_kept(t, h.key, h.key_len, main, sub, h.is_delete, at, &kept);
    if (rc) return rc;
    if (!kept) {
      work_add(&t->work, k.mv_data, main, sub, h.is_delete, h.key, h.key_len);
      removed++;
    }
    examined++;
    lrc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
  }
  rc = work_apply(t, removed);
  if (rc) return rc;
  if (done) {
    t->st.compact_done_rev = at;
    t->st.compact_pos_main = t->st.compact_pos_sub = 0;
  } else {
    t->st.compact_pos_main = main;
    t->st.compact_pos_sub = sub;
  }
  t->compact_dirty = true;
  return done ? 0 : 1;
}
