/* Fuzzes the Watch service as a client drives it: the input is a script of
 * WatchRequest messages (length-prefixed, decoded by protobuf-c as the
 * server does) on two streams, interleaved with writes, deletions,
 * compactions, clients that stop and resume reading, clock jumps and hub
 * polls. Nothing may crash, leak, hang or trip the sanitizers, and every
 * response must be a well-formed WatchResponse. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "mvcc.h"
#include "proto.h"
#include "watch.h"

static mvcc_store *store;

typedef struct {
  size_t queued;
} fsink;

/* Every response, the hub's own encoding included, must decode. */
static int fsend_bytes(void *arg, const uint8_t *buf, size_t len) {
  (void)arg;
  Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, buf);
  if (!r) abort(); /* we must never produce an undecodable response */
  etcdserverpb__watch_response__free_unpacked(r, NULL);
  return 0;
}
static int fsend(void *arg, const ProtobufCMessage *m) {
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(len + 1);
  protobuf_c_message_pack(m, buf);
  int rc = fsend_bytes(arg, buf, len);
  free(buf);
  return rc;
}
static size_t fqueued(void *arg) { return ((fsink *)arg)->queued; }
static void ffinish(void *arg, int code, const char *msg) { (void)arg, (void)code, (void)msg; }
static const watch_sink_ops ops = {.send = fsend, .send_bytes = fsend_bytes, .queued = fqueued, .finish = ffinish};

static void setup(void) {
  char dir[128];
  snprintf(dir, sizeof dir, "/tmp/synod-fuzz-watch-%d", (int)getpid());
  log_set_level(LOG_FATAL);
  mvcc_options o = {.dir = dir, .map_size = 1ull << 30};
  if (mvcc_open(&o, &store) != MVCC_OK) abort();
}

static void write_key(uint8_t k, bool del) {
  char key[4] = {'k', (char)('a' + k % 8), 0};
  mvcc_txn *w;
  if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
  if (del) {
    mvcc_span sp = {(uint8_t *)key, 2, NULL, 0, false};
    mvcc_delete_range(w, &sp, NULL, NULL, NULL);
  } else {
    mvcc_put(w, (uint8_t *)key, 2, (uint8_t *)"value", 5, 0, NULL);
  }
  mvcc_write_commit(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!store) setup();
  watch_hub_options o = {.store = store, .manual = true, .chunk_revisions = 2, .sync_watchers = 2,
                         .stream_queue_limit = 1000, .fragment_bytes = 300};
  watch_hub *h;
  if (watch_hub_start(&o, &h) != 0) abort();
  fsink sinks[2] = {{0}, {0}};
  watch_stream *s[2] = {watch_stream_open(h, &ops, &sinks[0]), watch_stream_open(h, &ops, &sinks[1])};
  size_t i = 0;
  while (i < size) {
    uint8_t op = data[i++];
    int which = op >> 7;
    switch (op & 7) {
      case 0:
      case 1: {
        if (i + 2 > size) break;
        size_t len = (size_t)data[i] | (size_t)data[i + 1] << 8;
        i += 2;
        if (len > size - i) len = size - i;
        Etcdserverpb__WatchRequest *req = etcdserverpb__watch_request__unpack(NULL, len, data + i);
        i += len;
        if (req) {
          watch_stream_request(s[which], req);
          etcdserverpb__watch_request__free_unpacked(req, NULL);
        }
        break;
      }
      case 2:
      case 3: {
        uint8_t k = i < size ? data[i++] : 0;
        write_key(k, (op & 7) == 3);
        mvcc_txn *t;
        mvcc_read_begin(store, &t);
        watch_hub_notify(h, mvcc_rev(t));
        mvcc_txn_end(t);
        break;
      }
      case 4:
        watch_hub_poll(h);
        break;
      case 5:
        sinks[which].queued = sinks[which].queued ? 0 : 5000;
        if (!sinks[which].queued) watch_stream_drained(s[which]);
        break;
      case 6: {
        watch_hub_before_compaction(h);
        mvcc_txn *w;
        mvcc_write_begin(store, &w);
        mvcc_compact(w, mvcc_rev(w) - (op >> 3) % 4); /* may fail: fine */
        mvcc_write_commit(w);
        break;
      }
      case 7:
        watch_hub_advance_clock(h, (int64_t)(op >> 3) * 60000);
        break;
    }
  }
  watch_hub_poll(h);
  watch_stream_close(s[0]);
  watch_stream_close(s[1]);
  watch_hub_stop(h);
  return 0;
}
