# Fuzz targets over the server's own decoders and request handling.
synod_fuzz_target(fuzz_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_config.c LIBS synod_server)
synod_fuzz_target(fuzz_kv_requests SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_kv_requests.c LIBS synod_server)
synod_fuzz_target(fuzz_snapshot_chunks SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_snapshot_chunks.c LIBS synod_server)
if(SYNOD_FUZZ)
  target_include_directories(fuzz_snapshot_chunks PRIVATE ${CMAKE_SOURCE_DIR}/kvcore/server)
  target_include_directories(fuzz_config PRIVATE ${CMAKE_SOURCE_DIR}/kvcore/server)
  target_include_directories(fuzz_kv_requests PRIVATE ${CMAKE_SOURCE_DIR}/kvcore/server)
endif()
