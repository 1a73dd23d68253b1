/* concurrency.h - locks and elections as a pure function of committed state.
 *
 * A lock (or an election) named N is the set of keys under the prefix "N/".
 * Every contender owns one key, "N/<lease in hex>", attached to its lease;
 * among the keys that exist under the prefix, the one with the smallest
 * create revision owns the lock (leads the election). Nothing else is
 * state: any member evaluates ownership from its own applied store, and a
 * key that goes (Unlock, Resign, lease revoked or expired) loses in the very
 * revision that deletes it. Since every member applies the same log, two
 * contenders can never own at the same revision.
 *
 * This module keeps, per member, the calls that wait for ownership
 * (cc_waiter: Lock, Campaign) and the streams that follow leadership
 * (cc_observer: Observe), indexed by prefix. The server's apply thread
 * calls cc_applied() after every committed batch: the changes of the batch
 * are read once from history, only the prefixes that changed are looked at,
 * and a waiter whose predecessor was deleted is granted right there, on the
 * apply thread, with no round trip to anyone. A waiter whose own key was
 * deleted is told it lost (its lease expired or was revoked while it
 * waited): it is never granted.
 *
 * Threads: cc_wait and cc_applied on the apply thread (the store's only
 * writer, so "the current state" is stable while they run); cc_cancel,
 * cc_observe, cc_observer_drained and cc_observer_close from any thread.
 * Callbacks run without the table's lock held, except the observer's send
 * and queued, which run under it and must not call back into the table.
 */
#ifndef SYNOD_CONCURRENCY_H
#define SYNOD_CONCURRENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mvcc.h"

typedef struct cc_table cc_table;
typedef struct cc_group cc_group;

/* ---------------------------------------------------------------- ownership */

/* The owner of prefix `pfx` on t's snapshot: the key with the smallest
 * create revision among the keys starting with pfx (etcd's "first create"
 * order). Returns 1 and fills *owner (pointers into t), 0 if the prefix is
 * empty, or a negative MVCC_E*. rev <= 0: t's current revision; otherwise
 * as of that past revision. */
int cc_owner(mvcc_txn *t, const uint8_t *pfx, size_t pfx_len, int64_t rev, mvcc_kv *owner);

typedef enum {
  CC_OWNER,   /* key exists with create_rev and nothing under pfx is older */
  CC_WAITING, /* key exists with create_rev; an older key owns */
  CC_GONE,    /* key does not exist, or is a later life (other create_rev) */
} cc_state;

/* Where key (created at create_rev) stands under pfx on t's snapshot;
 * negative MVCC_E* on a store error. */
int cc_key_state(mvcc_txn *t, const uint8_t *pfx, size_t pfx_len, const uint8_t *key, size_t key_len,
                 int64_t create_rev);

/* The prefix that a lock or election named `name` lives under: name + "/"
 * (etcd's recipes). Writes at most name_len + 1 bytes to out. */
size_t cc_prefix(const uint8_t *name, size_t name_len, uint8_t *out);

/* The keys starting with pfx: [pfx, etcd's prefix end). end_buf must hold
 * len bytes; the span points into pfx and end_buf. */
mvcc_span cc_prefix_span(const uint8_t *pfx, size_t len, uint8_t *end_buf);

/* ---------------------------------------------------------------- table */

typedef struct {
  mvcc_store *store;
  /* An observer whose stream has more than this queued gets nothing more
   * until it drains, then is caught up from history: nothing is dropped,
   * memory stays bounded. 0: 1 MiB. */
  size_t observer_queue_limit;
  /* Revisions read per step of an observer's catch-up. 0: 1000. */
  int catchup_revisions;
} cc_options;

cc_table *cc_table_new(const cc_options *opt);
/* Every waiter and observer must be gone (cancelled, decided, closed). */
void cc_table_free(cc_table *t);

typedef struct {
  size_t groups, waiters, observers, lagging;
  uint64_t batches_read; /* batches whose changes were read */
  uint64_t granted, lost, evaluations;
} cc_stats;
void cc_table_stats(cc_table *t, cc_stats *out);

/* ---------------------------------------------------------------- waiters */

typedef enum {
  CC_GRANTED, /* the key owns: rev is the revision at which it was seen to */
  CC_LOST,    /* the key was deleted before it owned: never granted */
} cc_outcome;

/* A call waiting for ownership. The caller embeds it (in memory that lives
 * until `decided` has run or cc_cancel returned true), sets decided and
 * arg, and passes it to cc_wait. Other fields are the table's. */
typedef struct cc_waiter {
  void (*decided)(struct cc_waiter *w, cc_outcome o, int64_t rev);
  void *arg;
  /* private */
  struct cc_waiter *prev, *next; /* group's waiters, by create_rev */
  struct cc_waiter *dnext;       /* decided in the current step */
  cc_group *group;
  uint8_t *key;
  size_t key_len;
  int64_t create_rev;
  int64_t since_rev; /* state seen at registration */
  cc_outcome outcome;
  bool linked;
} cc_waiter;

/* Apply thread. Evaluates key (created at create_rev) under pfx on the
 * current committed state: decides at once (decided runs before cc_wait
 * returns) or registers w until a deletion under pfx decides it. */
void cc_wait(cc_table *t, cc_waiter *w, const uint8_t *pfx, size_t pfx_len, const uint8_t *key, size_t key_len,
             int64_t create_rev);

/* Any thread. True if w was still waiting: it is removed and decided will
 * never run. False if it has been decided (decided has run or is about to:
 * the caller must not touch w's outcome, the decider answers). */
bool cc_cancel(cc_table *t, cc_waiter *w);

/* The apply thread, after each committed batch. Reads the batch's changes
 * (only if anything waits or observes), decides the waiters of every prefix
 * that had a deletion, and sends observers every change of leadership and
 * every proclamation, revision by revision. */
void cc_applied(cc_table *t);

/* ---------------------------------------------------------------- observers */

typedef struct cc_observer cc_observer;

typedef struct {
  /* The leader as of revision rev: kv (NULL: there is none). Returns 0, or
   * -1 if the stream is gone. Runs under the table's lock. */
  int (*send)(void *arg, const mvcc_kv *kv, int64_t rev);
  /* Bytes queued and not yet taken by the client. */
  size_t (*queued)(void *arg);
  /* Ends the stream: history the observer still needed was compacted. */
  void (*fail_compacted)(void *arg);
} cc_observer_ops;

/* Any thread. Sends the leader now (or "none"), then every change from the
 * next revision on, in revision order. NULL on a store error. */
cc_observer *cc_observe(cc_table *t, const uint8_t *pfx, size_t pfx_len, const cc_observer_ops *ops, void *arg);
/* The stream's queue became empty: a lagging observer catches up. */
void cc_observer_drained(cc_observer *o);
/* The stream is over; o is freed and its callbacks never run again. */
void cc_observer_close(cc_observer *o);

#endif
