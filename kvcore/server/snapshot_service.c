/* etcdserverpb.Maintenance: Snapshot (`etcdctl snapshot save`) and
 * Defragment (`etcdctl defrag`).
 *
 * Snapshot streams an image of the store the way etcd streams its bolt
 * file: chunks with remaining_bytes counting down to 0, then one more
 * message whose blob is the SHA-256 of everything sent (etcdutl's restore
 * checks it). The image is written first to an unlinked temporary file
 * (its size is needed up front, and the store is not held meanwhile), then
 * read a chunk at a time while the stream's queue is short: the `drained`
 * callback wakes the sender, so memory stays bounded by the queue limit
 * whatever the image's size and the client's speed. */
#include "errors.h"
#include "node.h"
#include "pipeline.h"
#include "services.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
  SEND_CHUNK = 32 * 1024,  /* etcd's snapshotSendBufferSize */
  QUEUE_LIMIT = 1 << 20,   /* queued bytes before the sender waits for `drained` */
};

typedef struct {
  node *n;
  rpc_stream *s;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool closed;
  int refs; /* the stream and the sending thread */
} saver;

static void saver_unref(saver *v) {
  pthread_mutex_lock(&v->mu);
  bool last = --v->refs == 0;
  pthread_mutex_unlock(&v->mu);
  if (!last) return;
  pthread_mutex_destroy(&v->mu);
  pthread_cond_destroy(&v->cv);
  free(v);
}

/* Waits until the queue is short again or the client went away. */
static bool wait_room(saver *v) {
  pthread_mutex_lock(&v->mu);
  while (!v->closed && rpc_stream_queued(v->s) > QUEUE_LIMIT) {
    struct timespec ts = time_after_ms(CLOCK_REALTIME, 100); /* a missed wakeup costs at most this */
    pthread_cond_timedwait(&v->cv, &v->mu, &ts);
  }
  bool ok = !v->closed && !atomic_load(&v->n->stopping);
  pthread_mutex_unlock(&v->mu);
  return ok;
}

static void *save_main(void *arg) {
  saver *v = arg;
  node *n = v->n;
  pthread_setname_np(pthread_self(), "synod-snapsave");
  char path[4300];
  snprintf(path, sizeof path, "%s/snap-save-XXXXXX", n->member_dir);
  int fd = mkstemp(path);
  mvcc_image_info info = {0};
  int rc = fd < 0 ? MVCC_EIO : MVCC_OK;
  if (fd >= 0) {
    unlink(path); /* gone with the descriptor, whatever happens */
    rc = mvcc_image_write(n->store, fd, &info);
  }
  if (rc) {
    log_warn("snapshot for a client: cannot write an image of the store: %s", mvcc_strerror(rc));
    rpc_stream_finish(v->s, RPC_UNKNOWN, "synod: cannot write a snapshot of the store");
  } else {
    log_info("sending database snapshot to client: %" PRIu64 " bytes, applied index %" PRIu64, info.bytes,
             info.applied_index);
    uint8_t *chunk = xmalloc(SEND_CHUNK);
    sha256_ctx h;
    sha256_init(&h);
    uint64_t sent = 0;
    bool ok = true;
    while (ok && sent < info.bytes) {
      size_t want = info.bytes - sent < SEND_CHUNK ? (size_t)(info.bytes - sent) : SEND_CHUNK;
      if (pread(fd, chunk, want, (off_t)sent) != (ssize_t)want) {
        rpc_stream_finish(v->s, RPC_UNKNOWN, "synod: cannot read the snapshot");
        ok = false;
        break;
      }
      sent += want;
      sha256_update(&h, chunk, want);
      Etcdserverpb__SnapshotResponse r = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
      r.remaining_bytes = info.bytes - sent;
      r.blob = (ProtobufCBinaryData){want, chunk};
      ok = rpc_stream_send(v->s, &r.base) == 0 && wait_room(v);
    }
    if (ok) {
      uint8_t sum[32];
      sha256_final(&h, sum);
      Etcdserverpb__SnapshotResponse r = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
      r.blob = (ProtobufCBinaryData){sizeof sum, sum};
      rpc_stream_send(v->s, &r.base);
      rpc_stream_finish(v->s, RPC_OK, NULL);
      log_info("sent database snapshot to client (%" PRIu64 " bytes and its sha256)", info.bytes);
    }
    free(chunk);
  }
  if (fd >= 0) close(fd);
  rpc_stream_unref(v->s);
  saver_unref(v);
  atomic_fetch_sub(&n->background, 1);
  return NULL;
}

static void *save_open(void *ctx, rpc_stream *s) {
  saver *v = xcalloc(1, sizeof *v);
  v->n = ctx;
  v->s = s;
  v->refs = 2;
  pthread_mutex_init(&v->mu, NULL);
  pthread_cond_init(&v->cv, NULL);
  rpc_stream_ref(s);
  atomic_fetch_add(&v->n->background, 1);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, save_main, v) != 0) {
    rpc_stream_finish(s, RPC_UNAVAILABLE, "synod: cannot start a snapshot");
    rpc_stream_unref(s);
    v->refs--;
    atomic_fetch_sub(&v->n->background, 1);
  }
  pthread_attr_destroy(&attr);
  return v;
}

static void save_message(void *state, rpc_stream *s, const ProtobufCMessage *m) { (void)state, (void)s, (void)m; }

static void save_drained(void *state, rpc_stream *s) {
  (void)s;
  saver *v = state;
  pthread_mutex_lock(&v->mu);
  pthread_cond_signal(&v->cv);
  pthread_mutex_unlock(&v->mu);
}

static void save_closed(void *state, rpc_stream *s) {
  (void)s;
  saver *v = state;
  pthread_mutex_lock(&v->mu);
  v->closed = true;
  pthread_cond_signal(&v->cv);
  pthread_mutex_unlock(&v->mu);
  saver_unref(v);
}

static const rpc_stream_handler save_stream = {
    .open = save_open, .message = save_message, .drained = save_drained, .closed = save_closed};

/* ---------------------------------------------------------------- defragment */

typedef struct {
  node *n;
  rpc_call *call;
} defrag_job;

static void *defrag_main(void *arg) {
  defrag_job *j = arg;
  node *n = j->n;
  log_info("starting defragment");
  int rc = pipeline_defragment(n->pipe);
  if (rc == MVCC_OK) {
    log_info("finished defragment");
    Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    node_fill_header(n, &h);
    resp.header = &h;
    rpc_reply(j->call, &resp.base);
  } else {
    rpc_fail(j->call, atomic_load(&n->stopping) ? RPC_UNAVAILABLE : RPC_UNKNOWN,
             atomic_load(&n->stopping) ? ERR_STOPPED.message : "synod: defragment failed");
  }
  free(j);
  atomic_fetch_sub(&n->background, 1);
  return NULL;
}

/* The defragmentation runs on the apply thread (writes wait for it, as
 * etcd's hold its backend lock); the gRPC thread does not. */
static void defragment_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  node *n = ctx;
  defrag_job *j = xmalloc(sizeof *j);
  *j = (defrag_job){n, call};
  atomic_fetch_add(&n->background, 1);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, defrag_main, j) != 0) defrag_main(j);
  pthread_attr_destroy(&attr);
}

size_t snapshot_service_methods(node *n, rpc_method *out) {
  out[0] = (rpc_method){"/etcdserverpb.Maintenance/Snapshot", &etcdserverpb__snapshot_request__descriptor, NULL,
                        &save_stream, false, n};
  out[1] = (rpc_method){"/etcdserverpb.Maintenance/Defragment", &etcdserverpb__defragment_request__descriptor,
                        defragment_rpc, NULL, true, n};
  return 2;
}
