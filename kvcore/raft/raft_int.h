/* raft_int.h - internals shared by the files of kvcore/raft. Not installed,
 * not included from outside this directory. */
#ifndef SYNOD_RAFT_INT_H
#define SYNOD_RAFT_INT_H

#include "raft.h"

#include <string.h>

#define RAFT_NONE 0
/* Most entries one APP message carries (bounds the scratch arrays). */
#define RAFT_MSG_MAX_ENTRIES 4096
/* Most committed entries one ready hands out (the byte budget alone does
 * not bound the count of tiny entries after a long outage). */
#define RAFT_READY_MAX_COMMITTED 65536
/* Heartbeat rounds whose send tick the leader remembers for its lease. */
#define RAFT_ROUND_RING 64

#define RAFT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RAFT_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---------------------------------------------------------------- varints
 * LEB128, as protobuf. Decoding is strict: at most 10 bytes, no overflow,
 * and no redundant trailing zero groups, so every value has exactly one
 * encoding and decode(encode(x)) round-trips bytes as well as values. */
static inline size_t uvarint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static inline uint8_t *uvarint_put(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

typedef struct {
  const uint8_t *p, *end;
  bool bad;
} raft_cursor;

static inline uint64_t cursor_uvarint(raft_cursor *c) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (c->p >= c->end) break;
    uint8_t b = *c->p++;
    if (shift == 63 && b > 1) break; /* overflow */
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (b == 0 && shift > 0) break; /* non-minimal */
      return v;
    }
  }
  c->bad = true;
  c->p = c->end;
  return 0;
}

static inline uint8_t cursor_u8(raft_cursor *c) {
  if (c->p >= c->end) {
    c->bad = true;
    return 0;
  }
  return *c->p++;
}

/* n bytes from the cursor, or NULL (and bad) if fewer remain. */
static inline const uint8_t *cursor_bytes(raft_cursor *c, uint64_t n) {
  if ((uint64_t)(c->end - c->p) < n) {
    c->bad = true;
    c->p = c->end;
    return NULL;
  }
  const uint8_t *q = c->p;
  c->p += n;
  return q;
}

/* Grows *p (an array of elem-byte items, *cap of them) to hold need items. */
void raft_grow(void *pp, size_t *cap, size_t need, size_t elem);

/* ---------------------------------------------------------------- slab
 * Entry data lives in 64 KiB chunks, refcounted: a chunk is freed when the
 * last entry in it is released and the slab has moved on to a newer chunk.
 * One malloc per chunk instead of one per entry, and entries are released
 * in roughly the order they were made, so chunks do not linger. */
typedef struct slab_chunk slab_chunk;
typedef struct {
  slab_chunk *cur;
} slab;

void slab_init(slab *s);
/* Frees the current chunk; every allocation must have been released. */
void slab_destroy(slab *s);
/* A copy of p[0..n) (NULL if n == 0), 8-byte aligned. */
uint8_t *slab_dup(slab *s, const void *p, size_t n);
void slab_release(uint8_t *data);
/* Chunks allocated so far (for tests and the benchmark). */
extern uint64_t slab_chunks_allocated;

/* ---------------------------------------------------------------- scratch
 * A bump allocator reset as a whole; keeps its blocks, so a steady workload
 * stops allocating. Holds what a ready's messages point to. */
typedef struct scratch_block scratch_block;
typedef struct {
  scratch_block *head, *cur;
} scratch;

void *scratch_alloc(scratch *s, size_t n); /* 8-byte aligned, not zeroed */
void *scratch_dup(scratch *s, const void *p, size_t n);
void scratch_reset(scratch *s);
void scratch_free(scratch *s);

/* ---------------------------------------------------------------- log
 * The log is the caller's durable storage plus the unstable tail: entries
 * (and possibly a snapshot) raft has accepted but the caller has not yet
 * acknowledged as persisted. */
typedef struct {
  raft_snapshot *snap;      /* pending snapshot (owned, data copied), or NULL */
  raft_entry *ents;         /* ents[i].index == offset + i */
  size_t n, cap;
  uint64_t offset;
  slab data;                /* owns ents[*].data */
} raft_unstable;

typedef struct {
  const raft_storage *st;
  raft_unstable u;
  uint64_t committed;
  uint64_t applied;
  /* Data of entries dropped while a ready may still point at them; released
   * at the next advance. */
  uint8_t **graveyard;
  size_t n_graveyard, cap_graveyard;
  bool defer_release;
  int err;                  /* sticky storage error */
  /* Scratch array for storage->entries() */
  raft_entry *fetch;
  size_t fetch_cap;
} raft_log;

int log_init(raft_log *l, const raft_storage *st);
void log_free(raft_log *l);
uint64_t log_first_index(raft_log *l);
uint64_t log_last_index(raft_log *l);
/* 0 with *term set, or RAFT_ECOMPACTED / RAFT_EUNAVAILABLE / storage error.
 * Index 0 has term 0. */
int log_term(raft_log *l, uint64_t i, uint64_t *term);
/* Term of i, or 0 if unknown (compacted, unavailable). */
uint64_t log_term_or_zero(raft_log *l, uint64_t i);
uint64_t log_last_term(raft_log *l);
bool log_match_term(raft_log *l, uint64_t i, uint64_t term);
/* Whether {index, term} (a candidate's last entry) is at least as
 * up-to-date as this log. */
bool log_is_up_to_date(raft_log *l, uint64_t index, uint64_t term);
/* Appends after the last entry (the leader's path). Data is copied. */
void log_append_new(raft_log *l, uint64_t term, uint8_t type, const void *data, size_t len);
/* A follower's append: entries starting at ents[0].index, which must be
 * in (committed, last+1]. Conflicting tail entries are replaced. */
void log_truncate_append(raft_log *l, const raft_entry *ents, size_t n);
/* First index among ents whose term differs from ours (or that is new);
 * 0 if all match. */
uint64_t log_find_conflict(raft_log *l, const raft_entry *ents, size_t n);
/* Largest index <= i whose term is <= term (the rejection hint). */
uint64_t log_find_conflict_by_term(raft_log *l, uint64_t i, uint64_t term);
void log_commit_to(raft_log *l, uint64_t i);
/* Entries [lo, hi) up to max_bytes (at least one) as headers in *out, *n.
 * Data pointers are borrowed (storage or unstable). *out points into the
 * log's fetch scratch or the unstable array: copy before the next call. */
int log_slice(raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry **out,
              size_t *n);
void log_restore(raft_log *l, const raft_snapshot *snap);
/* The caller persisted entries up to {i, t}: drop them from unstable. */
void log_stable_to(raft_log *l, uint64_t i, uint64_t t);
void log_stable_snap_to(raft_log *l, uint64_t i);
/* Last index the caller has made durable. */
uint64_t log_stable_last(raft_log *l);
void log_release_graveyard(raft_log *l);

/* ---------------------------------------------------------------- progress
 * The leader's view of one member's log. */
typedef struct {
  uint64_t *index;  /* ring of last indexes of APP messages in flight */
  size_t start, count, cap;
} raft_inflights;

typedef struct {
  uint64_t id;
  uint64_t match, next;
  uint64_t pending_snapshot;
  uint64_t acked_round;      /* highest read round acknowledged this term */
  uint8_t state;             /* raft_progress_state */
  bool learner;
  bool probe_sent;           /* probe: wait for a reply or the next heartbeat */
  bool recent_active;
  uint64_t commit_sent;      /* commit index in the last append sent */
  uint64_t hb_match;         /* match when the last heartbeat answer came */
  uint32_t stalls;           /* heartbeat answers since match last moved */
  raft_inflights ifl;
} raft_progress;

void inflights_reset(raft_inflights *f);
bool inflights_full(const raft_inflights *f);
void inflights_add(raft_inflights *f, uint64_t index);
void inflights_free_le(raft_inflights *f, uint64_t index);
void inflights_free_first(raft_inflights *f);

bool progress_paused(const raft_progress *pr);
void progress_become_probe(raft_progress *pr);
void progress_become_replicate(raft_progress *pr);
void progress_become_snapshot(raft_progress *pr, uint64_t snap_index);
bool progress_maybe_update(raft_progress *pr, uint64_t n);
bool progress_maybe_decr_to(raft_progress *pr, uint64_t rejected, uint64_t match_hint);

/* ---------------------------------------------------------------- membership */

bool conf_is_voter(const raft_conf_state *cs, uint64_t id);
/* Strictly ascending, disjoint, non-zero, within limits. */
bool conf_valid(const raft_conf_state *cs);

/* The membership in force is the newest in the log. Changes above the
 * commit index can still be truncated away, so they are kept until commit. */
typedef struct {
  uint64_t index;
  raft_conf_state conf;
} raft_conf_point;

typedef struct {
  raft_conf_point base;      /* newest change at or below commit */
  raft_conf_point *pending;  /* changes above commit, ascending */
  size_t n_pending, cap_pending;
} raft_conf_log;

const raft_conf_state *conf_log_current(const raft_conf_log *c);
void conf_log_reset(raft_conf_log *c, uint64_t index, const raft_conf_state *cs);
void conf_log_push(raft_conf_log *c, uint64_t index, const raft_conf_state *cs);
void conf_log_truncate(raft_conf_log *c, uint64_t from_index);
void conf_log_commit(raft_conf_log *c, uint64_t commit);
void conf_log_free(raft_conf_log *c);

/* ---------------------------------------------------------------- read index */

typedef struct {
  uint64_t from;     /* RAFT_NONE: this node's own request */
  uint64_t index;    /* commit index when the request arrived */
  uint64_t round;    /* heartbeat round whose quorum ack confirms it */
  uint8_t *ctx;
  size_t ctx_len;
} raft_read_req;

typedef struct {
  raft_read_req *q;
  size_t head, n, cap;   /* FIFO */
} raft_read_queue;

/* ---------------------------------------------------------------- outbox */

typedef struct {
  raft_msg *msgs;
  size_t n_msgs, cap_msgs;
  raft_msg *after;
  size_t n_after, cap_after;
  raft_read_state *reads;
  size_t n_reads, cap_reads;
  scratch mem;    /* entries, data, ctx and snapshots of the above */
} raft_outbox;

/* ---------------------------------------------------------------- node */

struct raft {
  uint64_t id;
  raft_config cfg;
  uint64_t term, vote, lead;
  raft_role role;
  raft_log log;
  raft_conf_log conf;
  raft_conf_state applied_conf;

  raft_progress prs[RAFT_MAX_NODES]; /* leader: one per member */
  uint32_t n_prs;

  /* Votes received in the current campaign: id -> granted. */
  uint64_t vote_from[RAFT_MAX_NODES];
  bool vote_granted[RAFT_MAX_NODES];
  uint32_t n_votes;

  uint32_t election_elapsed, heartbeat_elapsed, randomized_timeout;
  uint64_t ticks;            /* ticks since start: the lease clock */
  uint32_t since_leader;     /* ticks since we last heard from a leader (or led) */
  uint64_t rng;

  uint64_t lead_transferee;
  bool committed_in_term;    /* leader: an entry of its term is committed */

  /* Read index (leader). */
  raft_read_queue reads;     /* waiting for a heartbeat quorum */
  raft_read_queue reads_unready; /* waiting for the first commit in term */
  uint64_t round;            /* last heartbeat round started */
  bool round_wanted;         /* start a round at the next flush */
  uint64_t round_tick[RAFT_ROUND_RING];
  bool has_lease;            /* lease_tick is set (this term) */
  bool lease_revoked;        /* a TIMEOUT_NOW went out this term */
  uint64_t lease_tick;       /* send tick of the newest quorum-acked round */


  raft_outbox out[2];        /* pending and in-ready, swapped by raft_ready */
  int cur_out;               /* index of the pending outbox */

  /* Ready bookkeeping. */
  bool ready_out;
  raft_hard_state prev_hs;
  raft_role prev_role;
  uint64_t prev_lead;
  raft_entry *rd_ents;       /* copies of headers handed out */
  size_t cap_rd_ents;
  raft_entry *rd_committed;
  size_t cap_rd_committed;
  raft_snapshot rd_snap;     /* copy of the pending snapshot handed out */
  uint8_t *rd_snap_data;
  bool rd_has_snap;
  uint64_t rd_last_index, rd_last_term, rd_committed_hi;
  size_t rd_n_committed;

  int fatal;                 /* sticky error: the node is unusable */
  bool flushed;              /* nothing happened since the last flush */
};

/* Every public entry point that can change state starts with this, so that
 * raft_get_ready() right after raft_has_ready() does not flush twice. */
#define RAFT_ENTER(r) ((r)->flushed = false)

/* raft.c */
void raft_become_follower(raft *r, uint64_t term, uint64_t lead);
void raft_become_leader(raft *r);
void raft_hup(raft *r, bool transfer);
bool raft_promotable(const raft *r);
void raft_send(raft *r, const raft_msg *m);
void raft_reset_randomized_timeout(raft *r);

int raft_leader_propose(raft *r, const raft_entry *ents, size_t n);
void raft_commit_to(raft *r, uint64_t i);

/* replicate.c */
void raft_step_leader_request(raft *r, const raft_msg *m);
int raft_leader_transfer(raft *r, uint64_t to);
raft_progress *raft_progress_of(raft *r, uint64_t id);
void raft_progress_rebuild(raft *r);
bool raft_send_append(raft *r, raft_progress *pr, bool send_if_empty);
void raft_bcast_heartbeat(raft *r);
bool raft_maybe_commit(raft *r);
bool raft_append_entry(raft *r, uint8_t type, const void *data, size_t len);
void raft_handle_append(raft *r, const raft_msg *m);
void raft_handle_heartbeat(raft *r, const raft_msg *m);
void raft_handle_snapshot(raft *r, const raft_msg *m);
void raft_step_leader_progress(raft *r, const raft_msg *m);
void raft_flush(raft *r);
uint32_t raft_quorum_size(const raft *r);
void raft_on_conf_changed(raft *r);
void raft_abort_transfer(raft *r);
void raft_send_timeout_now(raft *r, uint64_t to);

/* read.c */
void read_queue_free(raft_read_queue *q);
void read_queue_clear(raft_read_queue *q);
void raft_reads_reset(raft *r);
void raft_read_request(raft *r, uint64_t from, const uint8_t *ctx, size_t len);
void raft_read_first_commit(raft *r);
void raft_read_ack(raft *r, raft_progress *pr, uint64_t round);
void raft_read_round_started(raft *r);
bool raft_lease_valid(const raft *r);

/* conf.c */
int raft_conf_scan(raft *r, uint64_t lo, uint64_t hi);
void raft_conf_on_append(raft *r, const raft_entry *e);
void raft_conf_on_apply(raft *r, const raft_entry *e);

/* outbox */
void outbox_reset(raft_outbox *o);
void outbox_free(raft_outbox *o);

#endif
