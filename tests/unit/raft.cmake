# kvcore/raft tests: rule-by-rule unit tests, the message codec and
# memstorage, and the randomized network simulator.
synod_unit_test(test_raft SOURCES unit/test_raft.c LIBS synod_raft)
