/* Allocation helpers and the request arena. */
#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void out_of_memory(size_t n) {
  fprintf(stderr, "synod: out of memory allocating %zu bytes\n", n);
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) out_of_memory(n);
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) out_of_memory(n * size);
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) out_of_memory(n);
  return q;
}

char *xstrdup(const char *s) { return xmemdup(s, strlen(s) + 1); }

void *xmemdup(const void *p, size_t n) {
  void *q = xmalloc(n);
  if (n) memcpy(q, p, n);
  return q;
}

/* Arena: a chain of blocks; allocations bump a pointer in the newest one.
 * Large requests get a block of their own so small ones keep filling the
 * current block. */
typedef struct block {
  struct block *next;
  size_t size, used;
  _Alignas(16) uint8_t data[];
} block;

struct arena {
  block *head;
  size_t total;
};

enum { ARENA_BLOCK = 4096 - sizeof(block) - 64 };

static block *block_new(size_t size) {
  block *b = xmalloc(sizeof(block) + size);
  b->next = NULL;
  b->size = size;
  b->used = 0;
  return b;
}

arena *arena_new(void) {
  arena *a = xmalloc(sizeof *a);
  a->head = block_new(ARENA_BLOCK);
  a->total = 0;
  return a;
}

void *arena_alloc(arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  block *b = a->head;
  if (b->size - b->used < n) {
    if (n > ARENA_BLOCK / 4) {
      /* Big: own block, linked behind the head so the head keeps serving. */
      block *big = block_new(n);
      big->used = n;
      big->next = b->next;
      b->next = big;
      a->total += n;
      memset(big->data, 0, n);
      return big->data;
    }
    b = block_new(ARENA_BLOCK);
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  a->total += n;
  memset(p, 0, n);
  return p;
}

void *arena_memdup(arena *a, const void *p, size_t n) {
  void *q = arena_alloc(a, n);
  if (n) memcpy(q, p, n);
  return q;
}

size_t arena_used(const arena *a) { return a->total; }

void arena_reset(arena *a) {
  /* Keep one standard-size block: the common request fits in it. */
  block *keep = NULL;
  for (block *b = a->head, *next; b; b = next) {
    next = b->next;
    if (!keep && b->size == ARENA_BLOCK) {
      keep = b;
    } else {
      free(b);
    }
  }
  if (!keep) keep = block_new(ARENA_BLOCK);
  keep->next = NULL;
  keep->used = 0;
  a->head = keep;
  a->total = 0;
}

void arena_free(arena *a) {
  if (!a) return;
  for (block *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  free(a);
}

/* Growable buffer. */
void buf_reserve(buf *b, size_t extra) {
  if (b->cap - b->len >= extra) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra) cap *= 2;
  b->data = xrealloc(b->data, cap);
  b->cap = cap;
}

void buf_append(buf *b, const void *p, size_t n) {
  buf_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
}

void buf_free(buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int bytes_cmp(const void *a, size_t alen, const void *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c;
  return alen < blen ? -1 : alen > blen ? 1 : 0;
}
