/* lease.h - etcd's leases: the replicated lease table and the leader's clocks.
 *
 * Two kinds of state, kept apart as etcd keeps them:
 *
 *   replicated  which leases exist, their granted TTL, and the remaining TTL
 *               recorded by their last checkpoint. Changed only by applying
 *               log entries (lease_apply_*), written to MVCC_AUX_LEASES in
 *               the same store transaction as the keys a revocation deletes:
 *               every member applies the same entries to the same bytes.
 *   local       deadlines, on the monotonic clock. Only the primary (the Raft
 *               leader, after lease_promote) runs them; anywhere else every
 *               lease lives until a revocation arrives through the log.
 *               Keep-alives move a deadline and nothing else: no log entry.
 *
 * The primary asks lease_tick() what to propose: revocations of expired
 * leases (at most `revoke_rate` a second, so a mass expiry cannot flood the
 * log) and checkpoints of remaining TTLs (so a lease that has run for a
 * while does not restart from its full TTL when the leader changes).
 * Promotion gives every lease its checkpointed remaining TTL (or its full
 * TTL) plus `extend` from now: no lease expires early because the leader
 * changed.
 *
 * The keys attached to a lease are not tracked here: the store keeps that
 * index (mvcc_lease_keys), and revocation deletes them all in the current
 * revision bracket, one revision with a DELETE change per key.
 *
 * Threads: every function may be called from any thread (one mutex guards
 * the table; store work runs outside it). lease_apply_* and lease_recover
 * must come from the one thread that applies the log. Nothing here reads a
 * clock: callers pass now_ns (CLOCK_MONOTONIC), so tests drive time.
 */
#ifndef SYNOD_LEASE_H
#define SYNOD_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mvcc.h"

/* Return codes: 0 or a negative LEASE_E*. */
enum {
  LEASE_OK = 0,
  LEASE_ENOTFOUND = -1,   /* etcd: "requested lease not found" */
  LEASE_EEXIST = -2,      /* etcd: "lease already exists" */
  LEASE_ETTL = -3,        /* etcd: "too large lease TTL" */
  LEASE_ENOTPRIMARY = -4, /* this member does not run the clocks: ask the leader */
  LEASE_ESTORE = -5,      /* the store failed or holds a corrupt lease record (logged) */
};

/* etcd's MaxLeaseTTL, in seconds. */
#define LEASE_MAX_TTL 9000000000LL

typedef struct lease_table lease_table;

typedef struct {
  int64_t min_ttl;                /* seconds; lease_grant_ttl raises shorter TTLs to it */
  int revoke_rate;                /* expired leases handed out per second; 0: 1000 (etcd) */
  int64_t revoke_retry_ms;        /* hand an expired lease out again if still there; 0: 3000 */
  int64_t checkpoint_interval_ms; /* 0: 5 minutes (etcd) */
  int checkpoint_rate;            /* checkpoints handed out per second; 0: 10000 */
} lease_options;

lease_table *lease_table_new(const lease_options *opt);
void lease_table_free(lease_table *t);

/* Replaces the table with the applied state in `txn` (any transaction),
 * leases untracked as after lease_demote. Reads MVCC_AUX_LEASES only: no
 * key scan. LEASE_ESTORE if the store fails or a record is corrupt. */
int lease_recover(lease_table *t, mvcc_txn *txn);

/* ---------------------------------------------------------------- proposing */

/* The TTL a grant of `ttl` seconds is proposed with: raised to min_ttl, as
 * etcd does. Raising before the proposal (etcd raises when applying) keeps
 * the applied state independent of each member's configuration.
 * LEASE_ETTL above LEASE_MAX_TTL. */
int lease_grant_ttl(const lease_table *t, int64_t ttl, int64_t *out);

/* ---------------------------------------------------------------- applying */

/* Grants lease `id` with `ttl` seconds. LEASE_ENOTFOUND for id 0 (etcd's
 * NoLease), LEASE_ETTL above LEASE_MAX_TTL, LEASE_EEXIST if it exists. */
int lease_apply_grant(lease_table *t, mvcc_txn *w, int64_t id, int64_t ttl, int64_t now_ns);
/* Deletes every key attached to `id` (in key order, inside the caller's
 * revision bracket) and the lease. LEASE_ENOTFOUND if it does not exist. */
int lease_apply_revoke(lease_table *t, mvcc_txn *w, int64_t id);

typedef struct {
  int64_t id;
  int64_t remaining_ttl; /* seconds; 0: none (the full TTL applies) */
} lease_checkpoint;
/* Records remaining TTLs; leases that no longer exist are skipped. */
int lease_apply_checkpoints(lease_table *t, mvcc_txn *w, const lease_checkpoint *cps, size_t n,
                            int64_t now_ns);

/* Does lease `id` exist in the applied state? (For Put/Txn.) */
bool lease_exists(lease_table *t, int64_t id);

/* ---------------------------------------------------------------- leadership */

/* This member now leads: every lease gets a deadline of now + extend + its
 * remaining TTL (checkpointed, else full); if that would bunch more than
 * 3/4 of revoke_rate expiries into a second, later ones are pushed back
 * (never forward), as etcd does. */
void lease_promote(lease_table *t, int64_t extend_ns, int64_t now_ns);
/* This member no longer leads: deadlines and pending work are dropped. */
void lease_demote(lease_table *t);
bool lease_is_primary(lease_table *t);

/* Called (with no lock held) whenever work becomes due earlier than the
 * last lease_tick said, so the caller's clock thread can wake up. */
void lease_set_waker(lease_table *t, void (*fn)(void *arg), void *arg);

/* ---------------------------------------------------------------- clients */

/* Keep-alive: the deadline becomes now + TTL; *ttl receives the TTL.
 * LEASE_ENOTFOUND if the lease does not exist or has expired (its
 * revocation is on its way); LEASE_ENOTPRIMARY off the leader. O(1) unless
 * the deadline moves earlier (O(log n)); never allocates. */
int lease_renew(lease_table *t, int64_t id, int64_t now_ns, int64_t *ttl);

/* Remaining seconds (truncated, as etcd; <= 0 once expired) and granted
 * TTL. LEASE_ENOTFOUND, or LEASE_ENOTPRIMARY off the leader. */
int lease_time_to_live(lease_table *t, int64_t id, int64_t now_ns, int64_t *remaining, int64_t *granted);

/* Every lease ID, soonest deadline first (by ID off the leader), in a
 * malloc'd array the caller frees; *n receives the count. */
int64_t *lease_list(lease_table *t, size_t *n);
size_t lease_count(lease_table *t);

/* ---------------------------------------------------------------- the clocks */

typedef struct {
  /* Buffers the caller provides; lease_tick fills up to cap entries. */
  int64_t *revoke;
  size_t cap_revoke, n_revoke;
  lease_checkpoint *checkpoints;
  size_t cap_checkpoints, n_checkpoints;
  /* When to call lease_tick again at the latest (INT64_MAX: nothing is
   * scheduled; the waker announces new work). */
  int64_t next_ns;
} lease_due;

/* The primary's periodic work: expired leases to revoke (within the rate
 * limit; each is handed out again after revoke_retry_ms if its revocation
 * has not been applied by then) and checkpoints to propose. Nothing off the
 * leader. O(k log n) for k items handed out. */
void lease_tick(lease_table *t, int64_t now_ns, lease_due *due);

/* Memory the table holds (for the bytes-per-lease figure). */
size_t lease_memory(lease_table *t);

#endif
