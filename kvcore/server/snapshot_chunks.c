/* The snapshot chunk protocol's checks (snapshot.h): pure, so the fuzzer
 * can drive it with arbitrary chunk sequences. */
#include "snapshot.h"

#include "raft.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void snap_recv_init(snap_recv *r, uint64_t cluster_id, uint64_t self_id) {
  memset(r, 0, sizeof *r);
  r->cluster_id = cluster_id;
  r->self_id = self_id;
}

void snap_recv_free(snap_recv *r) {
  free(r->raft_msg);
  r->raft_msg = NULL;
}

static int refuse(char *err, size_t err_len, const char *why) {
  snprintf(err, err_len, "synod: snapshot refused: %s", why);
  return -1;
}

/* The first chunk's Raft message: a SNAP for this member from the sender. */
static int check_first(snap_recv *r, const Synodpb__SnapshotChunk *c, char *err, size_t err_len) {
  if (c->raft_msg.len == 0) return refuse(err, err_len, "the first chunk carries no Raft message");
  if (c->total_bytes < SNAP_MIN_BYTES || c->total_bytes > SNAP_MAX_BYTES)
    return refuse(err, err_len, "impossible image size");
  raft_msg m;
  raft_decode_buf db = {0};
  int rc = raft_msg_decode(c->raft_msg.data, c->raft_msg.len, &m, &db);
  bool ok = rc == RAFT_OK && m.type == RAFT_MSG_SNAP && m.snapshot && m.to == r->self_id && m.from == c->from &&
            m.snapshot->index > 0;
  if (ok) {
    r->snap_index = m.snapshot->index;
    r->snap_term = m.snapshot->term;
  }
  raft_decode_buf_free(&db);
  if (!ok) return refuse(err, err_len, "the first chunk's Raft message is not a snapshot for this member");
  r->raft_msg = xmemdup(c->raft_msg.data, c->raft_msg.len);
  r->raft_msg_len = c->raft_msg.len;
  r->from = c->from;
  r->total = c->total_bytes;
  r->started = true;
  return 0;
}

int snap_recv_chunk(snap_recv *r, const Synodpb__SnapshotChunk *c, char *err, size_t err_len) {
  if (r->complete) return refuse(err, err_len, "data after the last chunk");
  if (c->cluster_id != r->cluster_id) return refuse(err, err_len, "etcdserver: cluster ID mismatch");
  if (c->to != r->self_id) return refuse(err, err_len, "sent to another member");
  if (!r->started) {
    if (check_first(r, c, err, err_len) < 0) return -1;
  } else if (c->raft_msg.len || c->total_bytes || c->from != r->from) {
    return refuse(err, err_len, "a later chunk restarts the transfer");
  }
  if (c->data.len > r->total - r->received) return refuse(err, err_len, "more data than announced");
  r->crc = crc32c_update(r->crc, c->data.data, c->data.len);
  r->received += c->data.len;
  if (!c->last) return 0;
  if (r->received != r->total) return refuse(err, err_len, "the image ends short of its announced size");
  if (c->crc32c != r->crc) return refuse(err, err_len, "CRC mismatch (the image was damaged in transit)");
  r->complete = true;
  return 1;
}
