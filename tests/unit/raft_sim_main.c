/* raft_sim_main.c - runs the simulator over many seeds.
 *
 *   raft_sim                      the default run (SYNOD_RAFT_SEEDS seeds, or 2000)
 *   raft_sim --seeds N --first S  seeds S .. S+N-1
 *   raft_sim --long               100000 seeds: the long run, for manual use
 *   raft_sim --seed S --verbose   replay one seed, printing every event
 *   raft_sim --fault NAME --expect-violation
 *                                 plant a bug in the harness and succeed only
 *                                 if the checker catches it
 *
 * SYNOD_SEED=S has the effect of --seed S. Exit status 1 if any seed failed
 * (or, with --expect-violation, if none did). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft_sim.h"

static sim_fault parse_fault(const char *name) {
  if (!strcmp(name, "forget-vote")) return SIM_FAULT_FORGET_VOTE;
  if (!strcmp(name, "ack-before-persist")) return SIM_FAULT_ACK_BEFORE_PERSIST;
  if (!strcmp(name, "lease-no-margin")) return SIM_FAULT_LEASE_NO_MARGIN;
  fprintf(stderr, "unknown fault %s (forget-vote, ack-before-persist, lease-no-margin)\n", name);
  exit(2);
}

int main(int argc, char **argv) {
  uint64_t first = 1, count = 2000;
  bool verbose = false, expect = false, single = false;
  sim_fault fault = SIM_FAULT_NONE;
  const char *env = getenv("SYNOD_RAFT_SEEDS");
  if (env) count = strtoull(env, NULL, 0);
  if ((env = getenv("SYNOD_SEED"))) {
    first = strtoull(env, NULL, 0);
    count = 1;
    single = true;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--seeds") && v) {
      count = strtoull(v, NULL, 0);
      i++;
    } else if (!strcmp(a, "--first") && v) {
      first = strtoull(v, NULL, 0);
      i++;
    } else if (!strcmp(a, "--seed") && v) {
      first = strtoull(v, NULL, 0);
      count = 1;
      single = true;
      i++;
    } else if (!strcmp(a, "--long")) {
      count = 100000;
    } else if (!strcmp(a, "--verbose")) {
      verbose = true;
    } else if (!strcmp(a, "--fault") && v) {
      fault = parse_fault(v);
      i++;
    } else if (!strcmp(a, "--expect-violation")) {
      expect = true;
    } else {
      fprintf(stderr, "usage: raft_sim [--seeds N] [--first S] [--seed S] [--long] [--verbose] "
                      "[--fault NAME --expect-violation]\n");
      return 2;
    }
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  sim_stats st = {0};
  uint64_t failures = 0, first_failure = 0;
  for (uint64_t seed = first; seed < first + count; seed++) {
    if (sim_run(seed, fault, verbose, &st)) {
      if (!failures) first_failure = seed;
      failures++;
      if (expect || failures >= 5) break;
    }
    if (!single && !expect && count >= 10000 && (seed - first + 1) % 1000 == 0)
      fprintf(stderr, "... %llu seeds\n", (unsigned long long)(seed - first + 1));
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("raft_sim: seeds %llu..%llu, %.1fs: %llu events, %llu messages (%llu dropped), "
         "%llu leaders elected, %llu/%llu proposals applied, %llu reads checked, "
         "%llu snapshots installed, %llu conf changes, %llu crashes, %llu transfers, %llu partitions\n",
         (unsigned long long)first, (unsigned long long)(first + count - 1), secs,
         (unsigned long long)st.events, (unsigned long long)st.messages, (unsigned long long)st.dropped,
         (unsigned long long)st.leaders, (unsigned long long)st.committed,
         (unsigned long long)st.proposals, (unsigned long long)st.reads_checked,
         (unsigned long long)st.snapshots_installed, (unsigned long long)st.conf_changes,
         (unsigned long long)st.crashes, (unsigned long long)st.transfers,
         (unsigned long long)st.partitions);
  if (expect) {
    if (failures) {
      printf("planted fault caught at seed %llu, as expected\n", (unsigned long long)first_failure);
      return 0;
    }
    printf("planted fault NOT caught in %llu seeds: the checker is blind to it\n",
           (unsigned long long)count);
    return 1;
  }
  if (failures) printf("%llu seed(s) FAILED, first %llu\n", (unsigned long long)failures,
                       (unsigned long long)first_failure);
  return failures ? 1 : 0;
}
