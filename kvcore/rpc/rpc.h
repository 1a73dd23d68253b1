/* rpc.h - the one module that talks to gRPC C core.
 *
 * Everything else in Synod sees decoded protobuf-c messages and these types;
 * no other file includes <grpc/grpc.h>. A server is a table of methods:
 *
 *   unary:  handler(ctx, call, request) and, later and from any thread,
 *           exactly one rpc_reply() or rpc_fail() for that call.
 *   stream: open / message / half_close / closed callbacks, serialized per
 *           stream; rpc_stream_send() from any thread; rpc_stream_finish().
 *
 * Methods that are not in the table get UNIMPLEMENTED at once (never a hang).
 * The request message belongs to the call and is freed after the reply.
 */
#ifndef SYNOD_RPC_H
#define SYNOD_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes (numbering fixed by the gRPC protocol). */
typedef enum {
  RPC_OK = 0,
  RPC_CANCELLED = 1,
  RPC_UNKNOWN = 2,
  RPC_INVALID_ARGUMENT = 3,
  RPC_DEADLINE_EXCEEDED = 4,
  RPC_NOT_FOUND = 5,
  RPC_ALREADY_EXISTS = 6,
  RPC_PERMISSION_DENIED = 7,
  RPC_RESOURCE_EXHAUSTED = 8,
  RPC_FAILED_PRECONDITION = 9,
  RPC_ABORTED = 10,
  RPC_OUT_OF_RANGE = 11,
  RPC_UNIMPLEMENTED = 12,
  RPC_INTERNAL = 13,
  RPC_UNAVAILABLE = 14,
  RPC_DATA_LOSS = 15,
  RPC_UNAUTHENTICATED = 16,
} rpc_code;

/* An error as clients see it: a code and a message (etcd's exact text). */
typedef struct {
  rpc_code code;
  const char *message;
} rpc_error;

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;
typedef struct rpc_stream rpc_stream;

typedef struct {
  /* A new stream; returns the handler's state for it. */
  void *(*open)(void *ctx, rpc_stream *s);
  /* A message arrived. The message is freed when this returns. */
  void (*message)(void *state, rpc_stream *s, const ProtobufCMessage *msg);
  /* The client will send no more (it may still read). May be NULL. */
  void (*half_close)(void *state, rpc_stream *s);
  /* The send queue just became empty (for producers that pace themselves,
   * such as snapshot streaming). May be NULL. */
  void (*drained)(void *state, rpc_stream *s);
  /* The stream is over: finished, cancelled by the client, connection lost,
   * or server shutdown. Called exactly once; no callback follows it, and
   * rpc_stream_send fails from now on. Release the state here. */
  void (*closed)(void *state, rpc_stream *s);
} rpc_stream_handler;

typedef struct {
  const char *path; /* "/etcdserverpb.KV/Range" */
  const ProtobufCMessageDescriptor *request;
  /* Exactly one of unary and stream is set. */
  void (*unary)(void *ctx, rpc_call *call, const ProtobufCMessage *req);
  const rpc_stream_handler *stream;
  /* Unary only: the handler may wait a long time (locks, elections), so the
   * call watches for client cancellation (rpc_call_on_cancel). */
  bool long_wait;
  void *ctx;
} rpc_method;

typedef struct {
  const char *const *listen; /* "host:port" addresses */
  size_t n_listen;
  size_t max_recv_bytes; /* largest message accepted; 0: 4 MiB */
  int threads;           /* completion-queue threads (shared by all servers and channels); 0: 1 */
  /* Shortest interval at which clients may ping without data; 0: 5000 ms
   * (etcd's client policy). Peers ping faster to notice a dead link. */
  int min_ping_interval_ms;
} rpc_server_options;

/* Process-wide setup and teardown of gRPC; call once each from main. */
void rpc_global_init(void);
void rpc_global_shutdown(void);

/* Starts serving. On failure returns -1 and a reason in err. The method
 * table must outlive the server. */
int rpc_server_start(const rpc_server_options *opt, const rpc_method *methods, size_t n_methods,
                     rpc_server **out, char *err, size_t err_len);
/* Stops accepting and cancels every call in flight. Handlers still holding
 * calls must reply (or fail) them; those replies go nowhere. */
void rpc_server_shutdown(rpc_server *s);
/* The graceful form: stops accepting, waits up to grace_ms for the unary
 * calls in flight to be answered (streams and long waits are not waited
 * for), then cancels whatever is left. */
void rpc_server_drain(rpc_server *s, int grace_ms);
/* Waits until every call has been released, then frees the server. */
void rpc_server_free(rpc_server *s);
/* The ports actually bound, in the order of opt.listen (for port 0). */
int rpc_server_port(const rpc_server *s, size_t i);

/* ---------------------------------------------------------------- unary */

/* Packs the response and sends it with status OK. */
void rpc_reply(rpc_call *c, const ProtobufCMessage *resp);
/* Sends an error status. */
void rpc_fail(rpc_call *c, rpc_code code, const char *message);
static inline void rpc_fail_with(rpc_call *c, const rpc_error *e) { rpc_fail(c, e->code, e->message); }
/* Packs now, sends on rpc_send_deferred: for replies computed inside a
 * transaction whose memory goes away before the reply may be sent. */
void rpc_reply_deferred(rpc_call *c, const ProtobufCMessage *resp);
void rpc_send_deferred(rpc_call *c);
/* Replies made on this thread (not a gRPC thread) between these two calls
 * travel to the gRPC thread together, as one event instead of one each: for
 * threads that answer many calls at once (apply, linearizable reads). */
void rpc_reply_group_begin(void);
void rpc_reply_group_end(void);

/* Request metadata value for key (lower case), or NULL. Not NUL-terminated. */
const uint8_t *rpc_call_metadata(const rpc_call *c, const char *key, size_t *len);
/* The client's deadline on the monotonic clock (ns), or INT64_MAX. */
int64_t rpc_call_deadline(const rpc_call *c);
/* For long_wait methods: fn(arg) runs once, on a gRPC thread, if the client
 * cancels or its deadline passes before the reply. The handler must still
 * reply (the reply is then dropped). Returns false if already cancelled. */
bool rpc_call_on_cancel(rpc_call *c, void (*fn)(void *arg), void *arg);
/* Memory that lives until the call is released: build responses in it. */
void *rpc_call_alloc(rpc_call *c, size_t n);

/* ---------------------------------------------------------------- streams */

/* Queues a message. Returns 0, or -1 if the stream is closed or finishing.
 * The queue is unbounded here; callers bound it with rpc_stream_queued. */
int rpc_stream_send(rpc_stream *s, const ProtobufCMessage *msg);
/* The same for a message its producer encoded itself (the watch hub
 * encodes each event once for every watcher that gets it): data is copied. */
int rpc_stream_send_bytes(rpc_stream *s, const void *data, size_t len);
/* Bytes packed and not yet handed to the transport. */
size_t rpc_stream_queued(rpc_stream *s);
/* Ends the stream with a status once queued messages are sent. */
void rpc_stream_finish(rpc_stream *s, rpc_code code, const char *message);
const uint8_t *rpc_stream_metadata(const rpc_stream *s, const char *key, size_t *len);
/* Keep the stream object valid beyond closed() (e.g. while another thread
 * may still call rpc_stream_send). */
void rpc_stream_ref(rpc_stream *s);
void rpc_stream_unref(rpc_stream *s);

/* ---------------------------------------------------------------- clients
 *
 * Outgoing calls, for members talking to each other. Completions run on one
 * client thread; callbacks must not block. */

typedef struct rpc_channel rpc_channel;
typedef struct rpc_client_stream rpc_client_stream;

/* A connection to "host:port" that reconnects by itself (with back-off) and
 * pings every keepalive_ms to notice a dead peer (0: 2000). */
rpc_channel *rpc_channel_open(const char *target, int keepalive_ms);
/* Cancels the channel's calls, waits until they are released, frees it. */
void rpc_channel_close(rpc_channel *ch);

/* A unary call. done runs exactly once on the client thread: with the
 * decoded response (freed after done returns) and RPC_OK, or with NULL and
 * the failure. */
typedef void (*rpc_unary_done)(void *arg, rpc_code code, const char *message, const ProtobufCMessage *resp);
void rpc_call_unary(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_type, int64_t timeout_ms, rpc_unary_done done,
                    void *arg);

/* A stream to a server. Messages from the server (if resp_type is set) go to
 * on_message; on_closed runs exactly once when the call ends for any reason,
 * after which nothing more is delivered. Both run on the client thread. The
 * stream is freed soon after on_closed returns: a caller that sends from
 * other threads must stop using it inside on_closed (under its own lock). */
typedef struct {
  const ProtobufCMessageDescriptor *resp_type; /* NULL: the server sends nothing */
  void (*on_message)(void *arg, const ProtobufCMessage *msg);
  void (*on_closed)(void *arg, rpc_code code, const char *message);
  void *arg;
} rpc_client_stream_handler;

/* NULL if the call cannot even start (then no callback runs). */
rpc_client_stream *rpc_client_stream_open(rpc_channel *ch, const char *method,
                                          const rpc_client_stream_handler *h);
/* Queues a message; -1 once the stream is closed or closing. */
int rpc_client_stream_send(rpc_client_stream *s, const ProtobufCMessage *msg);
/* Queues bytes already encoded as the method's request message. */
int rpc_client_stream_send_raw(rpc_client_stream *s, const void *bytes, size_t len);
size_t rpc_client_stream_queued(rpc_client_stream *s);
/* Ends the stream: half-closes after the queue drains (graceful) or cancels
 * at once. Either way on_closed follows, and s must not be used afterwards. */
void rpc_client_stream_close(rpc_client_stream *s, bool graceful);

#endif
