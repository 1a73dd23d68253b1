/* Replaying records into what wal_open returns, with Raft's semantics:
 *
 *  - an entry with index i replaces every entry read before with index >= i
 *    (a new leader overwrote an uncommitted suffix), so i may go back, but
 *    never forward past last + 1: a forward jump is a hole in the log;
 *  - a snapshot marker past the last entry moves `last` to it (a follower
 *    installed a leader's snapshot; its next entry is marker + 1);
 *  - the newest hard state wins; metadata must agree everywhere;
 *  - every segment's SEGMENT record must agree with its name, with the WAL's
 *    identity, with where the previous segment's data ended and with the
 *    log's last index at that point.
 *
 * Only entries above from.index are kept: rec->entries[k] has index
 * from.index + 1 + k, so the kept count is always max(0, last - from). */
#include "wal_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int replay_fail(replay *r, const rec_view *v, char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int replay_fail(replay *r, const rec_view *v, char *err, size_t err_len, const char *fmt, ...) {
  if (err && err_len) {
    int k = v ? snprintf(err, err_len, "wal: %s: offset %llu: ", r->name, (unsigned long long)v->off)
              : snprintf(err, err_len, "wal: %s: ", r->name);
    if (k >= 0 && (size_t)k < err_len) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(err + k, err_len - (size_t)k, fmt, ap);
      va_end(ap);
    }
  }
  return -1;
}

void replay_init(replay *r, wal_snap from, wal_recovered *rec) {
  memset(r, 0, sizeof *r);
  memset(rec, 0, sizeof *rec);
  r->from = from;
  r->rec = rec;
}

static size_t kept_count(const replay *r) { return r->last > r->from.index ? r->last - r->from.index : 0; }

static void drop_from(replay *r, size_t keep) {
  wal_recovered *rec = r->rec;
  if (keep >= rec->n_entries) return;
  for (size_t k = keep; k < rec->n_entries; k++) free((void *)rec->entries[k].data);
  rec->n_entries = keep;
}

static int on_segment(replay *r, const rec_view *v, char *err, size_t err_len) {
  seg_info si;
  if (seg_info_parse(v, &si) < 0) return replay_fail(r, v, err, err_len, "malformed segment record");
  if (si.seq != r->seq || si.name_index != r->name_index)
    return replay_fail(r, v, err, err_len,
                       "segment record says sequence %llu, index %llu: does not match the file name",
                       (unsigned long long)si.seq, (unsigned long long)si.name_index);
  if (si.name_index != (si.seq == 0 ? 0 : si.last_index + 1))
    return replay_fail(r, v, err, err_len, "segment record's index %llu does not follow last index %llu",
                       (unsigned long long)si.name_index, (unsigned long long)si.last_index);
  if (!r->started) {
    r->wal_id = si.wal_id;
    r->last = si.last_index;
    if (r->last > r->from.index)
      return replay_fail(r, v, err, err_len,
                         "the first segment read starts after index %llu but the log is wanted from "
                         "index %llu: those entries were purged",
                         (unsigned long long)si.last_index, (unsigned long long)r->from.index + 1);
    return 0;
  }
  if (si.wal_id != r->wal_id)
    return replay_fail(r, v, err, err_len, "segment belongs to another WAL (id %016llx, expected %016llx)",
                       (unsigned long long)si.wal_id, (unsigned long long)r->wal_id);
  if (si.prev_end != r->prev_end)
    return replay_fail(r, v, err, err_len,
                       "the previous segment should hold %llu bytes of records but holds %zu: "
                       "it was truncated or damaged",
                       (unsigned long long)si.prev_end, r->prev_end);
  if (si.last_index != r->last)
    return replay_fail(r, v, err, err_len,
                       "segment starts after index %llu but the previous segments end at index %llu",
                       (unsigned long long)si.last_index, (unsigned long long)r->last);
  return 0;
}

static int on_meta(replay *r, const rec_view *v, char *err, size_t err_len) {
  wal_recovered *rec = r->rec;
  if (!r->started) {
    rec->meta = xmemdup(v->payload, v->len);
    rec->meta_len = v->len;
    return 0;
  }
  if (v->len != rec->meta_len || (v->len && memcmp(v->payload, rec->meta, v->len) != 0))
    return replay_fail(r, v, err, err_len, "metadata differs from the previous segments'");
  return 0;
}

static int on_snapshot(replay *r, const rec_view *v, char *err, size_t err_len) {
  if (v->len != SNAP_RECORD_LEN) return replay_fail(r, v, err, err_len, "malformed snapshot marker");
  wal_snap s = {get_le64(v->payload), get_le64(v->payload + 8)};
  r->latest = s;
  if (s.index == r->from.index && r->from.index != 0) {
    if (s.term != r->from.term)
      return replay_fail(r, v, err, err_len, "snapshot marker at index %llu has term %llu, not %llu",
                         (unsigned long long)s.index, (unsigned long long)s.term,
                         (unsigned long long)r->from.term);
  }
  if (s.index <= r->from.index && s.index >= r->best.index) r->best = s;
  if (s.index > r->last) {
    if (s.index > r->from.index)
      return replay_fail(r, v, err, err_len,
                         "snapshot marker at index %llu lies past the log's end (%llu) and past the "
                         "requested start %llu: open from that snapshot",
                         (unsigned long long)s.index, (unsigned long long)r->last,
                         (unsigned long long)r->from.index);
    r->last = s.index;
  }
  return 0;
}

static int on_entry(replay *r, const rec_view *v, char *err, size_t err_len) {
  if (v->len < ENTRY_FIXED_LEN || get_le32(v->payload + 20) != 0)
    return replay_fail(r, v, err, err_len, "malformed entry record");
  uint64_t index = get_le64(v->payload);
  if (index == 0 || index - 1 > r->last)
    return replay_fail(r, v, err, err_len, "entry index %llu after last index %llu: a gap in the log",
                       (unsigned long long)index, (unsigned long long)r->last);
  wal_recovered *rec = r->rec;
  r->last = index - 1;
  drop_from(r, kept_count(r));
  r->last = index;
  if (index <= r->from.index) return 0;
  if (rec->n_entries == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 64;
    rec->entries = xrealloc(rec->entries, r->cap * sizeof *rec->entries);
  }
  wal_entry *e = &rec->entries[rec->n_entries++];
  e->index = index;
  e->term = get_le64(v->payload + 8);
  e->type = get_le32(v->payload + 16);
  e->len = v->len - ENTRY_FIXED_LEN;
  e->data = xmemdup(v->payload + ENTRY_FIXED_LEN, e->len);
  return 0;
}

/* Gives back mapped pages the scan has left behind (a window is kept in
 * case the scanner looks back at a recent record). */
static void release_behind(replay *r, size_t off) {
  enum { WINDOW = 1 << 20, STEP = 8 << 20 };
  if (!r->map_base || off < r->released + STEP + WINDOW) return;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t upto = (off - WINDOW) / page * page;
  if (upto <= r->released) return;
  madvise((void *)(r->map_base + r->released), upto - r->released, MADV_DONTNEED);
  r->released = upto;
}

static int on_record(void *ctx, const rec_view *v, char *err, size_t err_len) {
  replay *r = ctx;
  release_behind(r, v->off);
  switch (v->type) {
    case REC_SEGMENT: return on_segment(r, v, err, err_len);
    case REC_META: return on_meta(r, v, err, err_len);
    case REC_HARDSTATE:
      if (v->len != HS_RECORD_LEN) return replay_fail(r, v, err, err_len, "malformed hard state");
      r->rec->hs.term = get_le64(v->payload);
      r->rec->hs.vote = get_le64(v->payload + 8);
      r->rec->hs.commit = get_le64(v->payload + 16);
      return 0;
    case REC_SNAPSHOT: return on_snapshot(r, v, err, err_len);
    case REC_ENTRY: return on_entry(r, v, err, err_len);
  }
  return replay_fail(r, v, err, err_len, "unknown record type %u", v->type);
}

int replay_segment(replay *r, const char *name, uint64_t seq, uint64_t name_index,
                   const uint8_t *buf, size_t n, bool final, seg_result *res, char *err,
                   size_t err_len) {
  snprintf(r->name, sizeof r->name, "%s", name);
  r->seq = seq;
  r->name_index = name_index;
  if (seg_scan_hinted(name, buf, n, r->nonzero_hint, final, on_record, r, res, err, err_len) < 0) return -1;
  r->started = true;
  r->prev_end = res->end;
  return 0;
}

/* `from` is where the caller's state stands (a snapshot, or the store's
 * applied index): the log is read from there on, and a marker there is not
 * required. Whether the entries after `from` are all present was checked as
 * segments were read (a purged start is refused). */
int replay_finish(replay *r, char *err, size_t err_len) {
  (void)err, (void)err_len;
  r->rec->snap = r->best;
  return 0;
}
