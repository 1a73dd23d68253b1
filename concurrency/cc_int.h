/* cc_int.h (private to concurrency/) - the table's data structures.
 *
 * Locking: table->mu guards groups, waiters and observers. The apply
 * thread holds it while it reads a batch's changes and decides; callers
 * from gRPC threads hold it for one cancel, one registration, or one chunk
 * of an observer's catch-up. */
#ifndef SYNOD_CC_INT_H
#define SYNOD_CC_INT_H

#include "base.h"
#include "concurrency.h"

#include <pthread.h>


struct cc_observer {
  cc_table *t;
  cc_group *group;
  cc_observer *prev, *next; /* group's observers */
  const cc_observer_ops *ops;
  void *arg;
  /* next change to look at: (main, sub) */
  int64_t cur_main, cur_sub;
  /* the leader last sent (key_len == 0 && !has_leader: "none") */
  bool has_leader;
  bool lagging; /* queue over the limit: skipped until it drains */
  bool dead;    /* the stream is gone or failed */
  bool catching_up;
  int64_t leader_create, leader_mod;
  size_t leader_len;
  uint8_t leader_key[MVCC_MAX_KEY + 1];
};

struct cc_group {
  cc_group *hnext;
  cc_group *tnext; /* touched in the current step */
  uint32_t hash;
  cc_waiter *head, *tail; /* by create_rev */
  cc_observer *observers;
  size_t nwaiters, nobservers;
  bool touched, had_delete;
  size_t len;
  uint8_t pfx[];
};

struct cc_table {
  cc_options opt;
  pthread_mutex_t mu;
  cc_group **buckets;
  size_t nbuckets, ngroups;
  size_t nwaiters, nobservers, nlagging;
  /* Changes up to here have been looked at; -1: nothing was registered
   * (the next registration sets it to the state it saw). */
  int64_t last_rev;
  arena *mem; /* the step's copies of changes */
  uint64_t batches_read, granted, lost, evaluations;
};

#endif
