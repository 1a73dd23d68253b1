/* Raft snapshots between members: the sending thread and the receiving
 * stream. See snapshot.h. */
#include "snapshot.h"

#include "bootstrap.h"
#include "raft.h"
#include "raftnode.h"
#include "transport.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
  CHUNK_BYTES = 1 << 20,     /* data per chunk */
  QUEUE_BYTES = 4 << 20,     /* the sender waits while more than this is queued */
  ACK_TIMEOUT_MS = 5 * 60 * 1000,
};

static void snap_dir(const node *n, char *out, size_t cap) { snprintf(out, cap, "%s/snap", n->member_dir); }

void snapshot_cleanup(node *n) {
  char dir[4200];
  snap_dir(n, dir, sizeof dir);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[4500];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    log_info("removing %s, left by an interrupted snapshot transfer", path);
    unlink(path);
  }
  closedir(d);
}

/* ---------------------------------------------------------------- sending */

typedef struct {
  node *n;
  uint64_t to;
  uint8_t *msg;
  size_t len;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool closed, accepted;
  rpc_code code;
  char message[256];
} outgoing;

static void out_message(void *arg, const ProtobufCMessage *msg) {
  outgoing *o = arg;
  pthread_mutex_lock(&o->mu);
  o->accepted = ((const Synodpb__SnapshotAck *)msg)->accepted;
  pthread_mutex_unlock(&o->mu);
}

static void out_closed(void *arg, rpc_code code, const char *message) {
  outgoing *o = arg;
  pthread_mutex_lock(&o->mu);
  o->closed = true;
  o->code = code;
  snprintf(o->message, sizeof o->message, "%s", message ? message : "");
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* The client stream may be freed once on_closed has run: every use of it
 * happens under o->mu after checking o->closed (which on_closed sets under
 * o->mu). */
static int locked_send(outgoing *o, rpc_client_stream *s, const ProtobufCMessage *m) {
  pthread_mutex_lock(&o->mu);
  int rc = o->closed ? -1 : rpc_client_stream_send(s, m);
  pthread_mutex_unlock(&o->mu);
  return rc;
}

/* Waits while the stream's queue is long; false once it closed. */
static bool locked_wait_room(outgoing *o, rpc_client_stream *s) {
  for (;;) {
    pthread_mutex_lock(&o->mu);
    bool closed = o->closed;
    size_t queued = closed ? 0 : rpc_client_stream_queued(s);
    pthread_mutex_unlock(&o->mu);
    if (closed || atomic_load(&o->n->stopping)) return false;
    if (queued <= QUEUE_BYTES) return true;
    sleep_ms(2);
  }
}

/* Streams the image in fd (total bytes) to o->to. */
static bool stream_image(outgoing *o, int fd, uint64_t total) {
  node *n = o->n;
  rpc_client_stream_handler h = {&synodpb__snapshot_ack__descriptor, out_message, out_closed, o};
  rpc_client_stream *s = transport_open_stream(n->tr, o->to, "/synodpb.Peer/Snapshot", &h);
  if (!s) return false;
  uint8_t *chunk = xmalloc(CHUNK_BYTES);
  uint64_t off = 0;
  uint32_t crc = 0;
  bool ok = true;
  do {
    size_t want = total - off < CHUNK_BYTES ? (size_t)(total - off) : CHUNK_BYTES;
    ssize_t got = want ? pread(fd, chunk, want, (off_t)off) : 0;
    if (got != (ssize_t)want) {
      log_warn("snapshot to %016" PRIx64 ": reading the image: %s", o->to, got < 0 ? strerror(errno) : "short read");
      ok = false;
      break;
    }
    crc = crc32c_update(crc, chunk, want);
    Synodpb__SnapshotChunk c = SYNODPB__SNAPSHOT_CHUNK__INIT;
    c.cluster_id = n->cluster_id;
    c.from = n->member_id;
    c.to = o->to;
    if (off == 0) {
      c.raft_msg = (ProtobufCBinaryData){o->len, o->msg};
      c.total_bytes = total;
    }
    c.data = (ProtobufCBinaryData){want, chunk};
    off += want;
    c.last = off == total;
    if (c.last) c.crc32c = crc;
    /* Bounded memory: at most a few chunks queued, whatever the image. */
    ok = locked_send(o, s, &c.base) == 0 && locked_wait_room(o, s);
  } while (ok && off < total);
  free(chunk);
  pthread_mutex_lock(&o->mu);
  if (!o->closed) rpc_client_stream_close(s, ok); /* graceful: half-close once sent, then the ack */
  int64_t deadline = time_mono_ms() + ACK_TIMEOUT_MS;
  while (!o->closed && time_mono_ms() < deadline) {
    struct timespec ts = time_after_ms(CLOCK_REALTIME, 50);
    pthread_cond_timedwait(&o->cv, &o->mu, &ts);
    if (!o->closed && atomic_load(&n->stopping)) {
      rpc_client_stream_close(s, false);
      deadline = time_mono_ms() + 5000;
    }
  }
  bool accepted = ok && o->closed && o->code == RPC_OK && o->accepted;
  if (ok && !accepted)
    log_warn("snapshot to %016" PRIx64 " refused: %s", o->to, o->closed ? o->message : "no answer");
  if (!o->closed) {
    /* No answer in time: cancel, and wait for on_closed before o goes. */
    rpc_client_stream_close(s, false);
    while (!o->closed) pthread_cond_wait(&o->cv, &o->mu);
  }
  pthread_mutex_unlock(&o->mu);
  return accepted;
}

static void *send_main(void *arg) {
  outgoing *o = arg;
  node *n = o->n;
  pthread_setname_np(pthread_self(), "synod-snapsend");
  int64_t started = time_mono_ns();
  raft_msg m;
  raft_decode_buf db = {0};
  uint64_t index = 0;
  if (raft_msg_decode(o->msg, o->len, &m, &db) == RAFT_OK && m.snapshot) index = m.snapshot->index;
  raft_decode_buf_free(&db);

  char dir[4200], path[4400];
  snap_dir(n, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/send-%016" PRIx64 ".tmp", dir, o->to);
  bool ok = false;
  mvcc_image_info info = {0};
  int fd = mkdir_all(dir, 0700) < 0 ? -1 : open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    log_warn("snapshot to %016" PRIx64 ": cannot create %s: %s", o->to, path, strerror(errno));
  } else {
    unlink(path); /* gone with the descriptor, whatever happens */
    int rc = mvcc_image_write(n->store, fd, &info);
    if (rc) {
      log_warn("snapshot to %016" PRIx64 ": cannot write an image of the store: %s", o->to, mvcc_strerror(rc));
    } else if (info.applied_index < index) {
      /* Cannot happen (the log is compacted only up to what the store
       * applied); refuse rather than send a state older than promised. */
      log_error("snapshot to %016" PRIx64 ": the store's applied index %" PRIu64 " is behind the snapshot's %" PRIu64,
                o->to, info.applied_index, index);
    } else {
      log_info("sending a snapshot to %016" PRIx64 ": index %" PRIu64 ", image of %" PRIu64
               " bytes at applied index %" PRIu64,
               o->to, index, info.bytes, info.applied_index);
      ok = stream_image(o, fd, info.bytes);
    }
    close(fd);
  }
  if (ok) {
    atomic_fetch_add(&n->snapshots_sent, 1);
    log_info("sent a snapshot to %016" PRIx64 " (%" PRIu64 " bytes) in %.0f ms", o->to, info.bytes,
             (double)(time_mono_ns() - started) / 1e6);
  }
  if (n->rn && !atomic_load(&n->stopping)) raftnode_snapshot_sent(n->rn, o->to, ok);
  pthread_mutex_destroy(&o->mu);
  pthread_cond_destroy(&o->cv);
  free(o->msg);
  free(o);
  atomic_fetch_sub(&n->background, 1);
  return NULL;
}

void snapshot_send(node *n, uint64_t to, const uint8_t *msg, size_t len) {
  outgoing *o = xcalloc(1, sizeof *o);
  o->n = n;
  o->to = to;
  o->msg = xmemdup(msg, len);
  o->len = len;
  pthread_mutex_init(&o->mu, NULL);
  pthread_cond_init(&o->cv, NULL);
  atomic_fetch_add(&n->background, 1);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, send_main, o) != 0) {
    log_warn("snapshot to %016" PRIx64 ": cannot start a thread", to);
    raftnode_snapshot_sent(n->rn, to, false);
    atomic_fetch_sub(&n->background, 1);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    free(o->msg);
    free(o);
  }
  pthread_attr_destroy(&attr);
}

/* ---------------------------------------------------------------- receiving */

typedef struct {
  node *n;
  snap_recv r;
  int fd;
  bool owner; /* holds n->snapshot_incoming */
  bool finished;
  char tmp[4300];
} incoming;

void snapshot_released(node *n) { atomic_store(&n->snapshot_incoming, false); }

static void discard(incoming *in) {
  if (in->fd >= 0) {
    close(in->fd);
    unlink(in->tmp);
    in->fd = -1;
  }
  if (in->owner) snapshot_released(in->n);
  in->owner = false;
}

static void fail(incoming *in, rpc_stream *s, rpc_code code, const char *why) {
  log_warn("snapshot from %016" PRIx64 " discarded: %s", in->r.from, why);
  discard(in);
  in->finished = true;
  rpc_stream_finish(s, code, why);
}

static void *recv_open(void *ctx, rpc_stream *s) {
  incoming *in = xcalloc(1, sizeof *in);
  in->n = ctx;
  in->fd = -1;
  snap_recv_init(&in->r, in->n->cluster_id, in->n->member_id);
  if (atomic_exchange(&in->n->snapshot_incoming, true)) {
    in->finished = true;
    rpc_stream_finish(s, RPC_RESOURCE_EXHAUSTED, "synod: a snapshot is already being received");
    return in;
  }
  in->owner = true;
  char dir[4200];
  snap_dir(in->n, dir, sizeof dir);
  snprintf(in->tmp, sizeof in->tmp, "%s/recv.tmp", dir);
  if (mkdir_all(dir, 0700) == 0) in->fd = open(in->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (in->fd < 0) fail(in, s, RPC_INTERNAL, "synod: cannot create a file for the snapshot");
  return in;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int set_identity(void *arg, mvcc_txn *w) {
  node *n = arg;
  return bootstrap_write_identity(w, n->member_id, n->cluster_id);
}

/* The whole image is here: make it durable, check it, make it this
 * member's, and hand it to Raft with its message. */
static void complete(incoming *in, rpc_stream *s) {
  node *n = in->n;
  if (fdatasync(in->fd) < 0) return fail(in, s, RPC_INTERNAL, "synod: cannot sync the snapshot");
  close(in->fd);
  in->fd = -1;
  mvcc_image_info info;
  char why[200];
  if (mvcc_image_check(in->tmp, &info) != MVCC_OK) {
    unlink(in->tmp);
    return fail(in, s, RPC_INVALID_ARGUMENT, "synod: snapshot refused: not a usable store image");
  }
  if (info.applied_index < in->r.snap_index) {
    unlink(in->tmp);
    snprintf(why, sizeof why, "synod: snapshot refused: image at applied index %" PRIu64 " is behind the snapshot's %" PRIu64,
             info.applied_index, in->r.snap_index);
    return fail(in, s, RPC_INVALID_ARGUMENT, why);
  }
  if (mvcc_image_update(in->tmp, set_identity, n) != MVCC_OK) {
    unlink(in->tmp);
    return fail(in, s, RPC_INTERNAL, "synod: cannot prepare the snapshot");
  }
  char dir[4200], path[4400];
  snap_dir(n, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/%016" PRIx64 ".img", dir, in->r.snap_index);
  if (rename(in->tmp, path) < 0 || fsync_dir(dir) < 0) {
    unlink(in->tmp);
    return fail(in, s, RPC_INTERNAL, "synod: cannot keep the snapshot");
  }
  if (!n->rn || atomic_load(&n->stopping)) {
    unlink(path);
    return fail(in, s, RPC_UNAVAILABLE, "etcdserver: server stopped");
  }
  log_info("received a snapshot from %016" PRIx64 ": index %" PRIu64 ", %" PRIu64 " bytes, applied index %" PRIu64,
           in->r.from, in->r.snap_index, info.bytes, info.applied_index);
  /* From here the Raft loop owns the file and the busy flag. */
  in->owner = false;
  raftnode_step_snapshot(n->rn, in->r.raft_msg, in->r.raft_msg_len, path);
  in->finished = true;
  Synodpb__SnapshotAck ack = SYNODPB__SNAPSHOT_ACK__INIT;
  ack.accepted = true;
  rpc_stream_send(s, &ack.base);
  rpc_stream_finish(s, RPC_OK, NULL);
}

static void recv_message(void *state, rpc_stream *s, const ProtobufCMessage *msg) {
  incoming *in = state;
  if (in->finished) return;
  const Synodpb__SnapshotChunk *c = (const Synodpb__SnapshotChunk *)msg;
  char err[256];
  int rc = snap_recv_chunk(&in->r, c, err, sizeof err);
  if (rc < 0) return fail(in, s, RPC_INVALID_ARGUMENT, err);
  if (c->data.len && write_all(in->fd, c->data.data, c->data.len) < 0) {
    snprintf(err, sizeof err, "synod: cannot write the snapshot: %s", strerror(errno));
    return fail(in, s, errno == ENOSPC ? RPC_RESOURCE_EXHAUSTED : RPC_INTERNAL, err);
  }
  if (rc == 1) complete(in, s);
}

static void recv_half_close(void *state, rpc_stream *s) {
  incoming *in = state;
  if (!in->finished) fail(in, s, RPC_INVALID_ARGUMENT, "synod: snapshot refused: the stream ended before the image");
}

static void recv_closed(void *state, rpc_stream *s) {
  (void)s;
  incoming *in = state;
  discard(in); /* a transfer cut off: nothing is kept */
  snap_recv_free(&in->r);
  free(in);
}

static const rpc_stream_handler recv_stream = {
    .open = recv_open, .message = recv_message, .half_close = recv_half_close, .closed = recv_closed};

size_t snapshot_methods(node *n, rpc_method *out) {
  out[0] = (rpc_method){"/synodpb.Peer/Snapshot", &synodpb__snapshot_chunk__descriptor, NULL, &recv_stream, false, n};
  return 1;
}
