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

int64_t respond_events(watch_hub *h, watcher *w, int64_t upto) {
  watch_stream *s = w->stream;
  int with_prev = (w->flags & WF_PREV_KV) != 0;
  size_t n = 0;
  for (uint32_t p = w->pfirst; p != PEND_NONE; p = h->pend[p].next) n++;
  ProtobufCMessageUnknownField *evs = arena_alloc(h->mem, n * sizeof *evs);
  int64_t *revs = arena_alloc(h->mem, n * sizeof *revs);
  size_t i = 0;
  for (uint32_t p = w->pfirst; p != PEND_NONE; p = h->pend[p].next, i++) {
    wchange *wc = &h->chg[h->pend[p].change];
    build_event(h, wc, with_prev);
    evs[i] = (ProtobufCMessageUnknownField){.tag = 11, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                            .len = wc->enc_len[with_prev], .data = wc->enc[with_prev]};
    revs[i] = wc->c.main;
  }
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  hub_fill_header(h, &hdr, upto);
  size_t idx = 0;
  while (idx < n) {
    if (stream_congested(h, s)) return revs[idx];
    size_t j = idx, size = 0;
    while (j < n && (j == idx || size < RESPONSE_SOFT_BYTES || revs[j] == revs[j - 1])) size += field_size(&evs[j++]);
    hdr.revision = j == n ? upto : revs[j - 1];
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.header = &hdr;
    r.watch_id = w->id;
    r.base.unknown_fields = evs + idx;
    r.base.n_unknown_fields = j - idx;
    if (w->flags & WF_FRAGMENT)
      send_fragments(h, s, &r);
    else
      send(h, s, &r, j - idx);
    idx = j;
  }
  w->flags |= WF_SENT;
  return 0;
}
