/* The matching index: which watchers does a changed key concern?
 *
 * Single-key watchers (the common case: a lock waiter on its predecessor)
 * sit in a hash table of key groups; a change costs one hash and one key
 * comparison however many watchers its key has.
 * Range and from-key watchers (prefixes: a registry, a config tree) sit in
 * a treap ordered by range start, each node knowing the range that ends
 * last in its subtree: a key visits only subtrees that can hold a range
 * containing it, so matching costs O(log n + matches), not O(ranges). */
#include "base.h"
#include "watch_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return alen < blen ? -1 : alen > blen;
}

uint32_t widx_hash(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h ^ (h >> 15);
}

void widx_init(widx *x) {
  memset(x, 0, sizeof *x);
  x->seed = 0x9e3779b9u;
}

void widx_free(widx *x) {
  for (size_t i = 0; i < x->nbuckets; i++)
    for (wgroup *g = x->buckets[i], *next; g; g = next) {
      next = g->next;
      free(g);
    }
  free(x->buckets);
  memset(x, 0, sizeof *x);
}

size_t widx_count(const widx *x) { return x->nkeys + x->nranges; }

/* ---------------------------------------------------------------- keys */

static void groups_grow(widx *x) {
  size_t nb = x->nbuckets ? x->nbuckets * 2 : 64;
  wgroup **b = xcalloc(nb, sizeof *b);
  for (size_t i = 0; i < x->nbuckets; i++) {
    for (wgroup *g = x->buckets[i], *next; g; g = next) {
      next = g->next;
      wgroup **slot = &b[g->hash & (nb - 1)];
      g->next = *slot;
      *slot = g;
    }
  }
  free(x->buckets);
  x->buckets = b;
  x->nbuckets = nb;
}

static wgroup *group_find(const widx *x, uint32_t hash, const uint8_t *key, size_t key_len) {
  if (!x->nbuckets) return NULL;
  for (wgroup *g = x->buckets[hash & (x->nbuckets - 1)]; g; g = g->next)
    if (g->hash == hash && g->key_len == key_len && memcmp(g->key, key, key_len) == 0) return g;
  return NULL;
}

static void keys_add(widx *x, watcher *w) {
  wgroup *g = group_find(x, w->hash, w->key, w->key_len);
  if (!g) {
    if (x->ngroups >= x->nbuckets) groups_grow(x);
    g = xcalloc(1, sizeof *g + w->key_len);
    g->hash = w->hash;
    g->key_len = w->key_len;
    memcpy(g->key, w->key, w->key_len);
    g->pfirst = g->plast = PEND_NONE;
    wgroup **slot = &x->buckets[g->hash & (x->nbuckets - 1)];
    g->next = *slot;
    *slot = g;
    x->ngroups++;
  }
  w->ix.h.g = g;
  w->ix.h.prev = NULL;
  w->ix.h.next = g->first;
  if (g->first) g->first->ix.h.prev = w;
  g->first = w;
  x->nkeys++;
}

void widx_group_done(widx *x, wgroup *g) {
  if (g->first || g->pfirst != PEND_NONE) return;
  wgroup **p = &x->buckets[g->hash & (x->nbuckets - 1)];
  while (*p != g) p = &(*p)->next;
  *p = g->next;
  x->ngroups--;
  free(g);
}

static void keys_del(widx *x, watcher *w) {
  wgroup *g = w->ix.h.g;
  if (w->ix.h.prev) w->ix.h.prev->ix.h.next = w->ix.h.next;
  else g->first = w->ix.h.next;
  if (w->ix.h.next) w->ix.h.next->ix.h.prev = w->ix.h.prev;
  w->ix.h.next = w->ix.h.prev = NULL;
  w->ix.h.g = NULL;
  x->nkeys--;
  widx_group_done(x, g);
}

/* ---------------------------------------------------------------- ranges */

/* Does w's range end after key (so that it may hold it)? */
static bool ends_after(const watcher *w, const uint8_t *k, size_t klen) {
  return w->kind == W_FROM || key_cmp(watcher_end(w), w->end_len, k, klen) > 0;
}

static int end_cmp(const watcher *a, const watcher *b) {
  if (a->kind == W_FROM || b->kind == W_FROM) return (a->kind == W_FROM) - (b->kind == W_FROM);
  return key_cmp(watcher_end(a), a->end_len, watcher_end(b), b->end_len);
}

/* Treap order: range start, then address (identical ranges coexist). */
static int node_cmp(const watcher *a, const watcher *b) {
  int c = key_cmp(a->key, a->key_len, b->key, b->key_len);
  if (c) return c;
  return (a > b) - (a < b);
}

static void update(watcher *n) {
  const watcher *m = n;
  if (n->ix.t.l && end_cmp(n->ix.t.l->ix.t.maxw, m) > 0) m = n->ix.t.l->ix.t.maxw;
  if (n->ix.t.r && end_cmp(n->ix.t.r->ix.t.maxw, m) > 0) m = n->ix.t.r->ix.t.maxw;
  n->ix.t.maxw = m;
}

static watcher *rot_right(watcher *n) {
  watcher *l = n->ix.t.l;
  n->ix.t.l = l->ix.t.r;
  l->ix.t.r = n;
  update(n);
  update(l);
  return l;
}

static watcher *rot_left(watcher *n) {
  watcher *r = n->ix.t.r;
  n->ix.t.r = r->ix.t.l;
  r->ix.t.l = n;
  update(n);
  update(r);
  return r;
}

static watcher *tree_insert(watcher *root, watcher *w) {
  if (!root) return w;
  if (node_cmp(w, root) < 0) {
    root->ix.t.l = tree_insert(root->ix.t.l, w);
    if (root->ix.t.l->ix.t.prio > root->ix.t.prio) return rot_right(root);
  } else {
    root->ix.t.r = tree_insert(root->ix.t.r, w);
    if (root->ix.t.r->ix.t.prio > root->ix.t.prio) return rot_left(root);
  }
  update(root);
  return root;
}

static watcher *tree_delete(watcher *root, watcher *w, bool *found) {
  if (!root) return NULL;
  if (root == w) {
    *found = true;
    watcher *l = root->ix.t.l, *r = root->ix.t.r;
    if (!l) return r;
    if (!r) return l;
    if (l->ix.t.prio > r->ix.t.prio) {
      root = rot_right(root);
      root->ix.t.r = tree_delete(root->ix.t.r, w, found);
    } else {
      root = rot_left(root);
      root->ix.t.l = tree_delete(root->ix.t.l, w, found);
    }
  } else if (node_cmp(w, root) < 0) {
    root->ix.t.l = tree_delete(root->ix.t.l, w, found);
  } else {
    root->ix.t.r = tree_delete(root->ix.t.r, w, found);
  }
  update(root);
  return root;
}

static void tree_match(const watcher *n, const uint8_t *k, size_t klen, widx_fn fn, void *arg) {
  while (n && ends_after(n->ix.t.maxw, k, klen)) {
    tree_match(n->ix.t.l, k, klen, fn, arg);
    if (key_cmp(n->key, n->key_len, k, klen) > 0) return; /* right starts later still */
    if (ends_after(n, k, klen)) fn(arg, (watcher *)n);
    n = n->ix.t.r;
  }
}

/* ---------------------------------------------------------------- both */

void widx_add(widx *x, watcher *w) {
  if (w->kind == W_KEY) {
    keys_add(x, w);
    return;
  }
  x->seed = x->seed * 1664525u + 1013904223u; /* LCG: priorities need no quality */
  w->ix.t.l = w->ix.t.r = NULL;
  w->ix.t.prio = x->seed ^ (uint32_t)((uintptr_t)w >> 4);
  w->ix.t.maxw = w;
  x->root = tree_insert(x->root, w);
  x->nranges++;
}

void widx_del(widx *x, watcher *w) {
  if (w->kind == W_KEY) {
    keys_del(x, w);
    return;
  }
  bool found = false;
  x->root = tree_delete(x->root, w, &found);
  if (found) x->nranges--;
  w->ix.t.l = w->ix.t.r = NULL;
}

void widx_match(const widx *x, const uint8_t *key, size_t key_len, widx_group_fn group_fn, widx_fn fn,
                void *arg) {
  if (x->nkeys) {
    wgroup *g = group_find(x, widx_hash(key, key_len), key, key_len);
    if (g && g->first) group_fn(arg, g);
  }
  if (x->root) tree_match(x->root, key, key_len, fn, arg);
}

static void tree_each(watcher *n, widx_fn fn, void *arg) {
  for (; n; n = n->ix.t.r) {
    tree_each(n->ix.t.l, fn, arg);
    fn(arg, n);
  }
}

void widx_each(const widx *x, widx_fn fn, void *arg) {
  for (size_t i = 0; i < x->nbuckets; i++)
    for (wgroup *g = x->buckets[i]; g; g = g->next)
      for (watcher *w = g->first; w; w = w->ix.h.next) fn(arg, w);
  tree_each(x->root, fn, arg);
}
