/* The reference model of etcd's MVCC semantics (see mvcc_model.h). */
#include "mvcc_model.h"

#include <stdio.h>

#include "base.h"

static int key_cmp(const void *a, const void *b) {
  const mkey *x = a, *y = b;
  return bytes_cmp(x->key, x->klen, y->key, y->klen);
}

void model_init(model *m) {
  memset(m, 0, sizeof *m);
  static const uint8_t alpha[] = {0x00, 'a', 'b', 0xff};
  int n = 4 + 16 + 64 + 2;
  m->keys = xcalloc((size_t)n, sizeof *m->keys);
  int k = 0;
  for (int len = 1; len <= 3; len++) {
    int combos = len == 1 ? 4 : len == 2 ? 16 : 64;
    for (int c = 0; c < combos; c++) {
      int x = c;
      for (int i = len - 1; i >= 0; i--, x /= 4) m->keys[k].key[i] = alpha[x % 4];
      m->keys[k++].klen = (size_t)len;
    }
  }
  memset(m->keys[k].key, 'a', 300);
  m->keys[k++].klen = 300;
  memset(m->keys[k].key, 'b', MVCC_MAX_KEY);
  m->keys[k++].klen = MVCC_MAX_KEY;
  m->nkeys = k;
  qsort(m->keys, (size_t)n, sizeof *m->keys, key_cmp);
  m->rev = 1;
}

void model_free(model *m) {
  for (int i = 0; i < m->nkeys; i++) {
    for (size_t j = 0; j < m->keys[i].n; j++) free(m->keys[i].v[j].val);
    free(m->keys[i].v);
  }
  free(m->keys);
  free(m->hist);
  memset(m, 0, sizeof *m);
}

void model_copy(model *dst, const model *src) {
  *dst = *src;
  dst->keys = xmemdup(src->keys, (size_t)src->nkeys * sizeof *src->keys);
  for (int i = 0; i < src->nkeys; i++) {
    mkey *k = &dst->keys[i];
    k->v = xmemdup(src->keys[i].v, k->cap * sizeof *k->v);
    for (size_t j = 0; j < k->n; j++) k->v[j].val = xmemdup(k->v[j].val, k->v[j].vlen);
  }
  dst->hist = xmemdup(src->hist, src->cap * sizeof *src->hist);
}

model_mark model_save(const model *m) {
  return (model_mark){m->nhist, m->rev, m->compact_rev, m->sub, m->applied};
}

void model_rollback(model *m, model_mark mark) {
  while (m->nhist > mark.nhist) {
    mref r = m->hist[--m->nhist];
    mkey *k = &m->keys[r.key];
    free(k->v[--k->n].val);
  }
  m->rev = mark.rev;
  m->compact_rev = mark.compact_rev;
  m->sub = mark.sub;
  m->applied = mark.applied;
}

int64_t model_cur(const model *m) { return m->rev + (m->sub > 0 ? 1 : 0); }

void model_rev_end(model *m) {
  if (m->sub > 0) m->rev++;
  m->sub = 0;
}

static mver *append(model *m, int key) {
  mkey *k = &m->keys[key];
  if (k->n == k->cap) {
    k->cap = k->cap ? 2 * k->cap : 4;
    k->v = xrealloc(k->v, k->cap * sizeof *k->v);
  }
  if (m->nhist == m->cap) {
    m->cap = m->cap ? 2 * m->cap : 64;
    m->hist = xrealloc(m->hist, m->cap * sizeof *m->hist);
  }
  m->hist[m->nhist++] = (mref){key, k->n};
  mver *v = &k->v[k->n++];
  memset(v, 0, sizeof *v);
  v->main = m->rev + 1;
  v->sub = m->sub++;
  return v;
}

static const mver *latest(const model *m, int key) {
  const mkey *k = &m->keys[key];
  return k->n ? &k->v[k->n - 1] : NULL;
}

void model_put(model *m, int key, const uint8_t *val, size_t vlen, int64_t lease, mver *prev) {
  const mver *last = latest(m, key);
  bool existed = last && !last->del;
  mver old = existed ? *last : (mver){0};
  mver *v = append(m, key);
  v->create = existed ? old.create : v->main;
  v->version = existed ? old.version + 1 : 1;
  v->lease = lease;
  v->val = xmemdup(val ? val : (const uint8_t *)"", vlen);
  v->vlen = vlen;
  if (prev) *prev = old;
}

bool model_in_span(const model *m, int key, const mvcc_span *sp) {
  const mkey *k = &m->keys[key];
  int lo = bytes_cmp(k->key, k->klen, sp->key, sp->key_len);
  if (!sp->end && !sp->open_end) return lo == 0;
  if (lo < 0) return false;
  return sp->open_end || bytes_cmp(k->key, k->klen, sp->end, sp->end_len) < 0;
}

static mvcc_kv kv_of(const model *m, int key, const mver *v) {
  const mkey *k = &m->keys[key];
  return (mvcc_kv){k->key, k->klen, v->val, v->vlen, v->create, v->main, v->version, v->lease};
}

int64_t model_delete(model *m, const mvcc_span *sp, tkv_list *gone) {
  int64_t n = 0;
  for (int i = 0; i < m->nkeys; i++) {
    if (!model_in_span(m, i, sp)) continue;
    const mver *last = latest(m, i);
    if (!last || last->del) continue;
    if (gone) {
      mvcc_kv kv = kv_of(m, i, last);
      tkv_list_add(gone, &kv);
    }
    mver *v = append(m, i);
    v->del = true;
    v->val = xmalloc(1);
    n++;
  }
  return n;
}

const mver *model_at(const model *m, int key, int64_t rev) {
  const mkey *k = &m->keys[key];
  for (size_t j = k->n; j-- > 0;)
    if (k->v[j].main <= rev) return &k->v[j];
  return NULL;
}

bool model_kept(const model *m, int key, size_t ver, int64_t at) {
  const mkey *k = &m->keys[key];
  const mver *v = &k->v[ver];
  if (v->main > at) return true;
  for (size_t j = ver + 1; j < k->n; j++)
    if (k->v[j].main <= at) return false; /* superseded at or below `at` */
  return !v->del || v->main == at;
}

int model_random_key(const model *m, trng *r) {
  /* Favor a few keys so versions pile up. */
  if (trng_chance(r, 40)) return (int)trng_below(r, 6) * 7 % m->nkeys;
  return (int)trng_below(r, (uint64_t)m->nkeys);
}

mvcc_span model_random_span(const model *m, trng *r) {
  static uint8_t long_bound[600];
  static const uint8_t zero = 0;
  if (long_bound[0] != 'b') memset(long_bound, 'b', sizeof long_bound);
  const mkey *a = &m->keys[model_random_key(m, r)], *b = &m->keys[model_random_key(m, r)];
  mvcc_span sp = {a->key, a->klen, NULL, 0, false};
  switch (trng_below(r, 8)) {
  case 0: case 1: break; /* single key */
  case 2: sp.open_end = true; break;
  case 3: sp.key = &zero; sp.key_len = trng_chance(r, 50) ? 0 : 1; sp.open_end = true; break;
  case 4: sp.end = long_bound; sp.end_len = 600; break;
  case 5: sp.key = long_bound; sp.key_len = 520; sp.end = long_bound; sp.end_len = 600; break;
  default: sp.end = b->key; sp.end_len = b->klen; break; /* may be empty or inverted */
  }
  return sp;
}

/* ---------------------------------------------------------------- checks */

static void show(const char *ctx, const char *what, const uint8_t *key, size_t klen) {
  fprintf(stderr, "  model mismatch (%s): %s, key ", ctx, what);
  for (size_t i = 0; i < klen && i < 12; i++) fprintf(stderr, "%02x", key[i]);
  fprintf(stderr, "%s (len %zu)\n", klen > 12 ? "..." : "", klen);
}

static int compare_kv(const char *ctx, const tkv *got, const mvcc_kv *want) {
  if (bytes_cmp(got->key, got->key_len, want->key, want->key_len) != 0) {
    show(ctx, "key differs; want", want->key, want->key_len);
    show(ctx, "              got", got->key, got->key_len);
    return 1;
  }
  if (bytes_cmp(got->value, got->value_len, want->value, want->value_len) != 0 ||
      got->create_rev != want->create_rev || got->mod_rev != want->mod_rev ||
      got->version != want->version || got->lease != want->lease) {
    show(ctx, "fields differ", want->key, want->key_len);
    fprintf(stderr, "    want create %lld mod %lld version %lld lease %lld vlen %zu\n"
                    "    got  create %lld mod %lld version %lld lease %lld vlen %zu\n",
            (long long)want->create_rev, (long long)want->mod_rev, (long long)want->version,
            (long long)want->lease, want->value_len, (long long)got->create_rev,
            (long long)got->mod_rev, (long long)got->version, (long long)got->lease, got->value_len);
    return 1;
  }
  return 0;
}

static int expect_rc(const char *ctx, const char *op, int got, int want) {
  if (got == want) return 0;
  fprintf(stderr, "  model mismatch (%s): %s returned %d (%s), want %d (%s)\n", ctx, op, got,
          mvcc_strerror(got), want, mvcc_strerror(want));
  return 1;
}

static int span_rc(const mvcc_span *sp) {
  if (sp->end || sp->open_end) return MVCC_OK;
  if (sp->key_len == 0) return MVCC_EINVAL;
  return sp->key_len > MVCC_MAX_KEY ? MVCC_EKEYTOOLONG : MVCC_OK;
}

int model_check_range(const model *m, mvcc_txn *t, const mvcc_span *sp, int64_t rev, int64_t limit,
                      unsigned flags, const char *ctx) {
  int64_t cur = model_cur(m), at = rev <= 0 ? cur : rev;
  int want_rc = span_rc(sp);
  if (!want_rc && rev > cur) want_rc = MVCC_EFUTURE;
  if (!want_rc && at < m->compact_rev) want_rc = MVCC_ECOMPACTED;
  tkv_list got = {0};
  int64_t count = -1;
  int rc = mvcc_range(t, sp, rev, limit, flags, tkv_collect, &got, &count);
  int bad = expect_rc(ctx, "range", rc, want_rc);
  if (!bad && !rc) {
    bool rev_order = flags & MVCC_RANGE_REVERSE;
    int64_t want_count = 0;
    size_t listed = 0;
    for (int j = 0; j < m->nkeys; j++) {
      int i = rev_order ? m->nkeys - 1 - j : j;
      if (!model_in_span(m, i, sp)) continue;
      const mver *v = model_at(m, i, at);
      if (!v || v->del) continue;
      want_count++;
      if (limit && (int64_t)listed >= limit) continue;
      mvcc_kv want = kv_of(m, i, v);
      if (listed >= got.n) {
        show(ctx, "range lacks", want.key, want.key_len);
        bad++;
      } else {
        bad += compare_kv(ctx, &got.v[listed], &want);
      }
      listed++;
    }
    if (got.n > listed) {
      fprintf(stderr, "  model mismatch (%s): range returned %zu keys, want %zu\n", ctx, got.n, listed);
      bad++;
    }
    if (count != want_count) {
      fprintf(stderr, "  model mismatch (%s): count %lld, want %lld\n", ctx, (long long)count,
              (long long)want_count);
      bad++;
    }
    /* Count-only must agree too. */
    int64_t c2 = -1;
    rc = mvcc_range(t, sp, rev, limit, flags, NULL, NULL, &c2);
    if (rc || c2 != want_count) {
      fprintf(stderr, "  model mismatch (%s): count-only %lld rc %d, want %lld\n", ctx,
              (long long)c2, rc, (long long)want_count);
      bad++;
    }
  }
  if (bad) fprintf(stderr, "  ^ range at rev %lld (cur %lld, compact %lld) limit %lld flags %u\n",
                   (long long)rev, (long long)cur, (long long)m->compact_rev, (long long)limit, flags);
  tkv_list_clear(&got);
  return bad;
}

int model_check_changes(const model *m, mvcc_txn *t, int64_t from, int64_t to, const char *ctx) {
  int64_t cur = model_cur(m);
  int want_rc = from < m->compact_rev ? MVCC_ECOMPACTED : MVCC_OK;
  tkv_list got = {0};
  int rc = mvcc_changes(t, from, to, tkv_collect_change, &got);
  int bad = expect_rc(ctx, "changes", rc, want_rc);
  if (!bad && !rc) {
    int64_t hi = to <= 0 || to > cur ? cur : to;
    size_t listed = 0;
    for (size_t h = 0; h < m->nhist; h++) {
      mref r = m->hist[h];
      const mver *v = &m->keys[r.key].v[r.ver];
      if (v->main < from || v->main > hi) continue;
      if (v->main <= m->compact_rev && !model_kept(m, r.key, r.ver, m->compact_rev)) continue;
      if (listed >= got.n) {
        show(ctx, "changes lacks", m->keys[r.key].key, m->keys[r.key].klen);
        bad++;
        listed++;
        continue;
      }
      tkv *g = &got.v[listed++];
      if (g->main != v->main || g->sub != v->sub || g->is_delete != v->del) {
        fprintf(stderr, "  model mismatch (%s): change {%lld,%lld,%d}, want {%lld,%lld,%d}\n", ctx,
                (long long)g->main, (long long)g->sub, g->is_delete, (long long)v->main,
                (long long)v->sub, v->del);
        bad++;
        continue;
      }
      mvcc_kv want = kv_of(m, r.key, v);
      if (v->del) want = (mvcc_kv){want.key, want.key_len, NULL, 0, 0, v->main, 0, 0};
      bad += compare_kv(ctx, g, &want);
    }
    if (got.n > listed) {
      fprintf(stderr, "  model mismatch (%s): %zu changes, want %zu\n", ctx, got.n, listed);
      bad++;
    }
  }
  if (bad) fprintf(stderr, "  ^ changes [%lld, %lld] (cur %lld, compact %lld)\n", (long long)from,
                   (long long)to, (long long)cur, (long long)m->compact_rev);
  tkv_list_clear(&got);
  return bad;
}

int model_check_get_before(const model *m, mvcc_txn *t, int key, int64_t main, int64_t sub,
                           const char *ctx) {
  const mkey *k = &m->keys[key];
  int want_rc = MVCC_OK;
  const mver *want_v = NULL;
  if (main <= m->compact_rev) want_rc = MVCC_ECOMPACTED;
  else if (main > model_cur(m) + 1) want_rc = MVCC_EFUTURE;
  else {
    for (size_t j = k->n; j-- > 0;) {
      const mver *v = &k->v[j];
      if (v->main < main || (v->main == main && v->sub < sub)) {
        want_v = v;
        break;
      }
    }
    if (!want_v || want_v->del) want_rc = MVCC_ENOTFOUND;
  }
  mvcc_kv got;
  int rc = mvcc_get_before(t, k->key, k->klen, main, sub, &got);
  int bad = expect_rc(ctx, "get_before", rc, want_rc);
  if (!bad && !rc) {
    tkv_list l = {0};
    tkv_list_add(&l, &got);
    mvcc_kv want = kv_of(m, key, want_v);
    bad += compare_kv(ctx, &l.v[0], &want);
    tkv_list_clear(&l);
  }
  if (bad) fprintf(stderr, "  ^ get_before {%lld,%lld}\n", (long long)main, (long long)sub);
  return bad;
}

int model_check_lease_keys(const model *m, mvcc_txn *t, int64_t lease, const char *ctx) {
  tkv_list got = {0};
  int rc = mvcc_lease_keys(t, lease, tkv_collect, &got);
  int bad = expect_rc(ctx, "lease_keys", rc, MVCC_OK);
  size_t listed = 0;
  int64_t cur = model_cur(m);
  for (int i = 0; i < m->nkeys && !bad; i++) {
    const mver *v = model_at(m, i, cur);
    /* lease 0 means "no lease": not indexed */
    if (!v || v->del || v->lease != lease || lease == 0) continue;
    mvcc_kv want = kv_of(m, i, v);
    if (listed >= got.n) {
      show(ctx, "lease_keys lacks", want.key, want.key_len);
      bad++;
    } else {
      bad += compare_kv(ctx, &got.v[listed], &want);
    }
    listed++;
  }
  if (!bad && got.n != listed) {
    fprintf(stderr, "  model mismatch (%s): lease %lld has %zu keys, want %zu\n", ctx,
            (long long)lease, got.n, listed);
    bad++;
  }
  tkv_list_clear(&got);
  return bad;
}

int model_check_all(const model *m, mvcc_txn *t, const char *ctx) {
  int bad = 0;
  int64_t cur = model_cur(m);
  if (mvcc_rev(t) != cur || mvcc_compact_rev(t) != m->compact_rev) {
    fprintf(stderr, "  model mismatch (%s): rev %lld compact %lld, want %lld, %lld\n", ctx,
            (long long)mvcc_rev(t), (long long)mvcc_compact_rev(t), (long long)cur,
            (long long)m->compact_rev);
    return 1;
  }
  uint64_t index;
  mvcc_applied(t, &index, NULL);
  if (index != m->applied) {
    fprintf(stderr, "  model mismatch (%s): applied %llu, want %llu\n", ctx,
            (unsigned long long)index, (unsigned long long)m->applied);
    bad++;
  }
  static const uint8_t none = 0;
  mvcc_span all = {&none, 0, NULL, 0, true};
  /* Every readable revision, or 200 spread evenly (both ends included) when
   * the history is long. */
  int64_t lo = m->compact_rev > 1 ? m->compact_rev : 1;
  int64_t stride = (cur - lo) / 200 + 1;
  for (int64_t r = lo; r <= cur && !bad; r = r == cur ? cur + 1 : r + stride > cur ? cur : r + stride)
    bad += model_check_range(m, t, &all, r, 0, 0, ctx);
  bad += model_check_changes(m, t, m->compact_rev, 0, ctx);
  for (int64_t l = 0; l <= 3; l++) bad += model_check_lease_keys(m, t, l, ctx);
  return bad;
}
