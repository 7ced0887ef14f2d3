#!/usr/bin/env bash
# Sets everything up, then starts mamba-serve on its default model (extra arguments go to it),
# after printing a mamba-client command to paste into a second terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
port=50051
for arg in "$@"; do
  case "$arg" in
    --port=*) port=${arg#--port=} ;;
  esac
done
cat >&2 <<MSG

mamba-serve is starting. Once it prints "mamba-serve listening", try from another terminal:

  $PWD/build/bin/mamba-client generate --addr=localhost:$port --prompt="The history of the" --max_tokens=64

or, through the OpenAI-compatible HTTP API (port 8000 unless --http_port says otherwise):

  curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' \\
    -d '{"model": "default", "prompt": "The history of the", "max_tokens": 64}'

MSG
exec build/bin/mamba-serve "$@"
