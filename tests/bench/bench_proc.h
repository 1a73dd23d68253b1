/* bench_proc.h - what the benchmarks read from /proc about themselves:
 * thread CPU, memory, write syscalls, and pages written through a map. */
#ifndef SYNOD_BENCH_PROC_H
#define SYNOD_BENCH_PROC_H

#include <stddef.h>
#include <stdint.h>

/* CPU time of the calling thread (user + kernel), in µs. */
double bench_thread_cpu_us(void);

/* Resident memory of the process, in KiB: total, file-backed (mapped file
 * pages, LMDB's map), anonymous; and the peak (VmHWM). */
typedef struct {
  long rss, file, anon, hwm;
} bench_mem;
void bench_mem_get(bench_mem *m);

/* Write syscalls and bytes passed to them by the calling thread
 * (/proc/thread-self/io: syscw, wchar). */
typedef struct {
  uint64_t calls, bytes;
} bench_io;
void bench_io_get(bench_io *io);

#endif
