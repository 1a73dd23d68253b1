/* proto.h - the one header for every generated wire message.
 *
 * The .proto files next to this header describe etcd's v3 API (and Synod's
 * internal log records); protoc-c turns them into C structs at build time.
 * Code that handles requests includes this and nothing from the build tree.
 */
#ifndef SYNOD_PROTO_H
#define SYNOD_PROTO_H

#include "mvccpb/kv.pb-c.h"
#include "authpb/auth.pb-c.h"
#include "etcdserverpb/rpc.pb-c.h"
#include "v3lockpb/v3lock.pb-c.h"
#include "v3electionpb/v3election.pb-c.h"
#include "grpchealth/health.pb-c.h"
#include "synodpb/log.pb-c.h"
#include "synodpb/peer.pb-c.h"

#endif
