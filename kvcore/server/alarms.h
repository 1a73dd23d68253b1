/* alarms.h (private to kvcore/server) - etcd's alarms and the backend quota.
 *
 * Alarms are replicated: an AlarmRequest travels through the log like any
 * write, and every member applies it to MVCC_AUX_ALARMS in the same
 * transaction as the entries around it (key: BE64 member | BE32 type). The
 * apply thread keeps a copy in memory for Status and for the "capped"
 * rule: while a NOSPACE alarm is active, puts, transactions that would put
 * and lease grants are refused at apply time with etcd's "database space
 * exceeded", while deletes, compactions and reads go on.
 *
 * The quota is checked where etcd checks it, before proposing: a put or a
 * transaction whose cost (etcd's: 256 bytes + key + value per put; a
 * transaction costs its larger branch) would take the data file's size to
 * or past --quota-backend-bytes raises NOSPACE (proposed through the log)
 * and fails at once. */
#ifndef SYNOD_SERVER_ALARMS_H
#define SYNOD_SERVER_ALARMS_H

#include "node.h"

/* Loads the alarms from the store (at start, after a snapshot install). */
void alarms_reload(node *n);
void alarms_free(node *n);

/* Apply thread: applies a committed AlarmRequest, answering as etcd's
 * applier does (activate: the alarm; deactivate: the alarm removed, if it
 * was there; get: the alarms of that type, all for NONE). resp is built in
 * mem. Returns an MVCC error code. */
int alarms_apply(node *n, mvcc_txn *w, const Etcdserverpb__AlarmRequest *r, arena *mem,
                 Etcdserverpb__AlarmResponse **resp);

/* Whether a NOSPACE alarm is active (the capped rule). */
bool alarms_nospace(node *n);

/* etcd's text for each active alarm ("memberID:N alarm:NOSPACE "), for
 * Status errors; strings in mem. Returns how many. */
size_t alarms_strings(node *n, arena *mem, char ***out);

/* etcd's quota costs (a lease grant: leaseOverhead). */
enum { ALARMS_LEASE_COST = 64 };
int64_t alarms_cost_put(const Etcdserverpb__PutRequest *r);
int64_t alarms_cost_txn(const Etcdserverpb__TxnRequest *r);
/* gRPC thread: NULL if a request of this cost fits; otherwise raises
 * NOSPACE through the log and returns etcd's error. */
const rpc_error *alarms_quota_check(node *n, int64_t cost);

#endif
