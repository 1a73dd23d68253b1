/* The member's waiters and observers, by prefix, and what each committed
 * batch does to them.
 *
 * After a batch, the apply thread reads the batch's changes once (only when
 * something waits or observes). A changed key concerns the groups whose
 * prefix is a prefix of it ending in '/': those are found by hashing each
 * such prefix of the key (a key has few slashes), so the cost is the size
 * of the batch, whatever the number of waiters. Only a deletion can change
 * who owns (a new key is always the youngest), so only groups with a
 * deletion are evaluated, and only their oldest waiter (every later waiter
 * is younger than it). */
#include "cc_int.h"

#include <stdlib.h>
#include <string.h>

enum { INITIAL_BUCKETS = 64 };

static uint32_t hash_bytes(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

cc_table *cc_table_new(const cc_options *opt) {
  cc_table *t = xcalloc(1, sizeof *t);
  t->opt = *opt;
  if (!t->opt.observer_queue_limit) t->opt.observer_queue_limit = 1 << 20;
  if (t->opt.catchup_revisions <= 0) t->opt.catchup_revisions = 1000;
  pthread_mutex_init(&t->mu, NULL);
  t->nbuckets = INITIAL_BUCKETS;
  t->buckets = xcalloc(t->nbuckets, sizeof *t->buckets);
  t->last_rev = -1;
  t->mem = arena_new();
  return t;
}

void cc_table_free(cc_table *t) {
  if (!t) return;
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (cc_group *g = t->buckets[i], *next; g; g = next) {
      next = g->hnext;
      log_warn("concurrency: prefix still has %zu waiters and %zu observers at shutdown", g->nwaiters,
               g->nobservers);
      free(g);
    }
  }
  free(t->buckets);
  arena_free(t->mem);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

void cc_table_stats(cc_table *t, cc_stats *out) {
  pthread_mutex_lock(&t->mu);
  *out = (cc_stats){.groups = t->ngroups,
                    .waiters = t->nwaiters,
                    .observers = t->nobservers,
                    .lagging = t->nlagging,
                    .batches_read = t->batches_read,
                    .granted = t->granted,
                    .lost = t->lost,
                    .evaluations = t->evaluations};
  pthread_mutex_unlock(&t->mu);
}

/* ---------------------------------------------------------------- groups (mu held) */

static cc_group *group_find(cc_table *t, const uint8_t *pfx, size_t len, uint32_t h) {
  for (cc_group *g = t->buckets[h & (t->nbuckets - 1)]; g; g = g->hnext)
    if (g->hash == h && g->len == len && memcmp(g->pfx, pfx, len) == 0) return g;
  return NULL;
}

static void grow(cc_table *t) {
  size_t nb = t->nbuckets * 2;
  cc_group **b = xcalloc(nb, sizeof *b);
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (cc_group *g = t->buckets[i], *next; g; g = next) {
      next = g->hnext;
      g->hnext = b[g->hash & (nb - 1)];
      b[g->hash & (nb - 1)] = g;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
}

static cc_group *group_get(cc_table *t, const uint8_t *pfx, size_t len) {
  uint32_t h = hash_bytes(pfx, len);
  cc_group *g = group_find(t, pfx, len, h);
  if (g) return g;
  if (t->ngroups >= t->nbuckets) grow(t);
  g = xcalloc(1, sizeof *g + len);
  g->hash = h;
  g->len = len;
  memcpy(g->pfx, pfx, len);
  g->hnext = t->buckets[h & (t->nbuckets - 1)];
  t->buckets[h & (t->nbuckets - 1)] = g;
  t->ngroups++;
  return g;
}

static void group_release(cc_table *t, cc_group *g) {
  if (g->nwaiters || g->nobservers || g->touched) return;
  cc_group **pp = &t->buckets[g->hash & (t->nbuckets - 1)];
  while (*pp != g) pp = &(*pp)->hnext;
  *pp = g->hnext;
  t->ngroups--;
  free(g);
}

/* The state a registration saw becomes the floor of the next step. */
static void registered_at(cc_table *t, int64_t rev) {
  if (t->last_rev < 0 || rev < t->last_rev) t->last_rev = rev;
}

/* ---------------------------------------------------------------- waiters */

static void waiter_link(cc_table *t, cc_group *g, cc_waiter *w) {
  /* Usually the youngest: insert from the tail. */
  cc_waiter *after = g->tail;
  while (after && after->create_rev > w->create_rev) after = after->prev;
  w->prev = after;
  w->next = after ? after->next : g->head;
  if (w->next) w->next->prev = w; else g->tail = w;
  if (after) after->next = w; else g->head = w;
  w->group = g;
  w->linked = true;
  g->nwaiters++;
  t->nwaiters++;
}

static void waiter_unlink(cc_table *t, cc_waiter *w) {
  cc_group *g = w->group;
  if (w->prev) w->prev->next = w->next; else g->head = w->next;
  if (w->next) w->next->prev = w->prev; else g->tail = w->prev;
  w->prev = w->next = NULL;
  w->linked = false;
  g->nwaiters--;
  t->nwaiters--;
}

void cc_wait(cc_table *t, cc_waiter *w, const uint8_t *pfx, size_t pfx_len, const uint8_t *key, size_t key_len,
             int64_t create_rev) {
  w->key = xmemdup(key, key_len ? key_len : 1);
  w->key_len = key_len;
  w->create_rev = create_rev;
  w->linked = false;
  mvcc_txn *txn;
  int st = CC_GONE;
  int64_t rev = 0;
  if (mvcc_read_begin(t->opt.store, &txn) == MVCC_OK) {
    rev = mvcc_rev(txn);
    st = cc_key_state(txn, pfx, pfx_len, key, key_len, create_rev);
    mvcc_txn_end(txn);
  }
  if (st < 0) st = CC_GONE; /* a store error: logged by the store; never grant on it */
  if (st == CC_WAITING) {
    pthread_mutex_lock(&t->mu);
    w->since_rev = rev;
    registered_at(t, rev);
    waiter_link(t, group_get(t, pfx, pfx_len), w);
    t->evaluations++;
    pthread_mutex_unlock(&t->mu);
    return;
  }
  pthread_mutex_lock(&t->mu);
  t->evaluations++;
  if (st == CC_OWNER) t->granted++; else t->lost++;
  pthread_mutex_unlock(&t->mu);
  free(w->key);
  w->key = NULL;
  w->outcome = st == CC_OWNER ? CC_GRANTED : CC_LOST;
  w->decided(w, w->outcome, rev);
}

bool cc_cancel(cc_table *t, cc_waiter *w) {
  pthread_mutex_lock(&t->mu);
  bool was = w->linked;
  if (was) {
    cc_group *g = w->group;
    waiter_unlink(t, w);
    group_release(t, g);
  }
  pthread_mutex_unlock(&t->mu);
  if (was) {
    free(w->key);
    w->key = NULL;
  }
  return was;
}

/* ---------------------------------------------------------------- observers (mu held) */

static bool congested(cc_table *t, cc_observer *o) {
  return o->ops->queued && o->ops->queued(o->arg) > t->opt.observer_queue_limit;
}

static void observer_set(cc_observer *o, const mvcc_kv *kv) {
  o->has_leader = kv != NULL;
  if (kv) {
    o->leader_len = kv->key_len;
    memcpy(o->leader_key, kv->key, kv->key_len);
    o->leader_create = kv->create_rev;
    o->leader_mod = kv->mod_rev;
  } else {
    o->leader_len = 0;
    o->leader_create = o->leader_mod = 0;
  }
}

static bool is_leader(const cc_observer *o, const uint8_t *key, size_t len) {
  return o->has_leader && o->leader_len == len && memcmp(o->leader_key, key, len) == 0;
}

/* Sends the leader as of this change, if it is news. Returns false if the
 * observer is congested (nothing done: the change will be looked at again
 * when it catches up). */
static bool observer_emit(cc_table *t, cc_observer *o, const mvcc_kv *kv, int64_t rev) {
  if (kv) {
    if (o->has_leader && kv->create_rev == o->leader_create && kv->mod_rev <= o->leader_mod &&
        is_leader(o, kv->key, kv->key_len))
      return true; /* already sent */
  } else if (!o->has_leader) {
    return true;
  }
  if (congested(t, o)) return false;
  if (o->ops->send(o->arg, kv, rev) < 0) o->dead = true;
  observer_set(o, kv);
  return true;
}

/* One change under the observer's prefix, in revision order. txn must be
 * free for reads (not inside mvcc_changes' visitor). Returns false if the
 * observer became congested before it could take the change. */
static bool observer_step(cc_table *t, cc_observer *o, mvcc_txn *txn, const mvcc_change *c) {
  if (o->dead) return true;
  if (c->main < o->cur_main || (c->main == o->cur_main && c->sub < o->cur_sub)) return true;
  bool ok = true;
  if (!c->is_delete) {
    if (!o->has_leader || c->kv.create_rev == c->main) {
      /* A new key leads only if the prefix was empty (or it ties with a key
       * created in the same revision): ask the store as of this revision. */
      mvcc_kv kv;
      int rc = !o->has_leader || o->leader_create == c->main ? cc_owner(txn, o->group->pfx, o->group->len, c->main, &kv)
                                                              : 0;
      if (rc > 0) ok = observer_emit(t, o, &kv, c->main);
      else if (rc < 0 && !o->has_leader) ok = observer_emit(t, o, &c->kv, c->main);
    } else if (is_leader(o, c->kv.key, c->kv.key_len) && c->kv.create_rev == o->leader_create) {
      ok = observer_emit(t, o, &c->kv, c->main); /* a proclamation */
    }
  } else if (is_leader(o, c->kv.key, c->kv.key_len)) {
    mvcc_kv kv;
    int rc = cc_owner(txn, o->group->pfx, o->group->len, c->main, &kv);
    if (rc < 0) rc = cc_owner(txn, o->group->pfx, o->group->len, 0, &kv); /* compacted meanwhile */
    ok = observer_emit(t, o, rc > 0 ? &kv : NULL, c->main);
  }
  if (!ok) {
    if (!o->lagging) {
      t->nlagging++;
      log_debug("concurrency: an observer of %.*s is over its queue limit at revision %lld: nothing more is queued "
                "for it until it drains",
                (int)o->group->len, (const char *)o->group->pfx, (long long)c->main);
    }
    o->lagging = true;
    return false;
  }
  o->cur_main = c->main;
  o->cur_sub = c->sub + 1;
  return true;
}

cc_observer *cc_observe(cc_table *t, const uint8_t *pfx, size_t pfx_len, const cc_observer_ops *ops, void *arg) {
  cc_observer *o = xcalloc(1, sizeof *o);
  o->t = t;
  o->ops = ops;
  o->arg = arg;
  pthread_mutex_lock(&t->mu);
  mvcc_txn *txn;
  if (mvcc_read_begin(t->opt.store, &txn) != MVCC_OK) {
    pthread_mutex_unlock(&t->mu);
    free(o);
    return NULL;
  }
  int64_t rev = mvcc_rev(txn);
  mvcc_kv kv;
  int rc = cc_owner(txn, pfx, pfx_len, 0, &kv);
  if (rc < 0) {
    mvcc_txn_end(txn);
    pthread_mutex_unlock(&t->mu);
    free(o);
    return NULL;
  }
  o->group = group_get(t, pfx, pfx_len);
  o->next = o->group->observers;
  if (o->next) o->next->prev = o;
  o->group->observers = o;
  o->group->nobservers++;
  t->nobservers++;
  /* The first message always goes out: the leader now, or "none". */
  if (ops->send(arg, rc > 0 ? &kv : NULL, rev) < 0) o->dead = true;
  observer_set(o, rc > 0 ? &kv : NULL);
  mvcc_txn_end(txn);
  o->cur_main = rev + 1;
  o->cur_sub = 0;
  registered_at(t, rev);
  pthread_mutex_unlock(&t->mu);
  return o;
}

void cc_observer_close(cc_observer *o) {
  cc_table *t = o->t;
  pthread_mutex_lock(&t->mu);
  cc_group *g = o->group;
  if (o->prev) o->prev->next = o->next; else g->observers = o->next;
  if (o->next) o->next->prev = o->prev;
  g->nobservers--;
  t->nobservers--;
  if (o->lagging) t->nlagging--;
  group_release(t, g);
  o->group = NULL;
  /* A catch-up in progress on another thread holds mu per chunk and
   * checks catching_up: it stops at its next chunk. */
  o->dead = true;
  bool busy = o->catching_up;
  pthread_mutex_unlock(&t->mu);
  if (!busy) free(o);
}

typedef struct {
  cc_table *t;
  const uint8_t *pfx;
  size_t len;
  mvcc_change *v;
  size_t n, cap;
} collect_one;

static mvcc_change copy_change(arena *a, const mvcc_change *c) {
  mvcc_change d = *c;
  d.kv.key = arena_memdup(a, c->kv.key, c->kv.key_len);
  d.kv.value = c->kv.value_len ? arena_memdup(a, c->kv.value, c->kv.value_len) : (const uint8_t *)"";
  return d;
}

static int collect_prefix(void *arg, const mvcc_change *c) {
  collect_one *k = arg;
  if (c->kv.key_len < k->len || memcmp(c->kv.key, k->pfx, k->len) != 0) return 0;
  if (k->n == k->cap) {
    k->cap = k->cap ? k->cap * 2 : 64;
    k->v = xrealloc(k->v, k->cap * sizeof *k->v);
  }
  k->v[k->n++] = copy_change(k->t->mem, c);
  return 0;
}

/* One chunk of catch-up from history; false when o needs no more (caught
 * up, congested again, gone). mu held. */
static bool catchup_chunk(cc_table *t, cc_observer *o) {
  if (o->dead || !o->lagging) return false;
  mvcc_txn *txn;
  if (mvcc_read_begin(t->opt.store, &txn) != MVCC_OK) return false;
  int64_t now = mvcc_rev(txn);
  int64_t to = o->cur_main + t->opt.catchup_revisions - 1;
  if (to > now) to = now;
  if (o->cur_main < mvcc_compact_rev(txn)) {
    o->dead = true;
    mvcc_txn_end(txn);
    if (o->ops->fail_compacted) o->ops->fail_compacted(o->arg);
    return false;
  }
  collect_one k = {.t = t, .pfx = o->group->pfx, .len = o->group->len};
  int rc = o->cur_main <= to ? mvcc_changes(txn, o->cur_main, to, collect_prefix, &k) : MVCC_OK;
  /* Unlagged first so observer_step sends; it sets lagging again if the
   * queue fills up. */
  o->lagging = false;
  t->nlagging--;
  bool more = false;
  if (rc == MVCC_OK) {
    for (size_t i = 0; i < k.n; i++)
      if (!observer_step(t, o, txn, &k.v[i])) break;
    if (!o->lagging) {
      if (to + 1 > o->cur_main) o->cur_main = to + 1, o->cur_sub = 0;
      if (to < now) {
        /* more history to read: stay off the live path until done */
        o->lagging = true;
        t->nlagging++;
        more = true;
      } else {
        log_debug("concurrency: an observer of %.*s caught up from history to revision %lld",
                  (int)o->group->len, (const char *)o->group->pfx, (long long)now);
      }
    }
  } else {
    o->dead = true;
    if (o->ops->fail_compacted) o->ops->fail_compacted(o->arg);
  }
  free(k.v);
  arena_reset(t->mem);
  mvcc_txn_end(txn);
  return more;
}

void cc_observer_drained(cc_observer *o) {
  cc_table *t = o->t;
  pthread_mutex_lock(&t->mu);
  if (o->catching_up || !o->lagging || o->dead) {
    pthread_mutex_unlock(&t->mu);
    return;
  }
  o->catching_up = true;
  while (catchup_chunk(t, o)) {
    /* let the apply thread in between chunks */
    pthread_mutex_unlock(&t->mu);
    pthread_mutex_lock(&t->mu);
  }
  o->catching_up = false;
  bool closed = o->group == NULL;
  pthread_mutex_unlock(&t->mu);
  if (closed) free(o);
}

/* ---------------------------------------------------------------- after each batch */

typedef struct {
  cc_group *g;
  mvcc_change c;
} hit;

typedef struct {
  cc_table *t;
  hit *v;
  size_t n, cap;
  cc_group *touched;
} collect_all;

static int collect_groups(void *arg, const mvcc_change *c) {
  collect_all *k = arg;
  cc_table *t = k->t;
  const uint8_t *key = c->kv.key;
  bool copied = false;
  mvcc_change d;
  for (size_t i = 0; i < c->kv.key_len; i++) {
    if (key[i] != '/') continue;
    cc_group *g = group_find(t, key, i + 1, hash_bytes(key, i + 1));
    if (!g) continue;
    if (!copied) d = copy_change(t->mem, c), copied = true;
    if (k->n == k->cap) {
      k->cap = k->cap ? k->cap * 2 : 64;
      k->v = xrealloc(k->v, k->cap * sizeof *k->v);
    }
    k->v[k->n++] = (hit){g, d};
    if (!g->touched) {
      g->touched = true;
      g->tnext = k->touched;
      k->touched = g;
    }
  }
  return 0;
}

/* The group's oldest waiters, after a deletion: grant, fail, or leave. */
static void evaluate_group(cc_table *t, cc_group *g, mvcc_txn *txn, cc_waiter **decided) {
  while (g->head) {
    cc_waiter *w = g->head;
    t->evaluations++;
    int st = cc_key_state(txn, g->pfx, g->len, w->key, w->key_len, w->create_rev);
    if (st == CC_WAITING) return;
    if (st < 0) return; /* a store error: decide nothing, look again next time */
    waiter_unlink(t, w);
    w->outcome = st == CC_OWNER ? CC_GRANTED : CC_LOST;
    w->dnext = *decided;
    *decided = w;
    if (st == CC_OWNER) {
      t->granted++;
      /* Calls waiting on the same key (same lease) own with it. */
      while (g->head && g->head->create_rev == w->create_rev && g->head->key_len == w->key_len &&
             memcmp(g->head->key, w->key, w->key_len) == 0) {
        cc_waiter *s = g->head;
        waiter_unlink(t, s);
        s->outcome = CC_GRANTED;
        s->dnext = *decided;
        *decided = s;
        t->granted++;
      }
      return;
    }
    t->lost++;
  }
}

void cc_applied(cc_table *t) {
  pthread_mutex_lock(&t->mu);
  if (t->nwaiters == 0 && t->nobservers == 0) {
    t->last_rev = -1;
    pthread_mutex_unlock(&t->mu);
    return;
  }
  mvcc_txn *txn;
  if (mvcc_read_begin(t->opt.store, &txn) != MVCC_OK) {
    pthread_mutex_unlock(&t->mu);
    return;
  }
  int64_t to = mvcc_rev(txn);
  int64_t from = t->last_rev + 1;
  if (t->last_rev < 0 || from > to) {
    if (t->last_rev < 0) t->last_rev = to;
    mvcc_txn_end(txn);
    pthread_mutex_unlock(&t->mu);
    return;
  }
  t->batches_read++;
  collect_all k = {.t = t};
  int rc = mvcc_changes(txn, from, to, collect_groups, &k);
  cc_waiter *decided = NULL;
  if (rc != MVCC_OK) {
    /* A compaction in the same batch took the history (or the read
     * failed): look at every group as if it had lost a key (cheap and
     * rare); observers that needed that history are ended, never silently
     * skipped. */
    for (size_t i = 0; i < t->nbuckets; i++) {
      for (cc_group *g = t->buckets[i]; g; g = g->hnext) {
        if (!g->touched) {
          g->touched = true;
          g->tnext = k.touched;
          k.touched = g;
        }
        g->had_delete = true;
        for (cc_observer *o = g->observers; o; o = o->next) {
          if (!o->dead && o->cur_main <= to) {
            o->dead = true;
            if (o->ops->fail_compacted) o->ops->fail_compacted(o->arg);
          }
        }
      }
    }
  } else {
    for (size_t i = 0; i < k.n; i++) {
      cc_group *g = k.v[i].g;
      const mvcc_change *c = &k.v[i].c;
      if (c->is_delete) {
        g->had_delete = true;
        /* A waiter whose own key went lost, whatever its place. */
        for (cc_waiter *w = g->head, *next; w; w = next) {
          next = w->next;
          if (w->since_rev < c->main && w->key_len == c->kv.key_len &&
              memcmp(w->key, c->kv.key, w->key_len) == 0) {
            waiter_unlink(t, w);
            w->outcome = CC_LOST;
            w->dnext = decided;
            decided = w;
            t->lost++;
          }
        }
      }
      for (cc_observer *o = g->observers; o; o = o->next)
        if (!o->lagging && !o->dead && !o->catching_up) observer_step(t, o, txn, c);
    }
  }
  for (cc_group *g = k.touched, *next; g; g = next) {
    next = g->tnext;
    if (g->had_delete) evaluate_group(t, g, txn, &decided);
    g->touched = g->had_delete = false;
    group_release(t, g);
  }
  t->last_rev = to;
  free(k.v);
  arena_reset(t->mem);
  mvcc_txn_end(txn);
  pthread_mutex_unlock(&t->mu);

  /* Oldest first: replies go out in grant order. */
  cc_waiter *rev_list = NULL;
  for (cc_waiter *w = decided, *next; w; w = next) {
    next = w->dnext;
    w->dnext = rev_list;
    rev_list = w;
  }
  for (cc_waiter *w = rev_list, *next; w; w = next) {
    next = w->dnext;
    free(w->key);
    w->key = NULL;
    w->decided(w, w->outcome, to);
  }
}
