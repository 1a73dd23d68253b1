/* The hub: one thread that reads each new stretch of history once and
 * hands it to the watchers it concerns, catches up watchers that are
 * behind, and sends progress notifications.
 *
 * Revisions: `notified` is what the apply thread has committed; `delivered`
 * (D) is what every synced watcher has received. A synced watcher's
 * min_rev may be above D+1 (created "now" while the hub was a little
 * behind): delivery skips what is below a watcher's min_rev, so each event
 * reaches each watcher exactly once whatever the interleaving. */
#include "base.h"
#include "watch_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
  DEFAULT_PROGRESS_MS = 10 * 60 * 1000,
  MIN_PROGRESS_MS = 100, /* etcd's minWatchProgressInterval */
  DEFAULT_FRAGMENT_BYTES = (3 * 512 + 512) * 1024, /* 1.5 MiB + 512 KiB, as etcd */
  DEFAULT_QUEUE_LIMIT = 1 << 20,
  DEFAULT_HARD_LIMIT = 64 << 20,
  DEFAULT_VICTIM_TIMEOUT_MS = 5 * 60 * 1000,
  DEFAULT_CHUNK_REVISIONS = 1000, /* etcd's watchBatchMaxRevs */
  DEFAULT_SYNC_WATCHERS = 512,    /* etcd's maxWatchersPerSync */
  CHUNK_CHANGES = 4096,           /* changes per read, beyond one revision */
  PEND_FLUSH = 1 << 16,           /* pending entries before a mid-read flush */
  INLINE_WATCHERS = 64,           /* at most this many live watchers: see deliver_inline */
};

int64_t hub_now_ms(watch_hub *h) { return time_mono_ms() + h->clock_offset_ms; }

void hub_wake(watch_hub *h) {
  pthread_mutex_lock(&h->wake_mu);
  h->wake = true;
  pthread_cond_signal(&h->wake_cv);
  pthread_mutex_unlock(&h->wake_mu);
}

void hub_fill_header(watch_hub *h, Etcdserverpb__ResponseHeader *hdr, int64_t rev) {
  if (h->opt.fill_header) h->opt.fill_header(h->opt.header_ctx, hdr);
  hdr->revision = rev;
}

int64_t hub_current_rev(watch_hub *h) {
  int64_t d = atomic_load(&h->delivered), rev = d;
  mvcc_txn *t;
  if (mvcc_read_begin(h->opt.store, &t) == MVCC_OK) {
    rev = mvcc_rev(t);
    mvcc_txn_end(t);
  }
  return rev > d ? rev : d;
}

/* ---------------------------------------------------------------- places */

static void list_push(watcher **head, watcher **tail, watcher *w) {
  w->qnext = NULL;
  w->qprev = tail ? *tail : NULL;
  if (tail) {
    if (*tail) (*tail)->qnext = w; else *head = w;
    *tail = w;
  } else {
    w->qnext = *head;
    if (*head) (*head)->qprev = w;
    *head = w;
  }
}

static void list_unlink(watcher **head, watcher **tail, watcher *w) {
  if (w->qprev) w->qprev->qnext = w->qnext; else *head = w->qnext;
  if (w->qnext) w->qnext->qprev = w->qprev;
  else if (tail) *tail = w->qprev;
  w->qprev = w->qnext = NULL;
}

void hub_add_synced(watch_hub *h, watcher *w) {
  w->state = WS_SYNCED;
  widx_add(&h->synced, w);
}

void hub_add_unsynced(watch_hub *h, watcher *w) {
  w->state = WS_UNSYNCED;
  list_push(&h->unsynced_head, &h->unsynced_tail, w);
  h->nunsynced++;
}

void hub_detach(watch_hub *h, watcher *w) {
  switch (w->state) {
    case WS_SYNCED:
      widx_del(&h->synced, w);
      break;
    case WS_UNSYNCED:
      list_unlink(&h->unsynced_head, &h->unsynced_tail, w);
      h->nunsynced--;
      break;
    case WS_VICTIM:
      list_unlink(&w->stream->victims, NULL, w);
      w->stream->nvictims--;
      h->nvictims--;
      break;
    default: /* WS_CATCHUP is only seen by the hub thread, which detaches it itself */
      break;
  }
  w->state = WS_DEAD;
}

void hub_make_victim(watch_hub *h, watcher *w) {
  watch_stream *s = w->stream;
  if (w->state != WS_CATCHUP) hub_detach(h, w);
  w->state = WS_VICTIM;
  list_push(&s->victims, NULL, w);
  if (s->nvictims++ == 0) s->congested_ms = hub_now_ms(h);
  h->nvictims++;
}

void hub_send_compacted(watch_hub *h, watcher *w, int64_t compact_rev) {
  /* etcd: canceled, compact_revision set, header revision 0, no reason
   * (clients derive "required revision has been compacted" from it). The
   * ID stays taken until the client cancels it or the stream ends. */
  respond_plain(h, w->stream, w->id, 0, false, true, compact_rev, NULL);
  w->state = WS_DEAD;
}

/* ---------------------------------------------------------------- reading */

typedef struct {
  watch_hub *h;
  int64_t last_main, nrevs;
  bool stopped;
} reader;

static int collect(void *arg, const mvcc_change *c) {
  reader *r = arg;
  watch_hub *h = r->h;
  if (c->main != r->last_main) {
    if (r->nrevs >= h->max_revs || h->nchg >= CHUNK_CHANGES) {
      r->stopped = true;
      return 1;
    }
    r->nrevs++;
    r->last_main = c->main;
  }
  if (h->nchg == h->chg_cap) {
    h->chg_cap = h->chg_cap ? h->chg_cap * 2 : 256;
    h->chg = xrealloc(h->chg, h->chg_cap * sizeof *h->chg);
  }
  wchange *wc = &h->chg[h->nchg++];
  memset(wc, 0, sizeof *wc);
  wc->c = *c;
  return 0;
}

/* Reads whole revisions from [from, to], bounded; *end: the last one read. */
static int read_chunk(watch_hub *h, mvcc_txn *t, int64_t from, int64_t to, int64_t *end) {
  h->nchg = 0;
  reader r = {.h = h};
  int rc = mvcc_changes(t, from, to, collect, &r);
  if (rc) return rc;
  *end = r.stopped ? r.last_main : to;
  return 0;
}

/* ---------------------------------------------------------------- delivery */

typedef struct {
  watch_hub *h;
  uint32_t ci;
} match_ctx;

/* A new pending entry for change ci, linked after *last (or first). */
static uint32_t pend_add(watch_hub *h, uint32_t ci, uint32_t *first, uint32_t *last) {
  if (h->npend == h->pend_cap) {
    h->pend_cap = h->pend_cap ? h->pend_cap * 2 : 1024;
    h->pend = xrealloc(h->pend, h->pend_cap * sizeof *h->pend);
  }
  uint32_t p = (uint32_t)h->npend++;
  h->pend[p] = (pend){ci, PEND_NONE};
  if (*first == PEND_NONE) *first = p;
  else h->pend[*last].next = p;
  *last = p;
  return p;
}

/* A range watcher holds the change's key: filtered here, once. */
static void on_match(void *arg, watcher *w) {
  match_ctx *m = arg;
  watch_hub *h = m->h;
  const mvcc_change *c = &h->chg[m->ci].c;
  if (c->main < w->min_rev) return; /* created after it, or already sent */
  if (w->flags & (c->is_delete ? WF_NODELETE : WF_NOPUT)) return;
  if (w->pfirst == PEND_NONE) {
    w->tnext = h->touched;
    h->touched = w;
  }
  pend_add(h, m->ci, &w->pfirst, &w->plast);
}

/* A key group's key changed: noted once for all its watchers, which
 * respond_events filters one by one. */
static void on_group(void *arg, wgroup *g) {
  match_ctx *m = arg;
  watch_hub *h = m->h;
  if (g->pfirst == PEND_NONE) {
    g->tnext = h->touched_groups;
    h->touched_groups = g;
  }
  pend_add(h, m->ci, &g->pfirst, &g->plast);
}

/* Sends w what it takes of the list at first, up to revision upto. A
 * watcher whose stream is congested becomes a victim, remembering the
 * first revision it did not get. */
static void deliver_to(watch_hub *h, widx *ix, watcher *w, uint32_t first, int64_t upto, evlist shared[2]) {
  int64_t stuck = respond_events(h, w, first, upto, shared);
  if (stuck) {
    w->min_rev = stuck;
    if (w->state == WS_CATCHUP) widx_del(ix, w);
    hub_make_victim(h, w);
  } else if (w->min_rev <= upto) {
    w->min_rev = upto + 1;
  }
}

/* Sends what the touched groups and range watchers have pending, up to
 * revision upto. */
static void flush(watch_hub *h, widx *ix, int64_t upto) {
  for (wgroup *g = h->touched_groups, *gnext; g; g = gnext) {
    gnext = g->tnext;
    evlist shared[2] = {{0}};
    /* deliver_to may take w out of the group (a victim), never another */
    for (watcher *w = g->first, *next; w; w = next) {
      next = w->ix.h.next;
      deliver_to(h, ix, w, g->pfirst, upto, shared);
    }
    g->pfirst = g->plast = PEND_NONE;
    g->tnext = NULL;
    widx_group_done(ix, g); /* if its watchers left meanwhile */
  }
  h->touched_groups = NULL;
  for (watcher *w = h->touched, *next; w; w = next) {
    next = w->tnext;
    uint32_t first = w->pfirst;
    w->pfirst = w->plast = PEND_NONE;
    w->tnext = NULL;
    deliver_to(h, ix, w, first, upto, NULL);
  }
  h->touched = NULL;
  h->npend = 0;
}

/* Hands the changes read (h->chg) to the watchers of ix. */
static void dispatch(watch_hub *h, widx *ix, int64_t end) {
  match_ctx m = {.h = h};
  for (size_t i = 0; i < h->nchg; i++) {
    const mvcc_change *c = &h->chg[i].c;
    if (i > 0 && c->main != h->chg[i - 1].c.main && h->npend >= PEND_FLUSH) flush(h, ix, h->chg[i - 1].c.main);
    m.ci = (uint32_t)i;
    widx_match(ix, c->kv.key, c->kv.key_len, on_group, on_match, &m);
  }
  flush(h, ix, end);
}

static void end_step(watch_hub *h) {
  h->nchg = 0;
  h->txn = NULL;
  h->hdr_rev = 0; /* the term may change before the next step */
  arena_reset(h->mem);
}

/* The oldest snapshot still needed above revision d, if any. */
static snapshot *first_snapshot(watch_hub *h, int64_t d) {
  pthread_mutex_lock(&h->snap_mu);
  while (h->snaps && h->snaps->rev <= d) {
    snapshot *sn = h->snaps;
    h->snaps = sn->next;
    if (!h->snaps) h->snaps_tail = &h->snaps;
    mvcc_txn_end(sn->txn);
    free(sn);
  }
  snapshot *sn = h->snaps;
  pthread_mutex_unlock(&h->snap_mu);
  return sn;
}

static void check_deferred_progress(watch_hub *h);

/* Compaction overtook delivery (it cannot, given the snapshots; this is
 * the safe answer if it ever does): every synced watcher goes through
 * catch-up, which cancels the ones that lost events, as etcd would. */
typedef struct {
  watcher **all;
  size_t n;
} collected;

static void collect_watcher(void *arg, watcher *w) {
  collected *c = arg;
  c->all[c->n++] = w;
}

static void resync_all(watch_hub *h, int64_t d) {
  collected c = {xmalloc((widx_count(&h->synced) + 1) * sizeof *c.all), 0};
  widx_each(&h->synced, collect_watcher, &c);
  for (size_t i = 0; i < c.n; i++) {
    watcher *w = c.all[i];
    widx_del(&h->synced, w);
    if (w->min_rev < d + 1) w->min_rev = d + 1;
    hub_add_unsynced(h, w);
  }
  free(c.all);
}

/* Delivers one bounded chunk of (D, n] to the synced watchers (mu held).
 * Returns false on a storage error (the next notification retries). */
static bool deliver_chunk(watch_hub *h, int64_t n) {
  int64_t d = atomic_load(&h->delivered);
  snapshot *sn = first_snapshot(h, d);
  int64_t to = sn ? sn->rev : n, end = to;
  if (widx_count(&h->synced) > 0) {
    mvcc_txn *t = sn ? sn->txn : NULL;
    int rc = t ? MVCC_OK : mvcc_read_begin(h->opt.store, &t);
    if (rc == MVCC_OK) {
      h->txn = t;
      rc = read_chunk(h, t, d + 1, to, &end);
      if (rc == MVCC_OK) dispatch(h, &h->synced, end);
      end_step(h);
      if (!sn) mvcc_txn_end(t);
    }
    if (rc == MVCC_ECOMPACTED) {
      log_warn("watch: compaction overtook delivery at revision %" PRId64 "; watchers resync", d + 1);
      resync_all(h, d);
      end = to;
    } else if (rc != MVCC_OK) {
      log_error("watch: cannot read history from revision %" PRId64 ": %s", d + 1, mvcc_strerror(rc));
      return false;
    }
  }
  atomic_store(&h->delivered, end);
  check_deferred_progress(h);
  return true;
}

/* Live delivery, one bounded chunk per lock hold. */
static bool deliver(watch_hub *h) {
  bool did = false;
  for (;;) {
    int64_t n = atomic_load(&h->notified);
    pthread_mutex_lock(&h->mu);
    first_snapshot(h, atomic_load(&h->delivered)); /* ends those no longer needed */
    if (atomic_load(&h->delivered) >= n) {
      pthread_mutex_unlock(&h->mu);
      break;
    }
    did = true;
    bool ok = deliver_chunk(h, n);
    pthread_mutex_unlock(&h->mu);
    if (!ok) break;
  }
  return did;
}

/* The apply thread's shortcut: with few live watchers and the hub idle,
 * delivering the batch right away costs less than waking the hub thread and
 * puts the events on the wire before the writers' replies, as etcd does.
 * Never waits: if the hub is busy, or there is more to do than a few
 * watchers' worth, the hub thread does it. */
static bool deliver_inline(watch_hub *h, int64_t n) {
  if (h->opt.manual || pthread_mutex_trylock(&h->mu) != 0) return false;
  bool done = false;
  pthread_mutex_lock(&h->snap_mu);
  bool snaps = h->snaps != NULL;
  pthread_mutex_unlock(&h->snap_mu);
  if (!snaps && widx_count(&h->synced) <= INLINE_WATCHERS && deliver_chunk(h, n))
    done = atomic_load(&h->delivered) >= n;
  pthread_mutex_unlock(&h->mu);
  return done;
}

/* ---------------------------------------------------------------- catch-up */

/* One pass over up to max_watchers_per_sync unsynced watchers: history is
 * read once for the whole group, one chunk. Returns true if it did work. */
static bool catch_up(watch_hub *h) {
  pthread_mutex_lock(&h->mu);
  if (!h->unsynced_head) {
    pthread_mutex_unlock(&h->mu);
    return false;
  }
  int64_t d = atomic_load(&h->delivered);
  mvcc_txn *t;
  if (mvcc_read_begin(h->opt.store, &t) != MVCC_OK) {
    pthread_mutex_unlock(&h->mu);
    return false;
  }
  int64_t compact = mvcc_compact_rev(t);
  widx group;
  widx_init(&group);
  watcher **members = xmalloc(h->max_watchers_per_sync * sizeof *members);
  size_t count = 0;
  int64_t from = INT64_MAX;
  while (h->unsynced_head && count < h->max_watchers_per_sync) {
    watcher *w = h->unsynced_head;
    list_unlink(&h->unsynced_head, &h->unsynced_tail, w);
    h->nunsynced--;
    if (w->min_rev < compact) {
      hub_send_compacted(h, w, compact);
    } else if (w->min_rev > d) {
      hub_add_synced(h, w); /* nothing to catch up on */
    } else {
      w->state = WS_CATCHUP;
      widx_add(&group, w);
      members[count++] = w;
      if (w->min_rev < from) from = w->min_rev;
    }
  }
  if (count) {
    h->txn = t;
    int64_t end = d;
    int rc = read_chunk(h, t, from, d, &end);
    if (rc == MVCC_OK) {
      dispatch(h, &group, end);
    } else {
      log_error("watch: cannot read history from revision %" PRId64 ": %s", from, mvcc_strerror(rc));
      end = from - 1; /* retry later */
    }
    end_step(h);
    for (size_t i = 0; i < count; i++) {
      watcher *w = members[i];
      if (w->state != WS_CATCHUP) continue; /* became a victim */
      widx_del(&group, w);
      if (w->min_rev <= end) w->min_rev = end + 1;
      if (w->min_rev > d) hub_add_synced(h, w); else hub_add_unsynced(h, w);
    }
  }
  free(members);
  widx_free(&group);
  mvcc_txn_end(t);
  check_deferred_progress(h);
  pthread_mutex_unlock(&h->mu);
  return true;
}

/* ---------------------------------------------------------------- timers */

/* Sends deferred progress responses whose streams are now ready. */
static void check_deferred_progress(watch_hub *h) {
  if (!h->npending_progress) return;
  for (watch_stream *s = h->streams; s; s = s->next)
    if (s->progress_pending) stream_progress_retry(h, s);
}

static void cancel_stuck_victims(watch_hub *h, watch_stream *s) {
  char reason[160];
  snprintf(reason, sizeof reason, "synod: watcher canceled: the client did not read its events for %" PRId64 " ms",
           h->opt.victim_timeout_ms);
  int64_t rev = hub_current_rev(h);
  while (s->victims) {
    watcher *w = s->victims;
    int64_t id = w->id;
    stream_drop_watcher(h, w);
    respond_plain(h, s, id, rev, false, true, 0, reason);
  }
}

static int64_t timers(watch_hub *h) {
  int64_t now = hub_now_ms(h);
  pthread_mutex_lock(&h->mu);
  if (now >= h->next_progress_ms) {
    int64_t next = INT64_MAX;
    for (watch_stream *s = h->streams; s; s = s->next) {
      if (!s->nprogress) continue;
      if (s->next_tick_ms <= now) stream_tick(h, s, now);
      if (s->next_tick_ms < next) next = s->next_tick_ms;
    }
    h->next_progress_ms = next;
  }
  if (now >= h->next_housekeeping_ms) {
    for (watch_stream *s = h->streams; s; s = s->next)
      if (s->nvictims && now - s->congested_ms >= h->opt.victim_timeout_ms) cancel_stuck_victims(h, s);
    int64_t every = h->opt.victim_timeout_ms / 4;
    h->next_housekeeping_ms = now + (every < 10 ? 10 : every > 1000 ? 1000 : every);
  }
  int64_t due = h->next_progress_ms < h->next_housekeeping_ms ? h->next_progress_ms : h->next_housekeeping_ms;
  pthread_mutex_unlock(&h->mu);
  return due;
}

/* ---------------------------------------------------------------- thread */

/* One round of everything. *due: when timers next need attention. Returns
 * true if catch-up work remains (the caller goes round again at once). */
static bool step(watch_hub *h, bool *did, int64_t *due) {
  bool d1 = deliver(h);
  bool d2 = catch_up(h);
  *due = timers(h);
  if (did) *did = d1 || d2;
  pthread_mutex_lock(&h->mu);
  bool more = h->unsynced_head != NULL;
  pthread_mutex_unlock(&h->mu);
  return more;
}

static void *hub_main(void *arg) {
  watch_hub *h = arg;
  pthread_setname_np(pthread_self(), "synod-watch");
  for (;;) {
    int64_t due;
    bool more = step(h, NULL, &due);
    pthread_mutex_lock(&h->wake_mu);
    if (!more && !h->wake && !h->stopping && atomic_load(&h->notified) == atomic_load(&h->delivered)) {
      int64_t wait_ms = due - hub_now_ms(h);
      if (wait_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (wait_ms % 1000) * 1000000;
        ts.tv_sec += wait_ms / 1000 + ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&h->wake_cv, &h->wake_mu, &ts);
      }
    }
    h->wake = false;
    bool stop = h->stopping;
    pthread_mutex_unlock(&h->wake_mu);
    if (stop) break;
  }
  return NULL;
}

bool watch_hub_poll(watch_hub *h) {
  bool any = false;
  for (int i = 0; i < 1000000; i++) {
    bool did;
    int64_t due;
    bool more = step(h, &did, &due);
    any = any || did;
    if (!more && !did) break;
  }
  return any;
}

void watch_hub_advance_clock(watch_hub *h, int64_t ms) {
  pthread_mutex_lock(&h->mu);
  h->clock_offset_ms += ms;
  pthread_mutex_unlock(&h->mu);
  hub_wake(h);
}

/* ---------------------------------------------------------------- public */

void watch_hub_notify(watch_hub *h, int64_t rev) {
  if (rev <= atomic_load(&h->notified)) return;
  atomic_store(&h->notified, rev);
  if (!deliver_inline(h, rev)) hub_wake(h);
}

void watch_hub_before_compaction(watch_hub *h) {
  int64_t n = atomic_load(&h->notified);
  if (atomic_load(&h->delivered) >= n) return;
  /* The apply thread's view of everything committed: the hub reads what
   * it has not delivered yet from here, untouched by the compaction. */
  mvcc_txn *t;
  if (mvcc_read_begin(h->opt.store, &t) != MVCC_OK) return;
  snapshot *sn = xmalloc(sizeof *sn);
  sn->next = NULL;
  sn->txn = t;
  sn->rev = mvcc_rev(t);
  pthread_mutex_lock(&h->snap_mu);
  *h->snaps_tail = sn;
  h->snaps_tail = &sn->next;
  pthread_mutex_unlock(&h->snap_mu);
}

void watch_hub_before_replace(watch_hub *h) {
  /* The hub's own read snapshots would hold the replacement back forever;
   * without them, what was not delivered is read from the new store. */
  pthread_mutex_lock(&h->mu);
  first_snapshot(h, INT64_MAX);
  pthread_mutex_unlock(&h->mu);
}

void watch_hub_after_replace(watch_hub *h) {
  mvcc_txn *t;
  int64_t rev = 0;
  if (mvcc_read_begin(h->opt.store, &t) == MVCC_OK) {
    rev = mvcc_rev(t);
    mvcc_txn_end(t);
  }
  pthread_mutex_lock(&h->mu);
  /* Every live watcher catches up from the new store: the events it has
   * not seen come from there, or it gets etcd's compacted response if the
   * new store no longer has them (etcd's watchableStore.Restore). */
  resync_all(h, atomic_load(&h->delivered));
  if (rev > atomic_load(&h->notified)) atomic_store(&h->notified, rev);
  if (rev > atomic_load(&h->delivered)) atomic_store(&h->delivered, rev);
  pthread_mutex_unlock(&h->mu);
  hub_wake(h);
}

int watch_hub_start(const watch_hub_options *opt, watch_hub **out) {
  if (!opt->store || opt->progress_notify_ms < 0 || opt->victim_timeout_ms < 0 || opt->chunk_revisions < 0 ||
      opt->sync_watchers < 0)
    return -1;
  mvcc_txn *t;
  if (mvcc_read_begin(opt->store, &t) != MVCC_OK) return -1;
  int64_t rev = mvcc_rev(t);
  mvcc_txn_end(t);

  watch_hub *h = xcalloc(1, sizeof *h);
  h->opt = *opt;
  if (!h->opt.progress_notify_ms) h->opt.progress_notify_ms = DEFAULT_PROGRESS_MS;
  if (h->opt.progress_notify_ms < MIN_PROGRESS_MS) {
    log_warn("adjusting watch progress notify interval to the minimum, %d ms", MIN_PROGRESS_MS);
    h->opt.progress_notify_ms = MIN_PROGRESS_MS;
  }
  if (!h->opt.fragment_bytes) h->opt.fragment_bytes = DEFAULT_FRAGMENT_BYTES;
  if (!h->opt.stream_queue_limit) h->opt.stream_queue_limit = DEFAULT_QUEUE_LIMIT;
  if (!h->opt.stream_hard_limit) h->opt.stream_hard_limit = DEFAULT_HARD_LIMIT;
  if (!h->opt.victim_timeout_ms) h->opt.victim_timeout_ms = DEFAULT_VICTIM_TIMEOUT_MS;
  h->max_revs = opt->chunk_revisions ? opt->chunk_revisions : DEFAULT_CHUNK_REVISIONS;
  h->max_watchers_per_sync = opt->sync_watchers ? (size_t)opt->sync_watchers : DEFAULT_SYNC_WATCHERS;
  pthread_mutex_init(&h->mu, NULL);
  pthread_mutex_init(&h->wake_mu, NULL);
  pthread_mutex_init(&h->snap_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&h->wake_cv, &ca);
  pthread_condattr_destroy(&ca);
  h->snaps_tail = &h->snaps;
  atomic_init(&h->notified, rev);
  atomic_init(&h->delivered, rev);
  widx_init(&h->synced);
  h->mem = arena_new();
  h->rng = (uint64_t)time_mono_ns() | 1;
  h->next_progress_ms = INT64_MAX;
  h->next_housekeeping_ms = hub_now_ms(h) + 1000;
  if (!opt->manual) {
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) log_fatal("cannot start the watch thread");
    h->has_thread = true;
  }
  *out = h;
  return 0;
}

void watch_hub_stop(watch_hub *h) {
  if (!h) return;
  pthread_mutex_lock(&h->wake_mu);
  h->stopping = true;
  pthread_cond_signal(&h->wake_cv);
  pthread_mutex_unlock(&h->wake_mu);
  if (h->has_thread) pthread_join(h->thread, NULL);
  if (h->streams) log_error("watch: hub stopped with %zu streams open", h->nstreams);
  first_snapshot(h, INT64_MAX); /* ends every snapshot */
  widx_free(&h->synced);
  free(h->chg);
  free(h->pend);
  arena_free(h->mem);
  pthread_mutex_destroy(&h->mu);
  pthread_mutex_destroy(&h->wake_mu);
  pthread_mutex_destroy(&h->snap_mu);
  pthread_cond_destroy(&h->wake_cv);
  free(h);
}

void watch_hub_stats(watch_hub *h, watch_stats *out) {
  pthread_mutex_lock(&h->mu);
  out->streams = h->nstreams;
  out->watchers = h->nwatchers;
  out->synced = widx_count(&h->synced);
  out->unsynced = h->nunsynced;
  out->victims = h->nvictims;
  out->delivered_rev = atomic_load(&h->delivered);
  out->events_sent = h->events_sent;
  out->responses_sent = h->responses_sent;
  pthread_mutex_unlock(&h->mu);
}
