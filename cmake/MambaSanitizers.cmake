# MAMBA_SANITIZE=address builds everything with ASan+UBSan, =thread with TSan. Applied globally so
# that every translation unit (ours and the tests') is instrumented the same way.
if(MAMBA_SANITIZE STREQUAL "address")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=undefined>)
  add_link_options(-fsanitize=address,undefined)
elseif(MAMBA_SANITIZE STREQUAL "thread")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=thread>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=thread)
elseif(NOT MAMBA_SANITIZE STREQUAL "")
  message(FATAL_ERROR "MAMBA_SANITIZE must be '', 'address' or 'thread', not '${MAMBA_SANITIZE}'")
endif()
