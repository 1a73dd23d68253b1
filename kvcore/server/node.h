/* node.h (private to kvcore/server) - one running member: its identity,
 * configuration, store, Raft loop, transport, write pipeline and servers. */
#ifndef SYNOD_SERVER_NODE_H
#define SYNOD_SERVER_NODE_H

#include "base.h"
#include "config.h"
#include "membership.h"
#include "mvcc.h"
#include "proto.h"
#include "rpc.h"

#include <stdatomic.h>

typedef struct pipeline pipeline;
typedef struct compactor compactor;
typedef struct lease_service lease_service;
typedef struct reads reads;
typedef struct transport transport;
struct raftnode;
typedef struct watch_hub watch_hub;
typedef struct cc_table cc_table;

typedef struct node {
  server_config cfg;
  uint64_t member_id;
  uint64_t cluster_id;
  _Atomic uint64_t term;
  mvcc_store *store;
  pipeline *pipe;
  struct raftnode *rn;
  transport *tr;
  reads *reads;
  compactor *compactor;
  watch_hub *watch;     /* NULL until started; the apply thread notifies it */
  lease_service *lease; /* the lease table and its clock (lease_service.h) */
  cc_table *cc;         /* lock and election waiters (concurrency.h) */
  rpc_server *rpc;      /* clients */
  rpc_server *peer_rpc; /* members */
  member_cache members;
  _Atomic bool published; /* our name and client URLs are in the member list */
  _Atomic bool removed;   /* this member was removed from the cluster */
  _Atomic bool stopping;  /* shutdown has begun */
  _Atomic int background; /* helper threads still running (MoveLeader waits) */
  int64_t started_ns;
  char member_dir[4096];
  /* Does a lease exist? (the lease service answers; NULL: none do) */
  bool (*lease_exists)(void *arg, int64_t id);
  void *lease_arg;
  /* Snapshots (Raft's, for members that fell behind the log). */
  _Atomic uint64_t snapshots_sent, snapshots_installed;
  _Atomic bool snapshot_incoming; /* one transfer received at a time */
  /* Alarms (alarms.c): the apply thread's copy of MVCC_AUX_ALARMS. */
  struct alarm_state *alarm_state;
  _Atomic bool nospace; /* a NOSPACE alarm is active: puts are refused */
} node;

/* Fills cluster_id, member_id and raft_term; the caller sets revision. */
void node_fill_header(const node *n, Etcdserverpb__ResponseHeader *h);

/* The store's current revision (0 if it cannot be read). */
int64_t node_current_rev(node *n);

/* A thread's scratch arena for building responses on the read path; reset
 * by the caller after the reply is packed. */
arena *node_thread_arena(void);

/* Registers every service's methods; returns the table. */
const rpc_method *node_methods(node *n, size_t *count);
const rpc_method *node_peer_methods(node *n, size_t *count);

/* Called by the pipeline. */
void node_members_changed(node *n);                 /* apply thread */
/* The store's contents were replaced (a snapshot installed): membership,
 * transport peers, watchers and leases catch up with it. Apply thread. */
void node_store_replaced(node *n);
void node_applied(node *n, uint64_t index);         /* apply thread */
void node_read_ready(node *n, uint64_t ctx, uint64_t index);
void node_leader_changed(node *n, uint64_t lead, uint64_t term);
void node_send(node *n, uint64_t to, const uint8_t *msg, size_t len, bool is_snapshot);
void node_flush(node *n);

/* True if reads may skip the ReadIndex round (sole voter and leader). */
bool node_local_reads_ok(node *n);

#endif
