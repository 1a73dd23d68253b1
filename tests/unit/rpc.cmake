# kvcore/rpc over loopback, with the module's own client.
synod_unit_test(test_rpc SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rpc.c LIBS synod_rpc synod_proto)
