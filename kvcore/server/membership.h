/* membership.h (private to kvcore/server) - the cluster's members as the
 * replicated state says: changed only by applying committed log entries
 * (Raft conf changes and attribute updates), stored in the store's members
 * table in the same transaction, and mirrored in memory for the transport
 * and the Cluster service. */
#ifndef SYNOD_SERVER_MEMBERSHIP_H
#define SYNOD_SERVER_MEMBERSHIP_H

#include <pthread.h>

#include "config.h"
#include "mvcc.h"
#include "proto.h"
#include "raft.h"

typedef struct {
  uint64_t id;
  char *name;         /* empty until the member publishes it */
  strlist peer_urls;
  strlist client_urls;
  bool is_learner;
} member;

typedef struct {
  member *v;
  size_t n;
} member_list;

void member_list_free(member_list *l);
const member *member_list_find(const member_list *l, uint64_t id);
/* Members ordered by ID, as etcd lists them. */
int members_load(mvcc_txn *t, member_list *out);
/* IDs that were removed: their messages are refused forever. */
bool members_was_removed(mvcc_txn *t, uint64_t id);

/* Applying committed entries (apply thread, inside the batch transaction). */
int members_apply_conf_change(mvcc_txn *w, const raft_conf_change *cc);
int members_apply_attributes(mvcc_txn *w, const Etcdserverpb__Member *attrs);

/* The conf-change context for a member: its ID, peer URLs, learner flag and
 * (founding members) name. */
void members_encode_context(uint64_t id, const strlist *peer_urls, bool learner, const char *name, buf *out);

/* etcd's identity rules: a member's ID from its sorted peer URLs and the
 * cluster token (plus a time for members added later); the cluster's from
 * its founding members' IDs. */
uint64_t members_compute_id(const strlist *peer_urls, const char *token, const int64_t *unix_time);
uint64_t members_compute_cluster_id(uint64_t *ids, size_t n);

/* --initial-cluster parsed: names (in order of first appearance) with their
 * peer URLs, and the IDs derived from them. */
typedef struct {
  char *name;
  strlist peer_urls;
  uint64_t id;
} initial_member;

typedef struct {
  initial_member *v;
  size_t n;
  uint64_t cluster_id;
} initial_cluster;

int initial_cluster_parse(const char *spec, const char *token, initial_cluster *out, char *err, size_t err_len);
void initial_cluster_free(initial_cluster *ic);

/* The in-memory mirror: readers take a snapshot copy under the lock. */
typedef struct {
  pthread_mutex_t mu;
  member_list list;
  uint64_t version; /* bumped on every change */
} member_cache;

void member_cache_init(member_cache *c);
void member_cache_destroy(member_cache *c);
/* Replaces the cached list (takes ownership of l's contents). */
void member_cache_set(member_cache *c, member_list *l);
/* A copy the caller frees with member_list_free. */
void member_cache_copy(member_cache *c, member_list *out, uint64_t *version);

#endif
