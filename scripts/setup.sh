#!/usr/bin/env bash
# Installs every package mamba-serve needs (Debian bookworm or Ubuntu 24.04; idempotent; run as
# root or with sudo available), then configures and builds into build/ (or $BUILD_DIR).
#
#   scripts/setup.sh                 install + build
#   MAMBA_SETUP_NO_BUILD=1 scripts/setup.sh   install only (the container's build stage uses this)
#   CMAKE_ARGS="-DMAMBA_CUDA=OFF" scripts/setup.sh
#   BUILD_TARGETS="scheduler_test server_test" scripts/setup.sh   only those targets
set -euo pipefail
cd "$(dirname "$0")/.."

# Build tools and libraries, by their Debian names (mapped below where Ubuntu 24.04 differs).
PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev nlohmann-json3-dev libcpp-httplib-dev libicu-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # Tests: a second gRPC implementation, Prometheus + promtool, nginx, yamllint, clang (fuzzers),
  # jinja2 (the chat template fixtures), curl (the README's HTTP examples).
  python3 python3-grpcio python3-protobuf python3-yaml prometheus nginx-light yamllint clang
  python3-jinja2 curl
  libclang-rt-14-dev
  # TLS and auth: OpenSSL headers (token digests, PEM checks) and the openssl CLI (test certificates).
  libssl-dev openssl
  # The HTTP endpoints: Boost.Beast on Asio (header-only).
  libboost1.81-dev
)
# Ubuntu 24.04 (the container's build stage) names three of them differently.
if [ "$(. /etc/os-release 2>/dev/null && echo "${ID:-}")" = ubuntu ]; then
  for i in "${!PACKAGES[@]}"; do
    case "${PACKAGES[$i]}" in
      nginx-light) PACKAGES[$i]=nginx ;;  # the flavours are deprecated; nginx has grpc + http2
      libclang-rt-14-dev) PACKAGES[$i]=libclang-rt-18-dev ;;  # matches Ubuntu's default clang 18
      libboost1.81-dev) PACKAGES[$i]=libboost-dev ;;  # Ubuntu 24.04's default, 1.83
    esac
  done
fi
[ -n "${MAMBA_EXTRA_PACKAGES:-}" ] && PACKAGES+=(${MAMBA_EXTRA_PACKAGES})

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the OpenAI SDK tests; any install of them will do (not only Debian's).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nginx and prometheus as services on install; the tests start their own.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now nginx prometheus >/dev/null 2>&1 || true
  else
    $SUDO pkill -x nginx >/dev/null 2>&1 || true
    $SUDO pkill -x prometheus >/dev/null 2>&1 || true
  fi
fi

[ -n "${MAMBA_SETUP_NO_BUILD:-}" ] && exit 0

# The official openai Node SDK for the HTTP API's tests, at the version package-lock.json pins.
if [ ! -f tests/integration/openai/node_modules/openai/package.json ]; then
  (cd tests/integration/openai && npm ci --no-audit --no-fund --loglevel=error) ||
    echo "setup: npm ci failed; openai_sdk_test will be skipped" >&2
fi

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache ${CMAKE_ARGS:-} >/dev/null
# BUILD_TARGETS (space-separated) builds only those targets and what they need.
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$JOBS" ${BUILD_TARGETS:+--target $BUILD_TARGETS}
