/* Logging: one line per event on stderr, timestamped in UTC like etcd's. */
#include "base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static log_level min_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error", "panic", "fatal"};

void log_set_level(log_level lvl) { min_level = lvl; }
bool log_enabled(log_level lvl) { return lvl >= min_level; }

int log_level_parse(const char *name, log_level *out) {
  for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
    if (strcmp(name, level_names[i]) == 0) {
      *out = (log_level)i;
      return 0;
    }
  }
  return -1;
}

static void vlog(log_level lvl, const char *fmt, va_list ap) {
  char line[2048];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %-5s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000, level_names[lvl]);
  if (n < 0) return;
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  /* One write call so concurrent lines do not interleave. */
  fwrite(line, 1, len, stderr);
}

void log_write(log_level lvl, const char *fmt, ...) {
  if (lvl < min_level) return;
  va_list ap;
  va_start(ap, fmt);
  vlog(lvl, fmt, ap);
  va_end(ap);
}

void log_fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(LOG_FATAL, fmt, ap);
  va_end(ap);
  exit(1);
}
