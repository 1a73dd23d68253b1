# kvcore/mvcc tests (included by tests/CMakeLists.txt).
add_library(mvcc_testlib STATIC unit/mvcc_testutil.c unit/mvcc_model.c)
target_include_directories(mvcc_testlib PUBLIC ${CMAKE_SOURCE_DIR}/tests/unit)
target_link_libraries(mvcc_testlib PUBLIC synod_mvcc)

synod_unit_test(test_mvcc SOURCES unit/test_mvcc.c LIBS mvcc_testlib)
synod_unit_test(test_mvcc_model SOURCES unit/test_mvcc_model.c LIBS mvcc_testlib)
synod_unit_test(test_mvcc_durability SOURCES unit/test_mvcc_durability.c LIBS mvcc_testlib)
synod_unit_test(test_mvcc_record SOURCES unit/test_mvcc_record.c LIBS mvcc_testlib)
synod_unit_test(test_mvcc_space SOURCES unit/test_mvcc_space.c LIBS mvcc_testlib)

# Benchmark (not a test): build/bin/mvcc_bench [keys] [dir]; figures in docs/storage.md.
add_executable(mvcc_bench ${CMAKE_SOURCE_DIR}/tests/bench/mvcc_bench.c
               ${CMAKE_SOURCE_DIR}/tests/bench/bench_proc.c)
target_link_libraries(mvcc_bench PRIVATE synod_mvcc)
synod_unit_test(test_mvcc_image SOURCES unit/test_mvcc_image.c LIBS mvcc_testlib)

# Benchmark (not a test): build/bin/image_bench [keys] [dir]; figures in docs/maintenance.md.
add_executable(image_bench ${CMAKE_SOURCE_DIR}/tests/bench/image_bench.c)
target_link_libraries(image_bench PRIVATE synod_mvcc)
