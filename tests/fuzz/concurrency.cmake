# Fuzz target over Lock/Election request handling (concurrency/ with the store).
synod_fuzz_target(fuzz_lock_requests SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_lock_requests.c
                  LIBS synod_concurrency synod_proto)
