/* Helpers shared by the kvcore/mvcc tests (see mvcc_testutil.h). */
#include "mvcc_testutil.h"

#include <stdio.h>

#include "base.h"

void tkv_list_add(tkv_list *l, const mvcc_kv *kv) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    l->v = xrealloc(l->v, l->cap * sizeof *l->v);
  }
  tkv *t = &l->v[l->n++];
  memset(t, 0, sizeof *t);
  t->key = xmemdup(kv->key, kv->key_len);
  t->key_len = kv->key_len;
  t->value = xmemdup(kv->value ? kv->value : (const uint8_t *)"", kv->value_len);
  t->value_len = kv->value_len;
  t->create_rev = kv->create_rev;
  t->mod_rev = kv->mod_rev;
  t->version = kv->version;
  t->lease = kv->lease;
}

void tkv_list_clear(tkv_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].key);
    free(l->v[i].value);
  }
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

int tkv_collect(void *arg, const mvcc_kv *kv) {
  tkv_list *l = arg;
  tkv_list_add(l, kv);
  return l->stop_after && l->n >= l->stop_after;
}

int tkv_collect_change(void *arg, const mvcc_change *c) {
  tkv_list *l = arg;
  tkv_list_add(l, &c->kv);
  tkv *t = &l->v[l->n - 1];
  t->main = c->main;
  t->sub = c->sub;
  t->is_delete = c->is_delete;
  return l->stop_after && l->n >= l->stop_after;
}

mvcc_span span_key(const char *k) {
  return (mvcc_span){(const uint8_t *)k, strlen(k), NULL, 0, false};
}
mvcc_span span_range(const char *k, const char *end) {
  return (mvcc_span){(const uint8_t *)k, strlen(k), (const uint8_t *)end, strlen(end), false};
}
mvcc_span span_from(const char *k) {
  return (mvcc_span){(const uint8_t *)k, strlen(k), NULL, 0, true};
}

mvcc_store *topen_dir(const char *dir) {
  mvcc_options o = {.dir = dir, .checkpoint_ms = 3600 * 1000};
  mvcc_store *s = NULL;
  int rc = mvcc_open(&o, &s);
  if (rc) {
    fprintf(stderr, "mvcc_open(%s): %s\n", dir, mvcc_strerror(rc));
    exit(2);
  }
  return s;
}

char *tmpdir_new(void) {
  const char *base = getenv("TMPDIR");
  char path[512];
  snprintf(path, sizeof path, "%s/synod-mvcc-XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(path)) {
    perror("mkdtemp");
    exit(2);
  }
  return xstrdup(path);
}

void tmpdir_remove(char *dir) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  free(dir);
}

mvcc_store *topen(char **dir) {
  *dir = tmpdir_new();
  return topen_dir(*dir);
}

int tput(mvcc_store *s, const char *key, const char *value, int64_t lease) {
  mvcc_txn *t;
  int rc = mvcc_write_begin(s, &t);
  if (rc) return rc;
  rc = mvcc_put(t, (const uint8_t *)key, strlen(key), (const uint8_t *)value, strlen(value), lease, NULL);
  if (rc) {
    mvcc_txn_end(t);
    return rc;
  }
  return mvcc_write_commit(t);
}

int tfill(mvcc_store *s, int count, int per_txn, size_t value_len) {
  uint8_t *value = xmalloc(value_len ? value_len : 1);
  memset(value, 'v', value_len);
  int rc = MVCC_OK;
  for (int k = 0; k < count && rc == MVCC_OK;) {
    mvcc_txn *t;
    if ((rc = mvcc_write_begin(s, &t)) != MVCC_OK) break;
    for (int end = k + per_txn; k < count && k < end && rc == MVCC_OK; k++) {
      char key[16];
      snprintf(key, sizeof key, "key-%05d", k);
      rc = mvcc_put(t, (const uint8_t *)key, strlen(key), value, value_len, 0, NULL);
    }
    if (rc == MVCC_OK) rc = mvcc_write_commit(t);
    else mvcc_txn_end(t);
  }
  free(value);
  return rc;
}

int tdel(mvcc_store *s, mvcc_span sp, int64_t *deleted) {
  mvcc_txn *t;
  int rc = mvcc_write_begin(s, &t);
  if (rc) return rc;
  rc = mvcc_delete_range(t, &sp, NULL, NULL, deleted);
  if (rc) {
    mvcc_txn_end(t);
    return rc;
  }
  return mvcc_write_commit(t);
}

const char *tget(mvcc_store *s, const char *key, int64_t rev, int *rcp) {
  static char value[4096];
  mvcc_txn *t;
  int rc = mvcc_read_begin(s, &t);
  tkv_list l = {0};
  if (!rc) {
    mvcc_span sp = span_key(key);
    rc = mvcc_range(t, &sp, rev, 0, 0, tkv_collect, &l, NULL);
    mvcc_txn_end(t);
  }
  if (rcp) *rcp = rc;
  const char *out = NULL;
  if (!rc && l.n == 1 && l.v[0].value_len < sizeof value) {
    memcpy(value, l.v[0].value, l.v[0].value_len);
    value[l.v[0].value_len] = 0;
    out = value;
  }
  tkv_list_clear(&l);
  return out;
}

int64_t trev(mvcc_store *s) {
  mvcc_txn *t;
  if (mvcc_read_begin(s, &t)) return -1;
  int64_t r = mvcc_rev(t);
  mvcc_txn_end(t);
  return r;
}

int tlong_factor(void) {
  const char *v = getenv("SYNOD_LONG");
  int f = v ? atoi(v) : 1;
  return f > 0 ? f : 1;
}
