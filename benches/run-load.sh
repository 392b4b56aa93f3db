#!/usr/bin/env bash
# Runs one load scenario the way docs/PERFORMANCE.md measures it: a fresh `quotad serve`
# pinned to CPU 0, examples/loadgen pinned to CPU 1 (with --server-pid, so the server's CPU
# per request and RSS are reported), then the server is stopped by its own PID. Loopback only;
# the load itself is bounded by loadgen's --requests/--duration caps.
#
#   benches/run-load.sh benches/bench-rules.yaml -c 16 -m 32 -n 500000 --descriptors 2
#
# Env: QUOTAD / LOADGEN (binaries; default target/release/...), GRPC_PORT (default 18081),
# HTTP_PORT (18080), SERVER_CPU (0), CLIENT_CPU (1), SERVER_WRAP (a prefix for the server
# command, e.g. "valgrind --tool=callgrind"), READY_TRIES (startup polls of 0.1 s, default 300),
# CLIENT=h2load (run h2load with the remaining arguments instead of loadgen).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
config=${1:?usage: run-load.sh CONFIG [loadgen args...]}
shift
quotad=${QUOTAD:-$here/target/release/quotad}
loadgen=${LOADGEN:-$here/target/release/examples/loadgen}
grpc_port=${GRPC_PORT:-18081}
http_port=${HTTP_PORT:-18080}

# shellcheck disable=SC2086 # SERVER_WRAP is a word list on purpose
taskset -c "${SERVER_CPU:-0}" ${SERVER_WRAP:-} "$quotad" serve --config "$config" \
    --grpc-addr "127.0.0.1:$grpc_port" --http-addr "127.0.0.1:$http_port" \
    --no-watch --drain-delay 0 --log-level warn &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

# Bounded wait for readiness: the HTTP probe answers once both listeners accept connections.
for _ in $(seq "${READY_TRIES:-300}"); do
    if curl -fs "http://127.0.0.1:$http_port/ready" >/dev/null 2>&1; then break; fi
    kill -0 "$server" 2>/dev/null || { echo "quotad exited during start-up" >&2; exit 1; }
    sleep 0.1
done
curl -fs "http://127.0.0.1:$http_port/ready" >/dev/null || { echo "quotad never became ready" >&2; exit 1; }

if [ "${CLIENT:-loadgen}" = h2load ]; then
    # Cross-check: h2load replays one gRPC-framed body (make it with `loadgen --write-body`);
    # pass h2load's own flags, e.g. `-n 500000 -c 16 -m 32 -t 1 -d body.bin`. The server's CPU
    # time is read here since h2load cannot: on-CPU ns summed over its threads.
    cpu_ns() { cat /proc/"$server"/task/*/schedstat | awk '{sum += $1} END {print sum}'; }
    before=$(cpu_ns)
    taskset -c "${CLIENT_CPU:-1}" h2load -H 'content-type: application/grpc' -H 'te: trailers' \
        "$@" "http://127.0.0.1:$grpc_port/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
    echo "server_cpu_seconds=$(( ($(cpu_ns) - before) / 1000000 ))e-3"
else
    taskset -c "${CLIENT_CPU:-1}" "$loadgen" --addr "http://127.0.0.1:$grpc_port" \
        --server-pid "$server" "$@"
fi
