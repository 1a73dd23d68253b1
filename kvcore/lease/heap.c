/* Two binary min-heaps.
 *
 * The expiry heap holds one entry per tracked lease, keyed by a time at or
 * before its deadline. A keep-alive only moves the deadline later, so it
 * leaves the entry alone; when the entry reaches the top, lease_tick finds
 * the deadline has moved and sinks the entry to it. A lease renewed every
 * TTL/3 therefore costs one O(log n) sift per TTL on the clock thread, and
 * O(1) on the keep-alive path. Entries know their lease's slot and each
 * lease knows its entry's position, so a revocation removes in O(log n).
 *
 * The checkpoint schedule holds (due time, lease ID) pairs, one live entry
 * per lease (CP_SCHEDULED); entries of revoked leases are dropped when they
 * come up, which is cheaper than finding them. */
#include <stdlib.h>

#include "lease_int.h"

static void heap_set(lease_table *t, uint32_t pos, heap_item it) {
  t->heap[pos] = it;
  t->recs[it.slot].heap_pos = pos;
}

static void sift_up(lease_table *t, uint32_t pos) {
  heap_item it = t->heap[pos];
  while (pos > 0) {
    uint32_t parent = (pos - 1) / 2;
    if (t->heap[parent].key <= it.key) break;
    heap_set(t, pos, t->heap[parent]);
    pos = parent;
  }
  heap_set(t, pos, it);
}

static void sift_down(lease_table *t, uint32_t pos) {
  heap_item it = t->heap[pos];
  for (;;) {
    uint32_t c = 2 * pos + 1;
    if (c >= t->heap_len) break;
    if (c + 1 < t->heap_len && t->heap[c + 1].key < t->heap[c].key) c++;
    if (it.key <= t->heap[c].key) break;
    heap_set(t, pos, t->heap[c]);
    pos = c;
  }
  heap_set(t, pos, it);
}

void heap_push(lease_table *t, uint32_t slot, int64_t key) {
  if (t->heap_len == t->heap_cap) {
    t->heap_cap = t->heap_cap ? t->heap_cap * 2 : 64;
    t->heap = xrealloc(t->heap, (size_t)t->heap_cap * sizeof *t->heap);
  }
  uint32_t pos = t->heap_len++;
  heap_set(t, pos, (heap_item){key, slot});
  sift_up(t, pos);
}

void heap_update(lease_table *t, uint32_t pos, int64_t key) {
  int64_t old = t->heap[pos].key;
  t->heap[pos].key = key;
  if (key < old) sift_up(t, pos);
  else sift_down(t, pos);
}

void heap_remove(lease_table *t, uint32_t slot) {
  uint32_t pos = t->recs[slot].heap_pos;
  if (pos == NO_POS) return;
  t->recs[slot].heap_pos = NO_POS;
  uint32_t last = --t->heap_len;
  if (pos == last) return;
  int64_t old = t->heap[pos].key;
  heap_set(t, pos, t->heap[last]);
  if (t->heap[pos].key < old) sift_up(t, pos);
  else sift_down(t, pos);
}

void heap_rebuild(lease_table *t) {
  t->heap_len = 0;
  for (uint32_t s = 0; s < t->n_recs; s++) {
    lease_rec *r = &t->recs[s];
    r->heap_pos = r->id ? NO_POS : r->heap_pos; /* free slots keep their free-list link */
    if (!r->id || r->deadline == FOREVER) continue;
    if (t->heap_len == t->heap_cap) {
      t->heap_cap = t->heap_cap ? t->heap_cap * 2 : 64;
      t->heap = xrealloc(t->heap, (size_t)t->heap_cap * sizeof *t->heap);
    }
    uint32_t pos = t->heap_len++;
    heap_set(t, pos, (heap_item){r->deadline, s});
  }
  /* Floyd's bottom-up construction: O(n). */
  for (uint32_t i = t->heap_len / 2; i-- > 0;) sift_down(t, i);
}

/* ---------------------------------------------------------------- checkpoints */

static void cp_sift_down(cp_item *h, size_t len, size_t pos) {
  cp_item it = h[pos];
  for (;;) {
    size_t c = 2 * pos + 1;
    if (c >= len) break;
    if (c + 1 < len && h[c + 1].due < h[c].due) c++;
    if (it.due <= h[c].due) break;
    h[pos] = h[c];
    pos = c;
  }
  h[pos] = it;
}

void cp_push(lease_table *t, int64_t due, int64_t id) {
  if (t->cps_len == t->cps_cap) {
    t->cps_cap = t->cps_cap ? t->cps_cap * 2 : 64;
    t->cps = xrealloc(t->cps, t->cps_cap * sizeof *t->cps);
  }
  size_t pos = t->cps_len++;
  while (pos > 0 && t->cps[(pos - 1) / 2].due > due) {
    t->cps[pos] = t->cps[(pos - 1) / 2];
    pos = (pos - 1) / 2;
  }
  t->cps[pos] = (cp_item){due, id};
}

cp_item cp_pop(lease_table *t) {
  cp_item top = t->cps[0];
  t->cps[0] = t->cps[--t->cps_len];
  if (t->cps_len) cp_sift_down(t->cps, t->cps_len, 0);
  return top;
}

void cp_rebuild(lease_table *t, int64_t now_ns) {
  /* Every entry gets the same due time, so each push is O(1). */
  t->cps_len = 0;
  for (uint32_t s = 0; s < t->n_recs; s++)
    if (t->recs[s].id) clock_schedule_checkpoint(t, &t->recs[s], now_ns);
}
