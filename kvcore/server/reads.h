/* reads.h (private to kvcore/server) - linearizable reads through Raft's
 * ReadIndex, batched (see reads.c). */
#ifndef SYNOD_SERVER_READS_H
#define SYNOD_SERVER_READS_H

#include "node.h"

typedef struct reads reads;
/* Runs the read on the reads thread once it is safe; must answer call. */
typedef void (*reads_run_fn)(node *n, rpc_call *call, const ProtobufCMessage *req);

reads *reads_start(node *n);
/* Fails waiting reads with "etcdserver: server stopped". */
void reads_stop(reads *r);

/* req must live until run is called (it is the call's request). */
void reads_submit(reads *r, rpc_call *call, const ProtobufCMessage *req, reads_run_fn run);
/* A read that needs no read point but may take long (a range, a hash of
 * the store). In a cluster it runs on the reads thread as soon as it can,
 * so that the gRPC thread, which also carries Raft's messages between
 * members, never waits for it; a member alone (no Raft traffic) runs it at
 * once. */
void reads_submit_long(reads *r, rpc_call *call, const ProtobufCMessage *req, reads_run_fn run);
/* From the Raft loop: reads batched under ctx may run at index. */
void reads_ready(reads *r, uint64_t ctx, uint64_t index);
/* From the apply thread. */
void reads_applied(reads *r, uint64_t index);

#endif
