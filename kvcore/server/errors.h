/* errors.h (private to kvcore/server) - etcd's client-visible errors: the
 * gRPC code and the exact message clientv3 maps to its typed errors. */
#ifndef SYNOD_SERVER_ERRORS_H
#define SYNOD_SERVER_ERRORS_H

#include "rpc.h"

#define ETCD_ERR(name, code, msg) static const rpc_error name = {code, msg}

ETCD_ERR(ERR_EMPTY_KEY, RPC_INVALID_ARGUMENT, "etcdserver: key is not provided");
ETCD_ERR(ERR_KEY_NOT_FOUND, RPC_INVALID_ARGUMENT, "etcdserver: key not found");
ETCD_ERR(ERR_VALUE_PROVIDED, RPC_INVALID_ARGUMENT, "etcdserver: value is provided");
ETCD_ERR(ERR_LEASE_PROVIDED, RPC_INVALID_ARGUMENT, "etcdserver: lease is provided");
ETCD_ERR(ERR_TOO_MANY_OPS, RPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request");
ETCD_ERR(ERR_DUPLICATE_KEY, RPC_INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request");
ETCD_ERR(ERR_COMPACTED, RPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted");
ETCD_ERR(ERR_FUTURE_REV, RPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision");
ETCD_ERR(ERR_NO_SPACE, RPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded");
ETCD_ERR(ERR_LEASE_NOT_FOUND, RPC_NOT_FOUND, "etcdserver: requested lease not found");
ETCD_ERR(ERR_LEASE_EXIST, RPC_FAILED_PRECONDITION, "etcdserver: lease already exists");
ETCD_ERR(ERR_LEASE_TTL_TOO_LARGE, RPC_OUT_OF_RANGE, "etcdserver: too large lease TTL");
ETCD_ERR(ERR_REQUEST_TOO_LARGE, RPC_INVALID_ARGUMENT, "etcdserver: request is too large");
ETCD_ERR(ERR_TOO_MANY_REQUESTS, RPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
ETCD_ERR(ERR_NO_LEADER, RPC_UNAVAILABLE, "etcdserver: no leader");
ETCD_ERR(ERR_STOPPED, RPC_UNAVAILABLE, "etcdserver: server stopped");
ETCD_ERR(ERR_TIMEOUT, RPC_UNAVAILABLE, "etcdserver: request timed out");
ETCD_ERR(ERR_CANCELED, RPC_CANCELLED, "etcdserver: request canceled");
ETCD_ERR(ERR_MEMBER_NOT_FOUND, RPC_NOT_FOUND, "etcdserver: member not found");
ETCD_ERR(ERR_AUTH_NOT_ENABLED, RPC_FAILED_PRECONDITION, "etcdserver: authentication is not enabled");
ETCD_ERR(ERR_KEY_TOO_LONG, RPC_INVALID_ARGUMENT, "etcdserver: key is too long (Synod's limit is 511 bytes)");
ETCD_ERR(ERR_INTERNAL, RPC_INTERNAL, "etcdserver: internal error (see the server log)");

/* For features a later piece of work adds: a clear answer, never a hang. */
ETCD_ERR(ERR_NOT_SUPPORTED_YET, RPC_UNIMPLEMENTED, "synod: this RPC is not supported yet");

#endif
