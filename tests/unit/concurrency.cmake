# concurrency/ tests (included by tests/CMakeLists.txt).
synod_unit_test(test_concurrency SOURCES unit/test_concurrency.c LIBS mvcc_testlib synod_concurrency)
