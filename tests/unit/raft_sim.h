/* raft_sim.h - the deterministic network simulator for kvcore/raft.
 *
 * One seed fixes everything: cluster shape, options, network behaviour and
 * the random schedule of proposals, reads, crashes, partitions, membership
 * changes and transfers. A run is a chaos phase followed by a healed phase
 * that checks liveness. Safety invariants are checked after every event;
 * the first violation stops the run and prints the trace. */
#ifndef SYNOD_RAFT_SIM_H
#define SYNOD_RAFT_SIM_H

#include <stdbool.h>
#include <stdint.h>

/* Bugs the harness can plant on purpose, to prove the checker catches
 * them (a checker that cannot fail is worth nothing). */
typedef enum {
  SIM_FAULT_NONE = 0,
  SIM_FAULT_FORGET_VOTE,        /* a restarted node has lost its vote */
  SIM_FAULT_ACK_BEFORE_PERSIST, /* responses leave before the write is durable */
  SIM_FAULT_LEASE_NO_MARGIN,    /* lease reads with far more clock skew than the margin */
} sim_fault;

typedef struct {
  uint64_t events, messages, dropped, elections, leaders, proposals, committed, reads,
      reads_checked, snapshots_sent, snapshots_installed, conf_changes, crashes, transfers,
      partitions;
} sim_stats;

/* Runs one seed. Returns 0 if every invariant held, 1 on a violation (after
 * printing the reason, the parameters and the trace to stderr). verbose
 * prints every event as it happens. */
int sim_run(uint64_t seed, sim_fault fault, bool verbose, sim_stats *stats);

#endif
