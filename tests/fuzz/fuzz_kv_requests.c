/* Fuzzes etcd's KV semantics as the server runs them: the input is a series
 * of length-prefixed synodpb.Request messages (what the log carries, decoded
 * from the network by protobuf-c). Each decoded request goes through the
 * same validation the gRPC layer applies and then through execution on a
 * real store, in a write transaction that is thrown away, plus a Range on a
 * read transaction. Nothing may crash, leak or trip the sanitizers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base.h"
#include "kv.h"
#include "mvcc.h"
#include "proto.h"

static mvcc_store *store;

static bool some_leases(void *arg, int64_t id) {
  (void)arg;
  return id % 2 == 0; /* even lease IDs exist */
}

static void setup(void) {
  char dir[128];
  snprintf(dir, sizeof dir, "/tmp/synod-fuzz-kv-%d", (int)getpid());
  log_set_level(LOG_FATAL);
  mvcc_options o = {.dir = dir, .map_size = 1ull << 30};
  if (mvcc_open(&o, &store) != MVCC_OK) abort();
  /* a little history to read */
  mvcc_txn *w;
  mvcc_write_begin(store, &w);
  for (int i = 0; i < 20; i++) {
    char k[8];
    snprintf(k, sizeof k, "k%d", i % 7);
    mvcc_rev_begin(w);
    mvcc_put(w, (uint8_t *)k, 2, (uint8_t *)"v", 1, 0, NULL);
    mvcc_rev_end(w);
  }
  mvcc_write_commit(w);
}

static void run(mvcc_txn *w, arena *a, const Synodpb__Request *req) {
  kv_exec x = {.mem = a, .copy = true, .lease_exists = some_leases};
  switch (req->op_case) {
    case SYNODPB__REQUEST__OP_PUT:
      if (!kv_check_put(req->put)) {
        Etcdserverpb__PutResponse *r;
        mvcc_rev_begin(w);
        kv_put(&x, w, req->put, &r);
        mvcc_rev_end(w);
      }
      break;
    case SYNODPB__REQUEST__OP_DELETE_RANGE:
      if (!kv_check_delete(req->delete_range)) {
        Etcdserverpb__DeleteRangeResponse *r;
        mvcc_rev_begin(w);
        kv_delete(&x, w, req->delete_range, &r);
        mvcc_rev_end(w);
      }
      break;
    case SYNODPB__REQUEST__OP_TXN:
      if (!kv_check_txn(req->txn, 128)) {
        Etcdserverpb__TxnResponse *r;
        mvcc_rev_begin(w);
        kv_txn(&x, w, !kv_txn_is_readonly(req->txn), req->txn, &r);
        mvcc_rev_end(w);
      }
      break;
    case SYNODPB__REQUEST__OP_COMPACTION: {
      Etcdserverpb__CompactionResponse *r;
      kv_compact(&x, w, req->compaction, &r);
      break;
    }
    default:
      break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!store) setup();
  arena *a = arena_new();
  mvcc_txn *w;
  if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
  size_t off = 0;
  while (off + 2 <= size) {
    size_t len = (size_t)data[off] | (size_t)data[off + 1] << 8;
    off += 2;
    if (len > size - off) len = size - off;
    Synodpb__Request *req = synodpb__request__unpack(NULL, len, data + off);
    off += len;
    if (!req) continue;
    run(w, a, req);
    /* the read path on a snapshot, with whatever range the request named */
    if (req->op_case == SYNODPB__REQUEST__OP_PUT && !kv_check_put(req->put)) {
      mvcc_txn *t;
      if (mvcc_read_begin(store, &t) == MVCC_OK) {
        Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
        rr.key = req->put->key;
        rr.range_end = req->put->value;
        rr.limit = req->put->lease;
        rr.sort_order = (Etcdserverpb__RangeRequest__SortOrder)(req->put->lease & 3);
        rr.sort_target = (Etcdserverpb__RangeRequest__SortTarget)((req->put->lease >> 2) % 6);
        rr.keys_only = req->put->prev_kv;
        rr.min_mod_revision = req->put->ignore_value ? 3 : 0;
        kv_exec x = {.mem = a, .copy = false};
        Etcdserverpb__RangeResponse *r;
        kv_range(&x, t, &rr, &r);
        mvcc_txn_end(t);
      }
    }
    synodpb__request__free_unpacked(req, NULL);
    arena_reset(a);
  }
  mvcc_txn_end(w); /* abort: the store stays as set up */
  arena_free(a);
  return 0;
}
