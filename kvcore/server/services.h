/* services.h (private to kvcore/server) - each service file contributes its
 * methods to the server's table. out must have room for SERVICE_MAX. */
#ifndef SYNOD_SERVER_SERVICES_H
#define SYNOD_SERVER_SERVICES_H

#include "node.h"

enum { SERVICE_MAX = 48 };

size_t kv_service_methods(node *n, rpc_method *out);
size_t maintenance_service_methods(node *n, rpc_method *out);
/* Maintenance.Snapshot and Maintenance.Defragment. */
size_t snapshot_service_methods(node *n, rpc_method *out);
size_t cluster_service_methods(node *n, rpc_method *out);
size_t health_service_methods(node *n, rpc_method *out);
size_t lease_service_methods(node *n, rpc_method *out);
/* Member-to-member methods beyond Raft traffic (served on the peer URLs). */
size_t peer_service_methods(node *n, rpc_method *out);
size_t watch_service_methods(node *n, rpc_method *out);
/* Starts the member's watch hub (before the pipeline applies anything). */
int watch_service_start(node *n, char *err, size_t err_len);
/* v3lockpb.Lock and v3electionpb.Election (contend.h, concurrency.h). */
size_t lock_service_methods(node *n, rpc_method *out);
size_t election_service_methods(node *n, rpc_method *out);
/* Every other etcd method answers "not supported yet" (never "unknown"). */
size_t pending_service_methods(node *n, rpc_method *out);

#endif
