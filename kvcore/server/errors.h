/* errors.h (private to kvcore/server) - etcd's client-visible errors: the
 * gRPC code and the exact message clientv3 maps to its typed errors. */
#ifndef SYNOD_SERVER_ERRORS_H
#define SYNOD_SERVER_ERRORS_H

#include "rpc.h"

/* One definition each (errors.c), so errors can be compared by address. */
extern const rpc_error ERR_EMPTY_KEY;
extern const rpc_error ERR_KEY_NOT_FOUND;
extern const rpc_error ERR_VALUE_PROVIDED;
extern const rpc_error ERR_LEASE_PROVIDED;
extern const rpc_error ERR_TOO_MANY_OPS;
extern const rpc_error ERR_DUPLICATE_KEY;
extern const rpc_error ERR_COMPACTED;
extern const rpc_error ERR_FUTURE_REV;
extern const rpc_error ERR_NO_SPACE;
/* The same text, for requests refused while a NOSPACE alarm is active (a
 * deterministic answer, where ERR_NO_SPACE from the store is a disk full). */
extern const rpc_error ERR_NO_SPACE_ALARM;
extern const rpc_error ERR_LEASE_NOT_FOUND;
extern const rpc_error ERR_LEASE_EXIST;
extern const rpc_error ERR_LEASE_TTL_TOO_LARGE;
extern const rpc_error ERR_REQUEST_TOO_LARGE;
extern const rpc_error ERR_TOO_MANY_REQUESTS;
extern const rpc_error ERR_NO_LEADER;
extern const rpc_error ERR_STOPPED;
extern const rpc_error ERR_TIMEOUT;
extern const rpc_error ERR_CANCELED;
extern const rpc_error ERR_MEMBER_NOT_FOUND;
extern const rpc_error ERR_MEMBER_EXIST;
extern const rpc_error ERR_PEER_URL_EXIST;
extern const rpc_error ERR_MEMBER_NOT_ENOUGH_STARTED;
extern const rpc_error ERR_MEMBER_BAD_URLS;
extern const rpc_error ERR_MEMBER_NOT_LEARNER;
extern const rpc_error ERR_LEARNER_NOT_READY;
extern const rpc_error ERR_TOO_MANY_LEARNERS;
extern const rpc_error ERR_NOT_LEADER;
extern const rpc_error ERR_LEADER_CHANGED;
extern const rpc_error ERR_BAD_LEADER_TRANSFEREE;
extern const rpc_error ERR_TIMEOUT_LEADER_TRANSFER;
extern const rpc_error ERR_AUTH_NOT_ENABLED;
extern const rpc_error ERR_KEY_TOO_LONG;
extern const rpc_error ERR_INTERNAL;
extern const rpc_error ERR_NOT_SUPPORTED_YET;
/* Lock and Election: etcd serves them with plain Go errors (gRPC code
 * Unknown, the recipe's message). */
extern const rpc_error ERR_LOCK_SESSION_EXPIRED;
extern const rpc_error ERR_ELECTION_SESSION_EXPIRED;
extern const rpc_error ERR_ELECTION_NOT_LEADER;
extern const rpc_error ERR_ELECTION_NO_LEADER;
extern const rpc_error ERR_ELECTION_MISSING_LEADER;

#endif
