# Sourced by the e2e scripts: runs a mamba-serve command in the background and waits for its
# listening line.
#
#   start_server LISTEN_FILE LOG_FILE COMMAND...   (COMMAND: mamba-serve, or e.g. taskset ... mamba-serve)
#
# Sets server_pid, and grpc_addr / http_addr / metrics_addr (127.0.0.1:PORT, empty for a port
# that is off). Returns 1, leaving the process to the caller, when no gRPC port was printed (the
# server exited or did not start within 120 s; LOG_FILE says why).
start_server() {
  local listen=$1 log=$2
  shift 2
  "$@" >"$listen" 2>"$log" &
  server_pid=$!
  for _ in $(seq 1 600); do
    grep -q "mamba-serve listening" "$listen" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.2
  done
  local name port
  for name in grpc http metrics; do
    port=$(sed -n "s/.*$name=[^ ]*:\([0-9]*\).*/\1/p" "$listen" | head -1)
    printf -v "${name}_addr" '%s' "${port:+127.0.0.1:$port}"
  done
  [ -n "$grpc_addr" ]
}
