# kvcore/server pieces that can run without the rest of the member.
synod_unit_test(test_raftnode SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_raftnode.c LIBS synod_server)
