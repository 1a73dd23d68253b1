/* Outgoing calls: channels, unary calls and client streams, for members
 * talking to each other.
 *
 * One completion queue and one thread serve every client call in the
 * process; they start with the first channel and stop with the last. A
 * channel counts the calls it has outstanding so that closing it can cancel
 * them and wait until gRPC has released every one (the same rule as the
 * server side: nothing may complete on a queue after it shuts down). */
#include "base.h"
#include "rpc_internal.h"

#include <grpc/grpc_security.h>
#include <stdio.h>
#include <string.h>

static grpc_completion_queue *rt_cq; /* the runtime's queue (runtime.c) */

/* ---------------------------------------------------------------- channels */

typedef struct qmsg {
  struct qmsg *next;
  grpc_byte_buffer *bb;
  size_t len;
} qmsg;

struct rpc_channel {
  grpc_channel *channel;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls; /* calls gRPC may still complete */
  rpc_client_stream *streams;
};

struct rpc_client_stream {
  rpc_tag send_tag, recv_tag, status_tag, start_tag;
  rpc_channel *ch;
  rpc_client_stream *next, *prev; /* ch->streams, under ch->mu */
  grpc_call *call;
  rpc_client_stream_handler h;
  atomic_int refs;

  pthread_mutex_t mu;
  qmsg *head, *tail;
  size_t queued;
  grpc_byte_buffer *inflight;
  bool sending;
  bool closing;  /* no more sends accepted */
  bool graceful; /* half-close once the queue drains */
  bool over;     /* status received */

  grpc_byte_buffer *recv_buf;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status;
  grpc_slice details;
};

static void call_started(rpc_channel *ch) {
  pthread_mutex_lock(&ch->mu);
  ch->calls++;
  pthread_mutex_unlock(&ch->mu);
}

static void call_released(rpc_channel *ch) {
  pthread_mutex_lock(&ch->mu);
  if (--ch->calls == 0) pthread_cond_broadcast(&ch->cv);
  pthread_mutex_unlock(&ch->mu);
}

rpc_channel *rpc_channel_open(const char *target, int keepalive_ms) {
  rt_cq = rpc_runtime_ref(1);
  rpc_channel *ch = xcalloc(1, sizeof *ch);
  pthread_mutex_init(&ch->mu, NULL);
  pthread_cond_init(&ch->cv, NULL);
  int ka = keepalive_ms > 0 ? keepalive_ms : 2000;
  grpc_arg args[] = {
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS, .value.integer = ka},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS, .value.integer = ka},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, .value.integer = 1},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, .value.integer = 0},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, .value.integer = 100},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, .value.integer = 100},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, .value.integer = 200},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = -1},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = -1},
      /* one connection per channel, not shared with other channels */
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1},
  };
  grpc_channel_args chargs = {.num_args = sizeof args / sizeof args[0], .args = args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  ch->channel = grpc_channel_create(target, creds, &chargs);
  grpc_channel_credentials_release(creds);
  return ch;
}

void rpc_channel_close(rpc_channel *ch) {
  pthread_mutex_lock(&ch->mu);
  for (rpc_client_stream *s = ch->streams; s; s = s->next) grpc_call_cancel(s->call, NULL);
  while (ch->calls > 0) pthread_cond_wait(&ch->cv, &ch->mu);
  pthread_mutex_unlock(&ch->mu);
  grpc_channel_destroy(ch->channel);
  pthread_mutex_destroy(&ch->mu);
  pthread_cond_destroy(&ch->cv);
  free(ch);
  rpc_runtime_unref();
}

static grpc_call *new_call(rpc_channel *ch, const char *method, gpr_timespec deadline) {
  grpc_slice m = grpc_slice_from_static_string(method);
  grpc_call *call =
      grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, rt_cq, m, NULL, deadline, NULL);
  grpc_slice_unref(m);
  return call;
}

/* ---------------------------------------------------------------- unary */

typedef struct {
  rpc_tag tag;
  rpc_channel *ch;
  grpc_call *call;
  const ProtobufCMessageDescriptor *resp_type;
  rpc_unary_done done;
  void *arg;
  grpc_byte_buffer *send, *recv;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status;
  grpc_slice details;
} unary_call;

static void unary_done(rpc_tag *tag, bool ok) {
  unary_call *u = (unary_call *)tag;
  rpc_code code = ok ? (rpc_code)u->status : RPC_UNAVAILABLE;
  char msg[512];
  size_t n = GRPC_SLICE_LENGTH(u->details) < sizeof msg - 1 ? GRPC_SLICE_LENGTH(u->details) : sizeof msg - 1;
  memcpy(msg, GRPC_SLICE_START_PTR(u->details), n);
  msg[n] = 0;
  ProtobufCMessage *resp = NULL;
  if (code == RPC_OK) {
    resp = u->recv ? rpc_unpack(u->resp_type, u->recv) : NULL;
    if (!resp) {
      code = RPC_INTERNAL;
      snprintf(msg, sizeof msg, "malformed response");
    }
  }
  u->done(u->arg, code, msg, resp);
  if (resp) protobuf_c_message_free_unpacked(resp, NULL);
  if (u->send) grpc_byte_buffer_destroy(u->send);
  if (u->recv) grpc_byte_buffer_destroy(u->recv);
  grpc_metadata_array_destroy(&u->initial_md);
  grpc_metadata_array_destroy(&u->trailing_md);
  grpc_slice_unref(u->details);
  grpc_call_unref(u->call);
  rpc_channel *ch = u->ch;
  free(u);
  call_released(ch);
}

void rpc_call_unary(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_type, int64_t timeout_ms, rpc_unary_done done,
                    void *arg) {
  unary_call *u = xcalloc(1, sizeof *u);
  u->tag.done = unary_done;
  u->ch = ch;
  u->resp_type = resp_type;
  u->done = done;
  u->arg = arg;
  u->details = grpc_empty_slice();
  grpc_metadata_array_init(&u->initial_md);
  grpc_metadata_array_init(&u->trailing_md);
  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  u->call = new_call(ch, method, deadline);
  u->send = rpc_pack(req, NULL);
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = u->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &u->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing_md;
  ops[5].data.recv_status_on_client.status = &u->status;
  ops[5].data.recv_status_on_client.status_details = &u->details;
  call_started(ch);
  if (grpc_call_start_batch(u->call, ops, 6, &u->tag, NULL) != GRPC_CALL_OK) {
    u->status = GRPC_STATUS_INTERNAL;
    unary_done(&u->tag, true);
  }
}

/* ---------------------------------------------------------------- streams */

static void stream_unref(rpc_client_stream *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) return;
  rpc_channel *ch = s->ch;
  pthread_mutex_lock(&ch->mu);
  if (s->prev) s->prev->next = s->next; else ch->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  pthread_mutex_unlock(&ch->mu);
  for (qmsg *q = s->head, *next; q; q = next) {
    next = q->next;
    grpc_byte_buffer_destroy(q->bb);
    free(q);
  }
  if (s->inflight) grpc_byte_buffer_destroy(s->inflight);
  if (s->recv_buf) grpc_byte_buffer_destroy(s->recv_buf);
  grpc_metadata_array_destroy(&s->initial_md);
  grpc_metadata_array_destroy(&s->trailing_md);
  grpc_slice_unref(s->details);
  grpc_call_unref(s->call);
  pthread_mutex_destroy(&s->mu);
  free(s);
  call_released(ch);
}

static bool stream_batch(rpc_client_stream *s, grpc_op *ops, size_t n, rpc_tag *tag) {
  atomic_fetch_add(&s->refs, 1);
  if (grpc_call_start_batch(s->call, ops, n, tag, NULL) == GRPC_CALL_OK) return true;
  atomic_fetch_sub(&s->refs, 1);
  return false;
}

/* With s->mu held: start the next send, or the half-close once drained. */
static void pump_locked(rpc_client_stream *s) {
  if (s->sending || s->over) return;
  grpc_op op;
  memset(&op, 0, sizeof op);
  if (s->head) {
    qmsg *q = s->head;
    s->head = q->next;
    if (!s->head) s->tail = NULL;
    s->queued -= q->len;
    s->inflight = q->bb;
    free(q);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = s->inflight;
  } else if (s->closing && s->graceful) {
    s->graceful = false; /* once */
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  } else {
    return;
  }
  s->sending = true;
  if (!stream_batch(s, &op, 1, &s->send_tag)) s->sending = false;
}

static void stream_send_done(rpc_tag *tag, bool ok) {
  rpc_client_stream *s = (rpc_client_stream *)((char *)tag - offsetof(rpc_client_stream, send_tag));
  pthread_mutex_lock(&s->mu);
  if (s->inflight) grpc_byte_buffer_destroy(s->inflight);
  s->inflight = NULL;
  s->sending = false;
  if (ok) pump_locked(s);
  pthread_mutex_unlock(&s->mu);
  stream_unref(s);
}

static void post_recv(rpc_client_stream *s) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &s->recv_buf;
  stream_batch(s, &op, 1, &s->recv_tag);
}

static void stream_recv_done(rpc_tag *tag, bool ok) {
  rpc_client_stream *s = (rpc_client_stream *)((char *)tag - offsetof(rpc_client_stream, recv_tag));
  grpc_byte_buffer *bb = s->recv_buf;
  s->recv_buf = NULL;
  if (ok && bb) {
    ProtobufCMessage *m = rpc_unpack(s->h.resp_type, bb);
    grpc_byte_buffer_destroy(bb);
    pthread_mutex_lock(&s->mu);
    bool over = s->over;
    pthread_mutex_unlock(&s->mu);
    if (m) {
      if (!over && s->h.on_message) s->h.on_message(s->h.arg, m);
      protobuf_c_message_free_unpacked(m, NULL);
      post_recv(s);
    } else {
      grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, "malformed message", NULL);
    }
  } else if (bb) {
    grpc_byte_buffer_destroy(bb);
  }
  stream_unref(s);
}

static void stream_status_done(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_client_stream *s = (rpc_client_stream *)((char *)tag - offsetof(rpc_client_stream, status_tag));
  pthread_mutex_lock(&s->mu);
  s->over = true;
  s->closing = true;
  for (qmsg *q = s->head, *next; q; q = next) {
    next = q->next;
    grpc_byte_buffer_destroy(q->bb);
    free(q);
  }
  s->head = s->tail = NULL;
  s->queued = 0;
  pthread_mutex_unlock(&s->mu);
  char msg[512];
  size_t n = GRPC_SLICE_LENGTH(s->details) < sizeof msg - 1 ? GRPC_SLICE_LENGTH(s->details) : sizeof msg - 1;
  memcpy(msg, GRPC_SLICE_START_PTR(s->details), n);
  msg[n] = 0;
  if (s->h.on_closed) s->h.on_closed(s->h.arg, (rpc_code)s->status, msg);
  stream_unref(s); /* this batch */
  stream_unref(s); /* creation */
}

static void stream_start_done(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_client_stream *s = (rpc_client_stream *)((char *)tag - offsetof(rpc_client_stream, start_tag));
  stream_unref(s);
}

rpc_client_stream *rpc_client_stream_open(rpc_channel *ch, const char *method,
                                          const rpc_client_stream_handler *h) {
  rpc_client_stream *s = xcalloc(1, sizeof *s);
  s->send_tag.done = stream_send_done;
  s->recv_tag.done = stream_recv_done;
  s->status_tag.done = stream_status_done;
  s->start_tag.done = stream_start_done;
  s->ch = ch;
  s->h = *h;
  s->details = grpc_empty_slice();
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->mu, NULL);
  grpc_metadata_array_init(&s->initial_md);
  grpc_metadata_array_init(&s->trailing_md);
  s->call = new_call(ch, method, gpr_inf_future(GPR_CLOCK_REALTIME));
  call_started(ch);
  pthread_mutex_lock(&ch->mu);
  s->next = ch->streams;
  if (s->next) s->next->prev = s;
  ch->streams = s;
  pthread_mutex_unlock(&ch->mu);

  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
  ops[0].data.recv_status_on_client.status = &s->status;
  ops[0].data.recv_status_on_client.status_details = &s->details;
  if (!stream_batch(s, ops, 1, &s->status_tag)) {
    stream_unref(s); /* cannot even start: no callback will run */
    return NULL;
  }
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[1].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
  stream_batch(s, ops, 2, &s->start_tag);
  if (h->resp_type) post_recv(s);
  return s;
}

static int enqueue(rpc_client_stream *s, grpc_byte_buffer *bb, size_t len) {
  qmsg *q = xmalloc(sizeof *q);
  q->next = NULL;
  q->bb = bb;
  q->len = len;
  pthread_mutex_lock(&s->mu);
  if (s->closing || s->over) {
    pthread_mutex_unlock(&s->mu);
    grpc_byte_buffer_destroy(bb);
    free(q);
    return -1;
  }
  if (s->tail) s->tail->next = q; else s->head = q;
  s->tail = q;
  s->queued += len;
  pump_locked(s);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

int rpc_client_stream_send(rpc_client_stream *s, const ProtobufCMessage *msg) {
  size_t len;
  grpc_byte_buffer *bb = rpc_pack(msg, &len);
  return enqueue(s, bb, len);
}

int rpc_client_stream_send_raw(rpc_client_stream *s, const void *bytes, size_t len) {
  grpc_slice slice = grpc_slice_from_copied_buffer(bytes, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  return enqueue(s, bb, len);
}

size_t rpc_client_stream_queued(rpc_client_stream *s) {
  pthread_mutex_lock(&s->mu);
  size_t n = s->queued;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void rpc_client_stream_close(rpc_client_stream *s, bool graceful) {
  pthread_mutex_lock(&s->mu);
  bool already = s->closing;
  s->closing = true;
  if (!already && graceful) {
    s->graceful = true;
    pump_locked(s);
  }
  pthread_mutex_unlock(&s->mu);
  if (!graceful) grpc_call_cancel(s->call, NULL);
}
