/* snapshot.h (private to kvcore/server) - Raft snapshots between members:
 * the leader streams an image of its store to a member that fell behind
 * its compacted log (synodpb.Peer/Snapshot, peer.proto).
 *
 * Sender: when Raft emits a SNAP message, a background thread writes an
 * image of the store (mvcc_image_write: its applied index is at or past the
 * snapshot's, since the log is only compacted up to what the store applied)
 * to an unlinked temporary file, streams it in 1 MiB chunks paced by the
 * stream's queue (memory stays bounded whatever the image's size), then
 * reports the outcome to Raft (raftnode_snapshot_sent).
 *
 * Receiver: one transfer at a time. Chunks are checked (snap_recv below)
 * and written to a temporary file under the member directory; at the end
 * the CRC is compared, the file synced and checked as an image
 * (mvcc_image_check), its identity rewritten to this member's, and the SNAP
 * message stepped into Raft with the image's path (raftnode_step_snapshot).
 * Anything wrong discards the file and fails the stream, so the leader's
 * Raft is told and tries again. */
#ifndef SYNOD_SERVER_SNAPSHOT_H
#define SYNOD_SERVER_SNAPSHOT_H

#include "node.h"

/* The chunk protocol as a state machine without I/O (fuzzed):
 *   first chunk   cluster_id, from, to, raft_msg (a SNAP message for this
 *                 member), total_bytes; may carry data
 *   middle        data only
 *   last          last = true, crc32c over the whole image; may carry data
 * Refused: another cluster or member, a first chunk without a decodable
 * SNAP message, a raft_msg later on, more data than announced, a last
 * chunk short of the total or with a wrong CRC, anything after the last. */
enum { SNAP_MIN_BYTES = 8192 };
#define SNAP_MAX_BYTES (1ull << 40)
typedef struct {
  uint64_t cluster_id, self_id;
  bool started, complete;
  uint64_t from, total, received;
  uint64_t snap_index, snap_term;
  uint8_t *raft_msg;
  size_t raft_msg_len;
  uint32_t crc;
} snap_recv;
void snap_recv_init(snap_recv *r, uint64_t cluster_id, uint64_t self_id);
void snap_recv_free(snap_recv *r);
/* Checks one chunk (its data is then the caller's to write). Returns 0:
 * more to come; 1: this was the last chunk and the image is complete;
 * -1: refused, with the reason in err. */
int snap_recv_chunk(snap_recv *r, const Synodpb__SnapshotChunk *c, char *err, size_t err_len);

/* From the Raft loop (node_send): starts sending a snapshot. Never blocks. */
void snapshot_send(node *n, uint64_t to, const uint8_t *msg, size_t len);
/* The receiving side's method, for the peer-facing server. */
size_t snapshot_methods(node *n, rpc_method *out);
/* The Raft loop is done with a received image (installed or discarded). */
void snapshot_released(node *n);
/* At startup: removes what an interrupted transfer left in the member
 * directory. */
void snapshot_cleanup(node *n);

#endif
