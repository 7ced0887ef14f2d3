#!/usr/bin/env bash
# Where served decode throughput goes on a GPU host: synthetic:130m served by mamba-serve (cores
# 0-7) and driven by mamba-client load (cores 8-15) at concurrency 256, 256 generated tokens per
# request, with 128-token then 1-token prompts; the engine's step-time histograms by phase, batch
# size and token counters are scraped from /metrics before and after each run (the difference is
# the run). Last, one run with the client on the server's cores. Bundle as in run_cuda_checks.sh;
# OUT receives the scrapes.
#   scripts/gpu/e2e_phases.sh
set -uo pipefail
B=${BUNDLE:-.gpu}; [ -d $B/bin ] || tar xJf $B/gpu-bundle.tar.xz -C $B; source $B/env.sh
O=${OUT:-build-gpu-logs}; mkdir -p "$O"; nproc
scrape() { python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://$1/metrics').read().decode())" | grep -E "^mamba_engine_step_seconds_(sum|count)|^mamba_engine_batch_size_(sum|count)|^mamba_prompt_tokens_total|^mamba_generated_tokens_total" ; }
taskset -c 0-7 mamba-serve --model=synthetic:130m --backend=cuda --port=0 --metrics_port=0 --http_port=0 --max_running=256 --max_queue=4096 --log_level=warning > $O/listen.txt 2>$O/serve.err &
pid=$!
for i in $(seq 1 300); do grep -q listening $O/listen.txt && break; sleep 0.2; done
g=$(sed -n 's/.*grpc=[^ ]*:\([0-9]*\).*/\1/p' $O/listen.txt); m=$(sed -n 's/.*metrics=[^ ]*:\([0-9]*\).*/\1/p' $O/listen.txt)
for p in 128 1; do
  echo "== prompt $p"; scrape 127.0.0.1:$m > $O/before$p.txt
  taskset -c 8-15 mamba-client load --addr=127.0.0.1:$g --concurrency=256 --requests=1024 --warmup=64 --prompt_tokens=$p --output_tokens=256 --channels=8 --client_threads=4 2>&1 | grep -E "Output token|TTFT|ITL|Client"
  scrape 127.0.0.1:$m > $O/after$p.txt
  paste $O/before$p.txt $O/after$p.txt
done
echo "== client on the same cores as the server (as before)"
taskset -c 0-7 mamba-client load --addr=127.0.0.1:$g --concurrency=256 --requests=1024 --warmup=64 --prompt_tokens=128 --output_tokens=256 --channels=8 --client_threads=4 2>&1 | grep -E "Output token|Client"
kill -TERM $pid; wait $pid
