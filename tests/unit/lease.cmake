# kvcore/lease tests (included by tests/CMakeLists.txt).
synod_unit_test(test_lease SOURCES unit/test_lease.c LIBS mvcc_testlib synod_lease)
target_include_directories(test_lease PRIVATE ${CMAKE_SOURCE_DIR}/kvcore/lease)
