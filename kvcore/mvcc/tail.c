/* The key index's tail: newer entries of indexed keys, held in memory.
 *
 * Why: an update used to add its entry to `kidx` at once, and a `kidx`
 * leaf chosen by the key is a random page: copy-on-write of that leaf and
 * its branch path was most of a put's cost in the store (5-6 us of 8 on an
 * update, measured). Here an update or delete of a key that `kidx` already
 * holds appends its entry to the tail instead, and the tail is written to
 * `kidx` in one sorted pass (a flush) once TAIL_MAX changes were made since
 * the last one: entries of many puts then share each leaf.
 *
 * The rule that keeps reads simple: a key is in the tail only if `kidx`
 * holds it too, and its tail entries are newer than its `kidx` ones. A key
 * `kidx` lacks (a new key, or one physical compaction removed) gets its
 * entry in `kidx` directly; compaction flushes the tail first, so it never
 * removes a key the tail still names. So walking keys stays a walk of
 * `kidx`, and each key's newest entries are looked up here by key.
 *
 * Flushed up to F ("kidx flushed", in the compaction record): every entry
 * at or below revision F is in `kidx`; entries above F may be only here.
 * A transaction uses the tail's entries in (its F, its revision]. A flush
 * commits the entries to `kidx` together with the new F, and the tail keeps
 * them until no reader whose snapshot predates that commit is left
 * (readers register the F published when they begin: see tail_purge).
 *
 * Durability: the tail is never written as such. Every change is in `hist`;
 * opening a store (and replacing one) replays `hist` above F into the tail.
 * Every change counts toward the next flush, new keys too (a flush with an
 * empty tail only moves F), which bounds that replay and the memory.
 *
 * Concurrency: one writer changes the tail (under the store's writer lock)
 * and takes `lock` for writing while it does; readers take it for reading
 * around each lookup. The writer reads without it. */
#include <stdlib.h>
#include <string.h>

#include "mvcc_int.h"

/* One entry: sub revision and type packed, sorted by (main, sub). */
typedef struct {
  int64_t main;
  uint64_t sub_del; /* sub << 1 | is_delete */
} tail_dup;

struct tail_key {
  uint32_t n, cap; /* entries, oldest first */
  tail_dup *dups;
  uint64_t hash;
  uint16_t key_len;
  uint8_t key[];
};

static size_t tail_max_default = TAIL_MAX;
void mvcc_test_set_tail_max(size_t n) { tail_max_default = n ? n : TAIL_MAX; }

static uint64_t key_hash(const uint8_t *key, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ key[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

void tail_init(kidx_tail *tl) {
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init(&a);
  /* Readers come in a steady stream: the writer must not wait them out. */
  pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&tl->lock, &a);
  pthread_rwlockattr_destroy(&a);
  tl->max = tail_max_default;
}

void tail_clear(kidx_tail *tl) {
  pthread_rwlock_wrlock(&tl->lock);
  for (size_t i = 0; i < tl->cap; i++) {
    if (!tl->slots[i].key) continue;
    free(tl->slots[i].key->dups);
    free(tl->slots[i].key);
  }
  free(tl->slots);
  tl->slots = NULL;
  tl->cap = tl->n_keys = 0;
  atomic_store(&tl->n_dups, 0);
  tl->unflushed = tl->pending = 0;
  tl->undo_n = 0;
  tl->purge_wanted = false;
  pthread_rwlock_unlock(&tl->lock);
}

void tail_destroy(kidx_tail *tl) {
  tail_clear(tl);
  free(tl->undo);
  tl->undo = NULL;
  tl->undo_cap = 0;
  pthread_rwlock_destroy(&tl->lock);
}

/* Linear probing over a power-of-two table at most half full (a range
 * looks up every key it walks, most of them absent: such a probe ends at
 * the first empty slot, a slot or two further on, within a cache line or
 * two). Empty slots end a probe: keys leave only when tail_purge rebuilds
 * the table. */
static tail_slot *slot_of(tail_slot *slots, size_t cap, const uint8_t *key, size_t n, uint64_t h) {
  for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
    tail_slot *s = &slots[i];
    if (!s->key || (s->hash == h && s->key->key_len == n && memcmp(s->key->key, key, n) == 0)) return s;
  }
}

static void rehash(kidx_tail *tl, size_t cap) {
  tail_slot *slots = xcalloc(cap, sizeof *slots);
  for (size_t i = 0; i < tl->cap; i++) {
    tail_key *k = tl->slots[i].key;
    if (k) *slot_of(slots, cap, k->key, k->key_len, k->hash) = (tail_slot){k->hash, k};
  }
  free(tl->slots);
  tl->slots = slots;
  tl->cap = cap;
}

static tail_key *find(const kidx_tail *tl, const uint8_t *key, size_t n) {
  if (!tl->cap) return NULL;
  return slot_of(tl->slots, tl->cap, key, n, key_hash(key, n))->key;
}

/* The newest entry of k in (lo, hi] that sorts below (bm, bs). */
static bool newest_below(const tail_key *k, int64_t lo, int64_t hi, int64_t bm, int64_t bs, int64_t *main,
                         int64_t *sub, bool *del) {
  for (uint32_t i = k->n; i-- > 0;) {
    const tail_dup *d = &k->dups[i];
    int64_t s = (int64_t)(d->sub_del >> 1);
    if (d->main > hi || d->main > bm || (d->main == bm && s >= bs)) continue;
    if (d->main <= lo) return false; /* older ones are in kidx for this reader */
    *main = d->main;
    *sub = s;
    *del = d->sub_del & 1;
    return true;
  }
  return false;
}

bool tail_find(kidx_tail *tl, bool lock, const uint8_t *key, size_t key_len, int64_t lo, int64_t hi,
               int64_t below_main, int64_t below_sub, int64_t *main, int64_t *sub, bool *del) {
  if (atomic_load_explicit(&tl->n_dups, memory_order_acquire) == 0) return false;
  if (lock) pthread_rwlock_rdlock(&tl->lock);
  const tail_key *k = find(tl, key, key_len);
  bool found = k && newest_below(k, lo, hi, below_main, below_sub, main, sub, del);
  if (lock) pthread_rwlock_unlock(&tl->lock);
  return found;
}

bool tail_lookup(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t below_main, int64_t below_sub,
                 int64_t *main, int64_t *sub, bool *del) {
  /* The writer sees its own entries too, and needs no lock. */
  return tail_find(&t->s->tail, !t->write, key, key_len, t->st.kidx_flushed, t->write ? INT64_MAX : t->st.rev,
                   below_main, below_sub, main, sub, del);
}

/* Adds an entry (newer than every other of the key) under the write lock;
 * undo: remember the key so an abort can take it back. */
static void append(kidx_tail *tl, const uint8_t *key, size_t key_len, int64_t main, int64_t sub, bool del,
                   bool undo) {
  uint64_t h = key_hash(key, key_len);
  pthread_rwlock_wrlock(&tl->lock);
  if ((tl->n_keys + 1) * 2 > tl->cap) rehash(tl, tl->cap ? tl->cap * 2 : 256);
  tail_slot *slot = slot_of(tl->slots, tl->cap, key, key_len, h);
  tail_key *k = slot->key;
  if (!k) {
    k = xcalloc(1, sizeof *k + key_len);
    k->hash = h;
    k->key_len = (uint16_t)key_len;
    memcpy(k->key, key, key_len);
    *slot = (tail_slot){h, k};
    tl->n_keys++;
  }
  if (k->n == k->cap) {
    k->cap = k->cap ? k->cap * 2 : 2;
    k->dups = xrealloc(k->dups, k->cap * sizeof *k->dups);
  }
  k->dups[k->n++] = (tail_dup){main, (uint64_t)sub << 1 | (del ? 1u : 0u)};
  atomic_fetch_add(&tl->n_dups, 1);
  pthread_rwlock_unlock(&tl->lock);
  tl->unflushed++;
  if (!undo) return;
  if (tl->undo_n == tl->undo_cap) {
    tl->undo_cap = tl->undo_cap ? tl->undo_cap * 2 : 64;
    tl->undo = xrealloc(tl->undo, tl->undo_cap * sizeof *tl->undo);
  }
  tl->undo[tl->undo_n++] = k;
}

void tail_append(mvcc_txn *t, const uint8_t *key, size_t key_len, int64_t main, int64_t sub, bool del) {
  append(&t->s->tail, key, key_len, main, sub, del, true);
}

void tail_txn_begin(mvcc_txn *t) {
  kidx_tail *tl = &t->s->tail;
  tl->undo_n = 0;
  tl->unflushed_at_begin = tl->unflushed;
  tl->pending_at_begin = tl->pending;
}

void tail_txn_end(mvcc_txn *t, bool committed) {
  mvcc_store *s = t->s;
  kidx_tail *tl = &s->tail;
  if (committed) {
    tl->undo_n = 0;
    if (t->st.kidx_flushed != tl->flushed) {
      pthread_mutex_lock(&s->pool_mu);
      tl->flushed = t->st.kidx_flushed; /* readers beginning from now on */
      pthread_mutex_unlock(&s->pool_mu);
      tl->purge_wanted = true;
    }
    return;
  }
  /* Taken back newest first: each undo names the key's newest entry. Keys
   * left with none stay in the table until the next purge. */
  if (tl->undo_n) {
    size_t undone = tl->undo_n;
    pthread_rwlock_wrlock(&tl->lock);
    while (tl->undo_n) tl->undo[--tl->undo_n]->n--;
    atomic_fetch_sub(&tl->n_dups, undone);
    pthread_rwlock_unlock(&tl->lock);
  }
  tl->unflushed = tl->unflushed_at_begin;
  tl->pending = tl->pending_at_begin;
}

/* ---------------------------------------------------------------- flush */

static int key_order(const void *a, const void *b) {
  const tail_key *x = *(tail_key *const *)a, *y = *(tail_key *const *)b;
  return bytes_cmp(x->key, x->key_len, y->key, y->key_len);
}

int tail_flush(mvcc_txn *t) {
  kidx_tail *tl = &t->s->tail;
  if (t->err) return t->err;
  if (t->in_request) return MVCC_EINVAL; /* F must fall between revisions */
  int64_t from = t->st.kidx_flushed;
  if (tl->unflushed == 0) { /* only new keys since F: just move it */
    if (from != t->st.rev) {
      t->st.kidx_flushed = t->st.rev;
      t->compact_dirty = true;
    }
    tl->pending = 0;
    return MVCC_OK;
  }
  /* The keys with entries above F, in key order: neighbours share leaves. */
  tail_key **keys = xmalloc((tl->n_keys ? tl->n_keys : 1) * sizeof *keys);
  size_t n = 0, entries = 0;
  for (size_t i = 0; i < tl->cap; i++) {
    tail_key *k = tl->slots[i].key;
    if (k && k->n && k->dups[k->n - 1].main > from) keys[n++] = k;
  }
  qsort(keys, n, sizeof *keys, key_order);
  for (size_t i = 0; i < n; i++)
    for (uint32_t j = keys[i]->n; j-- > 0 && keys[i]->dups[j].main > from;) entries++;
  int rc = space_reserve(t, entries * 3 + SPACE_COMMIT_PAGES);
  MDB_cursor *c = NULL;
  if (!rc) rc = mvcc_cursor(t, DB_KIDX, &c);
  for (size_t i = 0; i < n && !rc; i++) {
    tail_key *k = keys[i];
    uint32_t j = k->n;
    while (j > 0 && k->dups[j - 1].main > from) j--;
    for (; j < k->n && !rc; j++) {
      uint8_t dup[KIDX_LEN];
      kidx_encode(dup, k->dups[j].main, (int64_t)(k->dups[j].sub_del >> 1), k->dups[j].sub_del & 1);
      MDB_val ik = {k->key_len, k->key}, id = {KIDX_LEN, dup};
      int lrc = mdb_cursor_put(c, &ik, &id, MDB_APPENDDUP);
      if (lrc == MDB_KEYEXIST) {
        log_error("mvcc: the key index already holds a revision the tail is writing");
        lrc = MDB_CORRUPTED;
      }
      if (lrc) rc = t->err = mvcc_lmdb_err(lrc, "writing the key index");
    }
  }
  free(keys);
  if (rc) return rc;
  t->st.kidx_flushed = t->st.rev;
  t->compact_dirty = true;
  tl->unflushed = tl->pending = 0;
  return MVCC_OK;
}

/* ---------------------------------------------------------------- purge */

/* The oldest F a reader still uses: readers register the published F
 * before their snapshot begins, so their snapshot's F is at least that. */
static int64_t oldest_reader_floor(mvcc_store *s) {
  pthread_mutex_lock(&s->pool_mu);
  int64_t f = s->tail.flushed;
  for (mvcc_txn *r = s->active; r; r = r->active_next)
    if (r->tail_floor < f) f = r->tail_floor;
  pthread_mutex_unlock(&s->pool_mu);
  return f;
}

void tail_purge(mvcc_store *s) {
  kidx_tail *tl = &s->tail;
  if (!tl->purge_wanted) return;
  int64_t upto = oldest_reader_floor(s);
  if (upto < tl->flushed) return; /* an older reader is still open: next time */
  tl->purge_wanted = false;
  pthread_rwlock_wrlock(&tl->lock);
  size_t keys = 0, dups = 0;
  for (size_t i = 0; i < tl->cap; i++) {
    tail_key *k = tl->slots[i].key;
    if (!k) continue;
    uint32_t gone = 0;
    while (gone < k->n && k->dups[gone].main <= upto) gone++;
    if (gone == k->n) {
      free(k->dups);
      free(k);
      tl->slots[i].key = NULL;
      continue;
    }
    memmove(k->dups, k->dups + gone, (k->n - gone) * sizeof *k->dups);
    k->n -= gone;
    keys++;
    dups += k->n;
  }
  tl->n_keys = keys;
  size_t cap = 256;
  while (keys * 2 > cap) cap *= 2;
  rehash(tl, cap);
  atomic_store(&tl->n_dups, dups);
  pthread_rwlock_unlock(&tl->lock);
}

/* ---------------------------------------------------------------- replay */

int tail_replay(kidx_tail *tl, MDB_txn *txn, MDB_dbi hist, MDB_dbi kidx, const store_state *st) {
  tail_clear(tl);
  tl->flushed = st->kidx_flushed;
  if (st->kidx_flushed >= st->rev) return MVCC_OK;
  MDB_cursor *hc, *kc;
  int lrc = mdb_cursor_open(txn, hist, &hc);
  if (lrc) return mvcc_lmdb_err(lrc, "opening a cursor");
  lrc = mdb_cursor_open(txn, kidx, &kc);
  if (lrc) {
    mdb_cursor_close(hc);
    return mvcc_lmdb_err(lrc, "opening a cursor");
  }
  uint8_t start[HIST_KEY_LEN];
  hist_key_encode(start, st->kidx_flushed + 1, 0);
  MDB_val k = {HIST_KEY_LEN, start}, d;
  int rc = MVCC_OK;
  for (lrc = mdb_cursor_get(hc, &k, &d, MDB_SET_RANGE); lrc == 0 && !rc;
       lrc = mdb_cursor_get(hc, &k, &d, MDB_NEXT)) {
    int64_t main, sub;
    hist_rec h;
    if (hist_key_decode(k.mv_data, k.mv_size, &main, &sub) < 0) {
      rc = mvcc_corrupt("hist key", k.mv_data, k.mv_size);
      break;
    }
    if (main > st->rev) break;
    if (hist_rec_decode(d.mv_data, d.mv_size, &h) < 0) {
      rc = mvcc_corrupt("hist", k.mv_data, k.mv_size);
      break;
    }
    /* Entries of new keys went to kidx directly; the rest are the tail's,
     * and their key must be in kidx. */
    tl->pending++;
    uint8_t dup[KIDX_LEN];
    kidx_encode(dup, main, sub, h.is_delete);
    MDB_val ik = {h.key_len, (void *)h.key}, id = {KIDX_LEN, dup};
    int grc = mdb_cursor_get(kc, &ik, &id, MDB_GET_BOTH);
    if (grc == 0) continue;
    ik = (MDB_val){h.key_len, (void *)h.key};
    MDB_val any;
    if (grc == MDB_NOTFOUND) grc = mdb_cursor_get(kc, &ik, &any, MDB_SET_KEY);
    if (grc == MDB_NOTFOUND) {
      log_error("mvcc: history holds a change of a key the key index lacks");
      rc = mvcc_corrupt("kidx", h.key, h.key_len);
    } else if (grc) {
      rc = mvcc_lmdb_err(grc, "reading the key index");
    } else {
      append(tl, h.key, h.key_len, main, sub, h.is_delete, false);
    }
  }
  if (!rc && lrc && lrc != MDB_NOTFOUND) rc = mvcc_lmdb_err(lrc, "reading history");
  mdb_cursor_close(hc);
  mdb_cursor_close(kc);
  if (rc) tail_clear(tl);
  return rc;
}
