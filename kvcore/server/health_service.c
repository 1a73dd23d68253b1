/* grpc.health.v1.Health: a member that answers is serving. */
#include "node.h"
#include "services.h"

static void check_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)ctx;
  const Grpc__Health__V1__HealthCheckRequest *r = (const Grpc__Health__V1__HealthCheckRequest *)m;
  if (r->service && *r->service) return rpc_fail(call, RPC_NOT_FOUND, "unknown service");
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  rpc_reply(call, &resp.base);
}

/* Watch: one SERVING, then the stream stays open until the client leaves. */
static void *watch_open(void *ctx, rpc_stream *s) {
  (void)s;
  return ctx;
}

static void watch_message(void *state, rpc_stream *s, const ProtobufCMessage *m) {
  (void)state;
  const Grpc__Health__V1__HealthCheckRequest *r = (const Grpc__Health__V1__HealthCheckRequest *)m;
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = (r->service && *r->service) ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
                                            : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  rpc_stream_send(s, &resp.base);
}

static void watch_closed(void *state, rpc_stream *s) {
  (void)state;
  (void)s;
}

static const rpc_stream_handler health_watch = {
    .open = watch_open, .message = watch_message, .closed = watch_closed};

size_t health_service_methods(node *n, rpc_method *out) {
  out[0] = (rpc_method){"/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor,
                        check_rpc, NULL, false, n};
  out[1] = (rpc_method){"/grpc.health.v1.Health/Watch", &grpc__health__v1__health_check_request__descriptor,
                        NULL, &health_watch, false, n};
  return 2;
}
