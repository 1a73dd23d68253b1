/* raft_bench - throughput of kvcore/raft alone: a 3-node group in one
 * thread (one core), no I/O. Each round the leader takes a batch of small
 * proposals; then every node runs its ready cycle (persist into its
 * memstorage, encode and queue messages, apply, advance) and every queued
 * message is decoded and stepped. So the figure includes the codec and the
 * in-memory storage, as the server will use them, but no disk or network.
 *
 * Allocation counting wraps malloc/calloc/realloc/free at link time
 * (-Wl,--wrap), so it sees every allocation made by raft, memstorage and
 * base; the benchmark's own buffers are reused and stop allocating after
 * warm-up.
 *
 *   raft_bench [total-proposals] [batch] [payload-bytes]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft.h"

/* ---------------------------------------------------------------- allocation counting */

static uint64_t n_alloc;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n) {
  n_alloc++;
  return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m) {
  n_alloc++;
  return __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n) {
  n_alloc++;
  return __real_realloc(p, n);
}
void __wrap_free(void *p) { __real_free(p); }

/* ---------------------------------------------------------------- the group */

#define N 3

typedef struct {
  buf bytes;   /* encoded messages, back to back */
  size_t *len; /* length of each */
  size_t n, cap;
} queue;

typedef struct {
  raft *r;
  raft_memstorage *ms;
  uint64_t applied, snap_at;
  queue in;
} node;

static node nodes[N + 1];
static raft_decode_buf db;
static uint64_t applied_payloads; /* at the leader */

static void enqueue(const raft_msg *m) {
  queue *q = &nodes[m->to].in;
  size_t before = q->bytes.len;
  if (raft_msg_encode(m, &q->bytes) != 0) abort();
  if (q->n == q->cap) {
    q->cap = q->cap ? q->cap * 2 : 64;
    q->len = realloc(q->len, q->cap * sizeof *q->len);
  }
  q->len[q->n++] = q->bytes.len - before;
}

static void cycle(int id) {
  node *nd = &nodes[id];
  while (raft_has_ready(nd->r)) {
    raft_ready rd;
    if (raft_get_ready(nd->r, &rd) != 0) abort();
    for (size_t i = 0; i < rd.n_msgs; i++) enqueue(&rd.msgs[i]);
    if (rd.n_entries && raft_memstorage_append(nd->ms, rd.entries, rd.n_entries) != 0) abort();
    if (rd.hard_state_changed) raft_memstorage_set_hard_state(nd->ms, &rd.hard_state);
    for (size_t i = 0; i < rd.n_msgs_after_persist; i++) enqueue(&rd.msgs_after_persist[i]);
    for (size_t i = 0; i < rd.n_committed; i++)
      if (id == 1 && rd.committed[i].len) applied_payloads++;
    if (rd.n_committed) nd->applied = rd.committed[rd.n_committed - 1].index;
    if (raft_advance(nd->r) != 0) abort();
  }
  /* Keep memory flat: snapshot and compact every 64k entries, as the
   * server will. */
  if (nd->applied - nd->snap_at >= 65536) {
    raft_conf_state cs;
    raft_conf_get(nd->r, NULL, &cs);
    raft_memstorage_create_snapshot(nd->ms, nd->applied, &cs, NULL, 0);
    raft_memstorage_compact(nd->ms, nd->applied);
    nd->snap_at = nd->applied;
  }
}

static bool deliver(void) {
  bool any = false;
  for (int id = 1; id <= N; id++) {
    queue *q = &nodes[id].in;
    size_t off = 0;
    for (size_t i = 0; i < q->n; i++) {
      raft_msg m;
      if (raft_msg_decode(q->bytes.data + off, q->len[i], &m, &db) != 0) abort();
      if (raft_step(nodes[id].r, &m) != 0) abort();
      off += q->len[i];
      any = true;
    }
    q->n = 0;
    q->bytes.len = 0;
  }
  return any;
}

static void pump(void) {
  bool more = true;
  while (more) {
    for (int id = 1; id <= N; id++) cycle(id);
    more = deliver();
  }
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  uint64_t total = argc > 1 ? strtoull(argv[1], NULL, 0) : 4000000;
  uint64_t batch = argc > 2 ? strtoull(argv[2], NULL, 0) : 256;
  size_t payload = argc > 3 ? strtoul(argv[3], NULL, 0) : 16;
  if (payload < 8) payload = 8;
  raft_conf_state cs = {.voters = {1, 2, 3}, .n_voters = 3};
  for (int id = 1; id <= N; id++) {
    nodes[id].ms = raft_memstorage_new();
    raft_memstorage_bootstrap(nodes[id].ms, &cs);
    raft_config c = {.id = (uint64_t)id, .storage = raft_memstorage_storage(nodes[id].ms),
                     .election_tick = 10, .heartbeat_tick = 1, .max_inflight_msgs = 256};
    if (raft_new(&c, &nodes[id].r) != 0) abort();
  }
  raft_campaign(nodes[1].r);
  pump();
  if (raft_get_role(nodes[1].r) != RAFT_LEADER) abort();

  uint8_t *data = calloc(1, payload);
  /* Warm up: buffers, chunks and arrays reach their working size. */
  uint64_t warm = total / 10, proposed = 0;
  double t0 = 0;
  uint64_t a0 = 0, applied0 = 0;
  while (applied_payloads < total + warm) {
    if (proposed >= warm && t0 == 0) {
      pump();
      t0 = now_s();
      a0 = n_alloc;
      applied0 = applied_payloads;
    }
    uint64_t k = batch;
    if (proposed < total + warm) {
      for (uint64_t i = 0; i < k && proposed < total + warm; i++, proposed++) {
        memcpy(data, &proposed, 8);
        if (raft_propose(nodes[1].r, data, payload) != 0) abort();
      }
    }
    /* One pass, not to quiescence: the next batch is proposed while this one
     * is still being acknowledged, as under a steady client load. */
    for (int id = 1; id <= N; id++) cycle(id);
    deliver();
  }
  double secs = now_s() - t0;
  uint64_t done = applied_payloads - applied0, allocs = n_alloc - a0;
  printf("raft_bench: 3 nodes, one thread, %zu-byte proposals, batches of %llu\n", payload,
         (unsigned long long)batch);
  printf("  %llu proposals committed and applied in %.3f s: %.0f proposals/s\n",
         (unsigned long long)done, secs, (double)done / secs);
  printf("  %llu allocations: %.4f per proposal (whole group: 3 logs, 3 storages)\n",
         (unsigned long long)allocs, (double)allocs / (double)done);
  for (int id = 1; id <= N; id++) {
    raft_free(nodes[id].r);
    raft_memstorage_free(nodes[id].ms);
    buf_free(&nodes[id].in.bytes);
    free(nodes[id].in.len);
  }
  raft_decode_buf_free(&db);
  free(data);
  return 0;
}
