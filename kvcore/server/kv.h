/* kv.h (private to kvcore/server) - etcd's KV semantics over kvcore/mvcc:
 * request validation (as etcd's v3rpc layer does it, before anything is
 * proposed) and execution (as etcd's applier does it). Execution is shared
 * by the read path (Range and read-only Txn on a read transaction) and the
 * apply thread (everything on the write transaction). */
#ifndef SYNOD_SERVER_KV_H
#define SYNOD_SERVER_KV_H

#include "base.h"
#include "mvcc.h"
#include "proto.h"
#include "rpc.h"

/* What execution needs besides the store. */
typedef struct {
  arena *mem;          /* responses are built here */
  bool copy;           /* copy keys/values out of the map (write txns) */
  /* Does a lease exist? (The lease service answers; NULL: none do.) */
  bool (*lease_exists)(void *arg, int64_t id);
  void *lease_arg;
} kv_exec;

/* ---- validation: returns NULL or the error to send ---- */
const rpc_error *kv_check_range(const Etcdserverpb__RangeRequest *r);
const rpc_error *kv_check_put(const Etcdserverpb__PutRequest *r);
const rpc_error *kv_check_delete(const Etcdserverpb__DeleteRangeRequest *r);
const rpc_error *kv_check_txn(const Etcdserverpb__TxnRequest *r, size_t max_txn_ops);
bool kv_txn_is_readonly(const Etcdserverpb__TxnRequest *r);
bool kv_txn_is_serializable(const Etcdserverpb__TxnRequest *r);

/* ---- execution: each returns NULL or the error; responses carry only the
 * revision in their header (the service layer fills in the rest). ---- */
const rpc_error *kv_range(const kv_exec *x, mvcc_txn *t, const Etcdserverpb__RangeRequest *r,
                          Etcdserverpb__RangeResponse **out);
const rpc_error *kv_put(const kv_exec *x, mvcc_txn *w, const Etcdserverpb__PutRequest *r,
                        Etcdserverpb__PutResponse **out);
const rpc_error *kv_delete(const kv_exec *x, mvcc_txn *w, const Etcdserverpb__DeleteRangeRequest *r,
                           Etcdserverpb__DeleteRangeResponse **out);
/* w may be a read transaction when the Txn is read-only. */
const rpc_error *kv_txn(const kv_exec *x, mvcc_txn *w, bool writable, const Etcdserverpb__TxnRequest *r,
                        Etcdserverpb__TxnResponse **out);
const rpc_error *kv_compact(const kv_exec *x, mvcc_txn *w, const Etcdserverpb__CompactionRequest *r,
                            Etcdserverpb__CompactionResponse **out);

/* Maps an mvcc return code to etcd's error (NULL for MVCC_OK). */
const rpc_error *kv_mvcc_error(int rc);

#endif
