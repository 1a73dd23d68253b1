/* The Watch service: each gRPC Watch stream is a watch_stream of the
 * member's hub (kvcore/watch), which does all the work; this file only
 * connects the two and starts the hub with the member's settings. */
#include "base.h"
#include "node.h"
#include "services.h"
#include "watch.h"

#include <stdio.h>
#include <stdlib.h>

static int sink_send(void *sink, const ProtobufCMessage *m) { return rpc_stream_send(sink, m); }
static int sink_send_bytes(void *sink, const uint8_t *data, size_t len) { return rpc_stream_send_bytes(sink, data, len); }
static size_t sink_queued(void *sink) { return rpc_stream_queued(sink); }
static void sink_finish(void *sink, int code, const char *message) { rpc_stream_finish(sink, (rpc_code)code, message); }

static const watch_sink_ops sink_ops = {
    .send = sink_send, .send_bytes = sink_send_bytes, .queued = sink_queued, .finish = sink_finish};

static void *watch_open(void *ctx, rpc_stream *s) {
  node *n = ctx;
  return watch_stream_open(n->watch, &sink_ops, s);
}

static void watch_message(void *state, rpc_stream *s, const ProtobufCMessage *m) {
  (void)s;
  watch_stream_request(state, (const Etcdserverpb__WatchRequest *)m);
}

static void watch_drained(void *state, rpc_stream *s) {
  (void)s;
  watch_stream_drained(state);
}

/* etcd keeps serving a stream the client half-closed: nothing to do. The
 * watchers go when the call ends. */
static void watch_closed(void *state, rpc_stream *s) {
  (void)s;
  watch_stream_close(state);
}

static const rpc_stream_handler watch_handler = {
    .open = watch_open, .message = watch_message, .drained = watch_drained, .closed = watch_closed};

size_t watch_service_methods(node *n, rpc_method *out) {
  out[0] = (rpc_method){"/etcdserverpb.Watch/Watch", &etcdserverpb__watch_request__descriptor, NULL, &watch_handler,
                        false, n};
  return 1;
}

static void fill_header(void *ctx, Etcdserverpb__ResponseHeader *h) { node_fill_header(ctx, h); }

/* Test hooks, like SYNOD_GRPC_THREADS: small limits make the slow-reader
 * paths reachable in seconds. */
static int64_t env_int(const char *name) {
  const char *v = getenv(name);
  return v ? strtoll(v, NULL, 10) : 0;
}

int watch_service_start(node *n, char *err, size_t err_len) {
  watch_hub_options o = {
      .store = n->store,
      .fill_header = fill_header,
      .header_ctx = n,
      .progress_notify_ms = n->cfg.watch_progress_notify_ms,
      /* etcd fragments at its request limit plus gRPC's overhead */
      .fragment_bytes = n->cfg.max_request_bytes + 512 * 1024,
      .stream_queue_limit = (size_t)env_int("SYNOD_WATCH_QUEUE_LIMIT"),
      .victim_timeout_ms = env_int("SYNOD_WATCH_VICTIM_TIMEOUT_MS"),
  };
  if (watch_hub_start(&o, &n->watch) < 0) {
    snprintf(err, err_len, "cannot start the watch hub");
    return -1;
  }
  return 0;
}
