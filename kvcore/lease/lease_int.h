/* lease_int.h - what the files of kvcore/lease share; not part of the API.
 *
 *   table.c   leases in a slab, found through an open-addressing hash
 *   heap.c    the expiry heap and the checkpoint schedule
 *   apply.c   the replicated state: records, recovery, grant/revoke/checkpoint
 *   clock.c   the primary's clocks: promote, renew, time-to-live, tick
 *
 * Memory per lease: a 40-byte slot, 8 bytes of hash (load <= 1/2), 16 bytes
 * of expiry heap and at most 16 of checkpoint schedule; no per-lease
 * allocation, and none on the keep-alive path. */
#ifndef SYNOD_LEASE_INT_H
#define SYNOD_LEASE_INT_H

#include <pthread.h>

#include "base.h"
#include "lease.h"

#define NS_PER_S 1000000000LL
#define FOREVER INT64_MAX /* the deadline of a lease nobody tracks */
#define NO_POS UINT32_MAX

enum {
  CLEAR_PENDING = 1, /* a checkpoint clearing remaining_ttl is queued */
  CP_SCHEDULED = 2,  /* the checkpoint schedule holds this lease's one live entry */
};

typedef struct {
  int64_t id;        /* 0: free slot */
  int64_t ttl;       /* granted, seconds */
  int64_t remaining; /* checkpointed remaining TTL, seconds; 0: none */
  int64_t deadline;  /* monotonic ns; FOREVER off the leader */
  uint32_t heap_pos; /* in the expiry heap; NO_POS if absent; free list link when free */
  uint32_t flags;
} lease_rec;

/* Expiry heap entry. `key` may be earlier than the lease's deadline (a
 * renewal leaves it behind: the entry is fixed when it reaches the top),
 * never later: a lease is never seen late. */
typedef struct {
  int64_t key;
  uint32_t slot;
} heap_item;

typedef struct {
  int64_t due;
  int64_t id;
} cp_item;

struct lease_table {
  pthread_mutex_t mu;
  lease_options opt;

  lease_rec *recs;
  uint32_t n_recs, cap_recs, free_head, live;

  uint32_t *hash; /* slot + 1; 0 empty */
  uint32_t hash_cap;

  heap_item *heap;
  uint32_t heap_len, heap_cap;

  cp_item *cps; /* min-heap on due */
  size_t cps_len, cps_cap;

  int64_t *clears; /* leases whose checkpoint must be cleared (renewed) */
  size_t clears_len, clears_cap;

  bool primary;
  double revoke_tokens, cp_tokens;
  int64_t tokens_at;
  int64_t planned_ns; /* next_ns of the last tick: earlier work wakes the caller */
  bool wake;          /* work came due before planned_ns: call the waker */

  void (*waker)(void *);
  void *waker_arg;
};

/* table.c (callers hold mu) */
lease_rec *table_find(lease_table *t, int64_t id);
uint32_t table_slot(const lease_table *t, const lease_rec *r);
lease_rec *table_insert(lease_table *t, int64_t id); /* id must be absent */
void table_remove(lease_table *t, lease_rec *r);
void table_clear(lease_table *t);

/* heap.c (callers hold mu) */
void heap_push(lease_table *t, uint32_t slot, int64_t key);
void heap_remove(lease_table *t, uint32_t slot);
void heap_update(lease_table *t, uint32_t pos, int64_t key); /* any direction */
void heap_rebuild(lease_table *t);                           /* every rec with a finite deadline */
void cp_push(lease_table *t, int64_t due, int64_t id);
cp_item cp_pop(lease_table *t);
void cp_rebuild(lease_table *t, int64_t now_ns); /* every lease worth checkpointing */

/* clock.c (callers hold mu) */
int64_t rec_remaining_ttl(const lease_rec *r); /* checkpointed, else granted */
void clock_track(lease_table *t, lease_rec *r, int64_t now_ns); /* a new lease on the primary */
void clock_schedule_checkpoint(lease_table *t, lease_rec *r, int64_t now_ns);
/* Notes that work is due at `when`. If that is sooner than the clock
 * thread planned, the caller wakes it after unlocking:
 *   bool w = clock_take_wake(t); unlock; if (w) clock_wake(t); */
void clock_due_at(lease_table *t, int64_t when);
bool clock_take_wake(lease_table *t);
void clock_wake(lease_table *t);

#endif
