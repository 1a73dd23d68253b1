/* Ownership as a function of a store snapshot: the key with the smallest
 * create revision under a prefix owns. */
#include "concurrency.h"
#include "cc_int.h"

#include <string.h>

size_t cc_prefix(const uint8_t *name, size_t name_len, uint8_t *out) {
  if (name_len) memcpy(out, name, name_len);
  out[name_len] = '/';
  return name_len + 1;
}

mvcc_span cc_prefix_span(const uint8_t *pfx, size_t len, uint8_t *end_buf) {
  /* etcd's prefix end: the prefix with its last byte below 0xff
   * incremented and the rest dropped; all 0xff: every key from pfx on. */
  mvcc_span s = {.key = pfx, .key_len = len};
  size_t n = len;
  while (n > 0 && pfx[n - 1] == 0xff) n--;
  if (n == 0) {
    s.open_end = true;
    return s;
  }
  memcpy(end_buf, pfx, n);
  end_buf[n - 1]++;
  s.end = end_buf;
  s.end_len = n;
  return s;
}

typedef struct {
  mvcc_kv best;
  bool found;
  int64_t below; /* > 0: stop at the first key that precedes (below, key) */
  const uint8_t *key;
  size_t key_len;
} owner_scan;

/* Byte order, shorter first on a common prefix (the store's key order). */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c) return c;
  return alen < blen ? -1 : alen > blen;
}

static int owner_visit(void *arg, const mvcc_kv *kv) {
  owner_scan *o = arg;
  if (o->below > 0) {
    /* Keys created by one Txn tie; the first in key order wins. */
    if (kv->create_rev < o->below ||
        (kv->create_rev == o->below && key_cmp(kv->key, kv->key_len, o->key, o->key_len) < 0)) {
      o->found = true;
      o->best = *kv;
      return 1;
    }
    return 0;
  }
  /* Ties (keys created by one Txn) go to the first key in key order. */
  if (!o->found || kv->create_rev < o->best.create_rev) {
    o->best = *kv;
    o->found = true;
  }
  return 0;
}

int cc_owner(mvcc_txn *t, const uint8_t *pfx, size_t pfx_len, int64_t rev, mvcc_kv *owner) {
  uint8_t end[MVCC_MAX_KEY + 2];
  if (pfx_len > MVCC_MAX_KEY + 1) return 0; /* no stored key is that long */
  mvcc_span s = cc_prefix_span(pfx, pfx_len, end);
  owner_scan o = {.found = false};
  int rc = mvcc_range(t, &s, rev, 0, 0, owner_visit, &o, NULL);
  if (rc < 0) return rc;
  if (!o.found) return 0;
  *owner = o.best;
  return 1;
}

static int first_visit(void *arg, const mvcc_kv *kv) {
  *(mvcc_kv *)arg = *kv;
  return 1;
}

int cc_key_state(mvcc_txn *t, const uint8_t *pfx, size_t pfx_len, const uint8_t *key, size_t key_len,
                 int64_t create_rev) {
  mvcc_kv kv = {.create_rev = 0};
  mvcc_span k = {.key = key, .key_len = key_len};
  int rc = mvcc_range(t, &k, 0, 1, 0, first_visit, &kv, NULL);
  if (rc == MVCC_EKEYTOOLONG || rc == MVCC_EINVAL) return CC_GONE;
  if (rc < 0) return rc;
  if (kv.create_rev == 0 || kv.create_rev != create_rev) return CC_GONE;
  /* Owner unless some key under the prefix is older: stop at the first. */
  uint8_t end[MVCC_MAX_KEY + 2];
  mvcc_span s = cc_prefix_span(pfx, pfx_len, end);
  owner_scan o = {.found = false, .below = create_rev, .key = key, .key_len = key_len};
  rc = mvcc_range(t, &s, 0, 0, 0, owner_visit, &o, NULL);
  if (rc < 0) return rc;
  return o.found ? CC_WAITING : CC_OWNER;
}
