/* transport.h (private to kvcore/server) - Raft messages between members.
 *
 * Outbound: one gRPC stream per peer (synodpb.Peer/Raft) with its own
 * bounded queue; a slow, dead or partitioned peer loses messages (Raft
 * retries) but never blocks the others. A broken stream is reported to Raft
 * as unreachable and reopened with back-off. Messages to a member that is
 * not (or no longer) in the member list are dropped.
 *
 * Inbound: the Peer service on --listen-peer-urls; batches from another
 * cluster or for another member are refused, and a removed member is told
 * so (it then stops). */
#ifndef SYNOD_SERVER_TRANSPORT_H
#define SYNOD_SERVER_TRANSPORT_H

#include "membership.h"
#include "rpc.h"

typedef struct transport transport;
struct raftnode;

typedef struct {
  uint64_t self_id;
  uint64_t cluster_id;
  size_t max_queued_bytes; /* per peer; 0: 16 MiB */
  /* Is `id` a member that was removed? (asked for inbound batches) */
  bool (*was_removed)(void *arg, uint64_t id);
  /* This member learned from a peer that it was removed from the cluster. */
  void (*removed)(void *arg);
  void *arg;
} transport_options;

transport *transport_new(const transport_options *o);
void transport_free(transport *t);
void transport_set_raft(transport *t, struct raftnode *rn);

/* The peers to talk to: every member but this one, at its first peer URL.
 * Peers not in the list stay known unless they were removed. */
void transport_set_peers(transport *t, const member_list *members);
/* From the Raft loop; never blocks. Messages wait in the peer's batch until
 * transport_flush, which sends each peer's batch as one gRPC message (a
 * follower forwarding 50 proposals sends one message, not 50). */
void transport_send(transport *t, uint64_t to, const uint8_t *msg, size_t len);
void transport_flush(transport *t);

/* A unary call to a peer over its channel (forwarding to the leader). done
 * runs on the client thread; RPC_UNAVAILABLE if the peer is unknown. */
void transport_call(transport *t, uint64_t to, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_type, int64_t timeout_ms, rpc_unary_done done, void *arg);

/* A stream to a peer over its channel (a snapshot transfer); NULL if the
 * peer is unknown or the call cannot start. */
rpc_client_stream *transport_open_stream(transport *t, uint64_t to, const char *method,
                                         const rpc_client_stream_handler *h);

/* The Peer service's methods, for the peer-facing rpc server. */
size_t transport_methods(transport *t, rpc_method *out);

#endif
