/* mvcc_model.h - etcd's MVCC semantics, written as plainly as possible, to
 * check kvcore/mvcc against.
 *
 * The model never forgets: it keeps every change of every key, and
 * compaction only moves compact_rev. Each question ("what is key k at
 * revision r", "is this change kept") is a linear scan over one key's
 * versions, so the answers are easy to believe. Keys come from a fixed,
 * sorted universe: every string of length 1..3 over {0x00, 'a', 'b', 0xff},
 * plus two long keys (300 and 511 bytes), so ranges have plenty to cover.
 */
#ifndef SYNOD_MVCC_MODEL_H
#define SYNOD_MVCC_MODEL_H

#include "mvcc_testutil.h"

typedef struct {
  int64_t main, sub;
  bool del;
  int64_t create, version, lease;
  uint8_t *val;
  size_t vlen;
} mver;

typedef struct {
  uint8_t key[MVCC_MAX_KEY];
  size_t klen;
  mver *v;
  size_t n, cap;
} mkey;

typedef struct {
  int key;
  size_t ver;
} mref;

typedef struct {
  mkey *keys; /* sorted by bytes_cmp */
  int nkeys;
  mref *hist; /* every change, in revision order */
  size_t nhist, cap;
  int64_t rev, compact_rev;
  int64_t sub; /* changes in the open request */
  uint64_t applied;
} model;

typedef struct {
  size_t nhist;
  int64_t rev, compact_rev, sub;
  uint64_t applied;
} model_mark;

void model_init(model *m);
void model_free(model *m);
model_mark model_save(const model *m);
void model_rollback(model *m, model_mark mark);
/* A deep copy (for a snapshot to compare against later). */
void model_copy(model *dst, const model *src);

/* The revision reads at "current" see. */
int64_t model_cur(const model *m);
void model_rev_end(model *m);
/* prev receives the replaced version (version 0 if none). */
void model_put(model *m, int key, const uint8_t *val, size_t vlen, int64_t lease, mver *prev);
/* Returns how many keys it deleted; their last versions go to *gone (may be
 * NULL), in key order. */
int64_t model_delete(model *m, const mvcc_span *sp, tkv_list *gone);
/* Newest version of key with main <= rev, or NULL. */
const mver *model_at(const model *m, int key, int64_t rev);
bool model_kept(const model *m, int key, size_t ver, int64_t at);
bool model_in_span(const model *m, int key, const mvcc_span *sp);

/* Random inputs. */
int model_random_key(const model *m, trng *r);
mvcc_span model_random_span(const model *m, trng *r);

/* Each check asks the store and the model the same question and returns
 * the number of mismatches, printing them with `ctx`. */
int model_check_range(const model *m, mvcc_txn *t, const mvcc_span *sp, int64_t rev, int64_t limit,
                      unsigned flags, const char *ctx);
int model_check_changes(const model *m, mvcc_txn *t, int64_t from, int64_t to, const char *ctx);
int model_check_get_before(const model *m, mvcc_txn *t, int key, int64_t main, int64_t sub,
                           const char *ctx);
int model_check_lease_keys(const model *m, mvcc_txn *t, int64_t lease, const char *ctx);
/* Everything: every readable revision in full, the history, leases, the
 * applied index. */
int model_check_all(const model *m, mvcc_txn *t, const char *ctx);

#endif
