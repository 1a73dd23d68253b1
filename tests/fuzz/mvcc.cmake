# kvcore/mvcc fuzz targets (included by tests/CMakeLists.txt).
synod_fuzz_target(fuzz_mvcc_records SOURCES fuzz/fuzz_mvcc_records.c LIBS synod_mvcc)
synod_fuzz_target(fuzz_mvcc_image SOURCES fuzz/fuzz_mvcc_image.c LIBS synod_mvcc)
