/* Fuzzes lease request handling as the server runs it: the input is a
 * series of actions, each with a length-prefixed payload:
 *
 *   0  a synodpb.Request applied as a log entry: LeaseGrant (through the
 *      proposer's TTL rule and ID choice), LeaseRevoke, LeaseCheckpoint,
 *      and Put/Txn/DeleteRange with leases (kv_exec's lease check)
 *   1  a keep-alive       2  a time-to-live with keys   3  a clock tick whose
 *   revocations and checkpoints are applied, as the clock thread proposes
 *   4  promote   5  demote   6  time passes   7  a raw lease record written
 *   to the store, then recovery from it (the record decoder)
 *
 * all in one store write transaction that is thrown away at the end (the
 * table is recovered from the pristine store for each input). After every
 * action the table must equal the store's lease records. Nothing may crash,
 * leak or trip the sanitizers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "kv.h"
#include "lease.h"
#include "mvcc.h"
#include "proto.h"

static mvcc_store *store;

static void setup(void) {
  char dir[128];
  snprintf(dir, sizeof dir, "/tmp/synod-fuzz-lease-%d", (int)getpid());
  log_set_level(LOG_FATAL);
  mvcc_options o = {.dir = dir, .map_size = 1ull << 30};
  if (mvcc_open(&o, &store) != MVCC_OK) abort();
  /* a few leases with keys to start from */
  lease_options lo = {.min_ttl = 2};
  lease_table *t = lease_table_new(&lo);
  mvcc_txn *w;
  if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
  for (int64_t id = 1; id <= 4; id++) {
    mvcc_rev_begin(w);
    lease_apply_grant(t, w, id, 10 * id, 0);
    mvcc_rev_end(w);
    for (int k = 0; k < 3; k++) {
      char key[16];
      snprintf(key, sizeof key, "k%d", (int)(id * 3 + k) % 7);
      mvcc_rev_begin(w);
      mvcc_put(w, (uint8_t *)key, strlen(key), (uint8_t *)"v", 1, id, NULL);
      mvcc_rev_end(w);
    }
  }
  if (mvcc_write_commit(w) != MVCC_OK) abort();
  lease_table_free(t);
}

static bool exists_hook(void *arg, int64_t id) { return lease_exists(arg, id); }

typedef struct {
  lease_table *t;
  size_t n;
  bool bad;
} audit;

static int audit_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
  (void)v, (void)vl;
  audit *a = arg;
  a->n++;
  if (kl != 8 || !lease_exists(a->t, (int64_t)get_be64(k))) a->bad = true;
  return 0;
}

/* The table and the store's records must agree, always. */
static void check(lease_table *t, mvcc_txn *w) {
  audit a = {t, 0, false};
  if (mvcc_aux_scan(w, MVCC_AUX_LEASES, audit_one, &a) != MVCC_OK) abort();
  if (a.bad || a.n != lease_count(t)) abort();
}

static void apply_request(lease_table *t, mvcc_txn *w, arena *a, Synodpb__Request *req, int64_t now,
                          int64_t *next_id) {
  kv_exec x = {.mem = a, .copy = true, .lease_exists = exists_hook, .lease_arg = t};
  bool bracket = req->op_case != SYNODPB__REQUEST__OP_COMPACTION;
  if (bracket) mvcc_rev_begin(w);
  switch (req->op_case) {
    case SYNODPB__REQUEST__OP_LEASE_GRANT: {
      int64_t ttl;
      if (lease_grant_ttl(t, req->lease_grant->ttl, &ttl) != LEASE_OK) break;
      int64_t id = req->lease_grant->id;
      while (id == 0) id = (*next_id)++ & INT64_MAX;
      lease_apply_grant(t, w, id, ttl, now);
      /* and the unchecked path a log from elsewhere could carry */
      lease_apply_grant(t, w, req->lease_grant->id, req->lease_grant->ttl, now);
      break;
    }
    case SYNODPB__REQUEST__OP_LEASE_REVOKE:
      lease_apply_revoke(t, w, req->lease_revoke->id);
      break;
    case SYNODPB__REQUEST__OP_LEASE_CHECKPOINT: {
      const Etcdserverpb__LeaseCheckpointRequest *c = req->lease_checkpoint;
      lease_checkpoint *cps = arena_alloc(a, (c->n_checkpoints + 1) * sizeof *cps);
      for (size_t i = 0; i < c->n_checkpoints; i++)
        cps[i] = (lease_checkpoint){c->checkpoints[i]->id, c->checkpoints[i]->remaining_ttl};
      lease_apply_checkpoints(t, w, cps, c->n_checkpoints, now);
      break;
    }
    case SYNODPB__REQUEST__OP_PUT:
      if (!kv_check_put(req->put)) {
        Etcdserverpb__PutResponse *r;
        kv_put(&x, w, req->put, &r);
      }
      break;
    case SYNODPB__REQUEST__OP_DELETE_RANGE:
      if (!kv_check_delete(req->delete_range)) {
        Etcdserverpb__DeleteRangeResponse *r;
        kv_delete(&x, w, req->delete_range, &r);
      }
      break;
    case SYNODPB__REQUEST__OP_TXN:
      if (!kv_check_txn(req->txn, 128)) {
        Etcdserverpb__TxnResponse *r;
        kv_txn(&x, w, !kv_txn_is_readonly(req->txn), req->txn, &r);
      }
      break;
    default:
      break;
  }
  if (bracket) mvcc_rev_end(w);
}

static int count_key(void *arg, const mvcc_kv *kv) {
  (void)kv;
  ++*(size_t *)arg;
  return 0;
}

static int64_t i64_of(const uint8_t *p, size_t len) {
  uint8_t b[8] = {0};
  memcpy(b, p, len < 8 ? len : 8);
  return (int64_t)get_le64(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!store) setup();
  arena *a = arena_new();
  lease_options lo = {.min_ttl = 2, .revoke_rate = 50, .checkpoint_interval_ms = 1000, .checkpoint_rate = 50};
  lease_table *t = lease_table_new(&lo);
  mvcc_txn *w;
  if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
  if (lease_recover(t, w) != LEASE_OK) abort();
  int64_t now = 1000000000, next_id = 1 << 20;
  int64_t revoke[64];
  lease_checkpoint cps[64];
  size_t off = 0;
  while (off + 3 <= size) {
    uint8_t action = data[off];
    size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
    off += 3;
    if (len > size - off) len = size - off;
    const uint8_t *p = data + off;
    off += len;
    int64_t v = i64_of(p, len), ttl = 0, left = 0, granted = 0;
    switch (action % 8) {
      case 0: {
        Synodpb__Request *req = synodpb__request__unpack(NULL, len, p);
        if (req) {
          apply_request(t, w, a, req, now, &next_id);
          synodpb__request__free_unpacked(req, NULL);
        }
        break;
      }
      case 1:
        lease_renew(t, v % 8, now, &ttl);
        break;
      case 2: {
        size_t n = 0;
        if (lease_time_to_live(t, v % 8, now, &left, &granted) == LEASE_OK)
          mvcc_lease_keys(w, v % 8, count_key, &n);
        size_t count;
        free(lease_list(t, &count));
        break;
      }
      case 3: {
        lease_due d = {.revoke = revoke, .cap_revoke = 64, .checkpoints = cps, .cap_checkpoints = 64};
        lease_tick(t, now, &d);
        if (d.next_ns < now) abort(); /* the clock would spin */
        for (size_t i = 0; i < d.n_revoke; i++) {
          mvcc_rev_begin(w);
          if (lease_apply_revoke(t, w, d.revoke[i]) != LEASE_OK) abort(); /* handed out: it exists */
          mvcc_rev_end(w);
        }
        mvcc_rev_begin(w);
        lease_apply_checkpoints(t, w, cps, d.n_checkpoints, now);
        mvcc_rev_end(w);
        break;
      }
      case 4:
        lease_promote(t, (v & 0xffff) * 1000000, now);
        break;
      case 5:
        lease_demote(t);
        break;
      case 6:
        now += (int64_t)((uint64_t)v % (600ull * 1000000000));
        break;
      case 7:
        if (len >= 1 && len <= 8 + 32) {
          size_t kl = len < 8 ? len : 8;
          mvcc_aux_put(w, MVCC_AUX_LEASES, p, kl, p + kl, len - kl);
          if (lease_recover(t, w) != LEASE_OK) {
            /* a corrupt record: removing it must make recovery work */
            mvcc_aux_del(w, MVCC_AUX_LEASES, p, kl);
            if (lease_recover(t, w) != LEASE_OK) abort();
          }
        }
        break;
    }
    check(t, w);
    arena_reset(a);
  }
  mvcc_txn_end(w); /* abort: the store stays as set up */
  lease_table_free(t);
  arena_free(a);
  return 0;
}
