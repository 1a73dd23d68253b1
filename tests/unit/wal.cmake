# kvcore/wal: unit tests, and the benchmark (built, not run by ctest).
synod_unit_test(test_wal SOURCES unit/test_wal.c LIBS synod_wal)
synod_unit_test(test_wal_recovery SOURCES unit/test_wal_recovery.c LIBS synod_wal)

add_executable(wal_bench bench/wal_bench.c)
target_link_libraries(wal_bench PRIVATE synod_wal)
