/* base.h - small utilities every Synod module shares.
 *
 *   logging    log_info("opened %s", dir); levels as etcd's --log-level
 *   time       monotonic and wall clocks in nanoseconds
 *   arena      bump allocator for request-scoped memory (freed at once)
 *   crc32c     Castagnoli CRC, as etcd uses for WAL records and hashes
 *   sha1       only for etcd-compatible member and cluster IDs
 *   sha256     the checksum etcd appends to a streamed snapshot
 *   xmalloc    allocation that aborts on exhaustion (there is no recovery
 *              path from a failed 40-byte malloc in a server)
 */
#ifndef SYNOD_BASE_H
#define SYNOD_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <time.h>

/* ---------------------------------------------------------------- logging */

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_PANIC, LOG_FATAL } log_level;

void log_set_level(log_level lvl);
/* Parses etcd's --log-level names (debug, info, warn, error, panic, fatal).
 * Returns -1 for an unknown name. */
int log_level_parse(const char *name, log_level *out);
bool log_enabled(log_level lvl);
void log_write(log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs at FATAL and exits(1): for configuration and startup errors only. */
_Noreturn void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

/* ---------------------------------------------------------------- memory */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void *xmemdup(const void *p, size_t n);

/* A bump allocator: many small allocations, one free. Not thread-safe; each
 * request owns its own arena. */
typedef struct arena arena;
arena *arena_new(void);
void *arena_alloc(arena *a, size_t n);        /* 16-byte aligned, zeroed */
void *arena_memdup(arena *a, const void *p, size_t n);
void arena_reset(arena *a);                   /* keep the first block */
void arena_free(arena *a);
size_t arena_used(const arena *a);

/* ---------------------------------------------------------------- time */

int64_t time_mono_ns(void);   /* CLOCK_MONOTONIC */
int64_t time_wall_ns(void);   /* CLOCK_REALTIME */
static inline int64_t time_mono_ms(void) { return time_mono_ns() / 1000000; }
/* `ms` from now on `clock`: the absolute deadline pthread_cond_timedwait
 * takes (on the clock the condition variable was made with). */
struct timespec time_after_ms(clockid_t clock, int64_t ms);

/* ---------------------------------------------------------------- checksums */

uint32_t crc32c_update(uint32_t crc, const void *data, size_t n);
static inline uint32_t crc32c(const void *data, size_t n) { return crc32c_update(0, data, n); }

typedef struct { uint32_t h[5]; uint64_t len; uint8_t buf[64]; size_t used; } sha1_ctx;
void sha1_init(sha1_ctx *c);
void sha1_update(sha1_ctx *c, const void *data, size_t n);
void sha1_final(sha1_ctx *c, uint8_t out[20]);

typedef struct { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t used; } sha256_ctx;
void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t out[32]);

/* ---------------------------------------------------------------- bytes */

static inline void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}
static inline void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void put_le64(uint8_t *p, uint64_t v) { put_le32(p, (uint32_t)v); put_le32(p + 4, (uint32_t)(v >> 32)); }
static inline uint64_t get_le64(const uint8_t *p) { return get_le32(p) | (uint64_t)get_le32(p + 4) << 32; }

/* Compares two byte strings the way etcd orders keys (bytes.Compare). */
int bytes_cmp(const void *a, size_t alen, const void *b, size_t blen);

/* A growable byte buffer. */
typedef struct { uint8_t *data; size_t len, cap; } buf;
void buf_reserve(buf *b, size_t extra);
void buf_append(buf *b, const void *p, size_t n);
void buf_free(buf *b);

/* ---------------------------------------------------------------- files */

/* fsync a directory so a create, rename or unlink inside it is durable. */
int fsync_dir(const char *dir);
/* Writes a whole file atomically: temp file, fsync, rename, fsync dir. */
int write_file_atomic(const char *path, const void *data, size_t n);
/* Reads a whole (small) file into a malloc'd buffer. Returns -1 with errno. */
int read_file(const char *path, uint8_t **data, size_t *n);
/* mkdir -p with mode. */
int mkdir_all(const char *path, int mode);

#endif
