/* watch_testutil.h - a recording sink for kvcore/watch tests: every response
 * is packed and unpacked again (so the wire encoding is what is checked),
 * and the "queued" size is set by the test to play a slow client. */
#ifndef SYNOD_WATCH_TESTUTIL_H
#define SYNOD_WATCH_TESTUTIL_H

#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "watch.h"

typedef struct {
  Etcdserverpb__WatchResponse **r;
  size_t n, cap;
  size_t queued;      /* what queued() answers */
  bool count_bytes;   /* queued grows with every send (a client that never reads) */
  int finished_code;  /* 0: not finished */
  bool closed;
} tsink;

static int tsink_send_bytes(void *arg, const uint8_t *buf, size_t len) {
  tsink *t = arg;
  Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, buf);
  if (!r) abort();
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    t->r = realloc(t->r, t->cap * sizeof *t->r);
  }
  t->r[t->n++] = r;
  if (t->count_bytes) t->queued += len;
  return 0;
}

static int tsink_send(void *arg, const ProtobufCMessage *m) {
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(len ? len : 1);
  protobuf_c_message_pack(m, buf);
  int rc = tsink_send_bytes(arg, buf, len);
  free(buf);
  return rc;
}

static size_t tsink_queued(void *arg) { return ((tsink *)arg)->queued; }

static void tsink_finish(void *arg, int code, const char *msg) {
  (void)msg;
  ((tsink *)arg)->finished_code = code;
}

static const watch_sink_ops tsink_ops = {
    .send = tsink_send, .send_bytes = tsink_send_bytes, .queued = tsink_queued, .finish = tsink_finish};

static void tsink_clear(tsink *t) {
  for (size_t i = 0; i < t->n; i++) etcdserverpb__watch_response__free_unpacked(t->r[i], NULL);
  t->n = 0;
}

static void tsink_free(tsink *t) {
  tsink_clear(t);
  free(t->r);
  t->r = NULL;
  t->cap = 0;
}

/* Requests built on the stack. */
static void treq_create(watch_stream *s, const char *key, const char *end, int64_t start, int64_t id,
                        unsigned flags) {
  Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
  c.key.data = (uint8_t *)key;
  c.key.len = strlen(key);
  if (end) {
    c.range_end.data = (uint8_t *)(*end ? end : "\0");
    c.range_end.len = *end ? strlen(end) : 1;
  }
  c.start_revision = start;
  c.watch_id = id;
  c.prev_kv = (flags & 1) != 0;
  c.progress_notify = (flags & 2) != 0;
  c.fragment = (flags & 4) != 0;
  Etcdserverpb__WatchCreateRequest__FilterType f[2];
  if (flags & 8) f[c.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
  if (flags & 16) f[c.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
  c.filters = f;
  Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
  r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
  r.create_request = &c;
  watch_stream_request(s, &r);
}
enum { TW_PREV = 1, TW_PROGRESS = 2, TW_FRAGMENT = 4, TW_NOPUT = 8, TW_NODELETE = 16 };

static void treq_cancel(watch_stream *s, int64_t id) {
  Etcdserverpb__WatchCancelRequest c = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
  c.watch_id = id;
  Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
  r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
  r.cancel_request = &c;
  watch_stream_request(s, &r);
}

static void treq_progress(watch_stream *s) {
  Etcdserverpb__WatchProgressRequest p = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
  Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
  r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
  r.progress_request = &p;
  watch_stream_request(s, &r);
}

static void tfill_header(void *ctx, Etcdserverpb__ResponseHeader *h) {
  (void)ctx;
  h->cluster_id = 11;
  h->member_id = 22;
  h->raft_term = 3;
}

#endif
