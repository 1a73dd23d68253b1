/* Cluster membership: the members table, applied from committed entries,
 * and etcd's identity rules. Records are etcdserverpb.Member messages in the
 * store's members table under "m" + BE64(id); removed IDs under "r" +
 * BE64(id). */
#include "membership.h"

#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void key_for(uint8_t k[9], char kind, uint64_t id) {
  k[0] = (uint8_t)kind;
  put_be64(k + 1, id);
}

void member_list_free(member_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].name);
    strlist_free(&l->v[i].peer_urls);
    strlist_free(&l->v[i].client_urls);
  }
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

const member *member_list_find(const member_list *l, uint64_t id) {
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i].id == id) return &l->v[i];
  return NULL;
}

static void strlist_from(strlist *out, char **v, size_t n) {
  out->v = n ? xcalloc(n, sizeof *out->v) : NULL;
  out->n = n;
  for (size_t i = 0; i < n; i++) out->v[i] = xstrdup(v[i] ? v[i] : "");
}

typedef struct {
  member_list *out;
  int err;
} load_ctx;

static int load_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
  load_ctx *c = arg;
  if (key_len != 9 || key[0] != 'm') return 0;
  Etcdserverpb__Member *m = etcdserverpb__member__unpack(NULL, val_len, val);
  if (!m) {
    c->err = MVCC_EIO;
    return 1;
  }
  member_list *l = c->out;
  l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
  member *x = &l->v[l->n++];
  x->id = m->id;
  x->name = xstrdup(m->name ? m->name : "");
  strlist_from(&x->peer_urls, m->peerurls, m->n_peerurls);
  strlist_from(&x->client_urls, m->clienturls, m->n_clienturls);
  x->is_learner = m->islearner;
  etcdserverpb__member__free_unpacked(m, NULL);
  return 0;
}

int members_load(mvcc_txn *t, member_list *out) {
  memset(out, 0, sizeof *out);
  load_ctx c = {out, 0};
  int rc = mvcc_aux_scan(t, MVCC_AUX_MEMBERS, load_one, &c);
  if (rc == 0) rc = c.err;
  if (rc) member_list_free(out);
  return rc; /* keys are BE64 IDs: already in ID order */
}

bool members_was_removed(mvcc_txn *t, uint64_t id) {
  uint8_t k[9];
  key_for(k, 'r', id);
  const uint8_t *v;
  size_t n;
  return mvcc_aux_get(t, MVCC_AUX_MEMBERS, k, sizeof k, &v, &n) == MVCC_OK;
}

static int get_member(mvcc_txn *t, uint64_t id, Etcdserverpb__Member **out) {
  uint8_t k[9];
  key_for(k, 'm', id);
  const uint8_t *v;
  size_t n;
  int rc = mvcc_aux_get(t, MVCC_AUX_MEMBERS, k, sizeof k, &v, &n);
  if (rc) return rc;
  *out = etcdserverpb__member__unpack(NULL, n, v);
  return *out ? MVCC_OK : MVCC_EIO;
}

static int put_member(mvcc_txn *w, const Etcdserverpb__Member *m) {
  uint8_t k[9];
  key_for(k, 'm', m->id);
  size_t n = etcdserverpb__member__get_packed_size(m);
  uint8_t *b = xmalloc(n ? n : 1);
  etcdserverpb__member__pack(m, b);
  int rc = mvcc_aux_put(w, MVCC_AUX_MEMBERS, k, sizeof k, b, n);
  free(b);
  return rc;
}

int members_apply_conf_change(mvcc_txn *w, const raft_conf_change *cc) {
  Synodpb__MemberContext *ctx = NULL;
  if (cc->ctx_len) ctx = synodpb__member_context__unpack(NULL, cc->ctx_len, cc->ctx);
  Etcdserverpb__Member *cur = NULL;
  int rc = get_member(w, cc->node_id, &cur);
  if (rc != MVCC_OK && rc != MVCC_ENOTFOUND) goto out;
  rc = MVCC_OK;
  switch (cc->type) {
    case RAFT_CC_ADD_VOTER:
    case RAFT_CC_ADD_LEARNER: {
      bool learner = cc->type == RAFT_CC_ADD_LEARNER;
      if (cur) {
        /* a learner promoted (or a voter demoted): only the role changes */
        cur->islearner = learner;
        rc = put_member(w, cur);
      } else {
        Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
        m.id = cc->node_id;
        m.islearner = learner;
        m.name = (ctx && ctx->name) ? ctx->name : "";
        if (ctx) m.peerurls = ctx->peer_urls, m.n_peerurls = ctx->n_peer_urls;
        rc = put_member(w, &m);
      }
      break;
    }
    case RAFT_CC_REMOVE: {
      uint8_t k[9];
      key_for(k, 'm', cc->node_id);
      if (cur) rc = mvcc_aux_del(w, MVCC_AUX_MEMBERS, k, sizeof k);
      key_for(k, 'r', cc->node_id);
      if (rc == MVCC_OK) rc = mvcc_aux_put(w, MVCC_AUX_MEMBERS, k, sizeof k, "", 0);
      break;
    }
    case RAFT_CC_UPDATE:
      if (cur && ctx) {
        cur->peerurls = ctx->peer_urls;
        cur->n_peerurls = ctx->n_peer_urls;
        rc = put_member(w, cur);
        /* the urls belong to ctx: detach before freeing cur */
        cur->peerurls = NULL;
        cur->n_peerurls = 0;
      }
      break;
    default:
      break;
  }
out:
  if (cur) etcdserverpb__member__free_unpacked(cur, NULL);
  if (ctx) synodpb__member_context__free_unpacked(ctx, NULL);
  return rc;
}

int members_apply_attributes(mvcc_txn *w, const Etcdserverpb__Member *attrs) {
  Etcdserverpb__Member *cur = NULL;
  int rc = get_member(w, attrs->id, &cur);
  if (rc == MVCC_ENOTFOUND) return MVCC_OK; /* removed meanwhile: nothing to do */
  if (rc) return rc;
  char *old_name = cur->name;
  char **old_urls = cur->clienturls;
  size_t old_n = cur->n_clienturls;
  cur->name = attrs->name ? attrs->name : "";
  cur->clienturls = attrs->clienturls;
  cur->n_clienturls = attrs->n_clienturls;
  rc = put_member(w, cur);
  cur->name = old_name;
  cur->clienturls = old_urls;
  cur->n_clienturls = old_n;
  etcdserverpb__member__free_unpacked(cur, NULL);
  return rc;
}

void members_encode_context(uint64_t id, const strlist *peer_urls, bool learner, const char *name, buf *out) {
  Synodpb__MemberContext c = SYNODPB__MEMBER_CONTEXT__INIT;
  c.id = id;
  c.peer_urls = peer_urls->v;
  c.n_peer_urls = peer_urls->n;
  c.is_learner = learner;
  c.name = (char *)(name ? name : "");
  size_t n = synodpb__member_context__get_packed_size(&c);
  buf_reserve(out, n);
  synodpb__member_context__pack(&c, out->data + out->len);
  out->len += n;
}

/* ---------------------------------------------------------------- identity */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

uint64_t members_compute_id(const strlist *peer_urls, const char *token, const int64_t *unix_time) {
  char **sorted = xmalloc((peer_urls->n ? peer_urls->n : 1) * sizeof *sorted);
  memcpy(sorted, peer_urls->v, peer_urls->n * sizeof *sorted);
  qsort(sorted, peer_urls->n, sizeof *sorted, cmp_str);
  sha1_ctx c;
  sha1_init(&c);
  for (size_t i = 0; i < peer_urls->n; i++) sha1_update(&c, sorted[i], strlen(sorted[i]));
  sha1_update(&c, token, strlen(token));
  if (unix_time) {
    char t[32];
    int n = snprintf(t, sizeof t, "%lld", (long long)*unix_time);
    sha1_update(&c, t, (size_t)n);
  }
  uint8_t d[20];
  sha1_final(&c, d);
  free(sorted);
  return get_be64(d);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

uint64_t members_compute_cluster_id(uint64_t *ids, size_t n) {
  qsort(ids, n, sizeof *ids, cmp_u64);
  uint8_t *b = xmalloc(8 * (n ? n : 1));
  for (size_t i = 0; i < n; i++) put_be64(b + 8 * i, ids[i]);
  sha1_ctx c;
  sha1_init(&c);
  sha1_update(&c, b, 8 * n);
  uint8_t d[20];
  sha1_final(&c, d);
  free(b);
  return get_be64(d);
}

void initial_cluster_free(initial_cluster *ic) {
  for (size_t i = 0; i < ic->n; i++) {
    free(ic->v[i].name);
    strlist_free(&ic->v[i].peer_urls);
  }
  free(ic->v);
  memset(ic, 0, sizeof *ic);
}

int initial_cluster_parse(const char *spec, const char *token, initial_cluster *out, char *err, size_t err_len) {
  memset(out, 0, sizeof *out);
  strlist items = {0};
  if (strlist_split(&items, spec) < 0 || items.n == 0) {
    snprintf(err, err_len, "invalid --initial-cluster \"%s\"", spec);
    return -1;
  }
  for (size_t i = 0; i < items.n; i++) {
    char *eq = strchr(items.v[i], '=');
    if (!eq || eq == items.v[i] || !eq[1]) {
      snprintf(err, err_len, "invalid --initial-cluster entry \"%s\" (want name=URL)", items.v[i]);
      goto fail;
    }
    *eq = 0;
    char hp[512];
    bool tls;
    if (url_host_port(eq + 1, hp, sizeof hp, &tls) < 0) {
      snprintf(err, err_len, "invalid --initial-cluster URL \"%s\"", eq + 1);
      goto fail;
    }
    initial_member *m = NULL;
    for (size_t k = 0; k < out->n; k++)
      if (strcmp(out->v[k].name, items.v[i]) == 0) m = &out->v[k];
    if (!m) {
      out->v = xrealloc(out->v, (out->n + 1) * sizeof *out->v);
      m = &out->v[out->n++];
      memset(m, 0, sizeof *m);
      m->name = xstrdup(items.v[i]);
    }
    for (size_t k = 0; k < m->peer_urls.n; k++)
      if (strcmp(m->peer_urls.v[k], eq + 1) == 0) {
        snprintf(err, err_len, "--initial-cluster lists %s=%s twice", items.v[i], eq + 1);
        goto fail;
      }
    m->peer_urls.v = xrealloc(m->peer_urls.v, (m->peer_urls.n + 1) * sizeof *m->peer_urls.v);
    m->peer_urls.v[m->peer_urls.n++] = xstrdup(eq + 1);
  }
  uint64_t *ids = xcalloc(out->n, sizeof *ids);
  for (size_t i = 0; i < out->n; i++) {
    out->v[i].id = members_compute_id(&out->v[i].peer_urls, token, NULL);
    ids[i] = out->v[i].id;
    for (size_t k = 0; k < i; k++)
      if (out->v[k].id == out->v[i].id) {
        snprintf(err, err_len, "--initial-cluster: members %s and %s have the same peer URLs", out->v[k].name,
                 out->v[i].name);
        free(ids);
        goto fail;
      }
  }
  out->cluster_id = members_compute_cluster_id(ids, out->n);
  free(ids);
  strlist_free(&items);
  return 0;
fail:
  strlist_free(&items);
  initial_cluster_free(out);
  return -1;
}

/* ---------------------------------------------------------------- cache */

void member_cache_init(member_cache *c) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
}

void member_cache_destroy(member_cache *c) {
  member_list_free(&c->list);
  pthread_mutex_destroy(&c->mu);
}

void member_cache_set(member_cache *c, member_list *l) {
  pthread_mutex_lock(&c->mu);
  member_list_free(&c->list);
  c->list = *l;
  c->version++;
  pthread_mutex_unlock(&c->mu);
  memset(l, 0, sizeof *l);
}

void member_cache_copy(member_cache *c, member_list *out, uint64_t *version) {
  pthread_mutex_lock(&c->mu);
  out->n = c->list.n;
  out->v = out->n ? xcalloc(out->n, sizeof *out->v) : NULL;
  for (size_t i = 0; i < out->n; i++) {
    const member *m = &c->list.v[i];
    out->v[i].id = m->id;
    out->v[i].name = xstrdup(m->name);
    strlist_from(&out->v[i].peer_urls, m->peer_urls.v, m->peer_urls.n);
    strlist_from(&out->v[i].client_urls, m->client_urls.v, m->client_urls.n);
    out->v[i].is_learner = m->is_learner;
  }
  if (version) *version = c->version;
  pthread_mutex_unlock(&c->mu);
}
