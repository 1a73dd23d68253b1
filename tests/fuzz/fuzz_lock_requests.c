/* Fuzzes Lock/Election request handling below the gRPC layer: the input is
 * a series of actions, each a selector byte and a length-prefixed payload
 * decoded as the etcd request message it stands for:
 *
 *   0 LockRequest     -> etcd's acquire Txn (create "<name>/<lease hex>"
 *                        unless it exists) on the store, then cc_wait
 *   1 UnlockRequest   -> delete the key
 *   2 CampaignRequest -> the acquire Txn with the value, then cc_wait
 *   3 ProclaimRequest -> the guarded Put (same create revision, oldest)
 *   4 ResignRequest   -> the guarded Delete
 *   5 LeaderRequest   -> open an observer (its queue size from the payload)
 *   6 cancel a waiter    7 a lease "revoked": every key of that lease goes
 *   8 an observer drains or closes    9 compaction at the current revision
 *
 * each change committed and followed by cc_applied, as the apply thread
 * does. Invariants after every action: a waiter is granted only while its
 * key owns, at most one granted key per name exists, a waiter whose key
 * went before it owned is lost, an observer that is not lagging last sent
 * the current owner. Nothing may crash, leak or trip the sanitizers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "concurrency.h"
#include "mvcc.h"
#include "proto.h"

enum { MAX_WAITERS = 32, MAX_OBS = 4, MAX_ACTIONS = 96 };

static mvcc_store *store;
static cc_table *tab;
static uint64_t input_no;

typedef struct {
  cc_waiter w;
  bool used, decided, granted, cancelled;
  uint8_t pfx[80], key[120];
  size_t pfx_len, key_len;
  int64_t create_rev;
} fw;

typedef struct {
  cc_observer *o;
  size_t queued;
  bool has;
  uint8_t key[120];
  size_t key_len;
  int64_t mod;
  uint8_t pfx[80];
  size_t pfx_len;
} fo;

static fw waiters[MAX_WAITERS];
static fo observers[MAX_OBS];

static void on_decided(cc_waiter *w, cc_outcome o, int64_t rev) {
  (void)rev;
  fw *x = w->arg;
  if (x->decided) abort(); /* decided twice */
  x->decided = true;
  x->granted = o == CC_GRANTED;
}

static int obs_send(void *arg, const mvcc_kv *kv, int64_t rev) {
  (void)rev;
  fo *o = arg;
  o->has = kv != NULL;
  o->key_len = kv ? kv->key_len : 0;
  if (kv) memcpy(o->key, kv->key, kv->key_len < sizeof o->key ? kv->key_len : sizeof o->key);
  o->mod = kv ? kv->mod_rev : 0;
  return 0;
}
static size_t obs_queued(void *arg) { return ((fo *)arg)->queued; }
static void obs_compacted(void *arg) { (void)arg; }
static const cc_observer_ops ops = {.send = obs_send, .queued = obs_queued, .fail_compacted = obs_compacted};

static void setup(void) {
  char dir[128];
  snprintf(dir, sizeof dir, "/tmp/synod-fuzz-lock-%d", (int)getpid());
  log_set_level(LOG_FATAL);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) abort();
  mvcc_options o = {.dir = dir, .map_size = 1ull << 31};
  if (mvcc_open(&o, &store) != MVCC_OK) abort();
  cc_options co = {.store = store, .observer_queue_limit = 64, .catchup_revisions = 4};
  tab = cc_table_new(&co);
}

/* Names are kept short and in this input's own namespace. */
static size_t make_prefix(const ProtobufCBinaryData *name, uint8_t *out) {
  int n = snprintf((char *)out, 40, "%llu:", (unsigned long long)input_no);
  size_t len = name->len > 16 ? 16 : name->len;
  memcpy(out + n, name->data, len);
  return cc_prefix(out, (size_t)n + len, out);
}

static size_t make_key(const uint8_t *pfx, size_t pfx_len, int64_t lease, uint8_t *out) {
  memcpy(out, pfx, pfx_len);
  return pfx_len + (size_t)snprintf((char *)out + pfx_len, 24, "%llx", (unsigned long long)(lease & 0xff));
}

static int first(void *arg, const mvcc_kv *kv) {
  *(mvcc_kv *)arg = *kv;
  return 1;
}

static int64_t create_rev(mvcc_txn *t, const uint8_t *key, size_t len) {
  mvcc_kv kv = {0};
  mvcc_span s = {.key = key, .key_len = len};
  if (mvcc_range(t, &s, 0, 1, 0, first, &kv, NULL) < 0) return 0;
  return kv.create_rev;
}

/* One request's changes; the batch is then "applied". */
static void write_done(mvcc_txn *w) {
  mvcc_rev_end(w);
  if (mvcc_write_commit(w) != MVCC_OK) abort();
  cc_applied(tab);
}

static void acquire(const ProtobufCBinaryData *name, int64_t lease, const ProtobufCBinaryData *value) {
  int slot = -1;
  for (int i = 0; i < MAX_WAITERS; i++)
    if (!waiters[i].used) {
      slot = i;
      break;
    }
  if (slot < 0) return;
  fw *x = &waiters[slot];
  memset(x, 0, sizeof *x);
  x->pfx_len = make_prefix(name, x->pfx);
  x->key_len = make_key(x->pfx, x->pfx_len, lease, x->key);
  mvcc_txn *w;
  if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
  mvcc_rev_begin(w);
  int64_t cr = create_rev(w, x->key, x->key_len);
  if (cr == 0) {
    if (mvcc_put(w, x->key, x->key_len, value ? value->data : NULL, value ? value->len : 0, lease & 0xff, NULL) !=
        MVCC_OK)
      abort();
    cr = mvcc_rev(w);
  }
  write_done(w);
  x->used = true;
  x->create_rev = cr;
  x->w.decided = on_decided;
  x->w.arg = x;
  cc_wait(tab, &x->w, x->pfx, x->pfx_len, x->key, x->key_len, cr);
}

static void delete_key(const uint8_t *key, size_t len, int64_t guard_rev) {
  mvcc_txn *w;
  if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
  mvcc_rev_begin(w);
  if (guard_rev == 0 || create_rev(w, key, len) == guard_rev) {
    mvcc_span s = {.key = key, .key_len = len};
    if (len && mvcc_delete_range(w, &s, NULL, NULL, NULL) != MVCC_OK) abort();
  }
  write_done(w);
}

static void proclaim(const V3electionpb__LeaderKey *l, const ProtobufCBinaryData *value) {
  uint8_t pfx[80], key[120];
  size_t pl = make_prefix(&l->name, pfx);
  size_t kl = l->key.len > 8 ? 8 : l->key.len;
  kl = make_key(pfx, pl, (int64_t)kl + l->lease, key);
  mvcc_txn *w;
  if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
  mvcc_rev_begin(w);
  int st = cc_key_state(w, pfx, pl, key, kl, create_rev(w, key, kl));
  if (st == CC_OWNER && mvcc_put(w, key, kl, value->data, value->len, l->lease & 0xff, NULL) != MVCC_OK) abort();
  write_done(w);
}

typedef struct {
  mvcc_txn *w;
  int n;
} revoke_ctx;

static int revoke_one(void *arg, const mvcc_kv *kv) {
  revoke_ctx *r = arg;
  mvcc_span s = {.key = kv->key, .key_len = kv->key_len};
  if (mvcc_delete_range(r->w, &s, NULL, NULL, NULL) != MVCC_OK) abort();
  r->n++;
  return 0;
}

static void revoke_lease(int64_t lease) {
  mvcc_txn *w;
  if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
  mvcc_rev_begin(w);
  revoke_ctx r = {w, 0};
  if (mvcc_lease_keys(w, lease, revoke_one, &r) < 0) abort();
  write_done(w);
}

static void check(void) {
  mvcc_txn *t;
  if (mvcc_read_begin(store, &t) != MVCC_OK) abort();
  for (int i = 0; i < MAX_WAITERS; i++) {
    fw *x = &waiters[i];
    if (!x->used || x->cancelled) continue;
    int st = cc_key_state(t, x->pfx, x->pfx_len, x->key, x->key_len, x->create_rev);
    if (x->decided && x->granted && st == CC_WAITING) abort(); /* granted while another owns */
    if (!x->decided && st != CC_WAITING) abort();               /* left waiting for nothing */
    if (x->decided && !x->granted && st == CC_OWNER) abort();   /* lost while it owns */
  }
  for (int i = 0; i < MAX_OBS; i++) {
    fo *o = &observers[i];
    if (!o->o || o->queued > 64) continue;
    cc_stats s;
    cc_table_stats(tab, &s);
    if (s.lagging) continue;
    mvcc_kv kv;
    int rc = cc_owner(t, o->pfx, o->pfx_len, 0, &kv);
    if (rc < 0) continue;
    if ((rc > 0) != o->has) abort();
    if (rc > 0 && (kv.key_len != o->key_len || memcmp(kv.key, o->key, kv.key_len) || kv.mod_rev != o->mod)) abort();
  }
  mvcc_txn_end(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!store) setup();
  input_no++;
  memset(waiters, 0, sizeof waiters);
  memset(observers, 0, sizeof observers);
  size_t pos = 0;
  for (int step = 0; step < MAX_ACTIONS && pos + 2 <= size; step++) {
    uint8_t sel = data[pos] % 10;
    size_t len = data[pos + 1];
    pos += 2;
    if (len > size - pos) len = size - pos;
    const uint8_t *p = data + pos;
    pos += len;
    switch (sel) {
      case 0: {
        V3lockpb__LockRequest *r = v3lockpb__lock_request__unpack(NULL, len, p);
        if (r) acquire(&r->name, r->lease, NULL), v3lockpb__lock_request__free_unpacked(r, NULL);
        break;
      }
      case 1: {
        V3lockpb__UnlockRequest *r = v3lockpb__unlock_request__unpack(NULL, len, p);
        if (r) {
          /* a key of this input when it names a waiter slot, else raw */
          fw *x = r->key.len ? &waiters[r->key.data[0] % MAX_WAITERS] : NULL;
          if (x && x->used) delete_key(x->key, x->key_len, 0);
          v3lockpb__unlock_request__free_unpacked(r, NULL);
        }
        break;
      }
      case 2: {
        V3electionpb__CampaignRequest *r = v3electionpb__campaign_request__unpack(NULL, len, p);
        if (r) acquire(&r->name, r->lease, &r->value), v3electionpb__campaign_request__free_unpacked(r, NULL);
        break;
      }
      case 3: {
        V3electionpb__ProclaimRequest *r = v3electionpb__proclaim_request__unpack(NULL, len, p);
        if (r) {
          if (r->leader) proclaim(r->leader, &r->value);
          v3electionpb__proclaim_request__free_unpacked(r, NULL);
        }
        break;
      }
      case 4: {
        V3electionpb__ResignRequest *r = v3electionpb__resign_request__unpack(NULL, len, p);
        if (r) {
          fw *x = &waiters[(r->leader ? (uint64_t)r->leader->rev : 0) % MAX_WAITERS];
          if (x->used) delete_key(x->key, x->key_len, x->create_rev);
          v3electionpb__resign_request__free_unpacked(r, NULL);
        }
        break;
      }
      case 5: {
        V3electionpb__LeaderRequest *r = v3electionpb__leader_request__unpack(NULL, len, p);
        if (r) {
          fo *o = &observers[(r->name.len ? r->name.data[0] : 0) % MAX_OBS];
          if (!o->o) {
            memset(o, 0, sizeof *o);
            o->pfx_len = make_prefix(&r->name, o->pfx);
            o->queued = len > 2 ? p[len - 1] : 0;
            o->o = cc_observe(tab, o->pfx, o->pfx_len, &ops, o);
          }
          v3electionpb__leader_request__free_unpacked(r, NULL);
        }
        break;
      }
      case 6:
        if (len) {
          fw *x = &waiters[p[0] % MAX_WAITERS];
          if (x->used && !x->decided && !x->cancelled) {
            if (!cc_cancel(tab, &x->w)) abort();
            x->cancelled = true;
          }
        }
        break;
      case 7:
        revoke_lease(len ? p[0] : 0);
        break;
      case 8:
        if (len) {
          fo *o = &observers[p[0] % MAX_OBS];
          if (o->o && len > 1 && p[1] & 1) {
            cc_observer_close(o->o);
            o->o = NULL;
          } else if (o->o) {
            o->queued = 0;
            cc_observer_drained(o->o);
          }
        }
        break;
      case 9: {
        mvcc_txn *w;
        if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
        mvcc_compact(w, mvcc_rev(w));
        if (mvcc_write_commit(w) != MVCC_OK) abort();
        while (1) {
          if (mvcc_write_begin(store, &w) != MVCC_OK) abort();
          int more = mvcc_compact_step(w, 1000);
          if (mvcc_write_commit(w) != MVCC_OK || more <= 0) break;
        }
        break;
      }
    }
    check();
  }
  /* leave nothing behind for the next input */
  for (int i = 0; i < MAX_WAITERS; i++)
    if (waiters[i].used && !waiters[i].decided && !waiters[i].cancelled) cc_cancel(tab, &waiters[i].w);
  for (int i = 0; i < MAX_OBS; i++)
    if (observers[i].o) cc_observer_close(observers[i].o);
  cc_stats s;
  cc_table_stats(tab, &s);
  if (s.waiters || s.observers || s.groups) abort();
  return 0;
}
