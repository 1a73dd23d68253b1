/* etcd's alarms and the backend quota. See alarms.h. */
#include "alarms.h"

#include "errors.h"
#include "pipeline.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ALARM_KEY = 12, KV_OVERHEAD = 256 /* etcd's kvOverhead */ };

typedef struct {
  uint64_t member;
  int type;
} alarm_entry;

struct alarm_state {
  pthread_mutex_t mu;
  alarm_entry *v;
  size_t n, cap;
};

static struct alarm_state *state(node *n) {
  if (!n->alarm_state) {
    struct alarm_state *a = xcalloc(1, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    n->alarm_state = a;
  }
  return n->alarm_state;
}

static void key_encode(uint8_t k[ALARM_KEY], uint64_t member, int type) {
  put_be64(k, member);
  k[8] = (uint8_t)((uint32_t)type >> 24);
  k[9] = (uint8_t)((uint32_t)type >> 16);
  k[10] = (uint8_t)((uint32_t)type >> 8);
  k[11] = (uint8_t)type;
}

static void refresh_flag(node *n, struct alarm_state *a) {
  bool nospace = false;
  for (size_t i = 0; i < a->n; i++) nospace |= a->v[i].type == ETCDSERVERPB__ALARM_TYPE__NOSPACE;
  atomic_store(&n->nospace, nospace);
}

static int load_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
  (void)val, (void)val_len;
  struct alarm_state *a = arg;
  if (key_len != ALARM_KEY) return 0; /* not ours: ignored */
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 4;
    a->v = xrealloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n++] = (alarm_entry){get_be64(key), (int)((uint32_t)key[8] << 24 | (uint32_t)key[9] << 16 |
                                                    (uint32_t)key[10] << 8 | key[11])};
  return 0;
}

void alarms_reload(node *n) {
  struct alarm_state *a = state(n);
  mvcc_txn *t;
  if (mvcc_read_begin(n->store, &t) != MVCC_OK) return;
  pthread_mutex_lock(&a->mu);
  a->n = 0;
  mvcc_aux_scan(t, MVCC_AUX_ALARMS, load_one, a);
  refresh_flag(n, a);
  pthread_mutex_unlock(&a->mu);
  mvcc_txn_end(t);
}

void alarms_free(node *n) {
  struct alarm_state *a = n->alarm_state;
  if (!a) return;
  pthread_mutex_destroy(&a->mu);
  free(a->v);
  free(a);
  n->alarm_state = NULL;
}

bool alarms_nospace(node *n) { return atomic_load(&n->nospace); }

static const char *type_name(int type) {
  switch (type) {
    case ETCDSERVERPB__ALARM_TYPE__NONE: return "NONE";
    case ETCDSERVERPB__ALARM_TYPE__NOSPACE: return "NOSPACE";
    case ETCDSERVERPB__ALARM_TYPE__CORRUPT: return "CORRUPT";
    default: return "UNKNOWN";
  }
}

static Etcdserverpb__AlarmMember *member_of(arena *mem, uint64_t member, int type) {
  Etcdserverpb__AlarmMember *m = arena_alloc(mem, sizeof *m);
  etcdserverpb__alarm_member__init(m);
  m->memberid = member;
  m->alarm = (Etcdserverpb__AlarmType)type;
  return m;
}

int alarms_apply(node *n, mvcc_txn *w, const Etcdserverpb__AlarmRequest *r, arena *mem,
                 Etcdserverpb__AlarmResponse **resp) {
  struct alarm_state *a = state(n);
  Etcdserverpb__AlarmResponse *out = arena_alloc(mem, sizeof *out);
  etcdserverpb__alarm_response__init(out);
  out->header = arena_alloc(mem, sizeof *out->header);
  etcdserverpb__response_header__init(out->header);
  *resp = out;
  int type = (int)r->alarm;
  uint8_t key[ALARM_KEY];
  key_encode(key, r->memberid, type);
  int rc = MVCC_OK;
  pthread_mutex_lock(&a->mu);
  size_t at = a->n;
  for (size_t i = 0; i < a->n; i++)
    if (a->v[i].member == r->memberid && a->v[i].type == type) at = i;
  switch (r->action) {
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET:
      out->alarms = arena_alloc(mem, (a->n ? a->n : 1) * sizeof *out->alarms);
      for (size_t i = 0; i < a->n; i++)
        if (type == ETCDSERVERPB__ALARM_TYPE__NONE || a->v[i].type == type)
          out->alarms[out->n_alarms++] = member_of(mem, a->v[i].member, a->v[i].type);
      break;
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
      if (type == ETCDSERVERPB__ALARM_TYPE__NONE) break;
      if (at == a->n) {
        rc = mvcc_aux_put(w, MVCC_AUX_ALARMS, key, sizeof key, "", 0);
        if (rc) break;
        load_one(a, key, sizeof key, NULL, 0);
        log_warn("alarm raised: %s from %016" PRIx64, type_name(type), r->memberid);
      }
      out->alarms = arena_alloc(mem, sizeof *out->alarms);
      out->alarms[out->n_alarms++] = member_of(mem, r->memberid, type);
      break;
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE:
      if (at == a->n) break;
      rc = mvcc_aux_del(w, MVCC_AUX_ALARMS, key, sizeof key);
      if (rc) break;
      a->v[at] = a->v[--a->n];
      log_warn("alarm disarmed: %s from %016" PRIx64, type_name(type), r->memberid);
      out->alarms = arena_alloc(mem, sizeof *out->alarms);
      out->alarms[out->n_alarms++] = member_of(mem, r->memberid, type);
      break;
    default:
      break;
  }
  refresh_flag(n, a);
  pthread_mutex_unlock(&a->mu);
  return rc;
}

size_t alarms_strings(node *n, arena *mem, char ***out) {
  struct alarm_state *a = state(n);
  pthread_mutex_lock(&a->mu);
  char **v = arena_alloc(mem, (a->n ? a->n : 1) * sizeof *v);
  for (size_t i = 0; i < a->n; i++) {
    /* gogoproto's compact text of an AlarmMember, as etcd prints it. */
    char text[64];
    int len = snprintf(text, sizeof text, "memberID:%" PRIu64 " alarm:%s ", a->v[i].member, type_name(a->v[i].type));
    v[i] = arena_memdup(mem, text, (size_t)len + 1);
  }
  size_t k = a->n;
  pthread_mutex_unlock(&a->mu);
  *out = v;
  return k;
}

int64_t alarms_cost_put(const Etcdserverpb__PutRequest *r) {
  return KV_OVERHEAD + (int64_t)r->key.len + (int64_t)r->value.len;
}

static int64_t cost_ops(Etcdserverpb__RequestOp **ops, size_t n) {
  int64_t c = 0;
  for (size_t i = 0; i < n; i++) {
    if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) c += alarms_cost_put(ops[i]->request_put);
    else if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) c += alarms_cost_txn(ops[i]->request_txn);
  }
  return c;
}

int64_t alarms_cost_txn(const Etcdserverpb__TxnRequest *r) {
  int64_t s = cost_ops(r->success, r->n_success), f = cost_ops(r->failure, r->n_failure);
  return f > s ? f : s;
}

const rpc_error *alarms_quota_check(node *n, int64_t cost) {
  if (cost == 0) return NULL;
  /* etcd compares the backend file's size (free pages included). */
  if (mvcc_db_size(n->store) + cost < n->cfg.quota_backend_bytes) return NULL;
  Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
  ar.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
  ar.memberid = n->member_id;
  ar.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_ALARM;
  req.alarm = &ar;
  pipeline_propose(n->pipe, NULL, &req);
  return &ERR_NO_SPACE;
}
