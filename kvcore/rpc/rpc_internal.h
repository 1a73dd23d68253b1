/* Private to kvcore/rpc: the objects behind the completion-queue tags. */
#ifndef SYNOD_RPC_INTERNAL_H
#define SYNOD_RPC_INTERNAL_H

#include "rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>

/* Every tag handed to gRPC starts with this, so the completion-queue loop
 * can dispatch without knowing what kind of object it got back. */
typedef struct rpc_tag {
  void (*done)(struct rpc_tag *tag, bool ok);
} rpc_tag;

struct rpc_server {
  grpc_server *server;
  grpc_completion_queue *cq; /* the runtime's */
  const rpc_method *methods;
  size_t n_methods;
  void **registered; /* grpc's handle for each method */
  int *ports;
  size_t n_ports;
  /* Objects gRPC may still complete: posted request slots, calls, streams.
   * The queue may only shut down once this is zero. */
  atomic_int live;
  /* Unary calls (long waits aside) not yet replied to: what a graceful
   * stop waits for before cancelling the rest (rpc_server_drain). */
  atomic_int unanswered;
  atomic_bool stopping;
  rpc_tag shutdown_tag;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool shutdown_notified;
};

/* A posted grpc_server_request_*call, waiting for a client. */
typedef struct {
  rpc_tag tag;
  rpc_server *srv;
  size_t method; /* index into srv->methods, or SIZE_MAX: any other path */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload;
  grpc_call_details details; /* the catch-all slot only */
} rpc_slot;

void rpc_live_add(rpc_server *s, int n);
void rpc_unanswered_add(rpc_server *s, int n);

/* cork.c: TCP_CORK on the connections a group of replies goes to. */
enum { RPC_CORK_MAX_CALLS = 512, RPC_CORK_MAX_FDS = 32 };
typedef struct {
  int fds[RPC_CORK_MAX_FDS];
  size_t n;
} rpc_cork;
/* The descriptor of the connection whose far end gRPC names `peer`
 * ("ipv4:127.0.0.1:5432"), or -1 (exposed for tests). */
int rpc_cork_fd_of(const char *peer);
/* False when SYNOD_CORK=0 (for benchmarks: the effect of corking). */
bool rpc_cork_enabled(void);
/* Corks each connection that two or more of the calls' replies go to. */
void rpc_cork_begin(rpc_cork *k, grpc_call *const *calls, size_t n);
/* Uncorks them: what queued leaves now. */
void rpc_cork_end(rpc_cork *k);

/* runtime.c: the process's one completion queue, shared by servers and
 * channels, with at least `threads` threads draining it. Each ref is
 * matched by an unref once nothing of the user's can complete any more. */
grpc_completion_queue *rpc_runtime_ref(int threads);
void rpc_runtime_unref(void);
/* Whether the caller is one of the runtime's completion-queue threads. */
bool rpc_on_cq_thread(void);

/* Hands a new call to its method (unary.c / stream.c). They take ownership
 * of slot->call, ->md and ->payload. */
void rpc_unary_start(rpc_server *srv, const rpc_method *m, rpc_slot *slot);
void rpc_stream_start(rpc_server *srv, const rpc_method *m, rpc_slot *slot);

/* codec.c */
/* A byte buffer of n bytes for the caller to fill through *data. */
grpc_byte_buffer *rpc_buffer_new(size_t n, uint8_t **data);
grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg, size_t *len);
ProtobufCMessage *rpc_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb);
const uint8_t *rpc_metadata_find(const grpc_metadata_array *md, const char *key, size_t *len);
int64_t rpc_deadline_to_mono(gpr_timespec deadline);
grpc_slice rpc_status_slice(const char *message);

#endif
