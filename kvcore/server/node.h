/* node.h (private to kvcore/server) - one running member: its identity,
 * configuration, store, write pipeline and gRPC server. */
#ifndef SYNOD_SERVER_NODE_H
#define SYNOD_SERVER_NODE_H

#include "base.h"
#include "config.h"
#include "mvcc.h"
#include "proto.h"
#include "rpc.h"

#include <stdatomic.h>

typedef struct pipeline pipeline;
typedef struct compactor compactor;
typedef struct watch_hub watch_hub;

typedef struct node {
  server_config cfg;
  uint64_t member_id;
  uint64_t cluster_id;
  _Atomic uint64_t term;
  mvcc_store *store;
  pipeline *pipe;
  compactor *compactor;
  watch_hub *watch; /* NULL until started; the apply thread notifies it */
  rpc_server *rpc;
  int64_t started_ns;
  char member_dir[4096];
} node;

/* Fills cluster_id, member_id and raft_term; the caller sets revision. */
void node_fill_header(const node *n, Etcdserverpb__ResponseHeader *h);

/* A thread's scratch arena for building responses on the read path; reset
 * by the caller after the reply is packed. */
arena *node_thread_arena(void);

/* Registers every service's methods; returns the table. */
const rpc_method *node_methods(node *n, size_t *count);

#endif
