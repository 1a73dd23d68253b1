/* libFuzzer target: the receiving side of a snapshot transfer between
 * members (kvcore/server/snapshot_chunks.c), which reads the network.
 *
 * The input is a sequence of SnapshotChunk messages, each as LE16 length +
 * protobuf bytes. If the first input byte is odd, a well-formed first
 * chunk (a real SNAP message for this member) is sent before them, so the
 * fuzzer reaches the data, size and CRC checks without having to invent
 * Raft's encoding. Every chunk must be accepted or refused cleanly, the
 * byte count must never pass the announced total, and a completed transfer
 * must have exactly the total and the right CRC. */
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "snapshot.h"

enum { CLUSTER = 0x1111, SELF = 2, LEADER = 1 };

static void check(const snap_recv *r, uint32_t crc, int rc) {
  if (r->received > r->total) abort();
  if (rc == 1 && (r->received != r->total || r->crc != crc || !r->complete)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  snap_recv r;
  snap_recv_init(&r, CLUSTER, SELF);
  char err[256];
  uint32_t crc = 0;
  int rc = 0;
  if (data[0] & 1) {
    raft_snapshot snap = {.index = 100, .term = 3, .conf = {.voters = {1, 2}, .n_voters = 2}};
    raft_msg m = {.type = RAFT_MSG_SNAP, .from = LEADER, .to = SELF, .term = 3, .snapshot = &snap};
    buf enc = {0};
    if (raft_msg_encode(&m, &enc) != RAFT_OK) abort();
    Synodpb__SnapshotChunk c = SYNODPB__SNAPSHOT_CHUNK__INIT;
    c.cluster_id = CLUSTER;
    c.from = LEADER;
    c.to = SELF;
    c.raft_msg = (ProtobufCBinaryData){enc.len, enc.data};
    c.total_bytes = SNAP_MIN_BYTES + (data[0] >> 1) * 97u;
    rc = snap_recv_chunk(&r, &c, err, sizeof err);
    buf_free(&enc);
    if (rc != 0) abort(); /* a well-formed first chunk is accepted */
  }
  for (size_t off = 1; off + 2 <= size && rc >= 0;) {
    size_t len = (size_t)data[off] | (size_t)data[off + 1] << 8;
    off += 2;
    if (len > size - off) len = size - off;
    Synodpb__SnapshotChunk *c = synodpb__snapshot_chunk__unpack(NULL, len, data + off);
    off += len;
    if (!c) continue;
    uint32_t before = crc;
    rc = snap_recv_chunk(&r, c, err, sizeof err);
    if (rc >= 0) crc = crc32c_update(before, c->data.data, c->data.len);
    check(&r, crc, rc);
    synodpb__snapshot_chunk__free_unpacked(c, NULL);
  }
  snap_recv_free(&r);
  return 0;
}
