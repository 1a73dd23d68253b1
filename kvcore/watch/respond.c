/* Building WatchResponses: events made once per change and shared by every
 * watcher that gets them (kv fields point into the store's map, so nothing
 * is copied before gRPC packs the response), responses cut at revision
 * boundaries, and etcd's fragmentation for watchers that asked for it. */
#include "base.h"
#include "watch_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Responses combine several revisions up to this size; one revision is
 * never split (unless fragmenting), whatever its size. */
enum { RESPONSE_SOFT_BYTES = 256 * 1024 };

static size_t varint_len(size_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

bool stream_congested(watch_hub *h, watch_stream *s) {
  return s->ops->queued(s->sink) > h->opt.stream_queue_limit;
}

static int send(watch_hub *h, watch_stream *s, Etcdserverpb__WatchResponse *r, size_t events) {
  h->responses_sent++;
  h->events_sent += events;
  return s->ops->send(s->sink, &r->base);
}

void respond_plain(watch_hub *h, watch_stream *s, int64_t watch_id, int64_t rev, bool created, bool canceled,
                   int64_t compact_rev, const char *reason) {
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  hub_fill_header(h, &hdr, rev);
  Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
  r.header = &hdr;
  r.watch_id = watch_id;
  r.created = created;
  r.canceled = canceled;
  r.compact_revision = compact_rev;
  if (reason) r.cancel_reason = (char *)reason;
  send(h, s, &r, 0);
}

/* ---------------------------------------------------------------- events */

static Mvccpb__KeyValue *make_kv(arena *a, const mvcc_kv *kv, bool is_delete) {
  Mvccpb__KeyValue *p = arena_alloc(a, sizeof *p);
  *p = (Mvccpb__KeyValue)MVCCPB__KEY_VALUE__INIT;
  p->key.data = (uint8_t *)kv->key;
  p->key.len = kv->key_len;
  p->mod_revision = kv->mod_rev;
  if (!is_delete) {
    p->create_revision = kv->create_rev;
    p->version = kv->version;
    p->value.data = (uint8_t *)kv->value;
    p->value.len = kv->value_len;
    p->lease = kv->lease;
  }
  return p;
}

/* The event of a change, with or without prev_kv, encoded on first use. As
 * etcd: no prev_kv for a creation, nor when the previous version is gone
 * (compacted). */
static void build_event(watch_hub *h, wchange *wc, int with_prev) {
  if (wc->enc[with_prev]) return;
  Mvccpb__Event ev = MVCCPB__EVENT__INIT;
  ev.type = wc->c.is_delete ? MVCCPB__EVENT__EVENT_TYPE__DELETE : MVCCPB__EVENT__EVENT_TYPE__PUT;
  ev.kv = make_kv(h->mem, &wc->c.kv, wc->c.is_delete);
  bool creation = !wc->c.is_delete && wc->c.kv.create_rev == wc->c.kv.mod_rev;
  if (with_prev && !creation) {
    mvcc_kv prev;
    if (mvcc_get_before(h->txn, wc->c.kv.key, wc->c.kv.key_len, wc->c.main, wc->c.sub, &prev) == MVCC_OK)
      ev.prev_kv = make_kv(h->mem, &prev, false);
  }
  size_t n = protobuf_c_message_get_packed_size(&ev.base);
  size_t pre = varint_len(n);
  uint8_t *buf = arena_alloc(h->mem, pre + n);
  size_t v = n;
  for (size_t i = 0; i < pre; i++, v >>= 7) buf[i] = (uint8_t)((v & 0x7f) | (i + 1 < pre ? 0x80 : 0));
  protobuf_c_message_pack(&ev.base, buf + pre);
  wc->enc[with_prev] = buf;
  wc->enc_len[with_prev] = pre + n;
}

/* ---------------------------------------------------------------- responses
 *
 * Events go out pre-encoded: each response carries them as protobuf-c
 * "unknown fields" numbered 11 (WatchResponse.events), which protobuf-c
 * copies verbatim after the known fields. The bytes are exactly those of a
 * response with the events set (events are its last field), but a change
 * is encoded once, however many watchers receive it. */

static size_t field_size(const ProtobufCMessageUnknownField *f) { return 1 + f->len; }

/* etcd's sendFragments: a response at or over the limit with at least two
 * events goes out in pieces, each as large as fits (at least one event),
 * all but the last marked fragment. */
static int send_fragments(watch_hub *h, watch_stream *s, Etcdserverpb__WatchResponse *r) {
  size_t limit = h->opt.fragment_bytes, nev = r->base.n_unknown_fields;
  ProtobufCMessageUnknownField *evs = r->base.unknown_fields;
  if (protobuf_c_message_get_packed_size(&r->base) < limit || nev < 2) return send(h, s, r, nev);
  Etcdserverpb__WatchResponse base = *r;
  base.base.n_unknown_fields = 0;
  base.fragment = true;
  size_t base_size = protobuf_c_message_get_packed_size(&base.base);
  size_t idx = 0;
  while (idx < nev) {
    Etcdserverpb__WatchResponse cur = base;
    size_t size = base_size, n = 0;
    while (idx + n < nev) {
      size += field_size(&evs[idx + n]);
      n++;
      if (n > 1 && size >= limit) {
        n--;
        break;
      }
    }
    cur.base.unknown_fields = evs + idx;
    cur.base.n_unknown_fields = n;
    idx += n;
    cur.fragment = idx < nev;
    if (send(h, s, &cur, n) < 0) return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- encoding
 *
 * Most responses are encoded here rather than by protobuf-c: a change's
 * event is already encoded, the header is packed once per revision, and
 * the rest is three tags, so a thousand watchers of one key cost a
 * thousand small copies instead of a thousand packings. The bytes are
 * those protobuf-c makes of the same message (fields in number order,
 * zero scalars left out, the events last), which test_watch checks. */

static size_t varint_put(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) p[n++] = (uint8_t)(v | 0x80), v >>= 7;
  p[n++] = (uint8_t)v;
  return n;
}

/* The packed ResponseHeader at revision rev (cached for the step). */
static void header_at(watch_hub *h, int64_t rev) {
  if (h->hdr_rev == rev && rev) return;
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  hub_fill_header(h, &hdr, rev);
  h->hdr_len = protobuf_c_message_pack(&hdr.base, h->hdr_enc); /* four varints: at most 40 bytes */
  h->hdr_rev = rev;
}

enum { TAG_HEADER = 0x0a, TAG_WATCH_ID = 0x10, TAG_EVENTS = 0x5a }; /* fields 1, 2 and 11 */

size_t respond_encode(uint8_t *out, const uint8_t *hdr, size_t hdr_len, int64_t watch_id,
                      const ProtobufCMessageUnknownField *evs, size_t n) {
  size_t at = 0;
  out[at++] = TAG_HEADER;
  at += varint_put(out + at, hdr_len);
  memcpy(out + at, hdr, hdr_len);
  at += hdr_len;
  if (watch_id) {
    out[at++] = TAG_WATCH_ID;
    at += varint_put(out + at, (uint64_t)watch_id);
  }
  for (size_t i = 0; i < n; i++) {
    out[at++] = TAG_EVENTS;
    memcpy(out + at, evs[i].data, evs[i].len);
    at += evs[i].len;
  }
  return at;
}

size_t respond_encoded_size(size_t hdr_len, int64_t watch_id, const ProtobufCMessageUnknownField *evs, size_t n) {
  size_t size = 1 + varint_len(hdr_len) + hdr_len + (watch_id ? 1 + varint_len((uint64_t)watch_id) : 0);
  for (size_t i = 0; i < n; i++) size += 1 + evs[i].len;
  return size;
}

/* ---------------------------------------------------------------- events of a watcher */

static bool takes(const watcher *w, const mvcc_change *c) {
  return c->main >= w->min_rev && !(w->flags & (c->is_delete ? WF_NODELETE : WF_NOPUT));
}

/* The events of the list at first that w takes (all of them if !filter). */
static void build_events(watch_hub *h, const watcher *w, uint32_t first, bool filter, evlist *out) {
  int with_prev = (w->flags & WF_PREV_KV) != 0;
  size_t n = 0;
  for (uint32_t p = first; p != PEND_NONE; p = h->pend[p].next)
    if (!filter || takes(w, &h->chg[h->pend[p].change].c)) n++;
  out->evs = arena_alloc(h->mem, (n ? n : 1) * sizeof *out->evs);
  out->revs = arena_alloc(h->mem, (n ? n : 1) * sizeof *out->revs);
  out->n = 0;
  for (uint32_t p = first; p != PEND_NONE; p = h->pend[p].next) {
    wchange *wc = &h->chg[h->pend[p].change];
    if (filter && !takes(w, &wc->c)) continue;
    build_event(h, wc, with_prev);
    out->evs[out->n] = (ProtobufCMessageUnknownField){.tag = 11, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                                      .len = wc->enc_len[with_prev], .data = wc->enc[with_prev]};
    out->revs[out->n++] = wc->c.main;
  }
  out->built = true;
}

static int send_events(watch_hub *h, watcher *w, const ProtobufCMessageUnknownField *evs, size_t n, int64_t rev) {
  watch_stream *s = w->stream;
  header_at(h, rev);
  if (!(w->flags & WF_FRAGMENT)) {
    size_t len = respond_encoded_size(h->hdr_len, w->id, evs, n);
    uint8_t *buf = arena_alloc(h->mem, len);
    respond_encode(buf, h->hdr_enc, h->hdr_len, w->id, evs, n);
    h->responses_sent++;
    h->events_sent += n;
    return s->ops->send_bytes(s->sink, buf, len);
  }
  /* Fragments are cut by packed size: protobuf-c does the sizing. */
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  hub_fill_header(h, &hdr, rev);
  Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
  r.header = &hdr;
  r.watch_id = w->id;
  r.base.unknown_fields = (ProtobufCMessageUnknownField *)evs;
  r.base.n_unknown_fields = n;
  return send_fragments(h, s, &r);
}

/* The first of revs[0..n) at or above rev (n if none). */
static size_t first_at(const int64_t *revs, size_t n, int64_t rev) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (revs[mid] < rev) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

int64_t respond_events(watch_hub *h, watcher *w, uint32_t first, int64_t upto, evlist shared[2]) {
  if (first == PEND_NONE) return 0;
  int with_prev = (w->flags & WF_PREV_KV) != 0;
  /* A watcher without filters takes a suffix of the list (those at or
   * above its min_rev: watchers caught up from history, or created while
   * the hub was behind, start later than the others), which it shares with
   * the group's other watchers; one with filters gets its own. */
  evlist own, *l = &own;
  size_t idx = 0;
  if (shared && !(w->flags & (WF_NOPUT | WF_NODELETE))) {
    l = &shared[with_prev];
    if (!l->built) build_events(h, w, first, false, l);
    idx = first_at(l->revs, l->n, w->min_rev);
  } else {
    /* A key group's pending events are everyone's, so a watcher with
     * filters applies them here; a range watcher's own list (no shared
     * lists) was already filtered as it was built (on_match). */
    bool apply_filters = shared != NULL;
    build_events(h, w, first, apply_filters, l);
  }
  if (idx == l->n) return 0;
  while (idx < l->n) {
    if (stream_congested(h, w->stream)) return l->revs[idx];
    size_t j = idx, size = 0;
    while (j < l->n && (j == idx || size < RESPONSE_SOFT_BYTES || l->revs[j] == l->revs[j - 1]))
      size += field_size(&l->evs[j++]);
    send_events(h, w, l->evs + idx, j - idx, j == l->n ? upto : l->revs[j - 1]);
    idx = j;
  }
  w->flags |= WF_SENT;
  return 0;
}
