/* lease_service.h (private to kvcore/server) - etcdserverpb.Lease over
 * kvcore/lease, and the member's side of leases:
 *
 *   lease_service.c  the gRPC methods (grant and revoke are proposed; keep-
 *                    alive, time-to-live and list are answered at once)
 *   lease_apply.c    LeaseGrant/LeaseRevoke/LeaseCheckpoint log entries on
 *                    the apply thread, and the lease check Put/Txn use
 *   lease_clock.c    life cycle, leadership, and the clock thread that
 *                    proposes revocations of expired leases and checkpoints
 *   lease_forward.c  keep-alive and time-to-live on a follower, sent to the
 *                    leader; the leader's peer methods answering them
 *
 * Start-up order: lease_service_open (load the table from the store; before
 * the peer server, whose methods use it, and before the pipeline, which
 * applies lease entries) -> pipeline_open -> lease_service_start (the clock
 * thread; it works once Raft makes this member leader). Shutdown:
 * lease_service_stop before pipeline_close, lease_service_free once the
 * client and peer servers and the transport are gone (keep-alive streams and
 * forwarded calls use it until then). */
#ifndef SYNOD_SERVER_LEASE_SERVICE_H
#define SYNOD_SERVER_LEASE_SERVICE_H

#include "lease.h"
#include "node.h"

#include <pthread.h>

/* The answer to a renewal or time-to-live, local or from the leader: a
 * LEASE_* code, the TTL (renew) or remaining TTL (time-to-live), and the
 * granted TTL (time-to-live). LEASE_ENOTPRIMARY: no leader could answer. */
typedef void (*lease_answer)(void *ctx, int rc, int64_t ttl, int64_t granted);

struct lease_service {
  node *n;
  lease_table *table;
  _Atomic uint64_t next_id; /* etcd's ID scheme for leases granted with ID 0 */

  pthread_mutex_t lead_mu; /* orders promotions against demotions */
  uint64_t term_seen;      /* newest term a leadership change reported */

  pthread_t thread;
  bool running;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop, kicked;
};

int lease_service_open(node *n, char *err, size_t err_len);
void lease_service_start(node *n);
/* Apply thread: the store's contents were replaced (a snapshot from the
 * leader); the table becomes the store's, untracked (this member is a
 * follower: a leader never installs a snapshot). */
void lease_service_reload(node *n);
void lease_service_stop(node *n);
void lease_service_free(node *n);

/* Leadership. The Raft loop reports every change (node_leader_changed):
 * losing it demotes at once. Winning it promotes only when the apply thread
 * reaches the empty entry the new leader appends to its term (every entry
 * of earlier terms is applied by then, as etcd promotes), through
 * lease_service_term_started. Promotion gives every lease its remaining TTL
 * plus an election timeout. */
void lease_service_leader_changed(node *n, uint64_t lead, uint64_t term);
void lease_service_term_started(node *n, uint64_t term);

/* Requests that need the leader's clocks, on a member that is not primary:
 * sent to the leader over the peer transport (synodpb.Peer/LeaseKeepAlive,
 * /LeaseTimeToLive), as etcd sends them over HTTP. `done` runs once, on the
 * transport's thread, or at once if no leader is known (lease_forward.c). */
void lease_forward_renew(node *n, int64_t id, lease_answer done, void *ctx);
void lease_forward_time_to_live(node *n, int64_t id, lease_answer done, void *ctx);
/* The leader's side of those, for the peer-facing server. */
size_t lease_peer_methods(node *n, rpc_method *out);

/* Apply thread: a LeaseGrant, LeaseRevoke or LeaseCheckpoint entry, inside
 * its revision bracket. The response (built in mem) gets its header
 * filled by the caller. Returns NULL or the error to answer. */
const rpc_error *lease_service_apply(node *n, arena *mem, mvcc_txn *w, const Synodpb__Request *req,
                                     ProtobufCMessage **resp, Etcdserverpb__ResponseHeader ***hdr);
/* kv_exec.lease_exists: arg is the node. */
bool lease_service_exists(void *node_arg, int64_t id);
/* etcd's error for a LEASE_* code (NULL for LEASE_OK). */
const rpc_error *lease_service_error(int rc);

#endif
