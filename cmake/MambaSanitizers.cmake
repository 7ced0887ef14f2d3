# MAMBA_SANITIZE=address builds everything with ASan+UBSan, =thread with TSan. Applied globally so
# that every translation unit (ours and the tests') is instrumented the same way.
if(MAMBA_SANITIZE STREQUAL "address")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=undefined>)
  add_link_options(-fsanitize=address,undefined)
  # GCC 12's flow analysis sees the sanitizers' instrumentation and reports uninitialized reads
  # inside libstdc++ (<regex>'s std::function moves) that are not there; -Werror would fail on
  # them. The plain build keeps the warning.
  add_compile_options($<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>)
elseif(MAMBA_SANITIZE STREQUAL "thread")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=thread>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=thread)
  # The distribution's Abseil is not built with TSan, so its locks are invisible to it and every
  # access they guard would look like a race; this shim, linked into everything built after this
  # point, reports their happens-before edges to TSan (see the file).
  add_library(mamba_tsan_absl_sync OBJECT ${CMAKE_SOURCE_DIR}/tests/sanitizers/tsan_absl_sync.cc)
  target_link_libraries(mamba_tsan_absl_sync PUBLIC absl::synchronization ${CMAKE_DL_LIBS})
  link_libraries(mamba_tsan_absl_sync)
elseif(NOT MAMBA_SANITIZE STREQUAL "")
  message(FATAL_ERROR "MAMBA_SANITIZE must be '', 'address' or 'thread', not '${MAMBA_SANITIZE}'")
endif()
