/* fuzz_raft_msg - the raft message decoder reads the network: it must
 * refuse malformed input cleanly, and whatever it accepts must re-encode to
 * exactly the bytes it came from (the format is canonical). */
#include <stdlib.h>
#include <string.h>

#include "raft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static raft_decode_buf db;
  raft_msg m;
  if (raft_msg_decode(data, size, &m, &db) != 0) return 0;
  buf out = {0};
  if (raft_msg_encode(&m, &out) != 0) abort();
  if (out.len != size || memcmp(out.data, data, size) != 0) abort();
  buf_free(&out);
  /* Conf change entries decode too. */
  for (size_t i = 0; i < m.n_entries; i++) {
    raft_conf_change cc;
    if (m.entries[i].type == RAFT_ENTRY_CONF_CHANGE &&
        raft_cc_decode(m.entries[i].data, m.entries[i].len, &cc) == 0) {
      raft_conf_state cs = {.voters = {1, 2, 3}, .n_voters = 3};
      raft_conf_apply(&cs, &cc);
    }
  }
  return 0;
}
