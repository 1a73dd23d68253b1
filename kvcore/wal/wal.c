/* The WAL's files: create, open (recovery and repair), append, sync, cut,
 * purge. Formats and rules live in record.c, scan.c and replay.c; this file
 * is about ordering writes, syncs and renames so that those rules hold after
 * a crash at any point:
 *
 *   append  one pwrite of the whole call's records at the segment's end;
 *           the first write after a sync starts a new batch (the `batch`
 *           field of its records is its offset)
 *   sync    fdatasync of the active segment (preallocated and zero-filled,
 *           so this flushes data only); nothing to sync, no syscall
 *   cut     truncate the old segment to its records and fsync it; take the
 *           prepared file, write its header records, fdatasync, rename it
 *           to its .wal name, fsync the directory. A crash anywhere in
 *           between leaves either the old segment as the (complete) last
 *           one plus a .tmp file that open deletes, or both.
 *
 * After an I/O error the files' state is unknown (a failed fsync may have
 * dropped dirty pages), so the wal refuses further writes: the server must
 * restart, and recovery sorts out what reached the disk. */
#include "wal_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  uint64_t seq, index;
} seg_name;

struct wal {
  char *dir;
  int dirfd; /* holds the flock that keeps other processes out */
  uint64_t seg_bytes;
  uint64_t wal_id;
  uint8_t *meta;
  size_t meta_len;
  wal_hard_state hs; /* newest written: goes into each new segment's header */
  wal_snap snap;     /* newest snapshot marker written: likewise */
  uint64_t last;     /* last entry's index, or a snapshot marker's past it */

  /* The active (last) segment. */
  int fd;
  uint64_t seq, name_index;
  uint32_t seed;
  uint64_t header_end; /* end of its header records */
  uint64_t off;        /* end of the records written */
  uint64_t synced;     /* end of the records known durable */
  uint64_t batch;      /* start of the batch being written */
  char path[PATH_MAX];

  seg_name *segs; /* every segment file, oldest first */
  size_t n_segs, cap_segs;

  buf out; /* the records of one call, written with one pwrite */
  int failed;
  prep *prep;
};

/* ---------------------------------------------------------------- helpers */

static void set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...) {
  if (!err || !err_len) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_len, fmt, ap);
  va_end(ap);
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
  while (n) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return 0;
}

static int wal_fail(wal *w, const char *what) {
  int e = errno ? errno : EIO;
  log_error("wal: %s: %s: %s; refusing further writes", w->path, what, strerror(e));
  w->failed = e;
  errno = e;
  return -1;
}

static int check_usable(const wal *w) {
  if (w->failed) {
    errno = EIO;
    return -1;
  }
  return 0;
}

static uint64_t segment_bytes(const wal_options *opt) {
  return opt && opt->segment_bytes ? opt->segment_bytes : WAL_DEFAULT_SEGMENT_BYTES;
}

static void segs_push(wal *w, uint64_t seq, uint64_t index) {
  if (w->n_segs == w->cap_segs) {
    w->cap_segs = w->cap_segs ? 2 * w->cap_segs : 8;
    w->segs = xrealloc(w->segs, w->cap_segs * sizeof *w->segs);
  }
  w->segs[w->n_segs++] = (seg_name){seq, index};
}

static int lock_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno == EWOULDBLOCK ? EBUSY : errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* Encodes a segment's header records (batch 0) into out. */
static void encode_header(buf *out, const seg_info *si, const void *meta, size_t meta_len,
                          const wal_hard_state *hs, wal_snap snap) {
  uint32_t seed = seg_seed(si->wal_id, si->seq);
  uint8_t segrec[SEG_RECORD_LEN], hsrec[HS_RECORD_LEN], snaprec[SNAP_RECORD_LEN];
  seg_info_encode(si, segrec);
  put_le64(hsrec, hs->term);
  put_le64(hsrec + 8, hs->vote);
  put_le64(hsrec + 16, hs->commit);
  put_le64(snaprec, snap.index);
  put_le64(snaprec + 8, snap.term);
  size_t size = rec_size(SEG_RECORD_LEN) + rec_size(meta_len) + rec_size(HS_RECORD_LEN) +
                rec_size(SNAP_RECORD_LEN);
  out->len = 0;
  buf_reserve(out, size);
  uint8_t *p = out->data;
  p += rec_encode(p, 0, REC_SEGMENT, 0, segrec, sizeof segrec, NULL, 0);
  p += rec_encode(p, seed, REC_META, 0, meta, meta_len, NULL, 0);
  p += rec_encode(p, seed, REC_HARDSTATE, 0, hsrec, sizeof hsrec, NULL, 0);
  p += rec_encode(p, seed, REC_SNAPSHOT, 0, snaprec, sizeof snaprec, NULL, 0);
  out->len = (size_t)(p - out->data);
}

/* Turns a prepared file into segment si: header, fdatasync, rename, fsync
 * of the directory. The segment appears under its name complete or not at
 * all. */
static int install_segment(const char *dir, int dirfd, int fd, const char *tmp, const seg_info *si,
                           const void *meta, size_t meta_len, const wal_hard_state *hs,
                           wal_snap snap, buf *out, char *path, size_t path_len) {
  char name[SEG_NAME_LEN + 1];
  seg_name_format(name, si->seq, si->name_index);
  snprintf(path, path_len, "%s/%s", dir, name);
  encode_header(out, si, meta, meta_len, hs, snap);
  if (pwrite_all(fd, out->data, out->len, 0) < 0 || fdatasync(fd) < 0) return -1;
  if (rename(tmp, path) < 0) return -1;
  return fsync(dirfd);
}

/* ---------------------------------------------------------------- create */

bool wal_exists(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return false;
  bool found = false;
  struct dirent *de;
  uint64_t seq, index;
  while (!found && (de = readdir(d))) found = seg_name_parse(de->d_name, &seq, &index);
  closedir(d);
  return found;
}

static uint64_t new_wal_id(void) {
  uint64_t id = 0;
  if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) id = (uint64_t)time_wall_ns() ^ ((uint64_t)getpid() << 32);
  return id;
}

static int fsync_parent(const char *dir) {
  char parent[PATH_MAX];
  snprintf(parent, sizeof parent, "%s", dir);
  size_t n = strlen(parent);
  while (n > 1 && parent[n - 1] == '/') parent[--n] = 0;
  char *slash = strrchr(parent, '/');
  if (!slash) return fsync_dir(".");
  if (slash == parent) slash[1] = 0; else *slash = 0;
  return fsync_dir(parent);
}

int wal_create(const char *dir, const void *meta, size_t meta_len, const wal_options *opt) {
  uint64_t seg_bytes = segment_bytes(opt);
  if (seg_bytes < WAL_MIN_SEGMENT_BYTES || meta_len > REC_MAX_PAYLOAD / 2) {
    errno = EINVAL;
    return -1;
  }
  if (wal_exists(dir)) {
    errno = EEXIST;
    return -1;
  }
  if (mkdir_all(dir, 0700) < 0 || fsync_parent(dir) < 0) return -1;
  int dirfd = lock_dir(dir);
  if (dirfd < 0) return -1;
  int rc = -1, fd = -1;
  char tmp[PATH_MAX], path[PATH_MAX];
  buf out = {0};
  if (wal_exists(dir)) { /* created meanwhile by someone else */
    errno = EEXIST;
    goto done;
  }
  snprintf(tmp, sizeof tmp, "%s/0.tmp", dir);
  fd = prep_make_file(tmp, seg_bytes);
  if (fd < 0) goto done;
  seg_info si = {.wal_id = new_wal_id()};
  wal_hard_state hs = {0};
  if (install_segment(dir, dirfd, fd, tmp, &si, meta, meta_len, &hs, (wal_snap){0, 0}, &out, path,
                      sizeof path) < 0) {
    int e = errno;
    unlink(tmp);
    errno = e;
    goto done;
  }
  rc = 0;
done:;
  int e = errno;
  if (fd >= 0) close(fd);
  close(dirfd);
  buf_free(&out);
  errno = e;
  return rc;
}

/* ---------------------------------------------------------------- open */

static int cmp_seg(const void *a, const void *b) {
  const seg_name *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Lists the segment files, oldest first, and deletes leftover .tmp files
 * (prepared segments never renamed: they hold nothing). */
static int list_segments(wal *w, char *err, size_t err_len) {
  int dfd = dup(w->dirfd);
  DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
  if (!d) {
    if (dfd >= 0) close(dfd);
    set_err(err, err_len, "wal: cannot list %s: %s", w->dir, strerror(errno));
    return -1;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    uint64_t seq, index;
    size_t len = strlen(de->d_name);
    if (seg_name_parse(de->d_name, &seq, &index)) {
      segs_push(w, seq, index);
    } else if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
      unlinkat(w->dirfd, de->d_name, 0);
    } else if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
      log_warn("wal: ignoring %s/%s: not a WAL segment", w->dir, de->d_name);
    }
  }
  closedir(d);
  if (w->n_segs == 0) {
    set_err(err, err_len, "wal: %s holds no WAL segment files (%%016x-%%016x.wal)", w->dir);
    return -1;
  }
  qsort(w->segs, w->n_segs, sizeof *w->segs, cmp_seg);
  for (size_t i = 1; i < w->n_segs; i++) {
    if (w->segs[i].seq != w->segs[i - 1].seq + 1) {
      char a[SEG_NAME_LEN + 1], b[SEG_NAME_LEN + 1];
      seg_name_format(a, w->segs[i - 1].seq, w->segs[i - 1].index);
      seg_name_format(b, w->segs[i].seq, w->segs[i].index);
      if (w->segs[i].seq == w->segs[i - 1].seq)
        set_err(err, err_len, "wal: %s: two segments with sequence %016llx: %s and %s", w->dir,
                (unsigned long long)w->segs[i].seq, a, b);
      else
        set_err(err, err_len, "wal: %s: segment %016llx is missing between %s and %s", w->dir,
                (unsigned long long)w->segs[i - 1].seq + 1, a, b);
      return -1;
    }
  }
  return 0;
}

/* The newest segment whose name index is <= from + 1: it was begun when the
 * log ended at or before `from`, so every entry after `from` was written in
 * it or later (as etcd's searchIndex). */
static int select_start(const wal *w, wal_snap from, size_t *start, char *err, size_t err_len) {
  for (size_t i = w->n_segs; i-- > 0;) {
    if (w->segs[i].index == 0 || w->segs[i].index - 1 <= from.index) {
      *start = i;
      return 0;
    }
  }
  char a[SEG_NAME_LEN + 1];
  seg_name_format(a, w->segs[0].seq, w->segs[0].index);
  set_err(err, err_len,
          "wal: %s: no segment holds index %llu (the oldest, %s, starts later): those entries were "
          "purged; open from a newer snapshot",
          w->dir, (unsigned long long)from.index + 1, a);
  return -1;
}

static void wal_free(wal *w) {
  if (!w) return;
  prep_stop(w->prep);
  if (w->fd >= 0) close(w->fd);
  if (w->dirfd >= 0) close(w->dirfd);
  free(w->dir);
  free(w->meta);
  free(w->segs);
  buf_free(&w->out);
  free(w);
}

/* Cuts a torn tail off the last segment (zeroing it, so that stale bytes can
 * never pass for records later), restores its preallocation if it was
 * shortened, and makes what recovery returns durable. */
static int repair_last(wal *w, const seg_result *res, bool *repaired, char *err, size_t err_len) {
  struct stat st;
  if (fstat(w->fd, &st) < 0) goto fail;
  if (res->torn) {
    log_warn("wal: %s: torn tail at offset %zu (%zu bytes of an unsynced batch) cut off", w->path,
             res->end, res->dirty_end - res->end);
    if (zero_range(w->fd, res->end, res->dirty_end) < 0) goto fail;
    *repaired = true;
  }
  if ((uint64_t)st.st_size < w->seg_bytes) {
    if (fallocate(w->fd, 0, 0, (off_t)w->seg_bytes) < 0 && errno != EOPNOTSUPP) goto fail;
    if (zero_range(w->fd, (uint64_t)st.st_size, w->seg_bytes) < 0) goto fail;
  }
  if (fsync(w->fd) < 0) goto fail;
  return 0;
fail:
  set_err(err, err_len, "wal: %s: repairing: %s", w->path, strerror(errno));
  return -1;
}

/* Maps a segment for reading, and finds where its non-zero bytes end by
 * reading backwards with a small buffer: the zero-filled tail of
 * preallocated space is never touched through the map, so a fresh 64 MiB
 * segment costs the few pages it holds, not 64 MiB of memory. *data is NULL
 * for an empty file. */
static int map_segment(const char *path, uint8_t **data, size_t *n, size_t *nonzero) {
  *data = NULL;
  *n = *nonzero = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    close(fd);
    return -1;
  }
  static _Thread_local uint8_t chunk[1 << 16];
  uint64_t end = (uint64_t)st.st_size;
  while (end > 0) {
    size_t k = end < sizeof chunk ? (size_t)end : sizeof chunk;
    ssize_t got = pread(fd, chunk, k, (off_t)(end - k));
    if (got != (ssize_t)k) {
      close(fd);
      if (got >= 0) errno = EIO;
      return -1;
    }
    size_t j = nonzero_end(chunk, 0, k);
    if (j > 0) {
      end = end - k + j;
      break;
    }
    end -= k;
  }
  *nonzero = (size_t)end;
  if (st.st_size > 0) {
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      close(fd);
      return -1;
    }
    madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
    *data = p;
    *n = (size_t)st.st_size;
  }
  close(fd);
  return 0;
}

int wal_open(const char *dir, wal_snap from, const wal_options *opt, wal_recovered *rec, wal **out,
             char *err, size_t err_len) {
  wal_recovered tmp_rec;
  if (!rec) rec = &tmp_rec;
  memset(rec, 0, sizeof *rec);
  *out = NULL;
  set_err(err, err_len, "%s", "");

  wal *w = xcalloc(1, sizeof *w);
  w->fd = -1;
  w->dir = xstrdup(dir);
  w->seg_bytes = segment_bytes(opt);
  if (w->seg_bytes < WAL_MIN_SEGMENT_BYTES) {
    set_err(err, err_len, "wal: segment_bytes %llu is below the minimum %llu",
            (unsigned long long)w->seg_bytes, (unsigned long long)WAL_MIN_SEGMENT_BYTES);
    w->dirfd = -1;
    goto fail;
  }
  w->dirfd = lock_dir(dir);
  if (w->dirfd < 0) {
    if (errno == EBUSY)
      set_err(err, err_len, "wal: %s is in use by another wal (locked)", dir);
    else
      set_err(err, err_len, "wal: cannot open directory %s: %s", dir, strerror(errno));
    goto fail;
  }
  if (list_segments(w, err, err_len) < 0) goto fail;
  size_t start;
  if (select_start(w, from, &start, err, err_len) < 0) goto fail;

  replay r;
  replay_init(&r, from, rec);
  seg_result res = {0};
  for (size_t i = start; i < w->n_segs; i++) {
    char name[SEG_NAME_LEN + 1];
    seg_name_format(name, w->segs[i].seq, w->segs[i].index);
    snprintf(w->path, sizeof w->path, "%s/%s", dir, name);
    uint8_t *data;
    size_t n;
    size_t nonzero;
    if (map_segment(w->path, &data, &n, &nonzero) < 0) {
      set_err(err, err_len, "wal: reading %s: %s", w->path, strerror(errno));
      goto fail;
    }
    r.map_base = data;
    r.released = 0;
    r.nonzero_hint = nonzero;
    int rc = replay_segment(&r, w->path, w->segs[i].seq, w->segs[i].index, data, n,
                            i + 1 == w->n_segs, &res, err, err_len);
    if (data) munmap(data, n);
    r.map_base = NULL;
    if (rc < 0) goto fail;
  }
  if (replay_finish(&r, err, err_len) < 0) goto fail;

  /* Ready to append at the end of the last segment. */
  const seg_name *tail = &w->segs[w->n_segs - 1];
  w->seq = tail->seq;
  w->name_index = tail->index;
  w->wal_id = r.wal_id;
  w->seed = res.seed;
  w->header_end = res.header_end;
  w->off = w->synced = w->batch = res.end;
  w->last = r.last;
  w->hs = rec->hs;
  w->snap = r.latest;
  w->meta = xmemdup(rec->meta, rec->meta_len);
  w->meta_len = rec->meta_len;
  w->fd = open(w->path, O_RDWR | O_CLOEXEC);
  if (w->fd < 0) {
    set_err(err, err_len, "wal: opening %s: %s", w->path, strerror(errno));
    goto fail;
  }
  if (repair_last(w, &res, &rec->repaired, err, err_len) < 0) goto fail;
  w->prep = prep_start(dir, w->seg_bytes);
  *out = w;
  if (rec == &tmp_rec) wal_recovered_free(rec);
  return 0;

fail:
  wal_free(w);
  wal_recovered_free(rec);
  return -1;
}

void wal_recovered_free(wal_recovered *rec) {
  if (!rec) return;
  for (size_t i = 0; i < rec->n_entries; i++) free((void *)rec->entries[i].data);
  free(rec->entries);
  free(rec->meta);
  memset(rec, 0, sizeof *rec);
}

/* ---------------------------------------------------------------- write */

static int cut(wal *w) {
  /* The old segment must be complete and durable before its successor
   * exists: recovery refuses damage in any segment but the last. */
  if (ftruncate(w->fd, (off_t)w->off) < 0 || fsync(w->fd) < 0) return wal_fail(w, "sealing segment");
  w->synced = w->off;

  int fd;
  char tmp[PATH_MAX], path[PATH_MAX];
  if (prep_take(w->prep, &fd, tmp, sizeof tmp) < 0) return wal_fail(w, "preparing the next segment");
  seg_info si = {.wal_id = w->wal_id,
                 .seq = w->seq + 1,
                 .name_index = w->last + 1,
                 .last_index = w->last,
                 .prev_end = w->off};
  if (install_segment(w->dir, w->dirfd, fd, tmp, &si, w->meta, w->meta_len, &w->hs, w->snap,
                      &w->out, path, sizeof path) < 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    errno = e;
    return wal_fail(w, "creating the next segment");
  }
  close(w->fd);
  w->fd = fd;
  w->seq = si.seq;
  w->name_index = si.name_index;
  w->seed = seg_seed(w->wal_id, w->seq);
  w->header_end = w->off = w->synced = w->batch = w->out.len;
  snprintf(w->path, sizeof w->path, "%s", path);
  segs_push(w, si.seq, si.name_index);
  log_info("wal: started segment %s", w->path);
  return 0;
}

/* Makes room for `size` bytes of records in the active segment, cutting to a
 * new one if they do not fit (a call's records never straddle segments;
 * records too big for any segment grow one past its preallocation). */
static int begin_batch(wal *w, size_t size) {
  if (w->off + size > w->seg_bytes && w->off > w->header_end && cut(w) < 0) return -1;
  if (w->off == w->synced) w->batch = w->off;
  w->out.len = 0;
  buf_reserve(&w->out, size);
  return 0;
}

static int write_batch(wal *w) {
  if (pwrite_all(w->fd, w->out.data, w->out.len, w->off) < 0) return wal_fail(w, "write");
  w->off += w->out.len;
  if (w->off > w->seg_bytes / 2) prep_request(w->prep);
  /* Keep the buffer for the next call, unless one huge record inflated it. */
  if (w->out.cap > (8u << 20)) buf_free(&w->out);
  return 0;
}

int wal_append(wal *w, const wal_hard_state *hs, const wal_entry *ents, size_t n) {
  if (check_usable(w) < 0) return -1;
  if (!hs && n == 0) return 0;
  size_t size = hs ? rec_size(HS_RECORD_LEN) : 0;
  uint64_t prev = w->last;
  for (size_t i = 0; i < n; i++) {
    /* The reader refuses holes; refuse to write one. */
    if (ents[i].index == 0 || ents[i].index - 1 > prev || ents[i].len > REC_MAX_PAYLOAD - ENTRY_FIXED_LEN ||
        (ents[i].len && !ents[i].data)) {
      errno = EINVAL;
      return -1;
    }
    prev = ents[i].index;
    size += rec_size(ENTRY_FIXED_LEN + ents[i].len);
  }
  if (begin_batch(w, size) < 0) return -1;
  uint8_t *p = w->out.data;
  for (size_t i = 0; i < n; i++) {
    uint8_t fixed[ENTRY_FIXED_LEN];
    put_le64(fixed, ents[i].index);
    put_le64(fixed + 8, ents[i].term);
    put_le32(fixed + 16, ents[i].type);
    put_le32(fixed + 20, 0);
    p += rec_encode(p, w->seed, REC_ENTRY, w->batch, fixed, sizeof fixed, ents[i].data, ents[i].len);
  }
  /* After the entries: a torn batch keeps a prefix, and a hard state must
   * never survive without the entries its commit index points to. */
  if (hs) {
    uint8_t rec[HS_RECORD_LEN];
    put_le64(rec, hs->term);
    put_le64(rec + 8, hs->vote);
    put_le64(rec + 16, hs->commit);
    p += rec_encode(p, w->seed, REC_HARDSTATE, w->batch, rec, sizeof rec, NULL, 0);
  }
  w->out.len = (size_t)(p - w->out.data);
  if (write_batch(w) < 0) return -1;
  if (n) w->last = ents[n - 1].index;
  if (hs) w->hs = *hs;
  return 0;
}

int wal_append_snapshot(wal *w, wal_snap s) {
  if (check_usable(w) < 0) return -1;
  if (begin_batch(w, rec_size(SNAP_RECORD_LEN)) < 0) return -1;
  uint8_t rec[SNAP_RECORD_LEN];
  put_le64(rec, s.index);
  put_le64(rec + 8, s.term);
  w->out.len = rec_encode(w->out.data, w->seed, REC_SNAPSHOT, w->batch, rec, sizeof rec, NULL, 0);
  if (write_batch(w) < 0) return -1;
  w->snap = s;
  if (s.index > w->last) w->last = s.index;
  return 0;
}

int wal_sync(wal *w) {
  if (check_usable(w) < 0) return -1;
  if (w->synced == w->off) return 0;
  if (fdatasync(w->fd) < 0) return wal_fail(w, "fdatasync");
  w->synced = w->off;
  return 0;
}

/* ---------------------------------------------------------------- purge */

int wal_release_to(wal *w, uint64_t index, int keep_min) {
  /* Segments before the newest one begun at or before index + 1 hold only
   * entries <= index (see select_start). Oldest first, so that a crash
   * midway leaves a contiguous run. */
  size_t releasable = 0;
  for (size_t i = w->n_segs; i-- > 0;) {
    if (w->segs[i].index == 0 || w->segs[i].index - 1 <= index) {
      releasable = i;
      break;
    }
  }
  size_t keep = keep_min < 1 ? 1 : (size_t)keep_min;
  size_t max_delete = w->n_segs > keep ? w->n_segs - keep : 0;
  size_t n_delete = releasable < max_delete ? releasable : max_delete;
  size_t deleted = 0;
  int rc = 0;
  for (; deleted < n_delete; deleted++) {
    char name[SEG_NAME_LEN + 1];
    seg_name_format(name, w->segs[deleted].seq, w->segs[deleted].index);
    if (unlinkat(w->dirfd, name, 0) < 0 && errno != ENOENT) {
      log_error("wal: removing %s/%s: %s", w->dir, name, strerror(errno));
      rc = -1;
      break;
    }
    log_info("wal: purged %s/%s", w->dir, name);
  }
  if (deleted) {
    memmove(w->segs, w->segs + deleted, (w->n_segs - deleted) * sizeof *w->segs);
    w->n_segs -= deleted;
    if (fsync(w->dirfd) < 0) rc = -1;
  }
  return rc;
}

/* ---------------------------------------------------------------- misc */

uint64_t wal_last_index(const wal *w) { return w->last; }

void wal_close(wal *w) {
  if (!w) return;
  if (!w->failed && w->synced != w->off && fdatasync(w->fd) < 0)
    log_error("wal: %s: fdatasync at close: %s", w->path, strerror(errno));
  wal_free(w);
}

void wal_debug_tail(const wal *w, char *path, size_t path_len, uint64_t *write_off, uint64_t *synced_off) {
  snprintf(path, path_len, "%s", w->path);
  *write_off = w->off;
  *synced_off = w->synced;
}
