/* The local half: deadlines, run only by the primary (the leader).
 *
 * A deadline is monotonic nanoseconds. Off the leader it is FOREVER and
 * the lease is in no heap: followers never expire anything; they learn of
 * expiries when the leader's LeaseRevoke reaches them through the log.
 *
 * Rate limits are token buckets refilled at lease_tick: revocations at
 * revoke_rate a second with a burst of half that (etcd hands out rate/2
 * every 500 ms), checkpoints likewise at checkpoint_rate. */
#include <stdlib.h>

#include "lease_int.h"

/* How soon to come back when a rate limit held work back: long enough to
 * hand out a useful batch, short enough to keep expiry prompt. */
#define RATE_STEP_NS (100 * 1000000LL)

int64_t rec_remaining_ttl(const lease_rec *r) { return r->remaining > 0 ? r->remaining : r->ttl; }

static int64_t secs_ns(int64_t s) {
  if (s <= 0) return 0;
  if (s > LEASE_MAX_TTL) s = LEASE_MAX_TTL; /* 9e18 ns still fits */
  return s * NS_PER_S;
}

/* now + ns, saturating below FOREVER (which means "untracked"). */
static int64_t after(int64_t now, int64_t ns) {
  if (ns < 0) ns = 0;
  return ns >= FOREVER - 1 - now ? FOREVER - 1 : now + ns;
}

static bool worth_checkpointing(const lease_table *t, const lease_rec *r) {
  /* etcd: only leases with more left than one interval; a shorter one
   * loses little by restarting from its full TTL. */
  int64_t left = rec_remaining_ttl(r);
  return left > t->opt.checkpoint_interval_ms / 1000 ||
         (left == t->opt.checkpoint_interval_ms / 1000 && t->opt.checkpoint_interval_ms % 1000);
}

void clock_schedule_checkpoint(lease_table *t, lease_rec *r, int64_t now_ns) {
  /* One live entry per lease, or applied checkpoints and clearings would
   * each fork the schedule and multiply the checkpoints. */
  if ((r->flags & CP_SCHEDULED) || !worth_checkpointing(t, r)) return;
  r->flags |= CP_SCHEDULED;
  int64_t due = after(now_ns, t->opt.checkpoint_interval_ms * 1000000);
  cp_push(t, due, r->id);
  clock_due_at(t, due);
}

void clock_track(lease_table *t, lease_rec *r, int64_t now_ns) {
  r->deadline = after(now_ns, secs_ns(rec_remaining_ttl(r)));
  heap_push(t, table_slot(t, r), r->deadline);
  clock_due_at(t, r->deadline);
  clock_schedule_checkpoint(t, r, now_ns);
}

void clock_due_at(lease_table *t, int64_t when) {
  if (when >= t->planned_ns) return;
  t->planned_ns = when;
  t->wake = t->waker != NULL;
}

bool clock_take_wake(lease_table *t) {
  bool w = t->wake;
  t->wake = false;
  return w;
}

void clock_wake(lease_table *t) {
  if (t->waker) t->waker(t->waker_arg);
}

void lease_set_waker(lease_table *t, void (*fn)(void *arg), void *arg) {
  pthread_mutex_lock(&t->mu);
  t->waker = fn;
  t->waker_arg = arg;
  pthread_mutex_unlock(&t->mu);
}

bool lease_is_primary(lease_table *t) {
  pthread_mutex_lock(&t->mu);
  bool p = t->primary;
  pthread_mutex_unlock(&t->mu);
  return p;
}

/* ---------------------------------------------------------------- leadership */

static int by_deadline_slot(const void *a, const void *b, void *arg) {
  const lease_rec *recs = arg;
  int64_t x = recs[*(const uint32_t *)a].deadline, y = recs[*(const uint32_t *)b].deadline;
  return x < y ? -1 : x > y;
}

/* Pushes deadlines back so that at most about 3/4 of revoke_rate fall in
 * any second (a generic cell-rate shaper over the sorted deadlines: each
 * expiry "costs" 1/target seconds, with one second of burst). Leases that
 * would all expire together after an election then expire at a pace the
 * revocations can follow, instead of waiting expired-but-unrevoked while
 * their owners' keep-alives are refused. Deadlines only move later. */
static void spread_deadlines(lease_table *t) {
  int64_t target = 3 * (int64_t)t->opt.revoke_rate / 4;
  if (target < 1) target = 1;
  int64_t cost = NS_PER_S / target, burst = NS_PER_S - cost;
  uint32_t *order = xmalloc((size_t)t->live * sizeof *order);
  uint32_t n = 0;
  for (uint32_t s = 0; s < t->n_recs; s++)
    if (t->recs[s].id) order[n++] = s;
  qsort_r(order, n, sizeof *order, by_deadline_slot, t->recs);
  int64_t tat = 0; /* when the shaper's bucket is next empty */
  for (uint32_t i = 0; i < n; i++) {
    lease_rec *r = &t->recs[order[i]];
    if (i > 0 && r->deadline < tat - burst) r->deadline = tat - burst;
    tat = (i == 0 || r->deadline > tat ? r->deadline : tat) + cost;
  }
  free(order);
}

void lease_promote(lease_table *t, int64_t extend_ns, int64_t now_ns) {
  pthread_mutex_lock(&t->mu);
  t->primary = true;
  t->clears_len = 0;
  int64_t start = after(now_ns, extend_ns);
  for (uint32_t s = 0; s < t->n_recs; s++) {
    lease_rec *r = &t->recs[s];
    if (!r->id) continue;
    r->flags = 0;
    r->deadline = after(start, secs_ns(rec_remaining_ttl(r)));
  }
  if (t->live >= (uint32_t)t->opt.revoke_rate) spread_deadlines(t);
  heap_rebuild(t);
  cp_rebuild(t, now_ns);
  t->revoke_tokens = t->opt.revoke_rate / 2.0;
  t->cp_tokens = t->opt.checkpoint_rate / 2.0;
  t->tokens_at = now_ns;
  t->planned_ns = FOREVER;
  clock_due_at(t, now_ns);
  bool wake = clock_take_wake(t);
  pthread_mutex_unlock(&t->mu);
  if (wake) clock_wake(t);
}

void lease_demote(lease_table *t) {
  pthread_mutex_lock(&t->mu);
  t->primary = false;
  for (uint32_t s = 0; s < t->n_recs; s++) {
    lease_rec *r = &t->recs[s];
    if (!r->id) continue;
    r->deadline = FOREVER;
    r->heap_pos = NO_POS;
    r->flags = 0;
  }
  t->heap_len = 0;
  t->cps_len = 0;
  t->clears_len = 0;
  t->planned_ns = FOREVER;
  t->wake = false;
  pthread_mutex_unlock(&t->mu);
}

/* ---------------------------------------------------------------- clients */

int lease_renew(lease_table *t, int64_t id, int64_t now_ns, int64_t *ttl) {
  pthread_mutex_lock(&t->mu);
  int rc = LEASE_OK;
  lease_rec *r = t->primary ? table_find(t, id) : NULL;
  if (!t->primary) {
    rc = LEASE_ENOTPRIMARY;
  } else if (!r || r->deadline <= now_ns) {
    /* Expired: its revocation is on its way. etcd makes the caller wait
     * for it and then answers "not found"; the answer comes sooner here. */
    rc = LEASE_ENOTFOUND;
  } else {
    r->deadline = after(now_ns, secs_ns(r->ttl));
    /* The heap key may stay behind the deadline, never ahead of it: only
     * a deadline moving earlier (after promotion's extension) sifts. */
    if (r->heap_pos != NO_POS && t->heap[r->heap_pos].key > r->deadline) heap_update(t, r->heap_pos, r->deadline);
    if (r->remaining > 0 && !(r->flags & CLEAR_PENDING)) {
      /* The checkpointed remaining TTL is stale now: a leader elected
       * before it is cleared would expire the lease early. */
      r->flags |= CLEAR_PENDING;
      if (t->clears_len == t->clears_cap) {
        t->clears_cap = t->clears_cap ? t->clears_cap * 2 : 64;
        t->clears = xrealloc(t->clears, t->clears_cap * sizeof *t->clears);
      }
      t->clears[t->clears_len++] = id;
      clock_due_at(t, now_ns);
    }
    *ttl = r->ttl;
  }
  bool wake = clock_take_wake(t);
  pthread_mutex_unlock(&t->mu);
  if (wake) clock_wake(t);
  return rc;
}

int lease_time_to_live(lease_table *t, int64_t id, int64_t now_ns, int64_t *remaining, int64_t *granted) {
  pthread_mutex_lock(&t->mu);
  int rc = LEASE_OK;
  lease_rec *r = t->primary ? table_find(t, id) : NULL;
  if (!t->primary) {
    rc = LEASE_ENOTPRIMARY;
  } else if (!r) {
    rc = LEASE_ENOTFOUND;
  } else {
    *remaining = (r->deadline - now_ns) / NS_PER_S; /* truncated toward zero, as Go converts */
    *granted = r->ttl;
  }
  pthread_mutex_unlock(&t->mu);
  return rc;
}

/* ---------------------------------------------------------------- tick */

static void refill(double *tokens, int rate, int64_t elapsed_ns) {
  double cap = rate / 2.0 < 1 ? 1 : rate / 2.0;
  *tokens += (double)rate * (double)elapsed_ns / (double)NS_PER_S;
  if (*tokens > cap) *tokens = cap;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int64_t tick_expiries(lease_table *t, int64_t now_ns, lease_due *due) {
  int64_t retry = after(now_ns, t->opt.revoke_retry_ms * 1000000);
  while (t->heap_len > 0 && t->heap[0].key <= now_ns) {
    lease_rec *r = &t->recs[t->heap[0].slot];
    if (r->deadline > now_ns) {
      heap_update(t, 0, r->deadline); /* renewed since the entry was keyed */
      continue;
    }
    if (due->n_revoke == due->cap_revoke) return now_ns; /* caller's buffer is full: again at once */
    if (t->revoke_tokens < 1) return now_ns + RATE_STEP_NS;
    t->revoke_tokens -= 1;
    due->revoke[due->n_revoke++] = r->id;
    /* Stays until its revocation is applied; if that never happens (the
     * proposal was lost), it comes up again. */
    heap_update(t, 0, retry);
  }
  return t->heap_len ? t->heap[0].key : FOREVER;
}

static bool add_checkpoint(lease_table *t, lease_due *due, int64_t id, int64_t remaining) {
  if (due->n_checkpoints == due->cap_checkpoints || t->cp_tokens < 1) return false;
  t->cp_tokens -= 1;
  due->checkpoints[due->n_checkpoints++] = (lease_checkpoint){id, remaining};
  return true;
}

static int64_t tick_checkpoints(lease_table *t, int64_t now_ns, lease_due *due) {
  /* Clearings first: a scheduled checkpoint computed below reflects the
   * renewal too, and must be the one applied last. */
  while (t->clears_len > 0) {
    int64_t id = t->clears[t->clears_len - 1];
    lease_rec *r = table_find(t, id);
    if (r && (r->flags & CLEAR_PENDING) && r->remaining > 0 && !add_checkpoint(t, due, id, 0)) break;
    t->clears_len--;
  }
  bool held = t->clears_len > 0;
  while (!held && t->cps_len > 0 && t->cps[0].due <= now_ns) {
    if (due->n_checkpoints == due->cap_checkpoints || t->cp_tokens < 1) {
      held = true;
      break;
    }
    cp_item it = cp_pop(t);
    lease_rec *r = table_find(t, it.id);
    /* Not scheduled: an entry of a revoked lease whose ID came back. */
    if (!r || !(r->flags & CP_SCHEDULED)) continue;
    r->flags &= ~(uint32_t)CP_SCHEDULED;
    if (r->deadline <= now_ns) continue; /* expiring anyway */
    int64_t left = (r->deadline - now_ns + NS_PER_S - 1) / NS_PER_S;
    if (left >= r->ttl) {
      /* Just renewed: nothing worth recording. etcd stops checkpointing
       * such a lease until its next renewal after a checkpoint; keep the
       * schedule going instead. */
      clock_schedule_checkpoint(t, r, now_ns);
      continue;
    }
    add_checkpoint(t, due, it.id, left);
  }
  if (held) return due->n_checkpoints == due->cap_checkpoints ? now_ns : now_ns + RATE_STEP_NS;
  return t->cps_len ? t->cps[0].due : FOREVER;
}

void lease_tick(lease_table *t, int64_t now_ns, lease_due *due) {
  due->n_revoke = due->n_checkpoints = 0;
  pthread_mutex_lock(&t->mu);
  if (!t->primary) {
    due->next_ns = FOREVER;
  } else {
    int64_t elapsed = now_ns - t->tokens_at;
    if (elapsed > 0) {
      refill(&t->revoke_tokens, t->opt.revoke_rate, elapsed);
      refill(&t->cp_tokens, t->opt.checkpoint_rate, elapsed);
      t->tokens_at = now_ns;
    }
    due->next_ns = min64(tick_expiries(t, now_ns, due), tick_checkpoints(t, now_ns, due));
  }
  t->planned_ns = due->next_ns;
  t->wake = false; /* the caller is awake and plans for next_ns */
  pthread_mutex_unlock(&t->mu);
}
