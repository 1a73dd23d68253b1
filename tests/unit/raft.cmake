# kvcore/raft tests: rule-by-rule unit tests, the message codec and
# memstorage, and the randomized network simulator.
synod_unit_test(test_raft SOURCES unit/test_raft.c LIBS synod_raft)
synod_unit_test(test_raft_codec SOURCES unit/test_raft_codec.c LIBS synod_raft)

# The simulator: 20000 random seeds in the default run (a bit over a minute
# in the release build), fewer under the sanitizers. `raft_sim --long` runs
# 100000 for manual use; `raft_sim --seed S --verbose` replays one.
if(SYNOD_SANITIZE)
  set(raft_sim_seeds 1000)
else()
  set(raft_sim_seeds 20000)
endif()
synod_unit_test(raft_sim SOURCES unit/raft_sim.c unit/raft_sim_main.c LIBS synod_raft
                ARGS --seeds ${raft_sim_seeds})

# The checker must be able to fail: each run plants a bug in the harness and
# passes only if some seed reports a violation.
foreach(fault forget-vote ack-before-persist lease-no-margin)
  add_test(NAME raft_sim_catches_${fault}
           COMMAND raft_sim --fault ${fault} --expect-violation --seeds 5000)
  set_tests_properties(raft_sim_catches_${fault} PROPERTIES LABELS "unit")
endforeach()
