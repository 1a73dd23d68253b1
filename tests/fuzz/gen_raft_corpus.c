/* gen_raft_corpus - writes the seed corpora of the raft fuzz targets:
 * one encoded message of each type for fuzz_raft_msg, and a few input
 * sequences (elect, replicate, read, transfer, snapshot) for fuzz_raft_step.
 * Built by hand when the formats change:
 *   cc -Ikvcore/raft -Ikvcore/base tests/fuzz/gen_raft_corpus.c \
 *      build/lib/libsynod_raft.a build/lib/libsynod_base.a -o /tmp/gen && /tmp/gen tests/fuzz/corpus */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

static void write_file(const char *dir, const char *name, const buf *b) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(b->data, 1, b->len, f) != b->len) {
    perror(path);
    exit(1);
  }
  fclose(f);
}

static raft_entry ents[2] = {{.index = 5, .term = 2, .data = (uint8_t *)"put k v", .len = 7},
                             {.index = 6, .term = 2}};
static raft_snapshot snap = {.index = 9, .term = 2, .conf = {.voters = {1, 2, 3}, .n_voters = 3},
                             .data = (const uint8_t *)"db", .len = 2};

static raft_msg msg(int type) {
  raft_msg m = {.type = (uint8_t)type, .from = 2, .to = 1, .term = 2};
  switch (type) {
  case RAFT_MSG_APP: m.index = 4, m.log_term = 1, m.commit = 4, m.entries = ents, m.n_entries = 2; break;
  case RAFT_MSG_APP_RESP: m.index = 6; break;
  case RAFT_MSG_VOTE: case RAFT_MSG_PREVOTE: m.index = 4, m.log_term = 1; break;
  case RAFT_MSG_HEARTBEAT: m.index = 1, m.commit = 4; break;
  case RAFT_MSG_HEARTBEAT_RESP: m.index = 1; break;
  case RAFT_MSG_SNAP: m.snapshot = &snap; break;
  case RAFT_MSG_PROP: m.term = 0, m.entries = ents, m.n_entries = 1; break;
  case RAFT_MSG_READ_INDEX: m.term = 0, m.ctx = (const uint8_t *)"r1", m.ctx_len = 2; break;
  case RAFT_MSG_READ_INDEX_RESP: m.index = 4, m.ctx = (const uint8_t *)"r1", m.ctx_len = 2; break;
  case RAFT_MSG_TRANSFER_LEADER: m.term = 0, m.index = 3; break;
  default: break;
  }
  return m;
}

static void rec(buf *b, uint8_t op, const void *arg, size_t len) {
  uint8_t h[2] = {op, (uint8_t)len};
  buf_append(b, h, 2);
  buf_append(b, arg, len);
}

static void rec_msg(buf *b, raft_msg m) {
  buf e = {0};
  raft_msg_encode(&m, &e);
  rec(b, 0, e.data, e.len);
  buf_free(&e);
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : "tests/fuzz/corpus";
  char dir[512];
  snprintf(dir, sizeof dir, "%s/fuzz_raft_msg", root);
  for (int t = RAFT_MSG_APP; t <= RAFT_MSG_TRANSFER_LEADER; t++) {
    raft_msg m = msg(t);
    buf b = {0};
    if (raft_msg_encode(&m, &b) != 0) return 1;
    char name[64];
    snprintf(name, sizeof name, "%02d-%s", t, raft_msg_type_name(t));
    write_file(dir, name, &b);
    buf_free(&b);
  }
  snprintf(dir, sizeof dir, "%s/fuzz_raft_step", root);
  /* elect itself with 2's vote, replicate, read, transfer */
  buf b = {0};
  buf_append(&b, "\x03", 1); /* pre-vote + check-quorum */
  rec(&b, 7, NULL, 0);       /* campaign */
  rec(&b, 6, NULL, 0);
  raft_msg pv = {.type = RAFT_MSG_PREVOTE_RESP, .from = 2, .to = 1, .term = 2};
  rec_msg(&b, pv);
  rec(&b, 6, NULL, 0);
  raft_msg v = {.type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1, .term = 2};
  rec_msg(&b, v);
  rec(&b, 6, NULL, 0);
  rec(&b, 4, "proposal", 8);
  rec(&b, 6, NULL, 0);
  raft_msg ack = {.type = RAFT_MSG_APP_RESP, .from = 2, .to = 1, .term = 2, .index = 6};
  rec_msg(&b, ack);
  rec(&b, 6, NULL, 0);
  rec(&b, 5, "read", 4);
  rec(&b, 6, NULL, 0);
  raft_msg hb = {.type = RAFT_MSG_HEARTBEAT_RESP, .from = 3, .to = 1, .term = 2, .index = 1};
  rec_msg(&b, hb);
  rec(&b, 3, NULL, 0);
  rec(&b, 9, "snap", 4);
  rec(&b, 8, "\x02", 1);
  rec(&b, 6, NULL, 0);
  write_file(dir, "elect-replicate-read", &b);
  /* a follower receiving appends, a conflicting append and a snapshot */
  b.len = 0;
  buf_append(&b, "\x00", 1);
  rec_msg(&b, msg(RAFT_MSG_HEARTBEAT));
  raft_msg app = {.type = RAFT_MSG_APP, .from = 2, .to = 1, .term = 2, .index = 4, .log_term = 1,
                  .commit = 5, .entries = ents, .n_entries = 2};
  rec_msg(&b, app);
  rec(&b, 6, NULL, 0);
  raft_entry conflict = {.index = 6, .term = 3};
  raft_msg app2 = {.type = RAFT_MSG_APP, .from = 3, .to = 1, .term = 3, .index = 5, .log_term = 2,
                   .commit = 5, .entries = &conflict, .n_entries = 1};
  rec_msg(&b, app2);
  rec(&b, 6, NULL, 0);
  rec_msg(&b, msg(RAFT_MSG_SNAP));
  rec(&b, 6, NULL, 0);
  rec_msg(&b, msg(RAFT_MSG_READ_INDEX_RESP));
  rec_msg(&b, msg(RAFT_MSG_TIMEOUT_NOW));
  rec(&b, 6, NULL, 0);
  write_file(dir, "follower-append-snapshot", &b);
  /* ticks until an election, with lease reads */
  b.len = 0;
  buf_append(&b, "\x07", 1);
  for (int i = 0; i < 12; i++) rec(&b, 3, NULL, 0);
  rec(&b, 6, NULL, 0);
  rec(&b, 5, "x", 1);
  rec(&b, 7, "\x01\x04", 2); /* conf change */
  rec(&b, 6, NULL, 0);
  write_file(dir, "ticks-lease", &b);
  buf_free(&b);
  return 0;
}
