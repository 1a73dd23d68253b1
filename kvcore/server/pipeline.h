/* pipeline.h (private to kvcore/server) - the one ordered path every write
 * takes: propose -> Raft (durable in the WAL, committed by a quorum) ->
 * apply -> reply.
 *
 * Proposals carry an ID; committed entries come back from the Raft loop
 * with it, and whoever is waiting for that ID on this member gets the reply
 * once the entry is applied (entries proposed elsewhere have no waiter
 * here). The apply thread applies each batch of committed entries in one
 * store transaction; replies are sent after it commits, so a reply means:
 * durable on a quorum, and visible to every read that starts afterwards. */
#ifndef SYNOD_SERVER_PIPELINE_H
#define SYNOD_SERVER_PIPELINE_H

#include "node.h"
#include "raft.h"

/* Starts the apply thread and the Raft loop over the WAL in wal_dir;
 * bootstrap (may be NULL) is a new cluster's founding log. */
int pipeline_open(node *n, const char *wal_dir, const raft_entry *bootstrap, size_t n_bootstrap, pipeline **out,
                  char *err, size_t err_len);

/* Proposes one request. `req` is only read during the call. The reply goes
 * to `call` once applied (call == NULL: nobody is answered). Fails at once
 * with "etcdserver: no leader" if the client required a leader
 * (`hasleader` metadata) and none is known; otherwise waits up to the
 * request timeout. */
void pipeline_propose(pipeline *p, rpc_call *call, const Synodpb__Request *req);

/* An internal proposal (the lock and election services): like
 * pipeline_propose, but the outcome goes to done(arg, err, resp) instead of
 * a call, exactly once:
 *   - applied: on the apply thread, after the batch that applied the entry
 *     has committed and node_applied() has run for it; err == NULL and resp
 *     is the decoded response (its header filled in; valid during the
 *     call only);
 *   - refused at once (request too large, server stopping): on the
 *     caller's thread, before pipeline_submit returns;
 *   - not applied by the deadline (deadline_ns on the monotonic clock,
 *     capped at the request timeout; <= 0: the request timeout): on the
 *     apply thread with "etcdserver: no leader" or "request timed out" (the
 *     entry may still commit later, as for a client's write);
 *   - pipeline closed: on the closing thread with "server stopped".
 * done must not block; it may call pipeline_submit again. */
typedef void (*pipeline_done_fn)(void *arg, const rpc_error *err, const ProtobufCMessage *resp);
void pipeline_submit(pipeline *p, const Synodpb__Request *req, int64_t deadline_ns, pipeline_done_fn done,
                     void *arg);

/* A membership change. When its entry has been applied (or the request
 * timed out: applied == false), done runs on the apply thread. */
typedef void (*pipeline_conf_done)(void *arg, bool applied);
void pipeline_propose_conf_change(pipeline *p, const raft_conf_change *cc, pipeline_conf_done done, void *arg);

/* Defragments the store on the apply thread, between batches (writes wait
 * meanwhile), and waits for it. Returns an MVCC code. */
int pipeline_defragment(pipeline *p);

/* Stops both threads; waiting proposals fail with "server stopped". */
void pipeline_close(pipeline *p);

/* Log position of the last applied entry, and the newest committed one. */
uint64_t pipeline_applied_index(pipeline *p);
uint64_t pipeline_committed_index(pipeline *p);

/* Waits (up to timeout_ms) until the store has applied index; false on
 * timeout or shutdown. For reads that must see a given log position. */
bool pipeline_wait_applied(pipeline *p, uint64_t index, int64_t timeout_ms);

/* The request timeout etcd uses: 5 s + 2 x election timeout. */
int64_t pipeline_request_timeout_ms(const node *n);

#endif
