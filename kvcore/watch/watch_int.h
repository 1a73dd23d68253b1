/* watch_int.h (private to kvcore/watch) - the hub's data structures.
 *
 * Locking: hub->mu guards every watcher, stream and index. The hub thread
 * holds it for one bounded step at a time (one chunk of history); stream
 * calls hold it for one request. The apply thread never takes it: notify
 * is an atomic store plus a signal under wake_mu. */
#ifndef SYNOD_WATCH_INT_H
#define SYNOD_WATCH_INT_H

#include "watch.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct watcher watcher;
typedef struct wgroup wgroup;

/* What a watcher covers. */
enum { W_KEY, W_RANGE, W_FROM }; /* one key; [key, end); every key >= key */

/* Where a watcher is. */
enum {
  WS_SYNCED,   /* in hub->synced: gets events as they are committed */
  WS_UNSYNCED, /* on hub->unsynced: waits to be caught up from history */
  WS_CATCHUP,  /* in the group being caught up right now (hub thread) */
  WS_VICTIM,   /* on its stream's victim list: waits for the stream to drain */
  WS_DEAD,     /* compacted: only its ID remains, until cancel or close */
};

enum {
  WF_PREV_KV = 1,
  WF_FRAGMENT = 2,
  WF_PROGRESS = 4,
  WF_NOPUT = 8,
  WF_NODELETE = 16,
  WF_SENT = 32, /* events went out since the last progress tick */
};

#define PEND_NONE UINT32_MAX

struct watcher {
  int64_t id;
  watch_stream *stream;
  int64_t start_rev;
  int64_t min_rev;     /* first revision not yet delivered */
  watcher *idnext;     /* stream's ID table chain */
  watcher *qprev, *qnext; /* hub->unsynced or stream->victims */
  union {
    struct {
      watcher *next, *prev;
      wgroup *g;
    } h;               /* W_KEY: the watchers of its key (doubly linked:
                        * O(1) removal even with many on one key) */
    struct {
      watcher *l, *r;
      const watcher *maxw; /* in this subtree, the range ending last */
      uint32_t prio;
    } t;               /* W_RANGE, W_FROM: interval treap */
  } ix;
  watcher *tnext;      /* ranges: touched in the current step */
  uint32_t pfirst, plast; /* ranges: pending entries in the current step */
  uint32_t hash;
  uint32_t key_len, end_len;
  uint8_t kind, state, flags;
  uint8_t key[];       /* key, then end */
};

static inline const uint8_t *watcher_end(const watcher *w) { return w->key + w->key_len; }

/* ---------------------------------------------------------------- index.c */

/* The single-key watchers of one key. A change of the key is noted once
 * for the group, not once per watcher: a thousand watchers of a lock key
 * cost one lookup per change. */
struct wgroup {
  wgroup *next;           /* hash chain */
  watcher *first;         /* its watchers (ix.h) */
  wgroup *tnext;          /* touched in the current step */
  uint32_t pfirst, plast; /* the step's pending changes of this key */
  uint32_t hash, key_len;
  uint8_t key[];
};

/* Watchers by key: single keys in a hash table of key groups, ranges in a
 * treap ordered by start and augmented with the largest end below each
 * node, so the ranges holding a key are found without looking at the
 * others. */
typedef struct {
  wgroup **buckets;
  size_t nbuckets, ngroups, nkeys; /* nkeys: single-key watchers */
  watcher *root;
  size_t nranges;
  uint32_t seed;
} widx;

void widx_init(widx *x);
void widx_free(widx *x); /* the table and its groups; watchers are not freed */
void widx_add(widx *x, watcher *w);
/* Takes w out. Its group goes with its last watcher, unless the group has
 * pending changes (a step is delivering them): then widx_group_done frees
 * it once the step is through with it. */
void widx_del(widx *x, watcher *w);
void widx_group_done(widx *x, wgroup *g);
size_t widx_count(const widx *x);
typedef void (*widx_fn)(void *arg, watcher *w);
typedef void (*widx_group_fn)(void *arg, wgroup *g);
/* Calls group_fn for the group of key (if it has watchers) and fn for every
 * range watcher holding key. Neither may change x. */
void widx_match(const widx *x, const uint8_t *key, size_t key_len, widx_group_fn group_fn, widx_fn fn,
                void *arg);
/* Every watcher of x, in no particular order. fn must not change x. */
void widx_each(const widx *x, widx_fn fn, void *arg);
uint32_t widx_hash(const uint8_t *p, size_t n);
/* Byte-wise order of keys, shorter first on a common prefix (etcd's). */
int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* ---------------------------------------------------------------- hub */

typedef struct snapshot {
  struct snapshot *next;
  mvcc_txn *txn;
  int64_t rev;
} snapshot;

/* One change of the step being delivered, and its event encoded once for
 * every watcher: [0] without prev_kv, [1] with. enc holds the length prefix
 * and the packed mvccpb.Event, ready to be copied into a WatchResponse as
 * field 11 (see respond.c). */
typedef struct {
  mvcc_change c;
  uint8_t *enc[2];
  size_t enc_len[2];
} wchange;

typedef struct {
  uint32_t change, next;
} pend;

struct watch_stream {
  watch_hub *hub;
  const watch_sink_ops *ops;
  void *sink;
  watch_stream *prev, *next; /* hub->streams */
  watcher **ids;             /* ID table */
  size_t nbuckets, count;
  int64_t next_id;           /* etcd: the next automatic ID to try */
  watcher *victims;          /* victim list (qprev/qnext) */
  size_t nvictims, nprogress;
  int64_t congested_ms;      /* when its first current victim was made */
  int64_t interval_ms;       /* progress ticker, with etcd's jitter */
  int64_t next_tick_ms;
  bool progress_pending;     /* a progress request waits for the hub */
  bool finished;
};

struct watch_hub {
  watch_hub_options opt;
  pthread_mutex_t mu;

  /* wake-ups; never held while mu is wanted */
  pthread_mutex_t wake_mu;
  pthread_cond_t wake_cv;
  bool wake, stopping;
  pthread_t thread;
  bool has_thread;

  _Atomic int64_t notified;  /* committed and visible */
  _Atomic int64_t delivered; /* reached every synced watcher */

  pthread_mutex_t snap_mu;   /* the apply thread's snapshots */
  snapshot *snaps, **snaps_tail;

  widx synced;
  watcher *unsynced_head, *unsynced_tail;
  size_t nunsynced, nwatchers, nvictims;
  watch_stream *streams;
  size_t nstreams;
  size_t npending_progress; /* streams with progress_pending */
  uint64_t rng;
  int64_t clock_offset_ms;
  int64_t next_progress_ms; /* earliest stream tick; INT64_MAX: none */
  int64_t next_housekeeping_ms;

  /* step scratch (hub thread, under mu) */
  wchange *chg;
  size_t nchg, chg_cap;
  pend *pend;
  size_t npend, pend_cap;
  watcher *touched;         /* range watchers with pending changes */
  wgroup *touched_groups;   /* key groups with pending changes */
  int64_t hdr_rev;          /* hdr_enc holds the packed header at this revision (0: none) */
  uint8_t hdr_enc[64];
  size_t hdr_len;
  mvcc_txn *txn;     /* the transaction the changes point into */
  arena *mem;        /* events of the step */
  int64_t max_revs;  /* revisions per step */
  size_t max_watchers_per_sync;

  uint64_t events_sent, responses_sent;
};

int64_t hub_now_ms(watch_hub *h);
void hub_wake(watch_hub *h);
void hub_fill_header(watch_hub *h, Etcdserverpb__ResponseHeader *hdr, int64_t rev);
/* The revision a new watcher or a control response is "at": everything up
 * to it is either delivered or will be skipped for watchers created now. */
int64_t hub_current_rev(watch_hub *h);

/* Moving watchers between places (mu held). */
void hub_add_synced(watch_hub *h, watcher *w);
void hub_add_unsynced(watch_hub *h, watcher *w);
void hub_make_victim(watch_hub *h, watcher *w);
/* Takes w out of wherever it is (not out of its stream's ID table). */
void hub_detach(watch_hub *h, watcher *w);
void hub_send_compacted(watch_hub *h, watcher *w, int64_t compact_rev);

/* ---------------------------------------------------------------- respond.c */

/* Events built for a list of pending changes, shared by the watchers of a
 * key group without filters, each of which sends the part at or above its
 * min_rev (see respond_events). */
typedef struct {
  ProtobufCMessageUnknownField *evs;
  int64_t *revs;
  size_t n;
  bool built;
} evlist;

/* Sends w the events of the pending list starting at `first` that it takes
 * (at or above its min_rev, not filtered out) as one or more responses,
 * whole revisions each (split further only for fragment watchers). Header
 * revision of the last response: upto. shared[2] (without and with
 * prev_kv), if not NULL, caches the whole list's events for the other
 * watchers of the same list. Returns the first revision it could not send
 * because the stream is congested, or 0 when all went out (or there was
 * nothing for w). */
int64_t respond_events(watch_hub *h, watcher *w, uint32_t first, int64_t upto, evlist shared[2]);
/* A WatchResponse with a packed header, a watch ID and pre-encoded events,
 * as protobuf-c would pack it: the size, and the bytes into out. */
size_t respond_encoded_size(size_t hdr_len, int64_t watch_id, const ProtobufCMessageUnknownField *evs, size_t n);
size_t respond_encode(uint8_t *out, const uint8_t *hdr, size_t hdr_len, int64_t watch_id,
                      const ProtobufCMessageUnknownField *evs, size_t n);
/* A response with no events (created, canceled, progress). */
void respond_plain(watch_hub *h, watch_stream *s, int64_t watch_id, int64_t rev, bool created, bool canceled,
                   int64_t compact_rev, const char *reason);
bool stream_congested(watch_hub *h, watch_stream *s);

/* ---------------------------------------------------------------- stream.c */

/* Removes w from its stream and the hub and frees it (mu held). */
void stream_drop_watcher(watch_hub *h, watcher *w);
/* Periodic progress notifications due on s (mu held). */
void stream_tick(watch_hub *h, watch_stream *s, int64_t now);
/* A deferred progress request: answers it if s is ready now (mu held). */
void stream_progress_retry(watch_hub *h, watch_stream *s);

#endif
