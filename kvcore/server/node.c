/* What a running member does between its parts: response headers, method
 * tables, and the hooks the pipeline and the Raft loop call (membership
 * changes, applied indexes, read points, leadership, outgoing messages). */
#include "node.h"

#include "alarms.h"
#include "base.h"
#include "concurrency.h"
#include "lease_service.h"
#include "pipeline.h"
#include "raftnode.h"
#include "reads.h"
#include "services.h"
#include "snapshot.h"
#include "transport.h"
#include "watch.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

void node_fill_header(const node *n, Etcdserverpb__ResponseHeader *h) {
  h->cluster_id = n->cluster_id;
  h->member_id = n->member_id;
  h->raft_term = atomic_load(&((node *)n)->term);
}

int64_t node_current_rev(node *n) {
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return 0;
  int64_t rev = mvcc_rev(t);
  mvcc_txn_end(t);
  return rev;
}

static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;
static void arena_destroy(void *a) { arena_free(a); }
static void arena_key_init(void) { pthread_key_create(&arena_key, arena_destroy); }

arena *node_thread_arena(void) {
  pthread_once(&arena_once, arena_key_init);
  arena *a = pthread_getspecific(arena_key);
  if (!a) {
    a = arena_new();
    pthread_setspecific(arena_key, a);
  }
  return a;
}

const rpc_method *node_methods(node *n, size_t *count) {
  static rpc_method table[4 * SERVICE_MAX];
  size_t k = 0;
  k += kv_service_methods(n, table + k);
  k += maintenance_service_methods(n, table + k);
  k += snapshot_service_methods(n, table + k);
  k += cluster_service_methods(n, table + k);
  k += health_service_methods(n, table + k);
  k += watch_service_methods(n, table + k);
  k += lease_service_methods(n, table + k);
  k += lock_service_methods(n, table + k);
  k += election_service_methods(n, table + k);
  k += pending_service_methods(n, table + k);
  *count = k;
  return table;
}

const rpc_method *node_peer_methods(node *n, size_t *count) {
  static rpc_method table[SERVICE_MAX];
  size_t k = 0;
  k += transport_methods(n->tr, table + k);
  k += snapshot_methods(n, table + k);
  k += peer_service_methods(n, table + k);
  k += lease_peer_methods(n, table + k);
  *count = k;
  return table;
}

bool node_local_reads_ok(node *n) { return n->rn && raftnode_sole_leader(n->rn); }

/* ---------------------------------------------------------------- publishing */

/* A member announces its name and client URLs through the log once a leader
 * exists (etcd's "publish"), so every member lists it as started. Retried
 * until it shows up in the applied member list. */
static void maybe_publish(node *n) {
  static _Atomic int64_t last_try;
  if (atomic_load(&n->published) || !n->rn || raftnode_lead(n->rn) == 0) return;
  int64_t now = time_mono_ms();
  if (now - atomic_load(&last_try) < 1000) return;
  atomic_store(&last_try, now);
  Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
  m.id = n->member_id;
  m.name = n->cfg.name;
  m.clienturls = n->cfg.advertise_client_urls.v;
  m.n_clienturls = n->cfg.advertise_client_urls.n;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_MEMBER_ATTRIBUTES;
  req.member_attributes = &m;
  pipeline_propose(n->pipe, NULL, &req);
}

static bool attributes_match(const node *n, const member *m) {
  if (strcmp(m->name, n->cfg.name) != 0 || m->client_urls.n != n->cfg.advertise_client_urls.n) return false;
  for (size_t i = 0; i < m->client_urls.n; i++)
    if (strcmp(m->client_urls.v[i], n->cfg.advertise_client_urls.v[i]) != 0) return false;
  return true;
}

/* ---------------------------------------------------------------- hooks */

void node_members_changed(node *n) {
  mvcc_txn *t;
  member_list l;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return;
  int rc = members_load(t, &l);
  bool removed = members_was_removed(t, n->member_id);
  mvcc_txn_end(t);
  if (rc) return;
  const member *self = member_list_find(&l, n->member_id);
  if (self && attributes_match(n, self)) atomic_store(&n->published, true);
  transport_set_peers(n->tr, &l);
  member_cache_set(&n->members, &l);
  if (removed && !atomic_exchange(&n->removed, true)) {
    log_error("the member has been permanently removed from the cluster; shutting down");
    kill(getpid(), SIGTERM);
  }
  maybe_publish(n);
}

void node_store_replaced(node *n) {
  node_members_changed(n);
  alarms_reload(n);
  if (n->watch) watch_hub_after_replace(n->watch);
  if (n->lease) lease_service_reload(n);
}

void node_applied(node *n, uint64_t index) {
  if (n->cc) cc_applied(n->cc); /* grants hand-overs before anyone else is answered */
  if (n->reads) reads_applied(n->reads, index);
}

void node_read_ready(node *n, uint64_t ctx, uint64_t index) {
  if (n->reads) reads_ready(n->reads, ctx, index);
}

void node_leader_changed(node *n, uint64_t lead, uint64_t term) {
  if (lead) log_info("raft: term %" PRIu64 ", leader %016" PRIx64 "%s", term, lead, lead == n->member_id ? " (this member)" : "");
  else log_info("raft: term %" PRIu64 ", no leader", term);
  lease_service_leader_changed(n, lead, term);
  if (n->pipe) maybe_publish(n);
}

void node_send(node *n, uint64_t to, const uint8_t *msg, size_t len, bool is_snapshot) {
  if (is_snapshot) {
    snapshot_send(n, to, msg, len); /* the store image travels on its own stream */
    return;
  }
  transport_send(n->tr, to, msg, len);
}

void node_flush(node *n) { transport_flush(n->tr); }
