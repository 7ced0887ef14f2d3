#!/usr/bin/env bash
# The README's curl examples for the HTTP API, run as written against a real mamba-serve on the
# default model (the chat one with the ChatML test template, as the README says to start it).
# Only the address changes: localhost:8000 becomes the port the server picked.
#   readme_curl_test.sh MAMBA_SERVE_BINARY
set -euo pipefail
cd "$(dirname "$0")/../../.."
serve=${1:?usage: readme_curl_test.sh MAMBA_SERVE_BINARY}
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "readme_curl_test: FAIL: $*" >&2
  echo "--- output:" >&2
  cat "$work/out" >&2 || true
  exit 1
}

# The fenced sh block of the README that holds the /v1/completions example.
python3 - README.md >"$work/examples.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
hits = [b for b in blocks if "localhost:8000/v1/completions" in b]
if len(hits) != 1:
    sys.exit("expected one sh block with the curl examples, found %d" % len(hits))
print(hits[0])
PY
grep -q "curl" "$work/examples.sh" || fail "no curl command in the README block"

"$serve" --host=127.0.0.1 --port=0 --metrics_port=-1 --http_port=0 --cpu_threads=1 \
  --chat_template=tests/data/chat_templates/chatml.jinja --log_level=warning \
  >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
addr=""
for _ in $(seq 1 600); do
  addr=$(sed -n 's/.*mamba-serve listening.* http=\([^ ]*\).*/\1/p' "$work/serve.out" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.err" >&2; fail "mamba-serve exited"; }
  sleep 0.1
done
[ -n "$addr" ] || fail "mamba-serve printed no listening line"

sed "s/localhost:8000/$addr/g" "$work/examples.sh" >"$work/run.sh"
bash -euo pipefail "$work/run.sh" >"$work/out" 2>&1 || fail "the examples exited $?"

# The completion: one JSON object with its text and usage.
grep -q '"object":"text_completion"' "$work/out" || fail "no text_completion in the output"
grep -q '"completion_tokens":' "$work/out" || fail "no usage in the completion"
# The chat stream: role first, content deltas, a finish reason, then [DONE].
grep -q '^data: {.*"object":"chat.completion.chunk"' "$work/out" || fail "no chat chunks"
# (No pipeline here: under pipefail, `grep | head -1` fails whenever head exits before grep has
# written everything, which made this check flaky.)
first_event=$(grep -o -m1 'data: {.*' "$work/out" || true)
[[ $first_event == *'"role":"assistant"'* ]] || fail "the stream does not open with the role"
grep -q '"finish_reason":"\(length\|stop\)"' "$work/out" || fail "no finish reason"
[ "$(grep '^data: ' "$work/out" | tail -1)" = "data: [DONE]" ] || fail "the stream does not end with [DONE]"
if grep -q '"error"' "$work/out"; then fail "an error in the output"; fi
echo "readme_curl_test: the README's $(grep -c '^curl' "$work/examples.sh") curl examples work as written"
