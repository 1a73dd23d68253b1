/* lease_service.h (private to kvcore/server) - etcdserverpb.Lease over
 * kvcore/lease, and the member's side of leases:
 *
 *   lease_service.c  the gRPC methods (grant and revoke are proposed; keep-
 *                    alive, time-to-live and list are answered at once)
 *   lease_apply.c    LeaseGrant/LeaseRevoke/LeaseCheckpoint log entries on
 *                    the apply thread, and the lease check Put/Txn use
 *   lease_clock.c    life cycle, leadership, and the clock thread that
 *                    proposes revocations of expired leases and checkpoints
 *
 * Start-up order: lease_service_open (load the table from the store) ->
 * pipeline_open (its replay applies lease entries) -> lease_service_start
 * (this single member leads: promote, start the clock). Shutdown:
 * lease_service_stop before pipeline_close, lease_service_free after
 * rpc_server_free (keep-alive streams hold the node until then). */
#ifndef SYNOD_SERVER_LEASE_SERVICE_H
#define SYNOD_SERVER_LEASE_SERVICE_H

#include "lease.h"
#include "node.h"

#include <pthread.h>

/* Where requests that need the leader's clocks go when this member is not
 * the leader: the Raft work sends them to the leader (etcd uses HTTP to
 * the leader's peer URL for renewals and time-to-live) and calls done once,
 * from any thread, with a LEASE_* code, the TTL (renew) or remaining TTL
 * (time_to_live), and the granted TTL (time_to_live). Without a forwarder
 * a member that does not lead answers "etcdserver: no leader". */
typedef void (*lease_forward_done)(void *ctx, int rc, int64_t ttl, int64_t granted);
typedef struct {
  void (*renew)(void *arg, int64_t id, lease_forward_done done, void *ctx);
  void (*time_to_live)(void *arg, int64_t id, lease_forward_done done, void *ctx);
  void *arg;
} lease_forwarder;

struct lease_service {
  node *n;
  lease_table *table;
  _Atomic uint64_t next_id; /* etcd's ID scheme for leases granted with ID 0 */
  lease_forwarder fwd;

  pthread_t thread;
  bool running;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop, kicked;
};

int lease_service_open(node *n, char *err, size_t err_len);
void lease_service_start(node *n);
void lease_service_stop(node *n);
void lease_service_free(node *n);

/* Leadership, for the Raft work: promote once this member leads and has
 * applied every entry of earlier terms (etcd promotes when the new term's
 * empty entry applies); demote as soon as it does not lead. Promotion gives
 * every lease its remaining TTL plus an election timeout. */
void lease_service_promote(node *n);
void lease_service_demote(node *n);
/* Set before lease_service_start (not synchronized). */
void lease_service_set_forwarder(node *n, const lease_forwarder *f);

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
