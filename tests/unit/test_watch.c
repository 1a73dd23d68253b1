/* kvcore/watch: the matching index against brute force, and the hub's
 * behaviours one at a time on a real store, driven by hand (manual hub):
 * live delivery, chunked grouped catch-up, victims and their recovery,
 * compaction, time limits, progress, the snapshot taken before compaction. */
#include <fcntl.h>
#include <unistd.h>

#include "base.h"
#include "mvcc_testutil.h"
#include "testing.h"
#include "watch_int.h"
#include "watch_testutil.h"

static mvcc_store *store;
static char *dir;

static watch_hub *hub_with(int chunk_revs, int sync_watchers) {
  watch_hub_options o = {.store = store, .fill_header = tfill_header, .manual = true,
                         .chunk_revisions = chunk_revs, .sync_watchers = sync_watchers,
                         .progress_notify_ms = 1000, .victim_timeout_ms = 5000};
  watch_hub *h;
  if (watch_hub_start(&o, &h) != 0) abort();
  return h;
}

static int64_t put_notify(watch_hub *h, const char *k, const char *v) {
  tput(store, k, v, 0);
  int64_t rev = trev(store);
  watch_hub_notify(h, rev);
  return rev;
}

/* Events of watch id in the sink, as "key@rev" joined, plus checks that
 * each response carries whole revisions in order. */
static const char *events_of(tsink *t, int64_t id) {
  static char out[8192];
  out[0] = 0;
  for (size_t i = 0; i < t->n; i++) {
    Etcdserverpb__WatchResponse *r = t->r[i];
    if (r->watch_id != id) continue;
    for (size_t j = 0; j < r->n_events; j++) {
      Mvccpb__KeyValue *kv = r->events[j]->kv;
      char one[128];
      snprintf(one, sizeof one, "%s%.*s%s@%lld", *out ? " " : "", (int)kv->key.len, kv->key.data,
               r->events[j]->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? "-" : "", (long long)kv->mod_revision);
      strncat(out, one, sizeof out - strlen(out) - 1);
    }
  }
  return out;
}

/* ---------------------------------------------------------------- index */

static void count_match(void *arg, watcher *w) { (void)w, (*(size_t *)arg)++; }
static void count_group(void *arg, wgroup *g) {
  for (watcher *w = g->first; w; w = w->ix.h.next) (*(size_t *)arg)++;
}

static void test_index_matches_brute_force(void) {
  trng r = {testing_seed(7)};
  widx x;
  widx_init(&x);
  enum { N = 600 };
  watcher *ws[N];
  bool in[N];
  for (int i = 0; i < N; i++) {
    char k[8], e[8];
    snprintf(k, sizeof k, "%02d", (int)trng_below(&r, 60));
    snprintf(e, sizeof e, "%02d", (int)trng_below(&r, 70));
    int kind = (int)trng_below(&r, 3);
    ws[i] = xcalloc(1, sizeof(watcher) + 8);
    ws[i]->kind = (uint8_t)kind;
    ws[i]->key_len = 2;
    memcpy(ws[i]->key, k, 2);
    if (kind == W_RANGE) {
      ws[i]->end_len = 2;
      memcpy(ws[i]->key + 2, e, 2);
    }
    ws[i]->hash = widx_hash(ws[i]->key, 2);
    widx_add(&x, ws[i]);
    in[i] = true;
  }
  for (int round = 0; round < 3000; round++) {
    int i = (int)trng_below(&r, N);
    if (in[i]) widx_del(&x, ws[i]); else widx_add(&x, ws[i]);
    in[i] = !in[i];
    char k[8];
    snprintf(k, sizeof k, "%02d", (int)trng_below(&r, 75));
    size_t got = 0, want = 0;
    widx_match(&x, (uint8_t *)k, 2, count_group, count_match, &got);
    for (int j = 0; j < N; j++) {
      if (!in[j]) continue;
      const watcher *w = ws[j];
      int c = memcmp(w->key, k, 2);
      if (w->kind == W_KEY ? c == 0 : w->kind == W_FROM ? c <= 0 : c <= 0 && memcmp(watcher_end(w), k, 2) > 0)
        want++;
    }
    CHECK_INT(got, ==, want);
  }
  size_t n = 0, each = 0;
  bool key_seen[100] = {false};
  size_t keys = 0;
  for (int i = 0; i < N; i++) {
    n += in[i];
    int k = (ws[i]->key[0] - '0') * 10 + (ws[i]->key[1] - '0');
    if (in[i] && ws[i]->kind == W_KEY && !key_seen[k]) key_seen[k] = true, keys++;
  }
  CHECK_INT(widx_count(&x), ==, n);
  widx_each(&x, count_match, &each);
  CHECK_INT(each, ==, n);
  CHECK_INT(x.ngroups, ==, keys); /* a key's group goes with its last watcher */
  widx_free(&x);
  for (int i = 0; i < N; i++) free(ws[i]);
}

/* The hub's own encoding of a WatchResponse is the bytes protobuf-c packs
 * for the same message. */
static void test_response_encoding(void) {
  Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
  kv.key = (ProtobufCBinaryData){3, (uint8_t *)"abc"};
  kv.value = (ProtobufCBinaryData){300, xcalloc(1, 300)};
  kv.create_revision = 5, kv.mod_revision = 1234567, kv.version = 2;
  Mvccpb__Event ev = MVCCPB__EVENT__INIT;
  ev.kv = &kv;
  size_t n = protobuf_c_message_get_packed_size(&ev.base);
  uint8_t *enc = xmalloc(n + 10);
  size_t pre = 0;
  for (size_t v = n; ; v >>= 7) {
    enc[pre++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    if (v < 0x80) break;
  }
  protobuf_c_message_pack(&ev.base, enc + pre);
  ProtobufCMessageUnknownField evs[2];
  for (int i = 0; i < 2; i++)
    evs[i] = (ProtobufCMessageUnknownField){.tag = 11, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                            .len = pre + n, .data = enc};
  int64_t ids[] = {0, 1, 127, 128, 1 << 20, INT64_MAX};
  for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
    for (size_t nev = 0; nev <= 2; nev++) {
      Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
      hdr.cluster_id = 0xf00dcafe12345678ull, hdr.member_id = 42, hdr.revision = 1234567, hdr.raft_term = k;
      Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
      r.header = &hdr;
      r.watch_id = ids[k];
      r.base.unknown_fields = evs;
      r.base.n_unknown_fields = nev;
      size_t want_len = protobuf_c_message_get_packed_size(&r.base);
      uint8_t *want = xmalloc(want_len), hbuf[64];
      protobuf_c_message_pack(&r.base, want);
      size_t hlen = protobuf_c_message_pack(&hdr.base, hbuf);
      size_t got_len = respond_encoded_size(hlen, ids[k], evs, nev);
      CHECK_INT(got_len, ==, want_len);
      uint8_t *got = xmalloc(got_len);
      CHECK_INT(respond_encode(got, hbuf, hlen, ids[k], evs, nev), ==, want_len);
      CHECK(memcmp(got, want, want_len) == 0);
      free(got);
      free(want);
    }
  }
  free(enc);
  free(kv.value.data);
}

/* ---------------------------------------------------------------- hub */

static void test_live_delivery_and_headers(void) {
  int64_t base = trev(store);
  watch_hub *h = hub_with(0, 0);
  tsink t = {0};
  watch_stream *s = watch_stream_open(h, &tsink_ops, &t);
  treq_create(s, "a", NULL, 0, 0, 0);
  treq_create(s, "a", "c", 0, 0, TW_NOPUT);
  REQUIRE(t.n == 2);
  CHECK(t.r[0]->created && !t.r[0]->canceled);
  CHECK_INT(t.r[0]->header->revision, ==, base);
  CHECK_INT(t.r[0]->header->cluster_id, ==, 11);
  CHECK_INT(t.r[1]->watch_id, ==, 1);
  int64_t r1 = put_notify(h, "a", "1");
  put_notify(h, "b", "2");
  watch_hub_poll(h);
  char want[64];
  snprintf(want, sizeof want, "a@%lld", (long long)r1);
  CHECK_STR(events_of(&t, 0), want);
  CHECK_STR(events_of(&t, 1), "");
  tdel(store, span_key("b"), NULL);
  watch_hub_notify(h, trev(store));
  watch_hub_poll(h);
  snprintf(want, sizeof want, "b-@%lld", (long long)trev(store));
  CHECK_STR(events_of(&t, 1), want);
  /* the two puts came in one read: one response, header at the last one */
  CHECK_INT(t.r[2]->header->revision, ==, r1 + 1);
  treq_cancel(s, 0);
  CHECK(t.r[t.n - 1]->canceled && t.r[t.n - 1]->watch_id == 0);
  size_t before = strlen(events_of(&t, 0));
  put_notify(h, "a", "3");
  watch_hub_poll(h);
  CHECK_INT(strlen(events_of(&t, 0)), ==, before); /* nothing after cancel */
  watch_stream_close(s);
  watch_hub_stop(h);
  tsink_free(&t);
}

static void test_chunked_grouped_catch_up(void) {
  int64_t base = trev(store);
  for (int i = 0; i < 40; i++) {
    char k[8];
    snprintf(k, sizeof k, "g%d", i % 5);
    tput(store, k, "v", 0);
  }
  watch_hub *h = hub_with(3, 2); /* 3 revisions per read, 2 watchers per group */
  tsink t = {0};
  watch_stream *s = watch_stream_open(h, &tsink_ops, &t);
  for (int i = 0; i < 5; i++) {
    char k[8];
    snprintf(k, sizeof k, "g%d", i);
    treq_create(s, k, NULL, base + 1 + i * 3, 0, 0);
  }
  treq_create(s, "g", "h", base + 1, 0, 0);
  watch_stats st;
  watch_hub_stats(h, &st);
  CHECK_INT(st.unsynced, ==, 6);
  watch_hub_poll(h);
  watch_hub_stats(h, &st);
  CHECK_INT(st.unsynced, ==, 0);
  CHECK_INT(st.synced, ==, 6);
  for (int i = 0; i < 5; i++) {
    char want[1024] = "";
    for (int j = 0; j < 40; j++) {
      int64_t rev = base + 1 + j;
      if (j % 5 != i || rev < base + 1 + i * 3) continue;
      char one[32];
      snprintf(one, sizeof one, "%sg%d@%lld", *want ? " " : "", i, (long long)rev);
      strcat(want, one);
    }
    CHECK_STR(events_of(&t, i), want);
  }
  /* the range watcher: all 40, in order, each once */
  const char *all = events_of(&t, 5);
  int n = 0;
  for (const char *p = all; (p = strchr(p, '@')); p++) n++;
  CHECK_INT(n, ==, 40);
  /* responses carry at most 3 revisions (one read) and header >= events */
  for (size_t i = 0; i < t.n; i++) {
    Etcdserverpb__WatchResponse *r = t.r[i];
    if (!r->n_events) continue;
    CHECK(r->events[r->n_events - 1]->kv->mod_revision - r->events[0]->kv->mod_revision < 3);
    CHECK(r->header->revision >= r->events[r->n_events - 1]->kv->mod_revision);
  }
  int64_t live = put_notify(h, "g0", "live");
  watch_hub_poll(h);
  char tail[32];
  snprintf(tail, sizeof tail, "g0@%lld", (long long)live);
  CHECK(strstr(events_of(&t, 0), tail) != NULL);
  watch_stream_close(s);
  watch_hub_stop(h);
  tsink_free(&t);
}

static void test_victim_recovers_after_drain(void) {
  watch_hub *h = hub_with(0, 0);
  tsink slow = {0}, fast = {0};
  watch_stream *s = watch_stream_open(h, &tsink_ops, &slow);
  watch_stream *f = watch_stream_open(h, &tsink_ops, &fast);
  treq_create(s, "v", "w", 0, 0, TW_PREV);
  treq_create(f, "v", "w", 0, 0, TW_PREV);
  slow.queued = 10 << 20; /* the client stopped reading */
  char want[4096] = "";
  for (int i = 0; i < 30; i++) {
    char k[8], one[32];
    snprintf(k, sizeof k, "v%d", i % 4);
    int64_t rev = put_notify(h, k, "x");
    snprintf(one, sizeof one, "%s%s@%lld", *want ? " " : "", k, (long long)rev);
    strcat(want, one);
    if (i % 7 == 0) watch_hub_poll(h);
  }
  watch_hub_poll(h);
  watch_stats st;
  watch_hub_stats(h, &st);
  CHECK_INT(st.victims, ==, 1);
  CHECK_STR(events_of(&fast, 0), want);
  CHECK_INT(slow.n, ==, 1); /* only "created" */
  slow.queued = 0;
  watch_stream_drained(s);
  watch_hub_poll(h);
  watch_hub_stats(h, &st);
  CHECK_INT(st.victims, ==, 0);
  CHECK_INT(st.synced, ==, 2);
  CHECK_STR(events_of(&slow, 0), want);
  /* prev_kv from history matches what live delivery gave */
  for (size_t i = 1; i < slow.n; i++)
    for (size_t j = 0; j < slow.r[i]->n_events; j++) {
      Mvccpb__Event *e = slow.r[i]->events[j];
      CHECK((e->prev_kv != NULL) == (e->kv->version > 1));
    }
  watch_stream_close(s);
  watch_stream_close(f);
  watch_hub_stop(h);
  tsink_free(&slow);
  tsink_free(&fast);
}

static int64_t compact_now(watch_hub *h, int64_t rev) {
  watch_hub_before_compaction(h);
  mvcc_txn *w;
  mvcc_write_begin(store, &w);
  int rc = mvcc_compact(w, rev);
  mvcc_write_commit(w);
  return rc;
}

static void test_compaction_cancels_only_those_behind(void) {
  watch_hub *h = hub_with(0, 0);
  tsink t = {0}, t2 = {0};
  watch_stream *s = watch_stream_open(h, &tsink_ops, &t);
  watch_stream *s2 = watch_stream_open(h, &tsink_ops, &t2);
  treq_create(s, "c", NULL, 0, 1, 0);  /* live */
  treq_create(s2, "c", NULL, 0, 2, 0); /* will be a victim */
  int64_t first = put_notify(h, "c", "1");
  watch_hub_poll(h);
  t2.queued = 10 << 20;
  for (int i = 0; i < 5; i++) put_notify(h, "c", "x");
  /* compaction to the current revision while the hub has delivered none of
   * the last writes: the live watcher must still get all of them */
  int64_t now = trev(store);
  CHECK_INT(compact_now(h, now), ==, MVCC_OK);
  watch_hub_notify(h, now);
  watch_hub_poll(h); /* delivers from the snapshot; watcher 2 becomes a victim */
  int64_t later = put_notify(h, "c", "y");
  watch_hub_poll(h);
  CHECK_INT(compact_now(h, later), ==, MVCC_OK);
  t2.queued = 0;
  watch_stream_drained(s2);
  watch_hub_poll(h);
  const char *got = events_of(&t, 1);
  int n = 0;
  for (const char *p = got; (p = strchr(p, '@')); p++) n++;
  CHECK_INT(n, ==, 7);
  /* watcher 2 fell behind a compaction: etcd's compacted response */
  REQUIRE(t2.n == 3);
  Etcdserverpb__WatchResponse *last = t2.r[2];
  CHECK_INT(last->watch_id, ==, 2);
  CHECK(last->canceled);
  CHECK_INT(last->compact_revision, ==, later);
  CHECK_INT(last->header->revision, ==, 0);
  CHECK_STR(last->cancel_reason, "");
  watch_stream_close(s2);
  tsink_free(&t2);
  /* a new watcher below the compact revision: created, then compacted */
  size_t before = t.n;
  treq_create(s, "c", NULL, first, 3, 0);
  watch_hub_poll(h);
  REQUIRE(t.n == before + 2);
  CHECK(t.r[before]->created);
  CHECK(t.r[before + 1]->canceled && t.r[before + 1]->compact_revision == later);
  /* at the compact revision itself: fine */
  treq_create(s, "c", NULL, later, 4, 0);
  watch_hub_poll(h);
  char want[32];
  snprintf(want, sizeof want, "c@%lld", (long long)later);
  CHECK_STR(events_of(&t, 4), want);
  watch_stream_close(s);
  watch_hub_stop(h);
  tsink_free(&t);
}

static void test_stuck_victims_cancelled_and_hard_limit(void) {
  watch_hub *h = hub_with(0, 0);
  tsink t = {0};
  watch_stream *s = watch_stream_open(h, &tsink_ops, &t);
  treq_create(s, "s", NULL, 0, 0, 0);
  treq_create(s, "s", NULL, 0, 0, 0);
  t.queued = 10 << 20;
  put_notify(h, "s", "1");
  watch_hub_poll(h);
  watch_hub_advance_clock(h, 4000);
  watch_hub_poll(h);
  CHECK_INT(t.n, ==, 2);
  watch_hub_advance_clock(h, 2000);
  watch_hub_poll(h);
  REQUIRE(t.n == 4);
  CHECK(t.r[2]->canceled && t.r[3]->canceled);
  CHECK(strstr(t.r[2]->cancel_reason, "did not read its events") != NULL);
  watch_stats st;
  watch_hub_stats(h, &st);
  CHECK_INT(st.watchers, ==, 0);
  /* requests from a client that never reads end the stream */
  t.queued = 100 << 20;
  treq_create(s, "s", NULL, 0, 0, 0);
  CHECK_INT(t.finished_code, ==, 8);
  CHECK_INT(t.n, ==, 4);
  watch_stream_close(s);
  watch_hub_stop(h);
  tsink_free(&t);
}

static void test_progress(void) {
  watch_hub *h = hub_with(0, 0);
  tsink t = {0};
  watch_stream *s = watch_stream_open(h, &tsink_ops, &t);
  treq_progress(s);
  CHECK_INT(t.n, ==, 0); /* no watchers: nothing (etcd 3.5) */
  treq_create(s, "p", NULL, 0, 0, TW_PROGRESS);
  treq_create(s, "q", NULL, 0, 0, 0);
  int64_t rev = trev(store);
  treq_progress(s);
  REQUIRE(t.n == 3);
  CHECK_INT(t.r[2]->watch_id, ==, -1);
  CHECK_INT(t.r[2]->header->revision, ==, rev);
  watch_hub_advance_clock(h, 1200); /* interval 1000 + up to 10% jitter */
  watch_hub_poll(h);
  REQUIRE(t.n == 4);
  CHECK_INT(t.r[3]->watch_id, ==, 0);
  CHECK(!t.r[3]->created && !t.r[3]->canceled && t.r[3]->n_events == 0);
  /* events since the last tick: the next notification is skipped */
  put_notify(h, "p", "1");
  watch_hub_poll(h);
  size_t n = t.n;
  watch_hub_advance_clock(h, 1200);
  watch_hub_poll(h);
  CHECK_INT(t.n, ==, n);
  watch_hub_advance_clock(h, 1200);
  watch_hub_poll(h);
  CHECK_INT(t.n, ==, n + 1);
  /* an unsynced watcher: progress requests are not answered (etcd 3.5) */
  treq_create(s, "q", NULL, 1, 0, 0);
  n = t.n;
  treq_progress(s);
  CHECK_INT(t.n, ==, n);
  watch_stream_close(s);
  watch_hub_stop(h);
  tsink_free(&t);
}

static void test_fragments(void) {
  watch_hub_options o = {.store = store, .fill_header = tfill_header, .manual = true, .fragment_bytes = 3000};
  watch_hub *h;
  REQUIRE(watch_hub_start(&o, &h) == 0);
  tsink t = {0};
  watch_stream *s = watch_stream_open(h, &tsink_ops, &t);
  treq_create(s, "f/", "f0", 0, 1, TW_FRAGMENT);
  treq_create(s, "f/", "f0", 0, 2, 0);
  char big[1001];
  memset(big, 'x', 1000);
  big[1000] = 0;
  mvcc_txn *w;
  mvcc_write_begin(store, &w);
  mvcc_rev_begin(w);
  for (int i = 0; i < 10; i++) {
    char k[8];
    snprintf(k, sizeof k, "f/%d", i);
    mvcc_put(w, (uint8_t *)k, strlen(k), (uint8_t *)big, 1000, 0, NULL);
  }
  int64_t rev = mvcc_rev_end(w);
  mvcc_write_commit(w);
  watch_hub_notify(h, rev);
  watch_hub_poll(h);
  size_t frags = 0, evs = 0;
  for (size_t i = 2; i < t.n; i++) {
    Etcdserverpb__WatchResponse *r = t.r[i];
    if (r->watch_id == 2) {
      CHECK_INT(r->n_events, ==, 10);
      CHECK(!r->fragment);
      continue;
    }
    frags++;
    evs += r->n_events;
    CHECK(r->fragment == (evs < 10));
    CHECK(etcdserverpb__watch_response__get_packed_size(r) < 3000 || r->n_events == 1);
  }
  CHECK_INT(evs, ==, 10);
  CHECK(frags >= 4);
  watch_stream_close(s);
  watch_hub_stop(h);
  tsink_free(&t);
}

/* ---------------------------------------------------------------- replaced store */

/* The store's image, with more changes made to it elsewhere (what a
 * snapshot from the leader would hold), in a file next to the store.
 * compact_at_end: the other member compacted past those changes. */
static void make_newer_image(const char *path, int changes, bool compact_at_end) {
  char *other = tmpdir_new(), data[4200];
  snprintf(data, sizeof data, "%s/data.mdb", other);
  int fd = open(data, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || mvcc_image_write(store, fd, NULL) != MVCC_OK) abort();
  close(fd);
  mvcc_store *b = topen_dir(other);
  for (int i = 0; i < changes; i++) tput(b, "r", "newer", 0);
  if (compact_at_end) {
    tput(b, "other", "x", 0);
    mvcc_txn *w;
    if (mvcc_write_begin(b, &w) != MVCC_OK) abort();
    mvcc_compact(w, trev(b));
    mvcc_write_commit(w);
  }
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || mvcc_image_write(b, fd, NULL) != MVCC_OK) abort();
  close(fd);
  mvcc_close(b);
  tmpdir_remove(other);
}

static void replace_store(watch_hub *h, const char *img) {
  watch_hub_before_replace(h);
  CHECK_INT(mvcc_replace(store, img), ==, MVCC_OK);
  watch_hub_after_replace(h);
}

static void test_store_replaced(void) {
  watch_hub *h = hub_with(0, 0);
  tsink t = {0};
  watch_stream *s = watch_stream_open(h, &tsink_ops, &t);
  treq_create(s, "r", NULL, 0, 1, 0);
  watch_hub_poll(h);
  int64_t r1 = put_notify(h, "r", "1");
  watch_hub_poll(h);
  /* Undelivered history and the snapshot the hub keeps for a compaction:
   * it must not hold the replacement back, and nothing is lost. */
  int64_t r2 = put_notify(h, "r", "2");
  watch_hub_before_compaction(h);
  char img[4200];
  snprintf(img, sizeof img, "%s/incoming.img", dir);
  make_newer_image(img, 2, false);
  replace_store(h, img);
  watch_hub_poll(h);
  watch_hub_poll(h);
  char want[128];
  snprintf(want, sizeof want, "r@%lld r@%lld r@%lld r@%lld", (long long)r1, (long long)r2, (long long)r2 + 1,
           (long long)r2 + 2);
  CHECK_STR(events_of(&t, 1), want);
  /* Live again on the new store. */
  int64_t r5 = put_notify(h, "r", "5");
  watch_hub_poll(h);
  snprintf(want + strlen(want), sizeof want - strlen(want), " r@%lld", (long long)r5);
  CHECK_STR(events_of(&t, 1), want);
  /* The new store no longer has what the watcher has not seen: etcd's
   * compacted response. */
  size_t before = t.n;
  make_newer_image(img, 2, true);
  replace_store(h, img);
  watch_hub_poll(h);
  REQUIRE(t.n == before + 1);
  CHECK(t.r[before]->canceled);
  CHECK_INT(t.r[before]->compact_revision, ==, trev(store));
  watch_stream_close(s);
  watch_hub_stop(h);
  tsink_free(&t);
}

int main(void) {
  log_set_level(LOG_ERROR);
  store = topen(&dir);
  RUN(test_index_matches_brute_force);
  RUN(test_response_encoding);
  RUN(test_live_delivery_and_headers);
  RUN(test_chunked_grouped_catch_up);
  RUN(test_victim_recovers_after_drain);
  RUN(test_compaction_cancels_only_those_behind);
  RUN(test_stuck_victims_cancelled_and_hard_limit);
  RUN(test_progress);
  RUN(test_fragments);
  RUN(test_store_replaced);
  mvcc_close(store);
  tmpdir_remove(dir);
  return testing_done();
}
