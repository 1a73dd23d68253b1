/* The member's lease life cycle, leadership, and the clock thread.
 *
 * The clock thread sleeps until the lease table says work is due (a lease
 * expires, a checkpoint is due, a rate limit refills) or the table wakes it
 * (a grant expiring sooner, a renewal that must clear a checkpoint,
 * promotion). It proposes what lease_tick hands out, through the pipeline
 * like any write, with nobody waiting for the answer: a revocation that
 * finds the lease gone (the client revoked it first) changes nothing. */
#include "base.h"
#include "lease_service.h"
#include "pipeline.h"
#include "raftnode.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { REVOKE_BATCH = 512, CHECKPOINT_BATCH = 1000 /* etcd's maxLeaseCheckpointBatchSize */ };

/* etcd's minimum TTL: 1.5 election timeouts in whole heartbeat ticks,
 * rounded up to seconds. */
static int64_t min_ttl(const server_config *cfg) {
  uint64_t hb = cfg->heartbeat_ms ? cfg->heartbeat_ms : 100;
  uint64_t ticks = cfg->election_ms / hb;
  uint64_t ms = (3 * ticks) / 2 * hb;
  return (int64_t)((ms + 999) / 1000);
}

static int64_t env_int(const char *name, int64_t fallback) {
  const char *v = getenv(name);
  return v && *v ? strtoll(v, NULL, 10) : fallback;
}

static void wake(void *arg) {
  lease_service *svc = arg;
  pthread_mutex_lock(&svc->mu);
  svc->kicked = true;
  pthread_cond_signal(&svc->cv);
  pthread_mutex_unlock(&svc->mu);
}

int lease_service_open(node *n, char *err, size_t err_len) {
  lease_service *svc = xcalloc(1, sizeof *svc);
  svc->n = n;
  /* Test knobs (docs/lease.md): etcd has no flags for these. */
  lease_options o = {
      .min_ttl = min_ttl(&n->cfg),
      .revoke_rate = (int)env_int("SYNOD_LEASE_REVOKE_RATE", 0),
      .checkpoint_interval_ms = env_int("SYNOD_LEASE_CHECKPOINT_INTERVAL_MS", 0),
  };
  svc->table = lease_table_new(&o);
  mvcc_txn *t;
  int rc = mvcc_read_begin(n->store, &t);
  if (rc == MVCC_OK) {
    rc = lease_recover(svc->table, t);
    mvcc_txn_end(t);
  }
  if (rc) {
    snprintf(err, err_len, "cannot load the leases from the store (see the log)");
    lease_table_free(svc->table);
    free(svc);
    return -1;
  }
  /* etcd's ID generator: member bits, start time in ms, then a counter. */
  uint64_t ms = (uint64_t)(time_wall_ns() / 1000000);
  atomic_init(&svc->next_id, (n->member_id & 0xffff) << 48 | (ms & 0xffffffffffULL) << 8);
  pthread_mutex_init(&svc->mu, NULL);
  pthread_mutex_init(&svc->lead_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&svc->cv, &ca);
  pthread_condattr_destroy(&ca);
  lease_set_waker(svc->table, wake, svc);
  n->lease = svc;
  n->lease_exists = lease_service_exists;
  n->lease_arg = n;
  size_t count = lease_count(svc->table);
  if (count) log_info("loaded %zu leases", count);
  return 0;
}

/* ---------------------------------------------------------------- proposals */

static void propose_revoke(node *n, int64_t id) {
  Etcdserverpb__LeaseRevokeRequest r = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
  r.id = id;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_LEASE_REVOKE;
  req.lease_revoke = &r;
  pipeline_propose(n->pipe, NULL, &req);
}

static void propose_checkpoints(node *n, const lease_checkpoint *cps, size_t count, Etcdserverpb__LeaseCheckpoint *msgs,
                                Etcdserverpb__LeaseCheckpoint **ptrs) {
  for (size_t i = 0; i < count; i++) {
    etcdserverpb__lease_checkpoint__init(&msgs[i]);
    msgs[i].id = cps[i].id;
    msgs[i].remaining_ttl = cps[i].remaining_ttl;
    ptrs[i] = &msgs[i];
  }
  Etcdserverpb__LeaseCheckpointRequest r = ETCDSERVERPB__LEASE_CHECKPOINT_REQUEST__INIT;
  r.n_checkpoints = count;
  r.checkpoints = ptrs;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_LEASE_CHECKPOINT;
  req.lease_checkpoint = &r;
  pipeline_propose(n->pipe, NULL, &req);
}

static struct timespec mono_abs(int64_t ns) {
  return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

static void *clock_main(void *arg) {
  lease_service *svc = arg;
  pthread_setname_np(pthread_self(), "synod-lease");
  int64_t *revoke = xmalloc(REVOKE_BATCH * sizeof *revoke);
  lease_checkpoint *cps = xmalloc(CHECKPOINT_BATCH * sizeof *cps);
  Etcdserverpb__LeaseCheckpoint *msgs = xmalloc(CHECKPOINT_BATCH * sizeof *msgs);
  Etcdserverpb__LeaseCheckpoint **ptrs = xmalloc(CHECKPOINT_BATCH * sizeof *ptrs);
  lease_due due = {.revoke = revoke, .cap_revoke = REVOKE_BATCH, .checkpoints = cps,
                   .cap_checkpoints = CHECKPOINT_BATCH};
  int64_t next = 0;
  pthread_mutex_lock(&svc->mu);
  while (!svc->stop) {
    int64_t now = time_mono_ns();
    if (!svc->kicked && now < next) {
      if (next == INT64_MAX) {
        pthread_cond_wait(&svc->cv, &svc->mu);
      } else {
        struct timespec ts = mono_abs(next);
        pthread_cond_timedwait(&svc->cv, &svc->mu, &ts);
      }
      continue;
    }
    svc->kicked = false;
    pthread_mutex_unlock(&svc->mu);
    /* A waker firing from here on sets `kicked`: no wake-up is lost. */
    lease_tick(svc->table, now, &due);
    for (size_t i = 0; i < due.n_revoke; i++) propose_revoke(svc->n, due.revoke[i]);
    if (due.n_checkpoints) propose_checkpoints(svc->n, due.checkpoints, due.n_checkpoints, msgs, ptrs);
    if (due.n_revoke) log_debug("lease: proposed revocation of %zu expired leases", due.n_revoke);
    next = due.next_ns;
    pthread_mutex_lock(&svc->mu);
  }
  pthread_mutex_unlock(&svc->mu);
  free(revoke);
  free(cps);
  free(msgs);
  free(ptrs);
  return NULL;
}

/* ---------------------------------------------------------------- life cycle */

/* Raft loop thread. */
void lease_service_leader_changed(node *n, uint64_t lead, uint64_t term) {
  lease_service *svc = n->lease;
  if (!svc) return;
  pthread_mutex_lock(&svc->lead_mu);
  if (term > svc->term_seen) svc->term_seen = term;
  if (lead != n->member_id && lease_is_primary(svc->table)) {
    lease_demote(svc->table);
    log_info("lease: no longer leading (term %" PRIu64 "): lease deadlines are the new leader's", term);
  }
  pthread_mutex_unlock(&svc->lead_mu);
}

/* Apply thread, at the empty entry that starts a leader's term. A leader
 * deposed meanwhile has reported a newer term: it does not promote. */
void lease_service_term_started(node *n, uint64_t term) {
  lease_service *svc = n->lease;
  if (!svc || !n->rn) return;
  pthread_mutex_lock(&svc->lead_mu);
  bool leads = term >= svc->term_seen && raftnode_lead(n->rn) == n->member_id && raftnode_term(n->rn) == term;
  if (leads && !lease_is_primary(svc->table)) {
    lease_promote(svc->table, (int64_t)n->cfg.election_ms * 1000000, time_mono_ns());
    log_info("lease: leading in term %" PRIu64 ": %zu leases get their remaining TTL plus %" PRIu64 " ms", term,
             lease_count(svc->table), n->cfg.election_ms);
  }
  pthread_mutex_unlock(&svc->lead_mu);
}

void lease_service_reload(node *n) {
  mvcc_txn *t;
  int rc = mvcc_read_begin(n->store, &t);
  if (rc == MVCC_OK) {
    rc = lease_recover(n->lease->table, t);
    mvcc_txn_end(t);
  }
  /* The table and the store must agree, or expiry would revoke what does
   * not exist and keep what does: stop rather than diverge. */
  if (rc) log_fatal("cannot load the leases from a snapshot's store (see the log)");
}

void lease_service_start(node *n) {
  lease_service *svc = n->lease;
  int e = pthread_create(&svc->thread, NULL, clock_main, svc);
  if (e) log_fatal("cannot start the lease clock thread: %s", strerror(e));
  svc->running = true;
}

void lease_service_stop(node *n) {
  lease_service *svc = n->lease;
  if (!svc || !svc->running) return;
  pthread_mutex_lock(&svc->mu);
  svc->stop = true;
  pthread_cond_signal(&svc->cv);
  pthread_mutex_unlock(&svc->mu);
  pthread_join(svc->thread, NULL);
  svc->running = false;
}

void lease_service_free(node *n) {
  lease_service *svc = n->lease;
  if (!svc) return;
  lease_service_stop(n);
  lease_table_free(svc->table);
  pthread_cond_destroy(&svc->cv);
  pthread_mutex_destroy(&svc->mu);
  pthread_mutex_destroy(&svc->lead_mu);
  n->lease_exists = NULL;
  free(svc);
  n->lease = NULL;
}
