/* The table behind errors.h. Messages are etcd's, byte for byte: clientv3
 * maps them back to its typed errors. */
#include "errors.h"

const rpc_error ERR_EMPTY_KEY = {RPC_INVALID_ARGUMENT, "etcdserver: key is not provided"};
const rpc_error ERR_KEY_NOT_FOUND = {RPC_INVALID_ARGUMENT, "etcdserver: key not found"};
const rpc_error ERR_VALUE_PROVIDED = {RPC_INVALID_ARGUMENT, "etcdserver: value is provided"};
const rpc_error ERR_LEASE_PROVIDED = {RPC_INVALID_ARGUMENT, "etcdserver: lease is provided"};
const rpc_error ERR_TOO_MANY_OPS = {RPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request"};
const rpc_error ERR_DUPLICATE_KEY = {RPC_INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"};
const rpc_error ERR_COMPACTED = {RPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"};
const rpc_error ERR_FUTURE_REV = {RPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"};
const rpc_error ERR_NO_SPACE = {RPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"};
const rpc_error ERR_NO_SPACE_ALARM = {RPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"};
const rpc_error ERR_LEASE_NOT_FOUND = {RPC_NOT_FOUND, "etcdserver: requested lease not found"};
const rpc_error ERR_LEASE_EXIST = {RPC_FAILED_PRECONDITION, "etcdserver: lease already exists"};
const rpc_error ERR_LEASE_TTL_TOO_LARGE = {RPC_OUT_OF_RANGE, "etcdserver: too large lease TTL"};
const rpc_error ERR_REQUEST_TOO_LARGE = {RPC_INVALID_ARGUMENT, "etcdserver: request is too large"};
const rpc_error ERR_TOO_MANY_REQUESTS = {RPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests"};
const rpc_error ERR_NO_LEADER = {RPC_UNAVAILABLE, "etcdserver: no leader"};
const rpc_error ERR_STOPPED = {RPC_UNAVAILABLE, "etcdserver: server stopped"};
const rpc_error ERR_TIMEOUT = {RPC_UNAVAILABLE, "etcdserver: request timed out"};
const rpc_error ERR_CANCELED = {RPC_CANCELLED, "etcdserver: request canceled"};
const rpc_error ERR_MEMBER_NOT_FOUND = {RPC_NOT_FOUND, "etcdserver: member not found"};
const rpc_error ERR_MEMBER_EXIST = {RPC_FAILED_PRECONDITION, "etcdserver: member ID already exist"};
const rpc_error ERR_PEER_URL_EXIST = {RPC_FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"};
const rpc_error ERR_MEMBER_NOT_ENOUGH_STARTED = {RPC_FAILED_PRECONDITION, "etcdserver: re-configuration failed due to not enough started members"};
const rpc_error ERR_MEMBER_BAD_URLS = {RPC_INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"};
const rpc_error ERR_MEMBER_NOT_LEARNER = {RPC_FAILED_PRECONDITION, "etcdserver: can only promote a learner member"};
const rpc_error ERR_LEARNER_NOT_READY = {RPC_FAILED_PRECONDITION, "etcdserver: can only promote a learner member which is in sync with leader"};
const rpc_error ERR_TOO_MANY_LEARNERS = {RPC_FAILED_PRECONDITION, "etcdserver: too many learner members in cluster"};
const rpc_error ERR_NOT_LEADER = {RPC_FAILED_PRECONDITION, "etcdserver: not leader"};
const rpc_error ERR_LEADER_CHANGED = {RPC_UNAVAILABLE, "etcdserver: leader changed"};
const rpc_error ERR_BAD_LEADER_TRANSFEREE = {RPC_FAILED_PRECONDITION, "etcdserver: bad leader transferee"};
const rpc_error ERR_TIMEOUT_LEADER_TRANSFER = {RPC_DEADLINE_EXCEEDED, "etcdserver: request timed out, leader transfer took too long"};
const rpc_error ERR_AUTH_NOT_ENABLED = {RPC_FAILED_PRECONDITION, "etcdserver: authentication is not enabled"};
const rpc_error ERR_KEY_TOO_LONG = {RPC_INVALID_ARGUMENT, "etcdserver: key is too long (Synod's limit is 511 bytes)"};
const rpc_error ERR_INTERNAL = {RPC_INTERNAL, "etcdserver: internal error (see the server log)"};
const rpc_error ERR_NOT_SUPPORTED_YET = {RPC_UNIMPLEMENTED, "synod: this RPC is not supported yet"};
const rpc_error ERR_LOCK_SESSION_EXPIRED = {RPC_UNKNOWN, "mutex: session is expired"};
const rpc_error ERR_ELECTION_SESSION_EXPIRED = {RPC_UNKNOWN, "election: session is expired"};
const rpc_error ERR_ELECTION_NOT_LEADER = {RPC_UNKNOWN, "election: not leader"};
const rpc_error ERR_ELECTION_NO_LEADER = {RPC_UNKNOWN, "election: no leader"};
const rpc_error ERR_ELECTION_MISSING_LEADER = {RPC_UNKNOWN, "\"leader\" field must be provided"};
