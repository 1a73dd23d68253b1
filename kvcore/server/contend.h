/* contend.h (private to kvcore/server) - a Lock or Campaign call from
 * arrival to its one reply, shared by lock_service.c and
 * election_service.c.
 *
 *   [lease 0: grant a 60 s lease first, as etcd's session does]
 *   acquire: one proposal, etcd's recipe as a server-side Txn:
 *            if CreateRevision(<pfx><lease hex>) == 0 then Put(key, value,
 *            lease) else Get(key); retried while the leader is unknown or
 *            changing, up to the call's deadline
 *   [campaign with another value on an existing key: guarded Put]
 *   wait:    cc_wait on the member's table; decided on the apply thread
 *   reply:   granted (the service builds the response) or lost (the key
 *            went while it waited: never granted)
 *
 * Cancellation (client cancel or deadline): a call not yet granted is
 * withdrawn, and the key it created is deleted (guarded by its create
 * revision). A call that already owned when it was cancelled has its key
 * deleted too: nobody will ever learn it held the lock.
 *
 * Memory: the contender lives in the call's arena (rpc_call_alloc), so the
 * cancel callback can always look at it; the reply is the last thing that
 * touches it. */
#ifndef SYNOD_SERVER_CONTEND_H
#define SYNOD_SERVER_CONTEND_H

#include "concurrency.h"
#include "node.h"

typedef struct contender contender;
struct contender {
  /* set by the service */
  node *n;
  rpc_call *call;
  ProtobufCBinaryData name;
  ProtobufCBinaryData value; /* campaign: the candidate's value */
  int64_t lease;
  bool campaign;
  const rpc_error *lost_err;
  void (*granted)(contender *c, int64_t rev); /* must reply */
  /* the contender's */
  uint8_t *pfx, *key;
  size_t pfx_len, key_len;
  int64_t create_rev;
  bool created;
  int64_t start_rev; /* the store's revision when the call arrived */
  bool uncertain;    /* an acquire attempt timed out: it may have committed */
  int state;
  bool cancelled;
  int64_t deadline;
  cc_outcome outcome;
  int64_t outcome_rev;
  cc_waiter w;
};

/* Takes c (zeroed, in the call's arena, the fields above set) from the
 * gRPC handler to its reply. */
void contender_start(contender *c);

/* etcd's contender key: <name>/<lease in lower-case hex>, in the call's
 * arena. */
void contender_key(rpc_call *call, const ProtobufCBinaryData *name, int64_t lease, uint8_t **pfx, size_t *pfx_len,
                   uint8_t **key, size_t *key_len);

/* Transient failures of a proposal (worth proposing again). */
bool contend_transient(const rpc_error *e);

/* Fails a Lock or Election call with an error of the KV layer (lease not
 * found, key not provided, ...). etcd's servers run client code there, whose
 * errors carry no gRPC status: they reach the caller as Unknown with
 * etcd's message, and so do Synod's. */
void contend_fail_kv(rpc_call *call, const rpc_error *err);

#endif
