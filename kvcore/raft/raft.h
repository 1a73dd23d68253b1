/* raft.h - Synod's Raft consensus library: a deterministic state machine in
 * the etcd-raft model.
 *
 * The library does no I/O, reads no clock and uses no threads. The caller
 * (the server's raft loop) drives it:
 *
 *   inputs   raft_tick()              one logical clock tick
 *            raft_step()              a message from a peer
 *            raft_propose()           a new log entry (any member; followers
 *            raft_propose_conf_change()  forward to the leader)
 *            raft_read_index()        ask for a linearizable read point
 *            raft_transfer_leader(), raft_campaign()
 *            raft_report_unreachable(), raft_report_snapshot()
 *
 *   output   raft_get_ready() hands out one batch of work; the caller does it in
 *            this order, then acknowledges it with raft_advance():
 *
 *     1. send rd.msgs                 (now, in parallel with step 2)
 *     2. persist rd.snapshot, rd.entries and rd.hard_state
 *                                     (fsync if rd.must_sync)
 *     3. send rd.msgs_after_persist   (only once step 2 is durable)
 *     4. apply rd.committed           (in order; install rd.snapshot first),
 *        answer rd.read_states once applied up to their index
 *     5. raft_advance()
 *
 * Pointers inside a raft_ready stay valid until its raft_advance(), even if
 * the caller steps, ticks or proposes in between. Everything the library
 * returns is borrowed; everything the caller passes in is copied before the
 * call returns.
 *
 * Membership follows the Raft dissertation (single-server changes, sec. 4.1):
 * a conf change takes effect for elections and commitment as soon as it is in
 * a node's log, and at most one may be uncommitted at a time. The caller
 * sees it as a committed entry of type RAFT_ENTRY_CONF_CHANGE and applies its
 * own side of it (peer addresses, member list) then. docs/raft.md explains
 * why this differs from etcd's apply-time rule.
 *
 * Memory: see "Allocation" in docs/raft.md. In steady state (no elections,
 * no membership changes) the library allocates nothing per proposal except
 * amortized 64 KiB chunks for entry data.
 *
 * Not thread-safe: one thread owns a raft node and its storage.
 */
#ifndef SYNOD_RAFT_H
#define SYNOD_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h" /* buf */

/* ---------------------------------------------------------------- errors */

enum {
  RAFT_OK = 0,
  RAFT_EPROPOSAL_DROPPED = -1, /* no leader, leadership transfer under way,
                                  or this node is not a member */
  RAFT_ECOMPACTED = -2,        /* storage: the index was compacted away */
  RAFT_EUNAVAILABLE = -3,      /* storage: the index is beyond the log */
  RAFT_ESNAP_TEMP_UNAVAILABLE = -4, /* storage: no snapshot yet, try later */
  RAFT_EINVAL = -5,            /* bad argument or configuration */
  RAFT_EMALFORMED = -6,        /* undecodable message or conf change */
  RAFT_ECONF_PENDING = -7,     /* a conf change is not committed yet, or the
                                  leader has not committed in its term */
  RAFT_ESTORAGE = -8,          /* storage failed; the node is unusable */
  RAFT_EBUSY = -9,             /* not now: the previous ready is not advanced,
                                  or (raft_campaign) a leader lease holds */
};

const char *raft_strerror(int rc);

/* ---------------------------------------------------------------- log */

/* Cluster size limit: voters plus learners. */
#define RAFT_MAX_NODES 32

typedef enum { RAFT_ENTRY_NORMAL = 0, RAFT_ENTRY_CONF_CHANGE = 1 } raft_entry_type;

typedef struct {
  uint64_t term;
  uint64_t index;
  uint8_t *data; /* NULL when len == 0 */
  uint32_t len;
  uint8_t type;  /* raft_entry_type */
} raft_entry;

typedef struct {
  uint64_t term, vote, commit;
} raft_hard_state;

/* Members, each list strictly ascending, disjoint. */
typedef struct {
  uint64_t voters[RAFT_MAX_NODES];
  uint32_t n_voters;
  uint64_t learners[RAFT_MAX_NODES];
  uint32_t n_learners;
} raft_conf_state;

/* A snapshot replaces the log up to and including {index, term}. The data is
 * opaque to raft (the server streams its state DB separately, so it may be
 * empty). */
typedef struct {
  uint64_t index, term;
  raft_conf_state conf; /* membership as of index */
  const uint8_t *data;
  size_t len;
} raft_snapshot;

/* ---------------------------------------------------------------- conf changes */

typedef enum {
  RAFT_CC_ADD_VOTER = 0,   /* a new voter, or promote a learner */
  RAFT_CC_ADD_LEARNER = 1, /* a new learner, or demote a voter */
  RAFT_CC_REMOVE = 2,      /* voter or learner */
  RAFT_CC_UPDATE = 3,      /* no membership change; ctx is for the caller */
} raft_cc_type;

typedef struct {
  uint8_t type; /* raft_cc_type */
  uint64_t node_id;
  const uint8_t *ctx; /* caller's payload, e.g. the member's peer URLs */
  size_t ctx_len;
} raft_conf_change;

/* The entry-data encoding of a conf change. decode points cc->ctx into p. */
void raft_cc_encode(const raft_conf_change *cc, buf *out);
int raft_cc_decode(const uint8_t *p, size_t len, raft_conf_change *cc);

/* What a conf change does to a membership; every node computes it the same
 * way. A change that does not apply (adding an existing voter, removing a
 * non-member, exceeding RAFT_MAX_NODES, node id 0) leaves it unchanged and
 * returns false. */
bool raft_conf_apply(raft_conf_state *cs, const raft_conf_change *cc);

/* ---------------------------------------------------------------- messages */

typedef enum {
  RAFT_MSG_APP = 1,             /* leader -> follower: entries after {index, log_term} */
  RAFT_MSG_APP_RESP = 2,        /* index: last matching index, or the rejected one */
  RAFT_MSG_VOTE = 3,            /* {log_term, index}: candidate's last entry */
  RAFT_MSG_VOTE_RESP = 4,
  RAFT_MSG_PREVOTE = 5,         /* term: the term the candidate would take */
  RAFT_MSG_PREVOTE_RESP = 6,
  RAFT_MSG_HEARTBEAT = 7,       /* index: read round; commit: safe commit */
  RAFT_MSG_HEARTBEAT_RESP = 8,  /* index: the round echoed */
  RAFT_MSG_SNAP = 9,            /* snapshot */
  RAFT_MSG_PROP = 10,           /* follower -> leader: forwarded proposal */
  RAFT_MSG_READ_INDEX = 11,     /* follower -> leader: ctx */
  RAFT_MSG_READ_INDEX_RESP = 12,/* leader -> follower: index, ctx */
  RAFT_MSG_TIMEOUT_NOW = 13,    /* leader -> transferee: campaign now */
  RAFT_MSG_TRANSFER_LEADER = 14,/* follower -> leader: index = transferee */
} raft_msg_type;

/* One message. Fields a type does not use are zero. PROP, READ_INDEX and
 * TRANSFER_LEADER carry term 0: they are requests, not claims. */
typedef struct {
  uint8_t type;          /* raft_msg_type */
  bool reject;           /* *_RESP */
  bool transfer;         /* VOTE, PREVOTE: campaign of a leader transfer;
                            voters grant it even inside a leader lease */
  uint64_t from, to, term;
  uint64_t log_term;     /* APP: term of index; VOTE: candidate's last term;
                            APP_RESP reject: term at reject_hint */
  uint64_t index;
  uint64_t commit;
  uint64_t reject_hint;  /* APP_RESP reject: follower's guess of the match */
  const raft_entry *entries; /* APP (indexes index+1...), PROP */
  size_t n_entries;
  const raft_snapshot *snapshot; /* SNAP */
  const uint8_t *ctx;    /* READ_INDEX, READ_INDEX_RESP */
  size_t ctx_len;
} raft_msg;

/* Appends the message's compact binary encoding (docs/raft.md) to out.
 * RAFT_EINVAL if the message is not encodable (e.g. APP entries whose
 * indexes do not follow m->index). */
int raft_msg_encode(const raft_msg *m, buf *out);

/* Room a decoded message needs besides the input bytes. Zero-initialize,
 * reuse across calls, release with raft_decode_buf_free. */
typedef struct {
  raft_entry *entries;
  size_t cap;
  raft_snapshot snap;
} raft_decode_buf;
void raft_decode_buf_free(raft_decode_buf *db);

/* Decodes bytes read from the network. Any malformed, truncated, oversized
 * or non-canonical input returns RAFT_EMALFORMED. On success m's entry data,
 * ctx and snapshot data point into p, and its arrays into db: keep both until
 * raft_step() returns. */
int raft_msg_decode(const uint8_t *p, size_t len, raft_msg *m, raft_decode_buf *db);

const char *raft_msg_type_name(int type);
/* The type of an encoded message without decoding it (0 if it is not one):
 * lets a caller sort its mail before decoding any of it. */
int raft_msg_peek_type(const uint8_t *p, size_t len);

/* ---------------------------------------------------------------- storage */

/* The log as the caller has made it durable. Raft only reads it; the caller
 * writes it from each ready (hard state, entries, snapshot) and compacts it.
 *
 * The storage always knows the term of first_index()-1 (the snapshot's), so
 * an empty log after a snapshot at index i has first = i+1, last = i.
 * A fresh node has a snapshot at index 0: first 1, last 0.
 *
 * Entry data and snapshot data pointers handed out must stay valid until the
 * caller drops those entries (compaction, truncation) or that snapshot. The
 * caller must not drop entries that a ready it has not advanced hands out. */
typedef struct {
  void *ctx;
  /* hard state, and membership as of the snapshot */
  int (*initial_state)(void *ctx, raft_hard_state *hs, raft_conf_state *cs);
  /* Entries [lo, hi) into out (room for hi-lo), up to max_bytes of data but
   * at least one. RAFT_ECOMPACTED if lo < first_index. */
  int (*entries)(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry *out,
                 size_t *n);
  /* Term of entry i, for first_index()-1 <= i <= last_index(). */
  int (*term)(void *ctx, uint64_t i, uint64_t *term);
  uint64_t (*first_index)(void *ctx);
  uint64_t (*last_index)(void *ctx);
  /* The newest snapshot (to send to a lagging follower). */
  int (*snapshot)(void *ctx, raft_snapshot *snap);
} raft_storage;

/* An in-memory storage: what the tests use, and a base for the server's
 * cache over its WAL. Entry data is copied in. */
typedef struct raft_memstorage raft_memstorage;
raft_memstorage *raft_memstorage_new(void);
void raft_memstorage_free(raft_memstorage *ms);
const raft_storage *raft_memstorage_storage(raft_memstorage *ms);
void raft_memstorage_set_hard_state(raft_memstorage *ms, const raft_hard_state *hs);
/* Appends entries, replacing any existing entries from ents[0].index on.
 * Entries at or below the snapshot are skipped. RAFT_EINVAL on a gap. */
int raft_memstorage_append(raft_memstorage *ms, const raft_entry *ents, size_t n);
/* Replaces the whole log with a snapshot (one received in a ready). */
int raft_memstorage_apply_snapshot(raft_memstorage *ms, const raft_snapshot *snap);
/* Writes a new cluster's founding log into an empty storage: one conf change
 * entry per founding member (ADD_VOTER for voters, then ADD_LEARNER), term 1,
 * indexes 1..n, committed (hard state {1, 0, n}). Every founding member
 * writes the same; members added later start empty and learn everyone from
 * the log. Another storage bootstraps by writing the same entries, encoded
 * with raft_cc_encode. */
int raft_memstorage_bootstrap(raft_memstorage *ms, const raft_conf_state *cs);
/* Records a snapshot of the caller's state at applied index i (conf: as of
 * i, from raft_status.applied_conf). Does not drop entries. */
int raft_memstorage_create_snapshot(raft_memstorage *ms, uint64_t i, const raft_conf_state *cs,
                                    const void *data, size_t len);
/* Drops entries up to and including i (i <= last index; i must be covered by
 * a snapshot, i.e. not above the snapshot index). */
int raft_memstorage_compact(raft_memstorage *ms, uint64_t i);
raft_hard_state raft_memstorage_hard_state(const raft_memstorage *ms);

/* ---------------------------------------------------------------- node */

typedef enum {
  RAFT_FOLLOWER = 0,
  RAFT_PRE_CANDIDATE = 1,
  RAFT_CANDIDATE = 2,
  RAFT_LEADER = 3,
} raft_role;

typedef enum {
  RAFT_READ_SAFE = 0,  /* confirm leadership with a heartbeat round */
  RAFT_READ_LEASE = 1, /* trust a lease of election_tick minus margins;
                          requires check_quorum and bounded clock drift */
} raft_read_mode;

typedef struct {
  uint64_t id;                   /* non-zero */
  const raft_storage *storage;   /* borrowed; outlives the node */
  uint32_t election_tick;        /* T: followers campaign after [T, 2T) quiet ticks */
  uint32_t heartbeat_tick;       /* < election_tick */
  uint64_t applied;              /* index the caller's state already has; entries
                                    after it are handed out as committed (never
                                    below first_index-1: compacted entries are
                                    in the caller's snapshot) */
  uint64_t max_msg_bytes;        /* entry data per APP message (0: 1 MiB) */
  uint32_t max_inflight_msgs;    /* APP messages in flight per follower (0: 256) */
  uint64_t max_committed_bytes;  /* entry data per ready's committed list (0: 64 MiB) */
  bool check_quorum;             /* leader steps down without a quorum's contact */
  bool pre_vote;                 /* campaign only if a quorum would vote */
  bool disable_proposal_forwarding;
  uint8_t read_mode;             /* raft_read_mode */
  uint32_t lease_drift_ticks;    /* lease mode: ticks of clock drift to allow per
                                    election_tick (0: election_tick/8 + 1) */
  uint64_t seed;                 /* PRNG seed for election timeouts */
} raft_config;

typedef struct raft raft;

/* Creates a node from its storage. RAFT_EINVAL for a bad configuration or an
 * inconsistent storage; RAFT_ESTORAGE if the storage fails. */
int raft_new(const raft_config *cfg, raft **out);
void raft_free(raft *r);

void raft_tick(raft *r);
/* RAFT_ESTORAGE is the only error: messages that are stale, not addressed to
 * this node or semantically impossible are ignored. */
int raft_step(raft *r, const raft_msg *m);
/* RAFT_EPROPOSAL_DROPPED: no leader known, transfer in progress, forwarding
 * disabled, or this leader is not a member. */
int raft_propose(raft *r, const void *data, size_t len);
/* Also RAFT_EINVAL (change does not apply to the membership) and
 * RAFT_ECONF_PENDING (try again once the previous change commits). */
int raft_propose_conf_change(raft *r, const raft_conf_change *cc);
/* Asks for a read point: a raft_read_state with this ctx comes back in a
 * later ready (or never, if leadership changes: retry on timeout). Once the
 * caller has applied up to its index, a read of the state machine is
 * linearizable. RAFT_EPROPOSAL_DROPPED when no leader is known. */
int raft_read_index(raft *r, const void *ctx, size_t len);
/* Hands leadership to `to` (a voter): the leader brings it up to date, then
 * tells it to campaign; gives up after election_tick ticks. Proposals are
 * dropped meanwhile. Followers forward the request to the leader. */
int raft_transfer_leader(raft *r, uint64_t to);
/* Starts an election now (with pre-vote if configured). In lease mode a
 * follower that heard from its leader within election_tick ticks refuses
 * with RAFT_EBUSY: its lease promise covers its own candidacy too. */
int raft_campaign(raft *r);
/* The transport lost contact with `id`: stop pipelining to it. */
void raft_report_unreachable(raft *r, uint64_t id);
/* The transport finished sending a SNAP message to `id`. Required after every
 * SNAP message: the follower gets nothing else until it is reported. */
void raft_report_snapshot(raft *r, uint64_t id, bool ok);

/* ---------------------------------------------------------------- ready */

typedef struct {
  uint64_t index;
  const uint8_t *ctx;
  size_t ctx_len;
} raft_read_state;

typedef struct {
  /* Soft state: never persisted. */
  raft_role role;
  uint64_t lead;
  bool soft_state_changed;

  /* Persist before sending msgs_after_persist. */
  raft_hard_state hard_state;
  bool hard_state_changed;
  const raft_snapshot *snapshot; /* NULL, or install it (storage and state) */
  const raft_entry *entries;     /* append to the log, replacing any suffix */
  size_t n_entries;
  bool must_sync;                /* term, vote or entries changed: fsync */

  /* Send at once, in parallel with persisting (the leader's appends and
   * heartbeats: a leader counts its own log only once it is acknowledged
   * here, so sending it early is safe). */
  const raft_msg *msgs;
  size_t n_msgs;
  /* Send only after this ready's state is durable: votes, vote requests and
   * every response (they promise durable state). */
  const raft_msg *msgs_after_persist;
  size_t n_msgs_after_persist;

  /* Apply in order, after installing the snapshot if any. */
  const raft_entry *committed;
  size_t n_committed;

  const raft_read_state *read_states;
  size_t n_read_states;
} raft_ready;

/* Whether raft_get_ready would return anything. False while a ready is out. */
bool raft_has_ready(raft *r);
/* Fills rd. RAFT_EBUSY if the previous ready was not advanced. */
int raft_get_ready(raft *r, raft_ready *rd);
/* The caller has done everything rd asked for. May produce new work. */
int raft_advance(raft *r);

/* ---------------------------------------------------------------- status */

typedef enum {
  RAFT_PROGRESS_PROBE = 0,     /* one append at a time until a match is found */
  RAFT_PROGRESS_REPLICATE = 1, /* pipelined appends */
  RAFT_PROGRESS_SNAPSHOT = 2,  /* waiting for a snapshot to be installed */
} raft_progress_state;

typedef struct {
  uint64_t id;
  uint64_t match, next;
  uint8_t state;   /* raft_progress_state */
  bool learner;
  bool recent_active;
  uint32_t inflight;
} raft_peer_status;

typedef struct {
  uint64_t id;
  raft_role role;
  uint64_t lead, term, vote, commit, applied;
  uint64_t first_index, last_index;
  uint64_t lead_transferee;      /* leader: transfer target, 0 if none */
} raft_status;

void raft_status_get(const raft *r, raft_status *st);
/* Leader only: replication progress of each member (voters and learners),
 * e.g. to check that a learner is in sync before promoting it. Returns how
 * many were written; 0 on a non-leader. */
uint32_t raft_progress_get(const raft *r, raft_peer_status out[RAFT_MAX_NODES]);
/* Membership in force (the newest in the log) and as of the applied index
 * (what a snapshot taken now must record). Either may be NULL. */
void raft_conf_get(const raft *r, raft_conf_state *current, raft_conf_state *applied);
uint64_t raft_id(const raft *r);
uint64_t raft_lead(const raft *r);
raft_role raft_get_role(const raft *r);
const char *raft_role_name(raft_role role);

#endif
