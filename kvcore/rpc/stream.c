/* Streaming calls (Watch, LeaseKeepAlive, Snapshot, Observe).
 *
 * gRPC allows one batch of each kind in flight per call, so a stream keeps
 * one receive posted, sends one queued message at a time, and posts
 * RECV_CLOSE_ON_SERVER once to learn when the call is over.
 *
 * Two locks: `qmu` guards the send queue and flags (rpc_stream_send may be
 * called from any thread); `cbmu` serializes the handler's callbacks, so a
 * handler never sees message() and closed() at the same time even with
 * several completion-queue threads. rpc_stream_send never takes cbmu, so a
 * handler may send from inside its callbacks. */
#include "base.h"
#include "rpc_internal.h"

#include <string.h>

typedef struct qitem {
  struct qitem *next;
  grpc_byte_buffer *bb;
  size_t len;
} qitem;

struct rpc_stream {
  rpc_tag recv_tag, send_tag, status_tag, close_tag;
  rpc_server *srv;
  const rpc_method *m;
  void *state;
  grpc_call *call;
  grpc_metadata_array md;
  atomic_int refs;

  pthread_mutex_t cbmu;
  bool closed_called;

  pthread_mutex_t qmu;
  qitem *head, *tail;
  size_t queued;
  grpc_byte_buffer *inflight;
  bool sending;
  bool md_sent;
  bool finishing;
  bool over; /* the call is finished: nothing more may be sent */
  rpc_code fin_code;
  grpc_slice fin_details;

  grpc_byte_buffer *recv_buf;
  int recv_cancelled;
};

void rpc_stream_ref(rpc_stream *s) { atomic_fetch_add(&s->refs, 1); }

void rpc_stream_unref(rpc_stream *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) return;
  rpc_server *srv = s->srv;
  for (qitem *q = s->head, *next; q; q = next) {
    next = q->next;
    grpc_byte_buffer_destroy(q->bb);
    free(q);
  }
  if (s->inflight) grpc_byte_buffer_destroy(s->inflight);
  if (s->recv_buf) grpc_byte_buffer_destroy(s->recv_buf);
  grpc_slice_unref(s->fin_details);
  grpc_metadata_array_destroy(&s->md);
  grpc_call_unref(s->call);
  pthread_mutex_destroy(&s->cbmu);
  pthread_mutex_destroy(&s->qmu);
  free(s);
  rpc_live_add(srv, -1);
}

static bool start_batch(rpc_stream *s, grpc_op *ops, size_t n, rpc_tag *tag) {
  rpc_stream_ref(s);
  if (grpc_call_start_batch(s->call, ops, n, tag, NULL) == GRPC_CALL_OK) return true;
  atomic_fetch_sub(&s->refs, 1); /* the creation ref is still held: never zero here */
  return false;
}

/* Runs a handler callback unless closed() already ran. */
#define WITH_HANDLER(s, call)                       \
  do {                                              \
    pthread_mutex_lock(&(s)->cbmu);                 \
    if (!(s)->closed_called) call;                  \
    pthread_mutex_unlock(&(s)->cbmu);               \
  } while (0)

/* ---------------------------------------------------------------- sending */

static void send_status_locked(rpc_stream *s) {
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!s->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->md_sent = true;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)s->fin_code;
  ops[n++].data.send_status_from_server.status_details = &s->fin_details;
  s->sending = true;
  if (!start_batch(s, ops, n, &s->status_tag)) s->sending = false;
}

static void send_next_locked(rpc_stream *s) {
  qitem *q = s->head;
  s->head = q->next;
  if (!s->head) s->tail = NULL;
  s->queued -= q->len;
  s->inflight = q->bb;
  free(q);
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!s->md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->md_sent = true;
  }
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].data.send_message.send_message = s->inflight;
  /* More queued behind this one: let gRPC buffer it (the send completes at
   * once) and write it with the next, instead of one write per message.
   * The last queued message goes without the hint and flushes them all. */
  if (s->head) ops[n].flags = GRPC_WRITE_BUFFER_HINT;
  n++;
  s->sending = true;
  if (!start_batch(s, ops, n, &s->send_tag)) {
    s->sending = false;
    s->over = true;
  }
}

static void drop_queue_locked(rpc_stream *s) {
  for (qitem *q = s->head, *next; q; q = next) {
    next = q->next;
    grpc_byte_buffer_destroy(q->bb);
    free(q);
  }
  s->head = s->tail = NULL;
  s->queued = 0;
}

static void send_done(rpc_tag *tag, bool ok) {
  rpc_stream *s = (rpc_stream *)((char *)tag - offsetof(rpc_stream, send_tag));
  bool drained = false;
  pthread_mutex_lock(&s->qmu);
  grpc_byte_buffer_destroy(s->inflight);
  s->inflight = NULL;
  s->sending = false;
  if (!ok || s->over) {
    s->over = true;
    drop_queue_locked(s);
  } else if (s->head) {
    send_next_locked(s);
  } else if (s->finishing) {
    send_status_locked(s);
  } else {
    drained = true;
  }
  pthread_mutex_unlock(&s->qmu);
  if (drained && s->m->stream->drained) WITH_HANDLER(s, s->m->stream->drained(s->state, s));
  rpc_stream_unref(s);
}

static void status_done(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_stream *s = (rpc_stream *)((char *)tag - offsetof(rpc_stream, status_tag));
  pthread_mutex_lock(&s->qmu);
  s->sending = false;
  s->over = true;
  pthread_mutex_unlock(&s->qmu);
  rpc_stream_unref(s);
}

/* Queues bb (len bytes), packed outside the lock: messages can be large. */
static int enqueue(rpc_stream *s, grpc_byte_buffer *bb, size_t len) {
  qitem *q = xmalloc(sizeof *q);
  q->next = NULL;
  q->bb = bb;
  q->len = len;
  pthread_mutex_lock(&s->qmu);
  if (s->over || s->finishing) {
    pthread_mutex_unlock(&s->qmu);
    grpc_byte_buffer_destroy(q->bb);
    free(q);
    return -1;
  }
  if (s->tail) s->tail->next = q; else s->head = q;
  s->tail = q;
  s->queued += q->len;
  if (!s->sending) send_next_locked(s);
  pthread_mutex_unlock(&s->qmu);
  return 0;
}

int rpc_stream_send(rpc_stream *s, const ProtobufCMessage *msg) {
  pthread_mutex_lock(&s->qmu);
  bool gone = s->over || s->finishing;
  pthread_mutex_unlock(&s->qmu);
  if (gone) return -1; /* spare the packing */
  size_t len;
  grpc_byte_buffer *bb = rpc_pack(msg, &len);
  return enqueue(s, bb, len);
}

int rpc_stream_send_bytes(rpc_stream *s, const void *data, size_t len) {
  uint8_t *copy;
  grpc_byte_buffer *bb = rpc_buffer_new(len, &copy);
  if (len) memcpy(copy, data, len);
  return enqueue(s, bb, len);
}

size_t rpc_stream_queued(rpc_stream *s) {
  pthread_mutex_lock(&s->qmu);
  size_t n = s->queued;
  pthread_mutex_unlock(&s->qmu);
  return n;
}

void rpc_stream_finish(rpc_stream *s, rpc_code code, const char *message) {
  pthread_mutex_lock(&s->qmu);
  if (!s->finishing && !s->over) {
    s->finishing = true;
    s->fin_code = code;
    s->fin_details = rpc_status_slice(code == RPC_OK ? NULL : message);
    if (!s->sending && !s->head) send_status_locked(s);
  }
  pthread_mutex_unlock(&s->qmu);
}

const uint8_t *rpc_stream_metadata(const rpc_stream *s, const char *key, size_t *len) {
  return rpc_metadata_find(&s->md, key, len);
}

/* ---------------------------------------------------------------- receiving */

static void post_recv(rpc_stream *s) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &s->recv_buf;
  start_batch(s, &op, 1, &s->recv_tag);
}

static void recv_done(rpc_tag *tag, bool ok) {
  rpc_stream *s = (rpc_stream *)((char *)tag - offsetof(rpc_stream, recv_tag));
  grpc_byte_buffer *bb = s->recv_buf;
  s->recv_buf = NULL;
  if (ok && bb) {
    ProtobufCMessage *msg = rpc_unpack(s->m->request, bb);
    grpc_byte_buffer_destroy(bb);
    if (!msg) {
      rpc_stream_finish(s, RPC_INTERNAL, "grpc: failed to unmarshal the received message");
    } else {
      WITH_HANDLER(s, s->m->stream->message(s->state, s, msg));
      protobuf_c_message_free_unpacked(msg, NULL);
      pthread_mutex_lock(&s->qmu);
      bool more = !s->over && !s->finishing;
      pthread_mutex_unlock(&s->qmu);
      if (more) post_recv(s);
    }
  } else {
    if (bb) grpc_byte_buffer_destroy(bb);
    if (ok && grpc_call_failed_before_recv_message(s->call)) {
      /* Not a half-close: the client reset the stream (etcd's clients
       * cancel every KeepAliveOnce stream). Nothing may be sent any more,
       * and a status sent now would cost gRPC a trailers frame and a
       * RST_STREAM the client throws away. close_done follows and calls
       * closed(). */
      pthread_mutex_lock(&s->qmu);
      s->over = true;
      if (!s->sending) drop_queue_locked(s);
      pthread_mutex_unlock(&s->qmu);
    } else if (ok && s->m->stream->half_close) {
      WITH_HANDLER(s, s->m->stream->half_close(s->state, s));
    }
  }
  rpc_stream_unref(s);
}

static void close_done(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_stream *s = (rpc_stream *)((char *)tag - offsetof(rpc_stream, close_tag));
  pthread_mutex_lock(&s->qmu);
  s->over = true;
  if (!s->sending) drop_queue_locked(s);
  pthread_mutex_unlock(&s->qmu);
  pthread_mutex_lock(&s->cbmu);
  if (!s->closed_called) {
    s->closed_called = true;
    s->m->stream->closed(s->state, s);
  }
  pthread_mutex_unlock(&s->cbmu);
  rpc_stream_unref(s); /* this batch */
  rpc_stream_unref(s); /* creation */
}

void rpc_stream_start(rpc_server *srv, const rpc_method *m, rpc_slot *slot) {
  rpc_stream *s = xcalloc(1, sizeof *s);
  s->recv_tag.done = recv_done;
  s->send_tag.done = send_done;
  s->status_tag.done = status_done;
  s->close_tag.done = close_done;
  s->srv = srv;
  s->m = m;
  s->call = slot->call;
  s->md = slot->md;
  s->fin_details = grpc_empty_slice();
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->cbmu, NULL);
  pthread_mutex_init(&s->qmu, NULL);
  rpc_live_add(srv, 1);

  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &s->recv_cancelled;
  if (!start_batch(s, &op, 1, &s->close_tag)) {
    rpc_stream_unref(s);
    return;
  }
  /* open() runs before any other callback can: hold cbmu across it and
   * the first receive. */
  pthread_mutex_lock(&s->cbmu);
  s->state = m->stream->open(m->ctx, s);
  pthread_mutex_unlock(&s->cbmu);
  post_recv(s);
}
