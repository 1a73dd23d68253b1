# kvcore/raft fuzz targets: the message decoder (canonical round trip) and
# step() driven by arbitrary input sequences. Seed corpora in
# tests/fuzz/corpus/<target>/.
synod_fuzz_target(fuzz_raft_msg SOURCES fuzz/fuzz_raft_msg.c LIBS synod_raft)
synod_fuzz_target(fuzz_raft_step SOURCES fuzz/fuzz_raft_step.c LIBS synod_raft)
