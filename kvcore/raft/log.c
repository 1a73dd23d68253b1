/* The raft log: durable storage (read through the caller's interface) with
 * the unstable tail in front of it.
 *
 *   storage:  [first ............ last]
 *   unstable:              [offset ....... n entries]   (may overlap and
 *                                                         then wins)
 * A pending snapshot in unstable replaces everything up to its index. */
#include "raft_int.h"

#include <stdlib.h>

static bool fatal_rc(int rc) {
  return rc != 0 && rc != RAFT_ECOMPACTED && rc != RAFT_EUNAVAILABLE &&
         rc != RAFT_ESNAP_TEMP_UNAVAILABLE;
}

int log_init(raft_log *l, const raft_storage *st) {
  memset(l, 0, sizeof *l);
  l->st = st;
  slab_init(&l->u.data);
  uint64_t first = st->first_index(st->ctx), last = st->last_index(st->ctx);
  if (first == 0 || last + 1 < first) return RAFT_EINVAL;
  l->u.offset = last + 1;
  /* Everything up to the snapshot is committed and applied by definition. */
  l->committed = first - 1;
  l->applied = first - 1;
  return 0;
}

static void release_data(raft_log *l, uint8_t *d) {
  if (!d) return;
  if (l->defer_release) {
    raft_grow(&l->graveyard, &l->cap_graveyard, l->n_graveyard + 1, sizeof *l->graveyard);
    l->graveyard[l->n_graveyard++] = d;
  } else {
    slab_release(d);
  }
}

void log_release_graveyard(raft_log *l) {
  for (size_t i = 0; i < l->n_graveyard; i++) slab_release(l->graveyard[i]);
  l->n_graveyard = 0;
}

static void free_snap(raft_snapshot *s) {
  if (!s) return;
  free((void *)s->data);
  free(s);
}

void log_free(raft_log *l) {
  for (size_t i = 0; i < l->u.n; i++) slab_release(l->u.ents[i].data);
  log_release_graveyard(l);
  slab_destroy(&l->u.data);
  free(l->u.ents);
  free(l->graveyard);
  free(l->fetch);
  free_snap(l->u.snap);
}

uint64_t log_first_index(raft_log *l) {
  if (l->u.snap) return l->u.snap->index + 1;
  return l->st->first_index(l->st->ctx);
}

uint64_t log_last_index(raft_log *l) {
  if (l->u.n) return l->u.offset + l->u.n - 1;
  if (l->u.snap) return l->u.snap->index;
  return l->st->last_index(l->st->ctx);
}

int log_term(raft_log *l, uint64_t i, uint64_t *term) {
  *term = 0;
  if (i == 0) return 0;
  raft_unstable *u = &l->u;
  if (u->n && i >= u->offset) {
    if (i >= u->offset + u->n) return RAFT_EUNAVAILABLE;
    *term = u->ents[i - u->offset].term;
    return 0;
  }
  if (u->snap) {
    if (i == u->snap->index) {
      *term = u->snap->term;
      return 0;
    }
    if (i < u->snap->index) return RAFT_ECOMPACTED;
    /* Above the snapshot and not in unstable: nothing there. */
    return RAFT_EUNAVAILABLE;
  }
  uint64_t first = l->st->first_index(l->st->ctx);
  if (i + 1 < first) return RAFT_ECOMPACTED;
  if (i > l->st->last_index(l->st->ctx)) return RAFT_EUNAVAILABLE;
  int rc = l->st->term(l->st->ctx, i, term);
  if (fatal_rc(rc) && !l->err) l->err = RAFT_ESTORAGE;
  return rc;
}

uint64_t log_term_or_zero(raft_log *l, uint64_t i) {
  uint64_t t;
  return log_term(l, i, &t) == 0 ? t : 0;
}

uint64_t log_last_term(raft_log *l) { return log_term_or_zero(l, log_last_index(l)); }

bool log_match_term(raft_log *l, uint64_t i, uint64_t term) {
  uint64_t t;
  return log_term(l, i, &t) == 0 && t == term;
}

bool log_is_up_to_date(raft_log *l, uint64_t index, uint64_t term) {
  uint64_t lt = log_last_term(l);
  return term > lt || (term == lt && index >= log_last_index(l));
}

static void unstable_push(raft_log *l, uint64_t index, uint64_t term, uint8_t type,
                          const void *data, size_t len) {
  raft_unstable *u = &l->u;
  raft_grow(&u->ents, &u->cap, u->n + 1, sizeof *u->ents);
  raft_entry *e = &u->ents[u->n++];
  e->index = index;
  e->term = term;
  e->type = type;
  e->len = (uint32_t)len;
  e->data = slab_dup(&u->data, data, len);
}

void log_append_new(raft_log *l, uint64_t term, uint8_t type, const void *data, size_t len) {
  uint64_t index = log_last_index(l) + 1;
  if (l->u.n == 0) l->u.offset = index;
  unstable_push(l, index, term, type, data, len);
}

/* Drops unstable entries with index >= from. */
static void unstable_truncate(raft_log *l, uint64_t from) {
  raft_unstable *u = &l->u;
  while (u->n && u->offset + u->n - 1 >= from) {
    u->n--;
    release_data(l, u->ents[u->n].data);
  }
}

void log_truncate_append(raft_log *l, const raft_entry *ents, size_t n) {
  if (n == 0) return;
  raft_unstable *u = &l->u;
  uint64_t after = ents[0].index;
  if (u->n && after >= u->offset && after <= u->offset + u->n) {
    /* Inside or right after the unstable tail: cut there and extend. */
    unstable_truncate(l, after);
  } else {
    /* Before the unstable tail (or no tail): replace it all. The caller's
     * storage append will drop its own entries from `after` on. */
    unstable_truncate(l, 0);
    u->offset = after;
  }
  for (size_t i = 0; i < n; i++)
    unstable_push(l, ents[i].index, ents[i].term, ents[i].type, ents[i].data, ents[i].len);
}

uint64_t log_find_conflict(raft_log *l, const raft_entry *ents, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!log_match_term(l, ents[i].index, ents[i].term)) return ents[i].index;
  return 0;
}

uint64_t log_find_conflict_by_term(raft_log *l, uint64_t i, uint64_t term) {
  uint64_t last = log_last_index(l);
  if (i > last) i = last;
  for (;;) {
    uint64_t t;
    if (log_term(l, i, &t) != 0 || t <= term) return i;
    i--;
  }
}

void log_commit_to(raft_log *l, uint64_t i) {
  if (i > l->committed) l->committed = i;
}

int log_slice(raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry **out,
              size_t *n) {
  *n = 0;
  *out = NULL;
  if (lo >= hi) return 0;
  if (hi - lo > RAFT_MSG_MAX_ENTRIES) hi = lo + RAFT_MSG_MAX_ENTRIES;
  if (lo < log_first_index(l)) return RAFT_ECOMPACTED;
  if (hi > log_last_index(l) + 1) return RAFT_EUNAVAILABLE;
  raft_unstable *u = &l->u;
  uint64_t ustart = u->n ? u->offset : log_last_index(l) + 1;
  if (lo >= ustart) {
    /* All unstable: point straight into the tail. */
    size_t k = 0;
    uint64_t bytes = 0;
    raft_entry *e = &u->ents[lo - u->offset];
    while (lo + k < hi) {
      bytes += e[k].len;
      if (k > 0 && bytes > max_bytes) break;
      k++;
    }
    *out = e;
    *n = k;
    return 0;
  }
  /* Starts in storage: fetch into scratch, then add unstable entries if
   * the byte budget allows. */
  uint64_t shi = RAFT_MIN(hi, ustart);
  raft_grow(&l->fetch, &l->fetch_cap, hi - lo, sizeof *l->fetch);
  size_t got = 0;
  int rc = l->st->entries(l->st->ctx, lo, shi, max_bytes, l->fetch, &got);
  if (rc != 0) {
    if (fatal_rc(rc) && !l->err) l->err = RAFT_ESTORAGE;
    return rc;
  }
  if (got == 0 || got > shi - lo || l->fetch[0].index != lo) {
    if (!l->err) l->err = RAFT_ESTORAGE;
    return RAFT_ESTORAGE;
  }
  uint64_t bytes = 0;
  for (size_t i = 0; i < got; i++) bytes += l->fetch[i].len;
  size_t k = got;
  if (got == shi - lo && hi > shi) {
    for (uint64_t i = shi; i < hi; i++) {
      const raft_entry *e = &u->ents[i - u->offset];
      if (bytes + e->len > max_bytes) break;
      bytes += e->len;
      l->fetch[k++] = *e;
    }
  }
  *out = l->fetch;
  *n = k;
  return 0;
}

void log_restore(raft_log *l, const raft_snapshot *snap) {
  unstable_truncate(l, 0);
  free_snap(l->u.snap);
  raft_snapshot *s = xmalloc(sizeof *s);
  *s = *snap;
  s->data = snap->len ? xmemdup(snap->data, snap->len) : NULL;
  l->u.snap = s;
  l->u.offset = snap->index + 1;
  l->committed = snap->index;
}

void log_stable_to(raft_log *l, uint64_t i, uint64_t t) {
  raft_unstable *u = &l->u;
  if (u->n == 0 || i < u->offset) return;
  uint64_t have;
  /* A newer leader may have replaced the entry since the ready: then the
   * acknowledged write was of entries we no longer hold. */
  if (log_term(l, i, &have) != 0 || have != t) return;
  size_t k = (size_t)(i - u->offset + 1);
  if (k > u->n) return;
  for (size_t j = 0; j < k; j++) release_data(l, u->ents[j].data);
  memmove(u->ents, u->ents + k, (u->n - k) * sizeof *u->ents);
  u->n -= k;
  u->offset = i + 1;
}

void log_stable_snap_to(raft_log *l, uint64_t i) {
  if (l->u.snap && l->u.snap->index == i) {
    free_snap(l->u.snap);
    l->u.snap = NULL;
  }
}

uint64_t log_stable_last(raft_log *l) {
  /* A pending snapshot replaces the durable log: nothing of it counts. */
  if (l->u.snap) return 0;
  if (l->u.n) return l->u.offset - 1;
  return log_last_index(l);
}
