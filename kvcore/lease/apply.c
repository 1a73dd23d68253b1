/* The replicated half: what applying LeaseGrant, LeaseRevoke and
 * LeaseCheckpoint entries does to the store and to the table, identically
 * on every member (nothing here depends on clocks, configuration or
 * leadership; only the local deadlines that follow do).
 *
 * One record per lease in MVCC_AUX_LEASES:
 *   key    8 bytes, the ID big-endian
 *   value  1 byte format (1) | ttl le64 | remaining_ttl le64   (17 bytes)
 * Startup reads these and nothing else: leases come back without a scan
 * of the keyspace, whatever the number of keys attached. */
#include <string.h>

#include "lease_int.h"

enum { RECORD_FORMAT = 1, RECORD_LEN = 17 };

static void record_key(uint8_t key[8], int64_t id) { put_be64(key, (uint64_t)id); }

static void record_encode(uint8_t v[RECORD_LEN], int64_t ttl, int64_t remaining) {
  v[0] = RECORD_FORMAT;
  put_le64(v + 1, (uint64_t)ttl);
  put_le64(v + 9, (uint64_t)remaining);
}

static int store_error(const char *what, int rc) {
  log_error("lease: store failure while %s: %s", what, mvcc_strerror(rc));
  return LEASE_ESTORE;
}

int lease_grant_ttl(const lease_table *t, int64_t ttl, int64_t *out) {
  if (ttl > LEASE_MAX_TTL) return LEASE_ETTL;
  *out = ttl < t->opt.min_ttl ? t->opt.min_ttl : ttl;
  return LEASE_OK;
}

bool lease_exists(lease_table *t, int64_t id) {
  pthread_mutex_lock(&t->mu);
  bool found = table_find(t, id) != NULL;
  pthread_mutex_unlock(&t->mu);
  return found;
}

/* ---------------------------------------------------------------- recovery */

typedef struct {
  lease_table *t;
  int rc;
} recover_ctx;

static int recover_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
  recover_ctx *c = arg;
  int64_t id = key_len == 8 ? (int64_t)get_be64(key) : 0;
  if (id == 0 || val_len != RECORD_LEN || val[0] != RECORD_FORMAT || table_find(c->t, id)) {
    log_error("lease: corrupt lease record in the store (key %zu bytes, value %zu bytes)", key_len, val_len);
    c->rc = LEASE_ESTORE;
    return 1;
  }
  lease_rec *r = table_insert(c->t, id);
  r->ttl = (int64_t)get_le64(val + 1);
  r->remaining = (int64_t)get_le64(val + 9);
  return 0;
}

int lease_recover(lease_table *t, mvcc_txn *txn) {
  pthread_mutex_lock(&t->mu);
  table_clear(t);
  t->primary = false;
  t->planned_ns = FOREVER;
  recover_ctx c = {t, LEASE_OK};
  int rc = mvcc_aux_scan(txn, MVCC_AUX_LEASES, recover_one, &c);
  if (rc) c.rc = store_error("reading the leases", rc);
  if (c.rc) table_clear(t);
  pthread_mutex_unlock(&t->mu);
  return c.rc;
}

/* ---------------------------------------------------------------- grant */

int lease_apply_grant(lease_table *t, mvcc_txn *w, int64_t id, int64_t ttl, int64_t now_ns) {
  if (id == 0) return LEASE_ENOTFOUND; /* etcd's Grant refuses NoLease so */
  if (ttl > LEASE_MAX_TTL) return LEASE_ETTL;
  if (lease_exists(t, id)) return LEASE_EEXIST; /* only this thread adds leases */
  uint8_t key[8], val[RECORD_LEN];
  record_key(key, id);
  record_encode(val, ttl, 0);
  int rc = mvcc_aux_put(w, MVCC_AUX_LEASES, key, sizeof key, val, sizeof val);
  if (rc) return store_error("granting a lease", rc);

  pthread_mutex_lock(&t->mu);
  lease_rec *r = table_insert(t, id);
  r->ttl = ttl;
  if (t->primary) clock_track(t, r, now_ns);
  bool wake = clock_take_wake(t);
  pthread_mutex_unlock(&t->mu);
  if (wake) clock_wake(t);
  return LEASE_OK;
}

/* ---------------------------------------------------------------- revoke */

typedef struct {
  mvcc_txn *w;
  int rc;
} revoke_ctx;

static int delete_attached(void *arg, const mvcc_kv *kv) {
  revoke_ctx *c = arg;
  /* kv->key points into the page the deletion rewrites: copy it first. */
  uint8_t key[MVCC_MAX_KEY];
  memcpy(key, kv->key, kv->key_len);
  mvcc_span one = {.key = key, .key_len = kv->key_len};
  c->rc = mvcc_delete_range(c->w, &one, NULL, NULL, NULL);
  return c->rc != 0;
}

int lease_apply_revoke(lease_table *t, mvcc_txn *w, int64_t id) {
  if (!lease_exists(t, id)) return LEASE_ENOTFOUND;
  /* Keys in key order (the index is sorted), so every member deletes them
   * in the same order: the history, and its hash, come out identical. */
  revoke_ctx c = {w, 0};
  int rc = mvcc_lease_keys(w, id, delete_attached, &c);
  if (!rc) rc = c.rc;
  if (rc) return store_error("deleting the keys of a revoked lease", rc);
  uint8_t key[8];
  record_key(key, id);
  rc = mvcc_aux_del(w, MVCC_AUX_LEASES, key, sizeof key);
  if (rc) return store_error("deleting a lease record", rc);

  pthread_mutex_lock(&t->mu);
  lease_rec *r = table_find(t, id);
  if (r) {
    heap_remove(t, table_slot(t, r));
    table_remove(t, r);
  }
  pthread_mutex_unlock(&t->mu);
  return LEASE_OK;
}

/* ---------------------------------------------------------------- checkpoint */

int lease_apply_checkpoints(lease_table *t, mvcc_txn *w, const lease_checkpoint *cps, size_t n, int64_t now_ns) {
  for (size_t i = 0; i < n; i++) {
    /* A negative remaining TTL means nothing; every member reads it as
     * "none" the same way. */
    int64_t remaining = cps[i].remaining_ttl > 0 ? cps[i].remaining_ttl : 0;
    uint8_t key[8], val[RECORD_LEN];
    pthread_mutex_lock(&t->mu);
    lease_rec *r = table_find(t, cps[i].id);
    if (r) {
      r->remaining = remaining;
      r->flags &= ~(uint32_t)CLEAR_PENDING;
      record_encode(val, r->ttl, remaining);
      if (t->primary) clock_schedule_checkpoint(t, r, now_ns);
    }
    bool wake = clock_take_wake(t);
    pthread_mutex_unlock(&t->mu);
    if (wake) clock_wake(t);
    if (!r) continue; /* revoked meanwhile: etcd skips it too */
    record_key(key, cps[i].id);
    int rc = mvcc_aux_put(w, MVCC_AUX_LEASES, key, sizeof key, val, sizeof val);
    if (rc) return store_error("recording a lease checkpoint", rc);
  }
  return LEASE_OK;
}
