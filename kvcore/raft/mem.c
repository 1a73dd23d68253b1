/* Memory helpers of kvcore/raft: growable arrays, the entry-data slab and
 * the scratch allocator behind each ready. */
#include "raft_int.h"

#include <stdlib.h>

void raft_grow(void *pp, size_t *cap, size_t need, size_t elem) {
  void **p = pp;
  if (need <= *cap) return;
  size_t c = *cap ? *cap : 8;
  while (c < need) c *= 2;
  *p = xrealloc(*p, c * elem);
  *cap = c;
}

/* ---------------------------------------------------------------- slab */

enum { SLAB_CHUNK = 64 * 1024, SLAB_ALIGN = 8 };

struct slab_chunk {
  uint32_t refs;
  bool retired; /* no longer the slab's current chunk */
  size_t used, cap;
  _Alignas(8) uint8_t data[];
};

uint64_t slab_chunks_allocated;

/* Each allocation is preceded by a pointer to its chunk, so release needs
 * nothing but the data pointer. */
typedef struct {
  slab_chunk *chunk;
} slab_hdr;

static slab_chunk *chunk_new(size_t cap) {
  slab_chunk *c = xmalloc(sizeof *c + cap);
  c->refs = 0;
  c->retired = false;
  c->used = 0;
  c->cap = cap;
  slab_chunks_allocated++;
  return c;
}

static void chunk_retire(slab_chunk *c) {
  c->retired = true;
  if (c->refs == 0) free(c);
}

void slab_init(slab *s) { s->cur = NULL; }

void slab_destroy(slab *s) {
  if (s->cur) chunk_retire(s->cur);
  s->cur = NULL;
}

uint8_t *slab_dup(slab *s, const void *p, size_t n) {
  if (n == 0) return NULL;
  size_t need = (sizeof(slab_hdr) + n + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1);
  slab_chunk *c;
  if (need > SLAB_CHUNK / 4) {
    /* Big entries get a chunk of their own, retired from the start, so they
     * never pin a shared chunk's small neighbours or vice versa. */
    c = chunk_new(need);
    c->retired = true;
  } else {
    c = s->cur;
    if (!c || c->cap - c->used < need) {
      if (c) chunk_retire(c);
      c = s->cur = chunk_new(SLAB_CHUNK);
    }
  }
  slab_hdr *h = (slab_hdr *)(c->data + c->used);
  h->chunk = c;
  c->used += need;
  c->refs++;
  uint8_t *d = (uint8_t *)(h + 1);
  memcpy(d, p, n);
  return d;
}

void slab_release(uint8_t *data) {
  if (!data) return;
  slab_chunk *c = ((slab_hdr *)data - 1)->chunk;
  if (--c->refs == 0 && c->retired) free(c);
}

/* ---------------------------------------------------------------- scratch */

struct scratch_block {
  scratch_block *next;
  size_t used, cap;
  _Alignas(8) uint8_t data[];
};

enum { SCRATCH_BLOCK = 32 * 1024 };

void *scratch_alloc(scratch *s, size_t n) {
  n = (n + 7) & ~(size_t)7;
  if (n == 0) n = 8;
  scratch_block *b = s->cur;
  /* Walk forward through blocks kept from earlier rounds before growing. */
  while (b && b->cap - b->used < n) {
    b = b->next;
    if (b) b->used = 0;
  }
  if (!b) {
    size_t cap = n > SCRATCH_BLOCK ? n : SCRATCH_BLOCK;
    b = xmalloc(sizeof *b + cap);
    b->next = NULL;
    b->used = 0;
    b->cap = cap;
    if (s->cur) {
      /* Insert after cur so the rest of the kept list stays reachable. */
      b->next = s->cur->next;
      s->cur->next = b;
    } else {
      s->head = b;
    }
  }
  s->cur = b;
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

void *scratch_dup(scratch *s, const void *p, size_t n) {
  void *q = scratch_alloc(s, n);
  if (n) memcpy(q, p, n);
  return q;
}

void scratch_reset(scratch *s) {
  s->cur = s->head;
  if (s->cur) s->cur->used = 0;
}

void scratch_free(scratch *s) {
  for (scratch_block *b = s->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  s->head = s->cur = NULL;
}
