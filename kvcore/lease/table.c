/* The lease table: a slab of fixed-size records, found by ID through an
 * open-addressing hash (linear probing, backward-shift deletion). Slots are
 * 32-bit indexes, so the heap and the hash stay small and a growing slab can
 * move freely. A keep-alive is one hash probe: no allocation, no pointer
 * chasing beyond the record. */
#include <stdlib.h>
#include <string.h>

#include "lease_int.h"

static uint32_t hash_home(const lease_table *t, int64_t id) {
  uint64_t x = (uint64_t)id;
  /* Lease IDs are counters under a fixed prefix: mix every bit into the
   * high ones before taking them (a Fibonacci hash after a xor-shift). */
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ULL;
  return (uint32_t)(x >> 32) & (t->hash_cap - 1);
}

static void hash_place(lease_table *t, uint32_t slot) {
  uint32_t i = hash_home(t, t->recs[slot].id);
  while (t->hash[i]) i = (i + 1) & (t->hash_cap - 1);
  t->hash[i] = slot + 1;
}

static void hash_grow(lease_table *t) {
  uint32_t cap = t->hash_cap ? t->hash_cap * 2 : 64;
  free(t->hash);
  t->hash = xcalloc(cap, sizeof *t->hash);
  t->hash_cap = cap;
  for (uint32_t s = 0; s < t->n_recs; s++)
    if (t->recs[s].id) hash_place(t, s);
}

lease_rec *table_find(lease_table *t, int64_t id) {
  if (id == 0 || t->hash_cap == 0) return NULL;
  for (uint32_t i = hash_home(t, id);; i = (i + 1) & (t->hash_cap - 1)) {
    uint32_t h = t->hash[i];
    if (!h) return NULL;
    if (t->recs[h - 1].id == id) return &t->recs[h - 1];
  }
}

uint32_t table_slot(const lease_table *t, const lease_rec *r) { return (uint32_t)(r - t->recs); }

lease_rec *table_insert(lease_table *t, int64_t id) {
  if ((uint64_t)(t->live + 1) * 2 > t->hash_cap) hash_grow(t);
  uint32_t slot;
  if (t->free_head != NO_POS) {
    slot = t->free_head;
    t->free_head = t->recs[slot].heap_pos;
  } else {
    if (t->n_recs == t->cap_recs) {
      t->cap_recs = t->cap_recs ? t->cap_recs * 2 : 64;
      t->recs = xrealloc(t->recs, (size_t)t->cap_recs * sizeof *t->recs);
    }
    slot = t->n_recs++;
  }
  lease_rec *r = &t->recs[slot];
  *r = (lease_rec){.id = id, .deadline = FOREVER, .heap_pos = NO_POS};
  hash_place(t, slot);
  t->live++;
  return r;
}

void table_remove(lease_table *t, lease_rec *r) {
  uint32_t slot = table_slot(t, r), mask = t->hash_cap - 1;
  uint32_t i = hash_home(t, r->id);
  while (t->hash[i] != slot + 1) i = (i + 1) & mask;
  /* Backward shift: pull later entries of the probe run into the hole
   * unless their home lies cyclically in (hole, entry]. */
  for (uint32_t j = i;;) {
    j = (j + 1) & mask;
    uint32_t h = t->hash[j];
    if (!h) break;
    uint32_t k = hash_home(t, t->recs[h - 1].id);
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    t->hash[i] = h;
    i = j;
  }
  t->hash[i] = 0;
  r->id = 0;
  r->heap_pos = t->free_head;
  t->free_head = slot;
  t->live--;
}

void table_clear(lease_table *t) {
  free(t->recs);
  free(t->hash);
  free(t->heap);
  free(t->cps);
  free(t->clears);
  t->recs = NULL;
  t->hash = NULL;
  t->heap = NULL;
  t->cps = NULL;
  t->clears = NULL;
  t->n_recs = t->cap_recs = t->live = t->hash_cap = t->heap_len = t->heap_cap = 0;
  t->cps_len = t->cps_cap = t->clears_len = t->clears_cap = 0;
  t->free_head = NO_POS;
}

lease_table *lease_table_new(const lease_options *opt) {
  lease_table *t = xcalloc(1, sizeof *t);
  pthread_mutex_init(&t->mu, NULL);
  t->opt = *opt;
  if (t->opt.revoke_rate <= 0) t->opt.revoke_rate = 1000;
  if (t->opt.revoke_retry_ms <= 0) t->opt.revoke_retry_ms = 3000;
  if (t->opt.checkpoint_interval_ms <= 0) t->opt.checkpoint_interval_ms = 5 * 60 * 1000;
  if (t->opt.checkpoint_rate <= 0) t->opt.checkpoint_rate = 10000;
  if (t->opt.min_ttl < 1) t->opt.min_ttl = 1;
  t->free_head = NO_POS;
  t->planned_ns = FOREVER;
  return t;
}

void lease_table_free(lease_table *t) {
  if (!t) return;
  table_clear(t);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

size_t lease_count(lease_table *t) {
  pthread_mutex_lock(&t->mu);
  size_t n = t->live;
  pthread_mutex_unlock(&t->mu);
  return n;
}

size_t lease_memory(lease_table *t) {
  pthread_mutex_lock(&t->mu);
  size_t n = sizeof *t + (size_t)t->cap_recs * sizeof *t->recs + (size_t)t->hash_cap * sizeof *t->hash +
             (size_t)t->heap_cap * sizeof *t->heap + t->cps_cap * sizeof *t->cps +
             t->clears_cap * sizeof *t->clears;
  pthread_mutex_unlock(&t->mu);
  return n;
}

typedef struct {
  int64_t deadline, id;
} list_item;

static int by_deadline(const void *a, const void *b) {
  const list_item *x = a, *y = b;
  if (x->deadline != y->deadline) return x->deadline < y->deadline ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

int64_t *lease_list(lease_table *t, size_t *n) {
  pthread_mutex_lock(&t->mu);
  size_t k = 0;
  list_item *items = xmalloc((t->live ? t->live : 1) * sizeof *items);
  for (uint32_t s = 0; s < t->n_recs; s++)
    if (t->recs[s].id) items[k++] = (list_item){t->recs[s].deadline, t->recs[s].id};
  pthread_mutex_unlock(&t->mu);
  /* Off the leader every deadline is FOREVER: the order falls back to ID. */
  qsort(items, k, sizeof *items, by_deadline);
  int64_t *ids = xmalloc((k ? k : 1) * sizeof *ids);
  for (size_t i = 0; i < k; i++) ids[i] = items[i].id;
  free(items);
  *n = k;
  return ids;
}
