/* Server lifecycle: channel arguments, ports, completion-queue threads, the
 * posted request slots, and an orderly shutdown (the order matters: gRPC
 * asserts if the queue shuts down while anything can still complete). */
#include "base.h"
#include "rpc_internal.h"

#include <grpc/grpc_security.h>
#include <stdio.h>
#include <string.h>

/* Requests kept posted per method: calls beyond these wait inside gRPC (not
 * refused), so this only trims latency under bursts. */
enum { SLOTS_PER_METHOD = 8, SLOTS_CATCH_ALL = 2 };

void rpc_global_init(void) { grpc_init(); }
void rpc_global_shutdown(void) { grpc_shutdown(); }

void rpc_live_add(rpc_server *s, int n) {
  if (atomic_fetch_add(&s->live, n) + n == 0) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
}

void rpc_unanswered_add(rpc_server *s, int n) {
  if (atomic_fetch_add(&s->unanswered, n) + n == 0 && atomic_load(&s->stopping)) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
}

/* ---------------------------------------------------------------- slots */

static void slot_done(rpc_tag *tag, bool ok);

static void slot_post(rpc_slot *slot) {
  rpc_server *srv = slot->srv;
  grpc_metadata_array_init(&slot->md);
  slot->call = NULL;
  slot->payload = NULL;
  grpc_call_error err;
  if (slot->method == SIZE_MAX) {
    grpc_call_details_init(&slot->details);
    err = grpc_server_request_call(srv->server, &slot->call, &slot->details, &slot->md, srv->cq,
                                   srv->cq, slot);
  } else {
    err = grpc_server_request_registered_call(srv->server, srv->registered[slot->method],
                                              &slot->call, &slot->deadline, &slot->md,
                                              srv->methods[slot->method].unary ? &slot->payload : NULL,
                                              srv->cq, srv->cq, slot);
  }
  if (err != GRPC_CALL_OK) {
    /* Only possible while shutting down: the slot is simply retired. */
    grpc_metadata_array_destroy(&slot->md);
    if (slot->method == SIZE_MAX) grpc_call_details_destroy(&slot->details);
    free(slot);
    rpc_live_add(srv, -1);
  }
}

static void slot_new(rpc_server *srv, size_t method) {
  rpc_slot *slot = xcalloc(1, sizeof *slot);
  slot->tag.done = slot_done;
  slot->srv = srv;
  slot->method = method;
  rpc_live_add(srv, 1);
  slot_post(slot);
}

/* An unknown method: UNIMPLEMENTED with grpc-go's wording, so clients that
 * match on it behave as with etcd. */
typedef struct {
  rpc_tag tag;
  rpc_server *srv;
  grpc_call *call;
  grpc_slice details;
  int cancelled;
} unimplemented_call;

static void unimplemented_done(rpc_tag *tag, bool ok) {
  (void)ok;
  unimplemented_call *u = (unimplemented_call *)tag;
  grpc_slice_unref(u->details);
  grpc_call_unref(u->call);
  rpc_server *srv = u->srv;
  free(u);
  rpc_live_add(srv, -1);
}

static void answer_unimplemented(rpc_server *srv, grpc_call *call, grpc_slice method) {
  char path[512], msg[600];
  size_t n = GRPC_SLICE_LENGTH(method) < sizeof path - 1 ? GRPC_SLICE_LENGTH(method) : sizeof path - 1;
  memcpy(path, GRPC_SLICE_START_PTR(method), n);
  path[n] = 0;
  /* path is "/package.Service/Method" */
  const char *svc = path[0] == '/' ? path + 1 : path;
  const char *slash = strchr(svc, '/');
  bool known_service = false;
  if (slash) {
    size_t svc_len = (size_t)(slash - path) + 1; /* "/package.Service/" */
    for (size_t i = 0; i < srv->n_methods; i++)
      if (strncmp(srv->methods[i].path, path, svc_len) == 0) known_service = true;
  }
  if (slash && known_service)
    snprintf(msg, sizeof msg, "unknown method %s for service %.*s", slash + 1, (int)(slash - svc), svc);
  else
    snprintf(msg, sizeof msg, "unknown service %.*s", slash ? (int)(slash - svc) : (int)strlen(svc), svc);

  unimplemented_call *u = xcalloc(1, sizeof *u);
  u->tag.done = unimplemented_done;
  u->srv = srv;
  u->call = call;
  u->details = grpc_slice_from_copied_string(msg);
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
  ops[1].data.send_status_from_server.status_details = &u->details;
  ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[2].data.recv_close_on_server.cancelled = &u->cancelled;
  rpc_live_add(srv, 1);
  if (grpc_call_start_batch(call, ops, 3, &u->tag, NULL) != GRPC_CALL_OK) unimplemented_done(&u->tag, false);
}

static void slot_done(rpc_tag *tag, bool ok) {
  rpc_slot *slot = (rpc_slot *)tag;
  rpc_server *srv = slot->srv;
  if (!ok || atomic_load(&srv->stopping)) {
    if (slot->call) grpc_call_unref(slot->call);
    if (slot->payload) grpc_byte_buffer_destroy(slot->payload);
    grpc_metadata_array_destroy(&slot->md);
    if (slot->method == SIZE_MAX) grpc_call_details_destroy(&slot->details);
    free(slot);
    rpc_live_add(srv, -1);
    return;
  }
  if (slot->method == SIZE_MAX) {
    answer_unimplemented(srv, slot->call, slot->details.method);
    grpc_metadata_array_destroy(&slot->md);
    grpc_call_details_destroy(&slot->details);
  } else {
    const rpc_method *m = &srv->methods[slot->method];
    if (m->unary)
      rpc_unary_start(srv, m, slot);
    else
      rpc_stream_start(srv, m, slot);
  }
  slot_post(slot); /* ownership moved on; wait for the next client */
}

static void shutdown_done(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_server *srv = (rpc_server *)((char *)tag - offsetof(rpc_server, shutdown_tag));
  pthread_mutex_lock(&srv->mu);
  srv->shutdown_notified = true;
  pthread_cond_broadcast(&srv->cv);
  pthread_mutex_unlock(&srv->mu);
}

/* ---------------------------------------------------------------- start/stop */

int rpc_server_start(const rpc_server_options *opt, const rpc_method *methods, size_t n_methods,
                     rpc_server **out, char *err, size_t err_len) {
  rpc_server *srv = xcalloc(1, sizeof *srv);
  srv->methods = methods;
  srv->n_methods = n_methods;
  pthread_mutex_init(&srv->mu, NULL);
  pthread_cond_init(&srv->cv, NULL);
  srv->shutdown_tag.done = shutdown_done;

  /* etcd's server policy: clients may ping every 5 s even without calls
   * (etcdctl watch and clientv3 keepalives do), never GOAWAY for pings;
   * server keepalive every 2 h with a 20 s timeout; receive limit is
   * --max-request-bytes plus gRPC overhead; no send limit. */
  grpc_arg args[] = {
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
       .value.integer = opt->max_recv_bytes ? (int)opt->max_recv_bytes : 4 << 20},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = -1},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
       .value.integer = opt->min_ping_interval_ms > 0 ? opt->min_ping_interval_ms : 5000},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MAX_PING_STRIKES, .value.integer = 0},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, .value.integer = 1},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS, .value.integer = 2 * 3600 * 1000},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS, .value.integer = 20000},
      /* gRPC C core binds with SO_REUSEPORT unless told not to: a second
       * process on the same port would then start without complaint and
       * the kernel would split new connections between the two. etcd (Go)
       * gets "address already in use"; so do we. */
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
  };
  grpc_channel_args chargs = {.num_args = sizeof args / sizeof args[0], .args = args};
  srv->server = grpc_server_create(&chargs, NULL);
  srv->cq = rpc_runtime_ref(opt->threads > 0 ? opt->threads : 1);
  grpc_server_register_completion_queue(srv->server, srv->cq, NULL);

  srv->registered = xcalloc(n_methods, sizeof *srv->registered);
  for (size_t i = 0; i < n_methods; i++) {
    srv->registered[i] = grpc_server_register_method(
        srv->server, methods[i].path, NULL,
        methods[i].unary ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
    if (!srv->registered[i]) {
      snprintf(err, err_len, "cannot register method %s", methods[i].path);
      goto fail;
    }
  }

  srv->n_ports = opt->n_listen;
  srv->ports = xcalloc(opt->n_listen ? opt->n_listen : 1, sizeof *srv->ports);
  for (size_t i = 0; i < opt->n_listen; i++) {
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    srv->ports[i] = grpc_server_add_http2_port(srv->server, opt->listen[i], creds);
    grpc_server_credentials_release(creds);
    if (srv->ports[i] == 0) {
      snprintf(err, err_len, "listen tcp %s: bind: address already in use or not available",
               opt->listen[i]);
      goto fail;
    }
  }

  grpc_server_start(srv->server);
  for (size_t i = 0; i < n_methods; i++)
    for (int k = 0; k < SLOTS_PER_METHOD; k++) slot_new(srv, i);
  for (int k = 0; k < SLOTS_CATCH_ALL; k++) slot_new(srv, SIZE_MAX);
  *out = srv;
  return 0;

fail:
  /* Nothing was started: no call can exist yet. */
  grpc_server_destroy(srv->server);
  rpc_runtime_unref();
  free(srv->registered);
  free(srv->ports);
  free(srv);
  return -1;
}

int rpc_server_port(const rpc_server *s, size_t i) { return i < s->n_ports ? s->ports[i] : 0; }

void rpc_server_drain(rpc_server *srv, int grace_ms) {
  if (atomic_exchange(&srv->stopping, true)) return;
  /* gRPC refuses new calls from here on (clients see UNAVAILABLE and move
   * to another endpoint) but lets the calls in flight finish. */
  grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
  if (grace_ms > 0) {
    struct timespec until = time_after_ms(CLOCK_REALTIME, grace_ms);
    pthread_mutex_lock(&srv->mu);
    while (atomic_load(&srv->unanswered) > 0)
      if (pthread_cond_timedwait(&srv->cv, &srv->mu, &until) != 0) break;
    pthread_mutex_unlock(&srv->mu);
  }
  grpc_server_cancel_all_calls(srv->server);
}

void rpc_server_shutdown(rpc_server *srv) { rpc_server_drain(srv, 0); }

void rpc_server_free(rpc_server *srv) {
  rpc_server_shutdown(srv);
  pthread_mutex_lock(&srv->mu);
  while (!srv->shutdown_notified || atomic_load(&srv->live) != 0) pthread_cond_wait(&srv->cv, &srv->mu);
  pthread_mutex_unlock(&srv->mu);
  grpc_server_destroy(srv->server);
  rpc_runtime_unref();
  pthread_mutex_destroy(&srv->mu);
  pthread_cond_destroy(&srv->cv);
  free(srv->registered);
  free(srv->ports);
  free(srv);
}
