/* /proc readers for the benchmarks (bench_proc.h). */
#include "bench_proc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_thread_cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

void bench_mem_get(bench_mem *m) {
  memset(m, 0, sizeof *m);
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    long v;
    if (sscanf(line, "VmRSS: %ld", &v) == 1) m->rss = v;
    else if (sscanf(line, "RssFile: %ld", &v) == 1) m->file = v;
    else if (sscanf(line, "RssAnon: %ld", &v) == 1) m->anon = v;
    else if (sscanf(line, "VmHWM: %ld", &v) == 1) m->hwm = v;
  }
  fclose(f);
}

void bench_io_get(bench_io *io) {
  memset(io, 0, sizeof *io);
  FILE *f = fopen("/proc/thread-self/io", "r");
  if (!f) return;
  char line[128];
  while (fgets(line, sizeof line, f)) {
    unsigned long long v;
    if (sscanf(line, "syscw: %llu", &v) == 1) io->calls = v;
    else if (sscanf(line, "wchar: %llu", &v) == 1) io->bytes = v;
  }
  fclose(f);
}
