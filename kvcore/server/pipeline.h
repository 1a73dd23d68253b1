/* pipeline.h (private to kvcore/server) - the one ordered path every write
 * takes: propose -> durable log append -> apply -> reply.
 *
 * Today the log is local (the WAL, one fdatasync per batch shared by every
 * writer in it). The Raft issue replaces the log stage; proposals, the
 * apply stage and the replies stay as they are: committed entries come back
 * with the proposal ID, and whoever is waiting for that ID gets the reply. */
#ifndef SYNOD_SERVER_PIPELINE_H
#define SYNOD_SERVER_PIPELINE_H

#include "node.h"

/* Opens (or creates) the log, replays into the store what it lacks, and
 * starts the log and apply threads. */
int pipeline_open(node *n, const char *wal_dir, pipeline **out, char *err, size_t err_len);

/* Proposes one request. `req` (and what it points to) is only read during
 * the call. The reply (response or error) goes to `call` after the request
 * is durable and applied; with call == NULL nobody is answered (internal
 * requests such as auto-compaction). */
void pipeline_propose(pipeline *p, rpc_call *call, const Synodpb__Request *req);

/* Stops both threads; proposals not yet applied fail with "server stopped". */
void pipeline_close(pipeline *p);

/* Log position of the last applied entry. */
uint64_t pipeline_applied_index(pipeline *p);
uint64_t pipeline_committed_index(pipeline *p);

#endif
