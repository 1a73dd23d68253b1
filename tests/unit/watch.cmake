# kvcore/watch tests (included by tests/CMakeLists.txt). The hub tests see
# the module's private header for the index.
synod_unit_test(test_watch SOURCES unit/test_watch.c LIBS synod_watch mvcc_testlib)
synod_unit_test(test_watch_model SOURCES unit/test_watch_model.c LIBS synod_watch mvcc_testlib)
target_include_directories(test_watch PRIVATE ${CMAKE_SOURCE_DIR}/kvcore/watch)
target_include_directories(test_watch_model PRIVATE ${CMAKE_SOURCE_DIR}/kvcore/watch)
