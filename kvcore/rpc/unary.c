/* Unary calls: decode, hand to the method, send exactly one reply.
 *
 * References: one for the reply batch, one more for the early
 * RECV_CLOSE_ON_SERVER batch of long_wait methods (which is how a waiting
 * call learns that its client gave up). The call is freed when both
 * batches have completed. */
#include "base.h"
#include "rpc_internal.h"

#include <string.h>

struct rpc_call {
  rpc_tag reply_tag;
  rpc_tag close_tag;
  rpc_tag handoff_tag;
  grpc_op reply_ops[4];
  size_t n_reply_ops;
  struct rpc_call *group_next; /* the rest of a reply group (rpc_reply_group_end) */
  rpc_server *srv;
  const rpc_method *m;
  grpc_call *call;
  grpc_metadata_array md;
  int64_t deadline;
  ProtobufCMessage *req;
  atomic_int refs;
  atomic_bool replied;
  /* cancellation (long_wait only) */
  pthread_mutex_t mu;
  bool cancelled;
  void (*on_cancel)(void *);
  void *cancel_arg;
  int recv_cancelled;
  /* reply batch */
  grpc_byte_buffer *send;
  grpc_byte_buffer *deferred;
  grpc_slice details;
  arena *mem;
};

static void call_unref(rpc_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1) return;
  rpc_server *srv = c->srv;
  if (c->req) protobuf_c_message_free_unpacked(c->req, NULL);
  if (c->send) grpc_byte_buffer_destroy(c->send);
  if (c->deferred) grpc_byte_buffer_destroy(c->deferred);
  grpc_slice_unref(c->details);
  grpc_metadata_array_destroy(&c->md);
  grpc_call_unref(c->call);
  if (c->m->long_wait) pthread_mutex_destroy(&c->mu);
  arena_free(c->mem);
  free(c);
  rpc_live_add(srv, -1);
}

static void reply_done(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_call *c = (rpc_call *)((char *)tag - offsetof(rpc_call, reply_tag));
  if (!c->m->long_wait) rpc_unanswered_add(c->srv, -1);
  call_unref(c);
}

static void close_done(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_call *c = (rpc_call *)((char *)tag - offsetof(rpc_call, close_tag));
  void (*fn)(void *) = NULL;
  void *arg = NULL;
  pthread_mutex_lock(&c->mu);
  /* RECV_CLOSE_ON_SERVER also completes after a normal reply; only a
   * cancellation before our reply concerns the handler. */
  if (c->recv_cancelled && !atomic_load(&c->replied)) {
    c->cancelled = true;
    fn = c->on_cancel;
    arg = c->cancel_arg;
  }
  pthread_mutex_unlock(&c->mu);
  if (fn) fn(arg);
  call_unref(c);
}

static void start_close_watch(rpc_call *c) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->recv_cancelled;
  atomic_fetch_add(&c->refs, 1);
  if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL) != GRPC_CALL_OK) {
    c->cancelled = true;
    atomic_fetch_sub(&c->refs, 1);
  }
}

/* A reply group of the calling thread (rpc_reply_group_begin/end): the
 * replies it makes meanwhile reach the queue thread with one empty batch. */
static _Thread_local int group_open; /* nesting depth */
static _Thread_local rpc_call *group_head, **group_tail;

static void hand_off(rpc_call *first);
static void start_reply(rpc_call *c);

static void send_reply(rpc_call *c, grpc_byte_buffer *msg, rpc_code code, const char *message) {
  if (atomic_exchange(&c->replied, true)) {
    log_error("rpc: %s replied twice", c->m->path);
    if (msg) grpc_byte_buffer_destroy(msg);
    return;
  }
  grpc_op ops[4];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (msg) {
    c->send = msg;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = msg;
  }
  c->details = rpc_status_slice(code == RPC_OK ? NULL : message);
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)code;
  ops[n++].data.send_status_from_server.status_details = &c->details;
  if (!c->m->long_wait) {
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->recv_cancelled;
  }
  memcpy(c->reply_ops, ops, sizeof ops);
  c->n_reply_ops = n;
  c->group_next = NULL;
  if (rpc_on_cq_thread()) return start_reply(c);
  /* From another thread (the apply thread): hand the reply to the
   * completion-queue thread with an empty batch, which gRPC completes at
   * once. Sending it here would make this thread and the queue thread,
   * which reads the same connection, contend for the transport, and gRPC
   * then moves the rest of the work to its executor thread: two more
   * thread wake-ups per reply. */
  if (group_open) {
    *group_tail = c;
    group_tail = &c->group_next;
    return;
  }
  hand_off(c);
}

static void start_reply(rpc_call *c) {
  if (grpc_call_start_batch(c->call, c->reply_ops, c->n_reply_ops, &c->reply_tag, NULL) != GRPC_CALL_OK)
    reply_done(&c->reply_tag, false);
}

/* Runs on the queue thread: sends c's reply and those grouped after it. */
static void handoff_done(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_call *c = (rpc_call *)((char *)tag - offsetof(rpc_call, handoff_tag));
  /* Replies for the same connection leave together (cork.c). */
  grpc_call *calls[RPC_CORK_MAX_CALLS];
  size_t n = 0;
  if (rpc_cork_enabled())
    for (rpc_call *x = c; x && n < RPC_CORK_MAX_CALLS; x = x->group_next) calls[n++] = x->call;
  rpc_cork k;
  rpc_cork_begin(&k, calls, n);
  for (rpc_call *next; c; c = next) {
    next = c->group_next;
    start_reply(c);
  }
  rpc_cork_end(&k);
}

static void hand_off(rpc_call *first) {
  /* Refused only for a call in a broken state: send from here, never lose a reply. */
  if (grpc_call_start_batch(first->call, NULL, 0, &first->handoff_tag, NULL) != GRPC_CALL_OK)
    handoff_done(&first->handoff_tag, false);
}

void rpc_reply_group_begin(void) {
  if (group_open++ > 0) return; /* nested: the outer group carries these too */
  group_head = NULL;
  group_tail = &group_head;
}

void rpc_reply_group_end(void) {
  if (group_open == 0 || --group_open > 0) return;
  rpc_call *first = group_head;
  group_head = NULL;
  if (first) hand_off(first);
}

void rpc_unary_start(rpc_server *srv, const rpc_method *m, rpc_slot *slot) {
  rpc_call *c = xcalloc(1, sizeof *c);
  c->reply_tag.done = reply_done;
  c->close_tag.done = close_done;
  c->handoff_tag.done = handoff_done;
  c->srv = srv;
  c->m = m;
  c->call = slot->call;
  c->md = slot->md; /* the slot re-initialises its own copy */
  c->deadline = rpc_deadline_to_mono(slot->deadline);
  c->details = grpc_empty_slice();
  atomic_init(&c->refs, 1);
  rpc_live_add(srv, 1);
  if (!m->long_wait) rpc_unanswered_add(srv, 1);
  if (m->long_wait) {
    pthread_mutex_init(&c->mu, NULL);
    start_close_watch(c);
  }
  grpc_byte_buffer *payload = slot->payload;
  slot->payload = NULL;
  c->req = payload ? rpc_unpack(m->request, payload) : NULL;
  if (payload) grpc_byte_buffer_destroy(payload);
  if (!c->req) {
    rpc_fail(c, RPC_INTERNAL, "grpc: error unmarshalling request: malformed message");
    return;
  }
  m->unary(m->ctx, c, c->req);
}

void rpc_reply(rpc_call *c, const ProtobufCMessage *resp) { send_reply(c, rpc_pack(resp, NULL), RPC_OK, NULL); }

void rpc_fail(rpc_call *c, rpc_code code, const char *message) {
  if (c->deferred) {
    grpc_byte_buffer_destroy(c->deferred);
    c->deferred = NULL;
  }
  send_reply(c, NULL, code == RPC_OK ? RPC_UNKNOWN : code, message);
}

void rpc_reply_deferred(rpc_call *c, const ProtobufCMessage *resp) {
  if (c->deferred) grpc_byte_buffer_destroy(c->deferred);
  c->deferred = rpc_pack(resp, NULL);
}

void rpc_send_deferred(rpc_call *c) {
  grpc_byte_buffer *msg = c->deferred;
  c->deferred = NULL;
  if (!msg) {
    rpc_fail(c, RPC_INTERNAL, "etcdserver: no reply was prepared");
    return;
  }
  send_reply(c, msg, RPC_OK, NULL);
}

const uint8_t *rpc_call_metadata(const rpc_call *c, const char *key, size_t *len) {
  return rpc_metadata_find(&c->md, key, len);
}

int64_t rpc_call_deadline(const rpc_call *c) { return c->deadline; }

bool rpc_call_on_cancel(rpc_call *c, void (*fn)(void *), void *arg) {
  if (!c->m->long_wait) return true;
  pthread_mutex_lock(&c->mu);
  bool cancelled = c->cancelled;
  if (!cancelled) {
    c->on_cancel = fn;
    c->cancel_arg = arg;
  }
  pthread_mutex_unlock(&c->mu);
  return !cancelled;
}

void *rpc_call_alloc(rpc_call *c, size_t n) {
  if (!c->mem) c->mem = arena_new();
  return arena_alloc(c->mem, n);
}
