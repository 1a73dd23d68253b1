/* bootstrap.h (private to kvcore/server) - who this member is: restart,
 * new cluster, or joining an existing one (see bootstrap.c). */
#ifndef SYNOD_SERVER_BOOTSTRAP_H
#define SYNOD_SERVER_BOOTSTRAP_H

#include "node.h"
#include "raft.h"

typedef struct {
  raft_entry *ents; /* a new cluster's founding log; empty otherwise */
  size_t n;
} founding_log;

/* Sets n->member_id, n->cluster_id and seeds n->members. */
int bootstrap_member(node *n, founding_log *log, char *err, size_t err_len);
void founding_log_free(founding_log *log);

/* Records who this member is in the store (done once at bootstrap, and
 * again in every image received from the leader, which carries the
 * leader's identity). */
int bootstrap_write_identity(mvcc_txn *w, uint64_t member_id, uint64_t cluster_id);
/* The checks and IDs of a founding member of a new cluster (etcd's
 * VerifyBootstrap), without starting one: for `synod snapshot restore`. */
int bootstrap_check_new(const char *name, const char *initial_cluster_spec, const char *token, const strlist *adv,
                        uint64_t *member_id, uint64_t *cluster_id, char *err, size_t err_len);


#endif
