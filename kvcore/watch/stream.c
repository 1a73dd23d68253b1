/* One Watch call: etcd's WatchRequest handling (create, cancel, progress),
 * the stream's watch IDs, and its progress ticker.
 *
 * Responses to requests are queued under the hub lock before the watcher
 * is registered (or after it is removed), so a client always sees
 * "created" before the watcher's first event and nothing after "canceled". */
#include "base.h"
#include "watch_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* etcd's texts (mvcc/watcher.go, rpctypes). */
#define ERR_RANGE_EMPTY "mvcc: watcher range is empty"
#define ERR_DUPLICATE_ID "mvcc: duplicate watch ID provided on the WatchStream"
#define ERR_COMPACTED "etcdserver: mvcc: required revision has been compacted"
#define ERR_NOT_READING "synod: watch stream ended: the client does not read its responses"

enum { INVALID_WATCH_ID = -1, AUTO_WATCH_ID = 0, GRPC_RESOURCE_EXHAUSTED = 8 };

/* ---------------------------------------------------------------- IDs */

static size_t id_slot(const watch_stream *s, int64_t id) {
  return (size_t)(((uint64_t)id * 0x9e3779b97f4a7c15ull) >> 32) & (s->nbuckets - 1);
}

static watcher *find(const watch_stream *s, int64_t id) {
  if (!s->nbuckets) return NULL;
  for (watcher *w = s->ids[id_slot(s, id)]; w; w = w->idnext)
    if (w->id == id) return w;
  return NULL;
}

static void ids_add(watch_stream *s, watcher *w) {
  if (s->count >= s->nbuckets) {
    size_t old = s->nbuckets;
    watcher **ob = s->ids;
    s->nbuckets = old ? old * 2 : 8;
    s->ids = xcalloc(s->nbuckets, sizeof *s->ids);
    for (size_t i = 0; i < old; i++) {
      for (watcher *x = ob[i], *next; x; x = next) {
        next = x->idnext;
        size_t k = id_slot(s, x->id);
        x->idnext = s->ids[k];
        s->ids[k] = x;
      }
    }
    free(ob);
  }
  size_t k = id_slot(s, w->id);
  w->idnext = s->ids[k];
  s->ids[k] = w;
  s->count++;
}

static void ids_del(watch_stream *s, watcher *w) {
  watcher **pp = &s->ids[id_slot(s, w->id)];
  while (*pp != w) pp = &(*pp)->idnext;
  *pp = w->idnext;
  s->count--;
}

void stream_drop_watcher(watch_hub *h, watcher *w) {
  watch_stream *s = w->stream;
  hub_detach(h, w);
  ids_del(s, w);
  if (w->flags & WF_PROGRESS) s->nprogress--;
  h->nwatchers--;
  free(w);
}

/* ---------------------------------------------------------------- progress */

/* Is w synced and at or past the revisions it promised? etcd sends
 * progress only then (progressIfSync). */
static bool at_progress(const watcher *w, int64_t d) { return w->state == WS_SYNCED && d >= w->start_rev; }

void stream_tick(watch_hub *h, watch_stream *s, int64_t now) {
  int64_t d = atomic_load(&h->delivered);
  bool congested = stream_congested(h, s);
  for (size_t b = 0; b < s->nbuckets; b++) {
    for (watcher *w = s->ids[b]; w; w = w->idnext) {
      if (!(w->flags & WF_PROGRESS)) continue;
      /* etcd: a watcher that got events since the last tick is skipped. A
       * watcher created while the hub was behind waits until the hub has
       * passed its creation revision, so progress never goes back. */
      if (!(w->flags & WF_SENT) && at_progress(w, d) && w->min_rev - 1 <= d && !congested)
        respond_plain(h, s, w->id, d, false, false, 0, NULL);
      w->flags &= (uint8_t)~WF_SENT;
    }
  }
  s->next_tick_ms += s->interval_ms;
  if (s->next_tick_ms <= now) s->next_tick_ms = now + s->interval_ms;
}

/* etcd 3.5 (RequestProgressAll): one response with watch ID -1 and the
 * current revision if every watcher of the stream is synced; nothing
 * otherwise, nor for a stream without watchers. */
static void progress_request(watch_hub *h, watch_stream *s) {
  int64_t d = atomic_load(&h->delivered);
  bool behind = false;
  for (size_t b = 0; b < s->nbuckets; b++) {
    for (watcher *w = s->ids[b]; w; w = w->idnext) {
      if (!at_progress(w, d)) return;
      if (w->min_rev - 1 > d) behind = true;
    }
  }
  if (!s->count) return;
  if (behind) {
    /* Only the hub's few milliseconds of lag: answer once it has passed. */
    if (!s->progress_pending) h->npending_progress++;
    s->progress_pending = true;
    return;
  }
  respond_plain(h, s, INVALID_WATCH_ID, d, false, false, 0, NULL);
}

void stream_progress_retry(watch_hub *h, watch_stream *s) {
  if (s->progress_pending) h->npending_progress--;
  s->progress_pending = false;
  progress_request(h, s);
}

/* ---------------------------------------------------------------- requests */

static void create(watch_hub *h, watch_stream *s, const Etcdserverpb__WatchCreateRequest *c) {
  int64_t rev = hub_current_rev(h);
  if (c->start_revision < 0) {
    respond_plain(h, s, INVALID_WATCH_ID, rev, true, true, 0, ERR_COMPACTED);
    return;
  }
  static const uint8_t zero = 0;
  const uint8_t *key = c->key.len ? c->key.data : &zero; /* etcd: "\0", the smallest key */
  size_t key_len = c->key.len ? c->key.len : 1;
  uint8_t kind = W_KEY;
  if (c->range_end.len == 1 && c->range_end.data[0] == 0) kind = W_FROM;
  else if (c->range_end.len) kind = W_RANGE;
  if (kind == W_RANGE && key_cmp(key, key_len, c->range_end.data, c->range_end.len) >= 0) {
    respond_plain(h, s, INVALID_WATCH_ID, rev, true, true, 0, ERR_RANGE_EMPTY);
    return;
  }
  int64_t id = c->watch_id;
  if (id == AUTO_WATCH_ID) {
    while (find(s, s->next_id)) s->next_id++;
    id = s->next_id++;
  } else if (find(s, id)) {
    respond_plain(h, s, INVALID_WATCH_ID, rev, true, true, 0, ERR_DUPLICATE_ID);
    return;
  }
  size_t end_len = kind == W_RANGE ? c->range_end.len : 0;
  watcher *w = xcalloc(1, sizeof *w + key_len + end_len);
  w->id = id;
  w->stream = s;
  w->kind = kind;
  w->key_len = (uint32_t)key_len;
  w->end_len = (uint32_t)end_len;
  memcpy(w->key, key, key_len);
  if (end_len) memcpy(w->key + key_len, c->range_end.data, end_len);
  if (kind == W_KEY) w->hash = widx_hash(key, key_len);
  w->pfirst = w->plast = PEND_NONE;
  if (c->prev_kv) w->flags |= WF_PREV_KV;
  if (c->fragment) w->flags |= WF_FRAGMENT;
  if (c->progress_notify) w->flags |= WF_PROGRESS;
  for (size_t i = 0; i < c->n_filters; i++) {
    if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT) w->flags |= WF_NOPUT;
    if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE) w->flags |= WF_NODELETE;
  }
  w->start_rev = c->start_revision;

  respond_plain(h, s, id, rev, true, false, 0, NULL);
  ids_add(s, w);
  h->nwatchers++;
  if (w->start_rev == 0 || w->start_rev > rev) {
    /* etcd: from "now", or from a future revision: live at once */
    w->min_rev = w->start_rev ? w->start_rev : rev + 1;
    hub_add_synced(h, w);
  } else {
    w->min_rev = w->start_rev;
    hub_add_unsynced(h, w);
    hub_wake(h);
  }
  if (w->flags & WF_PROGRESS && s->nprogress++ == 0) {
    if (s->next_tick_ms < h->next_progress_ms) h->next_progress_ms = s->next_tick_ms;
    hub_wake(h);
  }
}

static void cancel(watch_hub *h, watch_stream *s, int64_t id) {
  watcher *w = find(s, id);
  if (!w) return; /* etcd answers nothing */
  stream_drop_watcher(h, w);
  respond_plain(h, s, id, hub_current_rev(h), false, true, 0, NULL);
}

void watch_stream_request(watch_stream *s, const Etcdserverpb__WatchRequest *req) {
  watch_hub *h = s->hub;
  pthread_mutex_lock(&h->mu);
  if (s->finished) {
    pthread_mutex_unlock(&h->mu);
    return;
  }
  if (s->ops->queued(s->sink) > h->opt.stream_hard_limit) {
    /* Every request is answered; a client that keeps asking without ever
     * reading would make the queue grow without bound. */
    s->finished = true;
    s->ops->finish(s->sink, GRPC_RESOURCE_EXHAUSTED, ERR_NOT_READING);
    pthread_mutex_unlock(&h->mu);
    return;
  }
  switch (req->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
      create(h, s, req->create_request);
      break;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
      cancel(h, s, req->cancel_request->watch_id);
      break;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
      progress_request(h, s);
      break;
    default:
      break; /* etcd ignores what it does not know */
  }
  pthread_mutex_unlock(&h->mu);
}

/* ---------------------------------------------------------------- lifetime */

watch_stream *watch_stream_open(watch_hub *h, const watch_sink_ops *ops, void *sink) {
  watch_stream *s = xcalloc(1, sizeof *s);
  s->hub = h;
  s->ops = ops;
  s->sink = sink;
  pthread_mutex_lock(&h->mu);
  /* etcd's ticker: the interval plus up to 10% jitter, so streams opened
   * together do not all notify at once. */
  h->rng = h->rng * 6364136223846793005ull + 1442695040888963407ull;
  int64_t jitter_span = h->opt.progress_notify_ms / 10;
  s->interval_ms = h->opt.progress_notify_ms + (jitter_span ? (int64_t)((h->rng >> 33) % (uint64_t)jitter_span) : 0);
  s->next_tick_ms = hub_now_ms(h) + s->interval_ms;
  s->next = h->streams;
  if (h->streams) h->streams->prev = s;
  h->streams = s;
  h->nstreams++;
  pthread_mutex_unlock(&h->mu);
  return s;
}

void watch_stream_drained(watch_stream *s) {
  watch_hub *h = s->hub;
  pthread_mutex_lock(&h->mu);
  if (s->victims) {
    while (s->victims) {
      watcher *w = s->victims;
      hub_detach(h, w);
      hub_add_unsynced(h, w);
    }
    hub_wake(h);
  }
  s->congested_ms = 0;
  pthread_mutex_unlock(&h->mu);
}

void watch_stream_close(watch_stream *s) {
  watch_hub *h = s->hub;
  pthread_mutex_lock(&h->mu);
  for (size_t b = 0; b < s->nbuckets; b++) {
    while (s->ids[b]) stream_drop_watcher(h, s->ids[b]);
  }
  if (s->progress_pending) h->npending_progress--;
  if (s->prev) s->prev->next = s->next; else h->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  h->nstreams--;
  pthread_mutex_unlock(&h->mu);
  free(s->ids);
  free(s);
}
