/* `synod snapshot restore`: etcdutl's restore, for Synod images.
 *
 *   synod snapshot restore <file> [--name default] [--data-dir <name>.etcd]
 *     [--initial-cluster default=http://localhost:2380]
 *     [--initial-cluster-token etcd-cluster]
 *     [--initial-advertise-peer-urls http://localhost:2380] [--skip-hash-check]
 *
 * The checks are etcdutl's, in its order: the cluster flags (this member is
 * in --initial-cluster with its advertised peer URLs), a data directory
 * that does not exist or is empty, then the SHA-256 trailer that `etcdctl
 * snapshot save` appends (a file whose size is 32 bytes past a multiple of
 * 512 has one; a file without one needs --skip-hash-check). The image is
 * then checked as a store (mvcc_image_check) and put in place as the new
 * member's store with its keys, revisions, leases and alarms, but without
 * the old cluster's identity and membership and with its applied index
 * back at 0: started with the same flags, the member founds a NEW cluster
 * (new IDs, from --initial-cluster and the token) exactly as `synod
 * --initial-cluster-state new` would, and its founding log applies on top
 * of the restored keys. Restoring the same file into each member's data
 * directory with the same --initial-cluster makes a cluster of them. */
#include "bootstrap.h"
#include "config.h"
#include "membership.h"
#include "server.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  const char *file, *name, *data_dir, *initial_cluster, *token, *peer_urls;
  bool skip_hash_check;
} restore_opts;

static int usage_error(const char *msg) {
  fprintf(stderr, "Error: %s\n", msg);
  return 1;
}

static int parse(int argc, char **argv, restore_opts *o) {
  *o = (restore_opts){.name = "default",
                      .initial_cluster = "default=http://localhost:2380",
                      .token = "etcd-cluster",
                      .peer_urls = "http://localhost:2380"};
  static const struct {
    const char *flag;
    size_t off;
  } flags[] = {
      {"name", offsetof(restore_opts, name)},
      {"data-dir", offsetof(restore_opts, data_dir)},
      {"initial-cluster", offsetof(restore_opts, initial_cluster)},
      {"initial-cluster-token", offsetof(restore_opts, token)},
      {"initial-advertise-peer-urls", offsetof(restore_opts, peer_urls)},
  };
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') {
      if (o->file) return usage_error("snapshot restore requires exactly one argument");
      o->file = a;
      continue;
    }
    while (*a == '-') a++;
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    if (len == strlen("skip-hash-check") && strncmp(a, "skip-hash-check", len) == 0) {
      o->skip_hash_check = !eq || strcmp(eq + 1, "true") == 0;
      continue;
    }
    bool known = false;
    for (size_t f = 0; f < sizeof flags / sizeof flags[0] && !known; f++) {
      if (strlen(flags[f].flag) != len || strncmp(a, flags[f].flag, len) != 0) continue;
      const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) {
        fprintf(stderr, "Error: flag needs an argument: --%s\n", flags[f].flag);
        return 1;
      }
      *(const char **)((char *)o + flags[f].off) = v;
      known = true;
    }
    if (!known) {
      fprintf(stderr, "Error: unknown flag: --%.*s\n", (int)len, a);
      return 1;
    }
  }
  if (!o->file) return usage_error("snapshot restore requires exactly one argument");
  return 0;
}

static bool dir_empty_or_missing(const char *path) {
  DIR *d = opendir(path);
  if (!d) return errno == ENOENT;
  struct dirent *e;
  bool empty = true;
  while (empty && (e = readdir(d)) != NULL) empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
  closedir(d);
  return empty;
}

/* Go's %v of a byte slice, as etcdutl prints a hash mismatch. */
static void go_bytes(const uint8_t *p, size_t n, char *out) {
  size_t o = 0;
  out[o++] = '[';
  for (size_t i = 0; i < n; i++) o += (size_t)sprintf(out + o, i ? " %u" : "%u", p[i]);
  out[o++] = ']';
  out[o] = 0;
}

/* Copies the image (without its trailer) to dst, checking the trailer. */
static int copy_checked(const restore_opts *o, const char *dst) {
  int in = open(o->file, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  if (in < 0 || fstat(in, &sb) < 0) {
    fprintf(stderr, "Error: open %s: %s\n", o->file, strerror(errno));
    if (in >= 0) close(in);
    return -1;
  }
  uint64_t size = (uint64_t)sb.st_size;
  bool has_hash = size % 512 == 32; /* etcdutl's hasChecksum */
  if (!has_hash && !o->skip_hash_check) {
    close(in);
    return usage_error("snapshot missing hash but --skip-hash-check=false");
  }
  uint64_t body = has_hash ? size - 32 : size;
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    fprintf(stderr, "Error: create %s: %s\n", dst, strerror(errno));
    close(in);
    return -1;
  }
  sha256_ctx h;
  sha256_init(&h);
  uint8_t *b = xmalloc(1 << 20);
  int rc = 0;
  for (uint64_t off = 0; off < body && !rc;) {
    size_t want = body - off < (1 << 20) ? (size_t)(body - off) : (1 << 20);
    ssize_t got = pread(in, b, want, (off_t)off);
    if (got != (ssize_t)want || write(out, b, want) != (ssize_t)want) {
      fprintf(stderr, "Error: copying %s: %s\n", o->file, got < 0 ? strerror(errno) : "short read or write");
      rc = -1;
    }
    sha256_update(&h, b, want);
    off += want;
  }
  uint8_t want_sum[32], got_sum[32];
  if (!rc && has_hash && pread(in, want_sum, 32, (off_t)body) != 32) rc = usage_error("cannot read the sha256 trailer");
  sha256_final(&h, got_sum);
  if (!rc && has_hash && !o->skip_hash_check && memcmp(want_sum, got_sum, 32) != 0) {
    char a[200], g[200];
    go_bytes(want_sum, 32, a);
    go_bytes(got_sum, 32, g);
    fprintf(stderr, "Error: expected sha256 %s, got %s\n", a, g);
    rc = -1;
  }
  if (!rc && fsync(out) < 0) rc = usage_error("cannot sync the restored store");
  free(b);
  close(in);
  close(out);
  return rc;
}

/* Forgets the old cluster: who this store belonged to, the member list,
 * and where its log stood; keys, revisions, leases and alarms stay. */
static int collect_key(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
  (void)val, (void)val_len;
  buf *keys = arg;
  uint16_t len = (uint16_t)key_len;
  buf_append(keys, &len, sizeof len);
  buf_append(keys, key, key_len);
  return 0;
}

static int clear_cluster(mvcc_store *s) {
  mvcc_txn *w;
  int rc = mvcc_write_begin(s, &w);
  if (rc) return rc;
  buf keys = {0};
  rc = mvcc_aux_scan(w, MVCC_AUX_MEMBERS, collect_key, &keys);
  for (size_t off = 0; !rc && off < keys.len;) {
    uint16_t len;
    memcpy(&len, keys.data + off, sizeof len);
    rc = mvcc_aux_del(w, MVCC_AUX_MEMBERS, keys.data + off + sizeof len, len);
    off += sizeof len + len;
  }
  buf_free(&keys);
  if (!rc) {
    rc = mvcc_aux_del(w, MVCC_AUX_META, "identity", 8);
    if (rc == MVCC_ENOTFOUND) rc = MVCC_OK;
  }
  if (rc) {
    mvcc_txn_end(w);
    return rc;
  }
  mvcc_set_applied(w, 0, 0);
  return mvcc_write_commit(w);
}

int synod_snapshot_main(int argc, char **argv) {
  if (argc < 1 || strcmp(argv[0], "restore") != 0) {
    fprintf(stderr, "Usage: synod snapshot restore <filename> [--name] [--data-dir] [--initial-cluster] "
                    "[--initial-cluster-token] [--initial-advertise-peer-urls] [--skip-hash-check]\n");
    return 1;
  }
  restore_opts o;
  if (parse(argc - 1, argv + 1, &o) != 0) return 1;
  char err[1024];
  strlist urls = {0};
  strlist_split(&urls, o.peer_urls);
  uint64_t member_id = 0, cluster_id = 0;
  int rc = bootstrap_check_new(o.name, o.initial_cluster, o.token, &urls, &member_id, &cluster_id, err, sizeof err);
  strlist_free(&urls);
  if (rc < 0) return usage_error(err);
  char default_dir[1024];
  if (!o.data_dir) {
    snprintf(default_dir, sizeof default_dir, "%s.etcd", o.name);
    o.data_dir = default_dir;
  }
  if (!dir_empty_or_missing(o.data_dir)) {
    fprintf(stderr, "Error: data-dir \"%s\" not empty or could not be read\n", o.data_dir);
    return 1;
  }
  log_info("restoring snapshot %s into %s", o.file, o.data_dir);
  char kv_dir[4200], data[4300], tmp[4300];
  snprintf(kv_dir, sizeof kv_dir, "%s/member/kv", o.data_dir);
  snprintf(data, sizeof data, "%s/data.mdb", kv_dir);
  snprintf(tmp, sizeof tmp, "%s/restore.tmp", kv_dir);
  if (mkdir_all(kv_dir, 0700) < 0) {
    fprintf(stderr, "Error: cannot create %s: %s\n", kv_dir, strerror(errno));
    return 1;
  }
  mvcc_image_info info;
  if (copy_checked(&o, tmp) < 0) goto fail;
  if (mvcc_image_check(tmp, &info) != MVCC_OK) {
    fprintf(stderr, "Error: %s is not a Synod snapshot (or it is damaged)\n", o.file);
    goto fail;
  }
  if (rename(tmp, data) < 0 || fsync_dir(kv_dir) < 0) {
    fprintf(stderr, "Error: cannot put the store in place: %s\n", strerror(errno));
    goto fail;
  }
  mvcc_options mo = {.dir = kv_dir};
  mvcc_store *s;
  rc = mvcc_open(&mo, &s);
  if (rc == MVCC_OK) {
    rc = clear_cluster(s);
    mvcc_close(s); /* final checkpoint: the store is durable and marked clean */
  }
  if (rc) {
    fprintf(stderr, "Error: cannot prepare the restored store: %s\n", mvcc_strerror(rc));
    goto fail;
  }
  log_info("restored snapshot %s into %s: revision %lld, %lld keys; member %016llx of new cluster %016llx", o.file,
           o.data_dir, (long long)info.rev, (long long)info.keys, (unsigned long long)member_id,
           (unsigned long long)cluster_id);
  return 0;
fail:
  /* Leave nothing behind: the directory was missing or empty. */
  {
    const char *names[] = {"restore.tmp", "data.mdb", "lock.mdb", "checkpoint", "marker", "synod.lock"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
      char p[4400];
      snprintf(p, sizeof p, "%s/%s", kv_dir, names[i]);
      unlink(p);
    }
    char member[4200];
    snprintf(member, sizeof member, "%s/member", o.data_dir);
    rmdir(kv_dir);
    rmdir(member);
    rmdir(o.data_dir);
  }
  return 1;
}
