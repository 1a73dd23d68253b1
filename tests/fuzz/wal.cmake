# kvcore/wal fuzz targets (SYNOD_FUZZ builds only), and the program that
# regenerates their seed corpora (built everywhere, run by hand).
synod_fuzz_target(fuzz_wal_segment SOURCES fuzz/fuzz_wal_segment.c LIBS synod_wal)
synod_fuzz_target(fuzz_wal_records SOURCES fuzz/fuzz_wal_records.c LIBS synod_wal)

add_executable(wal_fuzz_seeds fuzz/wal_fuzz_seeds.c)
target_link_libraries(wal_fuzz_seeds PRIVATE synod_wal)
