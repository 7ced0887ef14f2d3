# Warnings for our own targets. Call mamba_target_warnings(target) on every library and executable
# we own; third-party and generated code (protobuf) is left alone.
function(mamba_target_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wnon-virtual-dtor
      -Wno-missing-field-initializers>
    # GCC's spelling; clang (the fuzz build) has no -Wshadow=local.
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wshadow=local>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${MAMBA_WERROR}>>:-Werror>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${MAMBA_WERROR}>>:-Werror=all-warnings>)
endfunction()
