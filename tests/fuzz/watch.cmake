# kvcore/watch fuzz target (included by tests/CMakeLists.txt).
synod_fuzz_target(fuzz_watch_requests SOURCES fuzz/fuzz_watch_requests.c LIBS synod_watch)
