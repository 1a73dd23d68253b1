/* Preparing segment files ahead of time.
 *
 * A new segment must be fully allocated *and written* before appends use it:
 * ext4 records fallocated space as "unwritten" extents, and the first write
 * into each such block converts it, which turns the next fdatasync into a
 * journal commit (measured here: ~135 us instead of ~90 us per sync). So the
 * file is fallocated (space reserved, ENOSPC found early) and then overwritten
 * with zeros and fsynced -- 64 MiB of I/O that a helper thread does while the
 * current segment fills, so that a cut only renames a ready file.
 *
 * Two alternating names (0.tmp, 1.tmp) because the helper starts the next
 * file while the caller is still renaming the one it took. */
#include "wal_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum prep_state { PREP_WORKING, PREP_READY, PREP_FAILED };

struct prep {
  char *dir;
  uint64_t size;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  enum prep_state state;
  bool stop;
  unsigned count;
  int fd, err;
  char path[PATH_MAX];
};

static const uint8_t zeros[256 * 1024];

int zero_range(int fd, uint64_t from, uint64_t to) {
  while (from < to) {
    size_t k = to - from < sizeof zeros ? (size_t)(to - from) : sizeof zeros;
    ssize_t w = pwrite(fd, zeros, k, (off_t)from);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    from += (uint64_t)w;
  }
  return 0;
}

int prep_make_file(const char *path, uint64_t size) {
  int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  /* Reserve first so a full disk fails here, not in the middle of a write.
   * Filesystems without fallocate just get the zeros. */
  if (fallocate(fd, 0, 0, (off_t)size) < 0 && errno != EOPNOTSUPP) goto fail;
  if (zero_range(fd, 0, size) < 0 || fsync(fd) < 0) goto fail;
  return fd;
fail:;
  int saved = errno;
  close(fd);
  unlink(path);
  errno = saved;
  return -1;
}

static void next_path(prep *p) {
  snprintf(p->path, sizeof p->path, "%s/%u.tmp", p->dir, p->count % 2);
  p->count++;
}

static void *prep_main(void *arg) {
  prep *p = arg;
  pthread_mutex_lock(&p->mu);
  while (!p->stop) {
    if (p->state != PREP_WORKING) {
      pthread_cond_wait(&p->cv, &p->mu);
      continue;
    }
    next_path(p);
    char path[PATH_MAX];
    memcpy(path, p->path, sizeof path);
    pthread_mutex_unlock(&p->mu);
    int fd = prep_make_file(path, p->size);
    int e = errno;
    pthread_mutex_lock(&p->mu);
    if (fd < 0) {
      log_warn("wal: preparing segment file %s: %s", path, strerror(e));
      p->state = PREP_FAILED;
      p->err = e;
    } else {
      p->state = PREP_READY;
      p->fd = fd;
    }
    pthread_cond_broadcast(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

prep *prep_start(const char *dir, uint64_t size) {
  prep *p = xcalloc(1, sizeof *p);
  p->dir = xstrdup(dir);
  p->size = size;
  p->fd = -1;
  p->state = PREP_WORKING;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  if (pthread_create(&p->thread, NULL, prep_main, p) != 0) {
    /* No helper: prep_take makes every file itself. */
    p->state = PREP_FAILED;
    p->err = EAGAIN;
    p->stop = true;
    next_path(p);
  }
  return p;
}

int prep_take(prep *p, int *fd, char *path, size_t path_len) {
  pthread_mutex_lock(&p->mu);
  while (p->state == PREP_WORKING) pthread_cond_wait(&p->cv, &p->mu);
  if (p->state == PREP_READY) {
    *fd = p->fd;
    snprintf(path, path_len, "%s", p->path);
    p->fd = -1;
    p->state = PREP_WORKING;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
  }
  /* The helper failed (or does not exist): try once more, here. */
  char failed_path[PATH_MAX];
  memcpy(failed_path, p->path, sizeof failed_path);
  pthread_mutex_unlock(&p->mu);
  int f = prep_make_file(failed_path, p->size);
  if (f < 0) return -1;
  *fd = f;
  snprintf(path, path_len, "%s", failed_path);
  pthread_mutex_lock(&p->mu);
  if (!p->stop) {
    p->state = PREP_WORKING;
    pthread_cond_broadcast(&p->cv);
  } else {
    next_path(p);
  }
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void prep_stop(prep *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  bool had_thread = !p->stop;
  p->stop = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (had_thread) pthread_join(p->thread, NULL);
  if (p->state == PREP_READY) {
    close(p->fd);
    unlink(p->path);
  }
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->dir);
  free(p);
}
