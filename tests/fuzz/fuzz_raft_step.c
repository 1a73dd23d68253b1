/* fuzz_raft_step - drives one raft node (id 1 of voters {1,2,3}, learner 4)
 * with an arbitrary sequence of inputs: decoded messages (readdressed to it
 * so they are not trivially dropped), ticks, proposals, reads, transfers,
 * snapshots and ready/advance cycles. Nothing may crash, leak or trip a
 * sanitizer, and the node's basic invariants must hold after every input.
 *
 * Input: a sequence of records {u8 op, u8 len, len bytes}. */
#include <stdlib.h>
#include <string.h>

#include "raft.h"

static void check(raft *r) {
  raft_status st;
  raft_status_get(r, &st);
  if (st.applied > st.commit || st.commit > st.last_index || st.first_index > st.last_index + 1) abort();
  if (st.role == RAFT_LEADER && st.lead != 1) abort();
}

static void cycle(raft *r, raft_memstorage *ms) {
  for (int guard = 0; guard < 8 && raft_has_ready(r); guard++) {
    raft_ready rd;
    if (raft_get_ready(r, &rd) != 0) abort();
    for (size_t i = 0; i < rd.n_msgs; i++) {
      buf b = {0};
      if (raft_msg_encode(&rd.msgs[i], &b) != 0) abort();
      buf_free(&b);
    }
    if (rd.snapshot && raft_memstorage_apply_snapshot(ms, rd.snapshot) != 0) abort();
    if (rd.n_entries && raft_memstorage_append(ms, rd.entries, rd.n_entries) != 0) abort();
    if (rd.hard_state_changed) raft_memstorage_set_hard_state(ms, &rd.hard_state);
    for (size_t i = 0; i < rd.n_msgs_after_persist; i++) {
      buf b = {0};
      if (raft_msg_encode(&rd.msgs_after_persist[i], &b) != 0) abort();
      buf_free(&b);
    }
    for (size_t i = 0; i < rd.n_committed; i++)
      if (i && rd.committed[i].index != rd.committed[i - 1].index + 1) abort();
    if (raft_advance(r) != 0) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  raft_memstorage *ms = raft_memstorage_new();
  raft_conf_state cs = {.voters = {1, 2, 3}, .n_voters = 3, .learners = {4}, .n_learners = 1};
  raft_memstorage_bootstrap(ms, &cs);
  raft_config c = {.id = 1, .storage = raft_memstorage_storage(ms), .election_tick = 5,
                   .heartbeat_tick = 1, .max_inflight_msgs = 4, .max_msg_bytes = 64};
  if (size > 0) {
    c.pre_vote = data[0] & 1;
    c.check_quorum = data[0] & 2;
    c.read_mode = (data[0] & 6) == 6 ? RAFT_READ_LEASE : RAFT_READ_SAFE;
    data++, size--;
  }
  raft *r;
  if (raft_new(&c, &r) != 0) abort();
  raft_decode_buf db = {0};
  size_t pos = 0;
  while (pos + 2 <= size) {
    uint8_t op = data[pos], len = data[pos + 1];
    pos += 2;
    if (len > size - pos) len = (uint8_t)(size - pos);
    const uint8_t *arg = data + pos;
    pos += len;
    raft_msg m;
    switch (op % 10) {
    case 0: case 1: case 2:
      if (raft_msg_decode(arg, len, &m, &db) == 0) {
        m.to = 1;
        if (m.from == 1) m.from = 2;
        if (raft_step(r, &m) != 0) abort();
      }
      break;
    case 3: raft_tick(r); break;
    case 4: raft_propose(r, arg, len); break;
    case 5: raft_read_index(r, arg, len); break;
    case 6: cycle(r, ms); break;
    case 7:
      if (len >= 2) {
        raft_conf_change cc = {.type = arg[0] & 3, .node_id = arg[1] % 6};
        raft_propose_conf_change(r, &cc);
      } else {
        raft_campaign(r);
      }
      break;
    case 8:
      if (len) raft_transfer_leader(r, arg[0] % 5);
      break;
    case 9: {
      raft_status st;
      raft_status_get(r, &st);
      raft_conf_state applied;
      raft_conf_get(r, NULL, &applied);
      if (len && st.applied > st.first_index &&
          raft_memstorage_create_snapshot(ms, st.applied, &applied, arg, len) == 0)
        raft_memstorage_compact(ms, st.applied - 1);
      raft_report_snapshot(r, 2 + op % 3, op & 16);
      raft_report_unreachable(r, 2 + op % 3);
      break;
    }
    }
    check(r);
  }
  cycle(r, ms);
  check(r);
  raft_free(r);
  raft_memstorage_free(ms);
  raft_decode_buf_free(&db);
  return 0;
}
