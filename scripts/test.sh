#!/usr/bin/env bash
# Sets everything up, builds with warnings as errors, and runs every test through ctest.
#   scripts/test.sh                  the whole suite (what CI runs)
#   scripts/test.sh -R tokenizer     extra arguments go to ctest
#   MAMBA_SANITIZE=address scripts/test.sh   ASan+UBSan build in build-asan/
#   MAMBA_SANITIZE=thread  scripts/test.sh   TSan build of the concurrency tests in build-tsan/
set -euo pipefail
cd "$(dirname "$0")/.."
san=${MAMBA_SANITIZE:-}
if [ -n "$san" ]; then
  export BUILD_DIR=${BUILD_DIR:-build-$([ "$san" = address ] && echo asan || echo tsan)}
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DMAMBA_SANITIZE=$san -DMAMBA_CUDA=OFF"
fi
export BUILD_DIR=${BUILD_DIR:-build}
export CMAKE_ARGS="${CMAKE_ARGS:-} -DMAMBA_WERROR=ON"
scripts/setup.sh
cd "$BUILD_DIR"
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
