/* Aux tables: one LMDB database each, written in the caller's transaction
 * so other modules' state commits atomically with the keys. */
#include "mvcc_int.h"

static int aux_check(mvcc_txn *t, mvcc_aux_table tbl, const void *key, size_t key_len) {
  if (!t || (unsigned)tbl >= MVCC_AUX_COUNT) return MVCC_EINVAL;
  if (t->err) return t->err;
  return mvcc_check_key(key, key_len);
}

int mvcc_aux_get(mvcc_txn *t, mvcc_aux_table tbl, const void *key, size_t key_len,
                 const uint8_t **val, size_t *val_len) {
  int rc = aux_check(t, tbl, key, key_len);
  if (rc) return rc;
  if (!val || !val_len) return MVCC_EINVAL;
  MDB_val k = {key_len, (void *)key}, d;
  int lrc = mdb_get(t->txn, t->s->dbi[DB_AUX + tbl], &k, &d);
  if (lrc) return lrc == MDB_NOTFOUND ? MVCC_ENOTFOUND : mvcc_lmdb_err(lrc, "aux get");
  *val = d.mv_data;
  *val_len = d.mv_size;
  return MVCC_OK;
}

int mvcc_aux_put(mvcc_txn *t, mvcc_aux_table tbl, const void *key, size_t key_len,
                 const void *val, size_t val_len) {
  int rc = aux_check(t, tbl, key, key_len);
  if (rc) return rc;
  if (!t->write || (val_len && !val)) return MVCC_EINVAL;
  rc = space_reserve(t, space_change_pages(t->s, key_len, val_len));
  if (rc) return rc;
  MDB_val k = {key_len, (void *)key}, d = {val_len, (void *)val};
  int lrc = mdb_put(t->txn, t->s->dbi[DB_AUX + tbl], &k, &d, 0);
  if (lrc) t->err = mvcc_lmdb_err(lrc, "aux put");
  return t->err;
}

int mvcc_aux_del(mvcc_txn *t, mvcc_aux_table tbl, const void *key, size_t key_len) {
  int rc = aux_check(t, tbl, key, key_len);
  if (rc) return rc;
  if (!t->write) return MVCC_EINVAL;
  rc = space_reserve(t, SPACE_DELETE_PAGES);
  if (rc) return rc;
  MDB_val k = {key_len, (void *)key};
  int lrc = mdb_del(t->txn, t->s->dbi[DB_AUX + tbl], &k, NULL);
  if (lrc == MDB_NOTFOUND) return MVCC_ENOTFOUND;
  if (lrc) t->err = mvcc_lmdb_err(lrc, "aux del");
  return t->err;
}

int mvcc_aux_scan(mvcc_txn *t, mvcc_aux_table tbl, mvcc_aux_fn fn, void *arg) {
  if (!t || !fn || (unsigned)tbl >= MVCC_AUX_COUNT) return MVCC_EINVAL;
  if (t->err) return t->err;
  MDB_cursor *c;
  int rc = mvcc_cursor(t, DB_AUX + (int)tbl, &c);
  if (rc) return rc;
  MDB_val k, d;
  int lrc;
  for (lrc = mdb_cursor_get(c, &k, &d, MDB_FIRST); lrc == 0; lrc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
    if (fn(arg, k.mv_data, k.mv_size, d.mv_data, d.mv_size) != 0) return MVCC_OK;
  return lrc == MDB_NOTFOUND ? MVCC_OK : mvcc_lmdb_err(lrc, "aux scan");
}
