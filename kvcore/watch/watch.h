/* watch.h - etcd's Watch service over the multi-version store.
 *
 * One hub per member. The apply thread tells it, after each committed
 * batch, which revision is now visible (watch_hub_notify: an atomic store
 * and a signal, nothing more). The hub's thread then reads the new changes
 * once from a read transaction and hands each one to the watchers whose key
 * range holds it (an index: a hash of single keys, an interval tree of
 * ranges), one response per watcher for everything it gets from one read.
 *
 * Watchers that start in the past, or fall behind, are "unsynced": the hub
 * catches them up from history in bounded chunks, several watchers per read,
 * then moves them to the live ("synced") index. A watcher whose stream has
 * too much queued becomes a "victim": it gets nothing more, the hub keeps
 * only the revision it needs next, and when the stream drains it is caught
 * up from history like an unsynced watcher. So memory per stream is bounded
 * by the queue limit, whatever the client does, and a slow reader never
 * delays anyone else. A victim that stays stuck past a time limit is
 * cancelled with a reason; one that falls behind a compaction gets etcd's
 * compacted response.
 *
 * A watch stream (one gRPC Watch call) speaks etcd's WatchRequest /
 * WatchResponse messages through a sink the caller provides; the hub never
 * sees gRPC. Everything etcd 3.5 does on the wire is reproduced: watch IDs
 * (chosen or automatic), key / range / from-key, start_revision, prev_kv,
 * filters, fragment, progress_notify, progress requests, cancel, and the
 * exact created / canceled / compacted responses. See docs/watch.md.
 *
 * Threads: watch_hub_notify from the apply thread; the watch_stream_*
 * calls from any thread but serialized per stream (gRPC's callbacks are);
 * sink callbacks are called from the hub's thread and from the thread of
 * the watch_stream_* call, with hub locks held.
 */
#ifndef SYNOD_WATCH_H
#define SYNOD_WATCH_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mvcc.h"
#include "proto.h"

typedef struct watch_hub watch_hub;
typedef struct watch_stream watch_stream;

/* Where a stream's responses go (the gRPC stream, or a test's recorder).
 * The callbacks must not call back into the hub. */
typedef struct {
  /* Queues one response; 0, or -1 if the stream is gone. */
  int (*send)(void *sink, const ProtobufCMessage *resp);
  /* Queues one response the hub encoded itself (a packed WatchResponse,
   * for events); 0, or -1 if the stream is gone. */
  int (*send_bytes)(void *sink, const uint8_t *data, size_t len);
  /* Bytes queued and not yet taken by the client. */
  size_t (*queued)(void *sink);
  /* Ends the stream with an error (a client that sends requests but never
   * reads the answers). */
  void (*finish)(void *sink, int grpc_code, const char *message);
} watch_sink_ops;

typedef struct {
  mvcc_store *store;
  /* Fills cluster_id, member_id and raft_term of a response header. */
  void (*fill_header)(void *ctx, Etcdserverpb__ResponseHeader *h);
  void *header_ctx;
  /* Interval of progress notifications to watchers that asked for them
   * (etcd's --experimental-watch-progress-notify-interval); 0: 10 min.
   * Values below 100 ms are raised to 100 ms, as etcd does. */
  int64_t progress_notify_ms;
  /* Responses of watchers that asked for fragmentation are split once
   * they reach this size (etcd: --max-request-bytes + 512 KiB); 0: 2 MiB. */
  size_t fragment_bytes;
  /* A stream with more than this queued gets no more events until it
   * drains (its watchers become victims); 0: 1 MiB. */
  size_t stream_queue_limit;
  /* A stream with more than this queued when a request arrives is ended
   * (the client sends but does not read); 0: 64 MiB. */
  size_t stream_hard_limit;
  /* Victims whose stream has not drained for this long are cancelled;
   * 0: 5 min. */
  int64_t victim_timeout_ms;
  /* Tests: no thread; the caller drives the hub with watch_hub_poll. */
  bool manual;
  /* Tests: smaller chunks (0: defaults) to exercise chunked catch-up. */
  int chunk_revisions;
  int sync_watchers;
} watch_hub_options;

/* Starts the hub (and its thread unless manual). The store's current
 * revision is taken as already delivered. Returns 0 or -1 (bad options). */
int watch_hub_start(const watch_hub_options *opt, watch_hub **out);

/* The apply thread: revision `rev` is committed and visible to readers.
 * Cheap; never waits for the hub's work. */
void watch_hub_notify(watch_hub *h, int64_t rev);

/* The apply thread, before it applies a compaction (with every earlier
 * change committed and notified): keeps a snapshot of the history not yet
 * delivered to live watchers, so that a compaction can never take events
 * from them (only watchers already behind get etcd's compacted response). */
void watch_hub_before_compaction(watch_hub *h);

/* The apply thread, around a replacement of the store's contents (a
 * snapshot installed from the leader, a defragmentation): before, the hub
 * drops the read snapshots it keeps (they would hold the replacement back);
 * after, every live watcher is caught up from the new store's history, or
 * gets etcd's compacted response if that history no longer reaches back to
 * what it has seen. */
void watch_hub_before_replace(watch_hub *h);
void watch_hub_after_replace(watch_hub *h);

/* Stops the thread and frees the hub. Every stream must be closed. */
void watch_hub_stop(watch_hub *h);

/* Manual hubs: does all work that is due now (delivery, one pass of
 * catch-up per call until none is left, progress notifications whose time
 * has come, victim time limits). Returns true if something was done. */
bool watch_hub_poll(watch_hub *h);
/* Manual hubs: shifts the hub's clock, to test time limits. */
void watch_hub_advance_clock(watch_hub *h, int64_t ms);

typedef struct {
  size_t streams;
  size_t watchers;
  size_t synced;
  size_t unsynced;
  size_t victims;
  int64_t delivered_rev; /* every change up to here reached live watchers */
  uint64_t events_sent;
  uint64_t responses_sent;
} watch_stats;
void watch_hub_stats(watch_hub *h, watch_stats *out);

/* ---------------------------------------------------------------- streams */

/* A new Watch call. */
watch_stream *watch_stream_open(watch_hub *h, const watch_sink_ops *ops, void *sink);
/* One WatchRequest from the client: create, cancel or progress. */
void watch_stream_request(watch_stream *s, const Etcdserverpb__WatchRequest *req);
/* The sink's queue became empty: its victims can catch up. */
void watch_stream_drained(watch_stream *s);
/* The call is over: removes its watchers. s is freed; the sink is not used
 * again once this returns. */
void watch_stream_close(watch_stream *s);

#endif
