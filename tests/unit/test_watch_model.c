/* Randomized: streams of writes (several changes per revision), watchers
 * created at random revisions with random ranges and options, cancels,
 * clients that stop and resume reading, compactions, and the hub polled at
 * random moments, with small read chunks. Every watcher's responses are
 * then checked against a model of the history: events in revision order,
 * each exactly once, all events of a revision in one response, prev_kv,
 * filters, resumption from its start revision, and a compacted response
 * only when events it needed were really compacted.
 * SYNOD_SEED picks the seed; SYNOD_LONG=N multiplies the rounds. */
#include "base.h"
#include "mvcc_testutil.h"
#include "testing.h"
#include "watch_testutil.h"

enum { NSTREAMS = 4, NKEYS = 12, MAXW = 400, MAXCH = 20000 };

typedef struct {
  int64_t main;
  int key;
  bool del;
  int val;          /* value written (puts) */
  bool has_prev;    /* the key existed before */
  int prev_val;
  int64_t prev_mod;
} mchange;

typedef struct {
  int stream;
  int64_t id;
  int kind;     /* 0 key, 1 range [key, end), 2 from key */
  int key, end; /* key indexes */
  int64_t start;
  unsigned flags;
  bool cancelled;
} mwatch;

static mvcc_store *store;
static mchange ch[MAXCH];
static size_t nch;
static int cur_val[NKEYS];
static int64_t cur_mod[NKEYS];
static bool exists[NKEYS];
static mwatch ws[MAXW];
static size_t nws;

static void key_name(int k, char *out) { snprintf(out, 8, "k%02d", k); }

static bool covers(const mwatch *w, int k) {
  if (w->kind == 0) return k == w->key;
  if (w->kind == 1) return k >= w->key && k < w->end;
  return k >= w->key;
}

static void write_revision(trng *r, watch_hub *h) {
  mvcc_txn *t;
  mvcc_write_begin(store, &t);
  mvcc_rev_begin(t);
  int n = 1 + (int)trng_below(r, 3);
  bool used[NKEYS] = {0};
  int64_t main = mvcc_rev(t) + 1;
  for (int i = 0; i < n; i++) {
    int k = (int)trng_below(r, NKEYS);
    if (used[k]) continue;
    used[k] = true;
    char kn[8];
    key_name(k, kn);
    mchange c = {.main = main, .key = k, .has_prev = exists[k], .prev_val = cur_val[k], .prev_mod = cur_mod[k]};
    if (exists[k] && trng_chance(r, 30)) {
      int64_t deleted = 0;
      mvcc_delete_range(t, &(mvcc_span){(uint8_t *)kn, 3, NULL, 0, false}, NULL, NULL, &deleted);
      c.del = true;
      exists[k] = false;
    } else {
      c.val = (int)trng_below(r, 1000000);
      char v[16];
      snprintf(v, sizeof v, "%d", c.val);
      mvcc_put(t, (uint8_t *)kn, 3, (uint8_t *)v, strlen(v), 0, NULL);
      exists[k] = true;
      cur_val[k] = c.val;
      cur_mod[k] = main;
    }
    if (nch < MAXCH) ch[nch++] = c;
  }
  int64_t rev = mvcc_rev_end(t);
  mvcc_write_commit(t);
  watch_hub_notify(h, rev);
}

static void create(trng *r, watch_stream **streams, tsink *sinks) {
  if (nws == MAXW) return;
  mwatch *w = &ws[nws];
  w->stream = (int)trng_below(r, NSTREAMS);
  w->id = 1000 + (int64_t)nws;
  w->kind = (int)trng_below(r, 3);
  w->key = (int)trng_below(r, NKEYS);
  w->end = w->key + 1 + (int)trng_below(r, 4);
  w->flags = (unsigned)trng_below(r, 32) & (TW_PREV | TW_NOPUT | TW_NODELETE);
  if ((w->flags & (TW_NOPUT | TW_NODELETE)) == (TW_NOPUT | TW_NODELETE)) w->flags &= ~(unsigned)TW_NOPUT;
  int64_t now = trev(store);
  mvcc_txn *t;
  mvcc_read_begin(store, &t);
  int64_t compact = mvcc_compact_rev(t);
  mvcc_txn_end(t);
  int64_t lo = compact > 3 ? compact - 3 : 1;
  int64_t start = trng_chance(r, 30) ? 0 : lo + (int64_t)trng_below(r, (uint64_t)(now + 3 - lo + 1));
  char k[8], e[8];
  key_name(w->key, k);
  key_name(w->end, e);
  size_t before = sinks[w->stream].n;
  treq_create(streams[w->stream], k, w->kind == 0 ? NULL : w->kind == 1 ? e : "", start, w->id, w->flags);
  REQUIRE(sinks[w->stream].n == before + 1);
  Etcdserverpb__WatchResponse *cr = sinks[w->stream].r[before];
  CHECK(cr->created && !cr->canceled && cr->watch_id == w->id);
  w->start = start ? start : cr->header->revision + 1;
  nws++;
}

/* Checks one watcher's responses against the model. */
static void verify(const mwatch *w, tsink *t, int64_t final_compact) {
  size_t next = 0; /* index into the expected events */
  mchange *want[MAXCH];
  size_t nwant = 0;
  for (size_t i = 0; i < nch; i++) {
    const mchange *c = &ch[i];
    if (c->main < w->start || !covers(w, c->key)) continue;
    if ((w->flags & TW_NOPUT) && !c->del) continue;
    if ((w->flags & TW_NODELETE) && c->del) continue;
    want[nwant++] = (mchange *)c;
  }
  bool created = false, over = false;
  int64_t last_hdr = 0;
  for (size_t i = 0; i < t->n && !over; i++) {
    Etcdserverpb__WatchResponse *r = t->r[i];
    if (r->watch_id != w->id) continue;
    if (!created) {
      CHECK(r->created);
      created = true;
      continue;
    }
    CHECK(!r->created);
    if (r->canceled) {
      if (r->compact_revision) {
        /* etcd: a watcher whose next revision is below the compaction, whether
         * or not anything there concerned it */
        CHECK_INT(r->compact_revision, <=, final_compact);
        CHECK_INT(r->header->revision, ==, 0);
      } else {
        CHECK(w->cancelled);
      }
      over = true;
      break;
    }
    if (r->n_events) CHECK_INT(r->header->revision, >=, r->events[r->n_events - 1]->kv->mod_revision);
    CHECK_INT(r->header->revision, >=, last_hdr);
    last_hdr = r->header->revision;
    for (size_t j = 0; j < r->n_events; j++) {
      Mvccpb__Event *e = r->events[j];
      if (next >= nwant) {
        CHECK(!"an event beyond the model");
        return;
      }
      const mchange *c = want[next++];
      char kn[8];
      key_name(c->key, kn);
      CHECK_INT(e->kv->mod_revision, ==, c->main);
      CHECK_MEM(e->kv->key.data, e->kv->key.len, kn, 3);
      CHECK_INT(e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE, ==, c->del);
      if (!c->del) {
        char v[16];
        snprintf(v, sizeof v, "%d", c->val);
        CHECK_MEM(e->kv->value.data, e->kv->value.len, v, strlen(v));
      }
      if (w->flags & TW_PREV) {
        if (e->prev_kv) {
          CHECK(c->has_prev);
          CHECK_INT(e->prev_kv->mod_revision, ==, c->prev_mod);
          char pv[16];
          snprintf(pv, sizeof pv, "%d", c->prev_val);
          CHECK_MEM(e->prev_kv->value.data, e->prev_kv->value.len, pv, strlen(pv));
        } else {
          CHECK(!c->has_prev || c->main <= final_compact);
        }
      } else {
        CHECK(e->prev_kv == NULL);
      }
      /* atomicity: the rest of this revision is in this same response */
      bool last_in_resp = j + 1 == r->n_events;
      if (last_in_resp && next < nwant) CHECK_INT(want[next]->main, !=, c->main);
    }
  }
  CHECK(created);
  if (!over && !w->cancelled) CHECK_INT(next, ==, nwant); /* everything, exactly once */
}

static void run(uint64_t seed, int rounds) {
  trng r = {seed};
  char *dir;
  store = topen(&dir);
  nch = nws = 0;
  memset(exists, 0, sizeof exists);
  watch_hub_options o = {.store = store, .fill_header = tfill_header, .manual = true,
                         .chunk_revisions = 1 + (int)trng_below(&r, 5), .sync_watchers = 1 + (int)trng_below(&r, 4)};
  watch_hub *h;
  if (watch_hub_start(&o, &h) != 0) abort();
  tsink sinks[NSTREAMS] = {0};
  watch_stream *streams[NSTREAMS];
  for (int i = 0; i < NSTREAMS; i++) streams[i] = watch_stream_open(h, &tsink_ops, &sinks[i]);
  for (int i = 0; i < rounds; i++) {
    int a = (int)trng_below(&r, 100);
    if (a < 40) {
      write_revision(&r, h);
    } else if (a < 50) {
      create(&r, streams, sinks);
    } else if (a < 53 && nws) {
      mwatch *w = &ws[trng_below(&r, nws)];
      if (!w->cancelled) {
        treq_cancel(streams[w->stream], w->id);
        w->cancelled = true;
      }
    } else if (a < 63) {
      int s = (int)trng_below(&r, NSTREAMS);
      if (sinks[s].queued) {
        sinks[s].queued = 0;
        watch_stream_drained(streams[s]);
      } else {
        sinks[s].queued = 2 << 20;
      }
    } else if (a < 65) {
      int64_t now = trev(store);
      mvcc_txn *t;
      mvcc_read_begin(store, &t);
      int64_t compact = mvcc_compact_rev(t);
      mvcc_txn_end(t);
      if (now > compact + 1) {
        watch_hub_before_compaction(h);
        mvcc_write_begin(store, &t);
        CHECK_INT(mvcc_compact(t, compact + 1 + (int64_t)trng_below(&r, (uint64_t)(now - compact))), ==, MVCC_OK);
        mvcc_write_commit(t);
      }
    } else if (a < 67) {
      treq_progress(streams[trng_below(&r, NSTREAMS)]);
    } else {
      watch_hub_poll(h);
    }
  }
  for (int i = 0; i < NSTREAMS; i++) {
    sinks[i].queued = 0;
    watch_stream_drained(streams[i]);
  }
  watch_hub_poll(h);
  watch_stats st;
  watch_hub_stats(h, &st);
  CHECK_INT(st.unsynced + st.victims, ==, 0);
  mvcc_txn *t;
  mvcc_read_begin(store, &t);
  int64_t final_compact = mvcc_compact_rev(t);
  mvcc_txn_end(t);
  int before = testing_failures;
  for (size_t i = 0; i < nws; i++) verify(&ws[i], &sinks[ws[i].stream], final_compact);
  if (testing_failures != before) fprintf(stderr, "seed %llu failed\n", (unsigned long long)seed);
  for (int i = 0; i < NSTREAMS; i++) {
    watch_stream_close(streams[i]);
    tsink_free(&sinks[i]);
  }
  watch_hub_stop(h);
  mvcc_close(store);
  tmpdir_remove(dir);
}

static void test_random_histories(void) {
  uint64_t seed = testing_seed(20261121);
  int runs = 12 * tlong_factor();
  for (int i = 0; i < runs; i++) run(seed + (uint64_t)i, 1500);
}

int main(void) {
  log_set_level(LOG_ERROR);
  RUN(test_random_histories);
  return testing_done();
}
