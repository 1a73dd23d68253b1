# Fuzz target over lease request handling (kvcore/lease with the server's KV execution).
synod_fuzz_target(fuzz_lease_requests SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_lease_requests.c
                  LIBS synod_server synod_lease)
if(SYNOD_FUZZ)
  target_include_directories(fuzz_lease_requests PRIVATE ${CMAKE_SOURCE_DIR}/kvcore/server)
endif()
