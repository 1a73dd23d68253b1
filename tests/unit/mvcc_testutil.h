/* mvcc_testutil.h - helpers the kvcore/mvcc tests share: collecting visits
 * into lists, short-hand spans, a store in a temporary directory. */
#ifndef SYNOD_MVCC_TESTUTIL_H
#define SYNOD_MVCC_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mvcc.h"

/* A copied key-value, independent of the transaction it came from. */
typedef struct {
  uint8_t *key, *value;
  size_t key_len, value_len;
  int64_t create_rev, mod_rev, version, lease;
  /* changes() only */
  int64_t main, sub;
  bool is_delete;
} tkv;

typedef struct {
  tkv *v;
  size_t n, cap;
  size_t stop_after; /* visitor returns 1 after this many (0: never) */
} tkv_list;

void tkv_list_add(tkv_list *l, const mvcc_kv *kv);
void tkv_list_clear(tkv_list *l);
/* Visitors that append to a tkv_list. */
int tkv_collect(void *arg, const mvcc_kv *kv);
int tkv_collect_change(void *arg, const mvcc_change *c);

/* Spans from C strings. */
mvcc_span span_key(const char *k);
mvcc_span span_range(const char *k, const char *end);
mvcc_span span_from(const char *k);

/* A fresh temporary directory (malloc'd path), and its removal (frees it). */
char *tmpdir_new(void);
void tmpdir_remove(char *dir);

/* Opens a store in a fresh temporary directory with a long checkpoint
 * interval (tests checkpoint explicitly). dir receives a malloc'd path. */
mvcc_store *topen(char **dir);
mvcc_store *topen_dir(const char *dir);

/* One-request helpers; each is a whole write transaction. */
int tput(mvcc_store *s, const char *key, const char *value, int64_t lease);
int tdel(mvcc_store *s, mvcc_span sp, int64_t *deleted);
/* Reads the value of key at rev (0: current) into a static buffer; NULL if
 * absent; *rc gets the return code. */
const char *tget(mvcc_store *s, const char *key, int64_t rev, int *rc);
int64_t trev(mvcc_store *s);
/* Puts keys "key-00000" .. count-1, each a value of value_len 'v's,
 * per_txn puts to a write transaction. MVCC_OK or the first failure. */
int tfill(mvcc_store *s, int count, int per_txn, size_t value_len);

/* A small, fast PRNG for randomized tests. */
typedef struct { uint64_t s; } trng;
static inline uint64_t trng_next(trng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static inline uint64_t trng_below(trng *r, uint64_t n) { return n ? trng_next(r) % n : 0; }
static inline bool trng_chance(trng *r, int percent) { return (int)trng_below(r, 100) < percent; }

/* testing.h's REQUIRE evaluates its condition twice; this evaluates a call
 * with side effects once (needs testing.h where it is used). */
#define REQUIRE_EQ(expr, want)                          \
  do {                                                  \
    long long req_got_ = (long long)(expr);             \
    REQUIRE(req_got_ == (long long)(want));             \
  } while (0)

/* Multiplies default iteration counts: SYNOD_LONG=N for manual runs. */
int tlong_factor(void);

#endif
