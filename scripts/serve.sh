#!/usr/bin/env bash
# Sets everything up, then starts mamba-serve on its default model (extra arguments go to it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/bin/mamba-serve "$@"
