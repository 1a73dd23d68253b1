/* An in-memory raft_storage. ents[0] is a placeholder standing for the
 * snapshot: its index and term are the snapshot's, so term(first-1) always
 * answers. Entry data lives in a slab, so appends that grow the header
 * array never move data a ready points at. */
#include "raft_int.h"

#include <stdlib.h>

struct raft_memstorage {
  raft_storage st;
  raft_hard_state hs;
  raft_snapshot snap; /* data owned (malloc) */
  raft_entry *ents;
  size_t n, cap;
  slab data;
};

static uint64_t ms_first(void *ctx) {
  raft_memstorage *ms = ctx;
  return ms->ents[0].index + 1;
}

static uint64_t ms_last(void *ctx) {
  raft_memstorage *ms = ctx;
  return ms->ents[0].index + ms->n - 1;
}

static int ms_initial_state(void *ctx, raft_hard_state *hs, raft_conf_state *cs) {
  raft_memstorage *ms = ctx;
  *hs = ms->hs;
  *cs = ms->snap.conf;
  return 0;
}

static int ms_term(void *ctx, uint64_t i, uint64_t *term) {
  raft_memstorage *ms = ctx;
  uint64_t off = ms->ents[0].index;
  *term = 0;
  if (i < off) return RAFT_ECOMPACTED;
  if (i - off >= ms->n) return RAFT_EUNAVAILABLE;
  *term = ms->ents[i - off].term;
  return 0;
}

static int ms_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry *out,
                      size_t *n) {
  raft_memstorage *ms = ctx;
  uint64_t off = ms->ents[0].index;
  *n = 0;
  if (lo <= off) return RAFT_ECOMPACTED;
  if (hi > ms_last(ms) + 1) return RAFT_EUNAVAILABLE;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; i++) {
    const raft_entry *e = &ms->ents[i - off];
    bytes += e->len;
    if (*n > 0 && bytes > max_bytes) break;
    out[(*n)++] = *e;
  }
  return 0;
}

static int ms_snapshot(void *ctx, raft_snapshot *snap) {
  raft_memstorage *ms = ctx;
  *snap = ms->snap;
  return 0;
}

raft_memstorage *raft_memstorage_new(void) {
  raft_memstorage *ms = xcalloc(1, sizeof *ms);
  ms->st = (raft_storage){ms, ms_initial_state, ms_entries, ms_term, ms_first, ms_last, ms_snapshot};
  raft_grow(&ms->ents, &ms->cap, 1, sizeof *ms->ents);
  ms->n = 1;
  memset(&ms->ents[0], 0, sizeof ms->ents[0]);
  slab_init(&ms->data);
  return ms;
}

static void drop_range(raft_memstorage *ms, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    slab_release(ms->ents[i].data);
    ms->ents[i].data = NULL;
  }
}

void raft_memstorage_free(raft_memstorage *ms) {
  if (!ms) return;
  drop_range(ms, 0, ms->n);
  slab_destroy(&ms->data);
  free(ms->ents);
  free((void *)ms->snap.data);
  free(ms);
}

const raft_storage *raft_memstorage_storage(raft_memstorage *ms) { return &ms->st; }

void raft_memstorage_set_hard_state(raft_memstorage *ms, const raft_hard_state *hs) {
  ms->hs = *hs;
}

raft_hard_state raft_memstorage_hard_state(const raft_memstorage *ms) { return ms->hs; }

int raft_memstorage_append(raft_memstorage *ms, const raft_entry *ents, size_t n) {
  if (n == 0) return 0;
  uint64_t off = ms->ents[0].index;
  /* Skip what a snapshot already covers. */
  size_t skip = 0;
  while (skip < n && ents[skip].index <= off) skip++;
  ents += skip;
  n -= skip;
  if (n == 0) return 0;
  uint64_t first = ents[0].index;
  if (first > ms_last(ms) + 1) return RAFT_EINVAL;
  for (size_t i = 1; i < n; i++)
    if (ents[i].index != first + i) return RAFT_EINVAL;
  size_t at = (size_t)(first - off);
  drop_range(ms, at, ms->n);
  ms->n = at;
  raft_grow(&ms->ents, &ms->cap, ms->n + n, sizeof *ms->ents);
  for (size_t i = 0; i < n; i++) {
    raft_entry *e = &ms->ents[ms->n++];
    *e = ents[i];
    e->data = slab_dup(&ms->data, ents[i].data, ents[i].len);
  }
  return 0;
}

static void set_snapshot(raft_memstorage *ms, uint64_t index, uint64_t term,
                         const raft_conf_state *cs, const void *data, size_t len) {
  free((void *)ms->snap.data);
  ms->snap.index = index;
  ms->snap.term = term;
  ms->snap.conf = *cs;
  ms->snap.data = len ? xmemdup(data, len) : NULL;
  ms->snap.len = len;
}

int raft_memstorage_apply_snapshot(raft_memstorage *ms, const raft_snapshot *snap) {
  if (!conf_valid(&snap->conf)) return RAFT_EINVAL;
  if (snap->index < ms->snap.index) return RAFT_EINVAL;
  set_snapshot(ms, snap->index, snap->term, &snap->conf, snap->data, snap->len);
  drop_range(ms, 0, ms->n);
  ms->n = 1;
  memset(&ms->ents[0], 0, sizeof ms->ents[0]);
  ms->ents[0].index = snap->index;
  ms->ents[0].term = snap->term;
  if (ms->hs.commit < snap->index) ms->hs.commit = snap->index;
  return 0;
}

int raft_memstorage_create_snapshot(raft_memstorage *ms, uint64_t i, const raft_conf_state *cs,
                                    const void *data, size_t len) {
  if (!conf_valid(cs) || i <= ms->snap.index || i > ms_last(ms)) return RAFT_EINVAL;
  uint64_t term;
  if (ms_term(ms, i, &term) != 0) return RAFT_ECOMPACTED;
  set_snapshot(ms, i, term, cs, data, len);
  return 0;
}

int raft_memstorage_compact(raft_memstorage *ms, uint64_t i) {
  uint64_t off = ms->ents[0].index;
  if (i <= off) return RAFT_ECOMPACTED;
  if (i > ms_last(ms) || i > ms->snap.index) return RAFT_EINVAL;
  size_t k = (size_t)(i - off);
  /* ents[k] becomes the placeholder: keep its index and term only. */
  drop_range(ms, 0, k + 1);
  memmove(ms->ents, ms->ents + k, (ms->n - k) * sizeof *ms->ents);
  ms->n -= k;
  ms->ents[0].len = 0;
  ms->ents[0].type = 0;
  return 0;
}

int raft_memstorage_bootstrap(raft_memstorage *ms, const raft_conf_state *cs) {
  if (!conf_valid(cs) || cs->n_voters == 0 || ms->n != 1 || ms->ents[0].index != 0)
    return RAFT_EINVAL;
  uint64_t index = 0;
  buf b = {0};
  for (int pass = 0; pass < 2; pass++) {
    const uint64_t *ids = pass ? cs->learners : cs->voters;
    uint32_t n = pass ? cs->n_learners : cs->n_voters;
    for (uint32_t i = 0; i < n; i++) {
      raft_conf_change cc = {.type = pass ? RAFT_CC_ADD_LEARNER : RAFT_CC_ADD_VOTER,
                             .node_id = ids[i]};
      b.len = 0;
      raft_cc_encode(&cc, &b);
      raft_entry e = {.term = 1, .index = ++index, .type = RAFT_ENTRY_CONF_CHANGE, .data = b.data,
                      .len = (uint32_t)b.len};
      raft_memstorage_append(ms, &e, 1);
    }
  }
  buf_free(&b);
  ms->hs.term = 1;
  ms->hs.vote = 0;
  ms->hs.commit = index;
  return 0;
}
