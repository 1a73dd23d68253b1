/* raftnode.h (private to kvcore/server) - the Raft loop: one thread that
 * owns a kvcore/raft node, its in-memory log and the WAL, and drives them
 * (etcd's raftNode, in C).
 *
 * Inputs arrive through a mailbox from any thread: proposals, messages from
 * peers, read-index requests, reports from the transport, and ticks (the
 * loop's own clock, every --heartbeat-interval). Each ready is handled in
 * the order raft.h prescribes: send what may go early, make entries and
 * hard state durable (one fdatasync shared by everything proposed
 * meanwhile), send what needed durability, hand committed entries to the
 * apply thread, advance. */
#ifndef SYNOD_SERVER_RAFTNODE_H
#define SYNOD_SERVER_RAFTNODE_H

#include "raft.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct raftnode raftnode;

typedef struct {
  /* Committed entries, in order; ownership of ents (one malloc'd array whose
   * data lives in the same block) passes to the callee. */
  void (*committed)(void *arg, raft_entry *ents, size_t n);
  /* A read point is known: reads batched under ctx may run once the store
   * has applied `index`. */
  void (*read_ready)(void *arg, uint64_t ctx, uint64_t index);
  /* Leadership or term changed (lead 0: none known). */
  void (*leader_changed)(void *arg, uint64_t lead, uint64_t term);
  /* Messages to peers, each encoded with raft_msg_encode. Called on the loop
   * thread; must not block. After a group of sends, flush: what was sent
   * to one peer since the last flush may travel together. */
  void (*send)(void *arg, uint64_t to, const uint8_t *msg, size_t len, bool is_snapshot);
  /* A snapshot from the leader is accepted: put the image at path in the
   * store's place after every entry committed before it, and return once
   * that is done (0) -- the log may only move on to the snapshot then. */
  int (*install)(void *arg, const char *path);
  /* The image handed to raftnode_step_snapshot was installed, or discarded
   * (Raft did not need it); either way the next transfer may begin. */
  void (*snapshot_done)(void *arg, bool installed);
  void (*flush)(void *arg);
  void *arg;
} raftnode_callbacks;

typedef struct {
  uint64_t id;
  const char *wal_dir;
  const void *wal_meta; /* member and cluster IDs, checked on reopen */
  size_t wal_meta_len;
  uint32_t heartbeat_ms, election_ticks;
  bool pre_vote;
  uint64_t snapshot_count; /* at most this many entries kept in memory */
  /* Group commit under load (0: off): once the leader appended a batch of
   * at least pace_min_batch proposals, the next batch waits until
   * pace_interval_us after it (twice that with followers, three times after
   * a batch of 3 * pace_min_batch); a follower that received pace_min_batch
   * proposals within four intervals holds the next ones until the leader's
   * next message. See "Group commit" in docs/cluster.md. */
  uint32_t pace_interval_us, pace_min_batch;
  /* Where the store stands: the log is read from here on, and the store is
   * the snapshot raft starts from. */
  uint64_t applied_index, applied_term;
  raft_conf_state applied_conf;
  /* A new cluster: the founding conf changes to write as entries 1..n. */
  const raft_entry *bootstrap;
  size_t n_bootstrap;
  raftnode_callbacks cb;
} raftnode_options;

int raftnode_start(const raftnode_options *o, raftnode **out, char *err, size_t err_len);
/* Stops the loop; entries proposed but not committed are dropped. */
void raftnode_stop(raftnode *rn);

/* Mailbox (any thread). Data is copied. A proposal that finds no leader is
 * kept and retried once one is known, but never after `deadline`
 * (monotonic ns): past it the proposer has given up, and a write it was told
 * timed out must not be committed long afterwards. */
void raftnode_propose(raftnode *rn, const uint8_t *data, size_t len, int64_t deadline);
void raftnode_propose_conf_change(raftnode *rn, const raft_conf_change *cc);
void raftnode_step(raftnode *rn, const uint8_t *msg, size_t len);
/* A SNAP message whose store image was received, verified and synced at
 * image_path (on the store's filesystem). If Raft takes the snapshot, the
 * image is installed (cb.install) before the log moves to it; otherwise
 * the file is removed. cb.snapshot_done follows either way. */
void raftnode_step_snapshot(raftnode *rn, const uint8_t *msg, size_t len, const char *image_path);
void raftnode_read_index(raftnode *rn, uint64_t ctx);
void raftnode_unreachable(raftnode *rn, uint64_t peer);
void raftnode_snapshot_sent(raftnode *rn, uint64_t peer, bool ok);
void raftnode_transfer_leader(raftnode *rn, uint64_t to);
/* The store has applied up to index (conf as of it): log entries before it
 * may be dropped from memory, and WAL segments before the store's durable
 * point purged. */
void raftnode_store_applied(raftnode *rn, uint64_t index, uint64_t term, const raft_conf_state *conf,
                            uint64_t durable_index);

/* Thread-safe snapshots of the loop's view, refreshed every iteration. */
typedef struct {
  raft_status st;
  raft_peer_status peers[RAFT_MAX_NODES];
  uint32_t n_peers;
  raft_conf_state conf;
} raftnode_view;
void raftnode_get_view(raftnode *rn, raftnode_view *v);
uint64_t raftnode_lead(raftnode *rn);
uint64_t raftnode_term(raftnode *rn);
/* True when this member is the only voter and the leader: reads need no
 * quorum round. */
bool raftnode_sole_leader(raftnode *rn);

#endif
