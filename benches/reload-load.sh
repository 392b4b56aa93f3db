#!/usr/bin/env bash
# Latency under reloads (issue 9: "a reload of that config does not raise the p99 of concurrent
# requests above 2 ms"): one release `quotad serve` on a generated 10,000-rule directory (file
# watcher on), loadgen in open loop at RATE req/s for DURATION, once without reloads and once
# while every rule file is rewritten every INTERVAL seconds (atomic write + rename, alternating
# two variants with different thresholds, so every rewrite is a real change). Rounds alternate
# (quiet, reloading, quiet, ...). Prints loadgen's result for each run and how many reloads were
# applied during it (the server's "configuration reloaded" log lines; attempts from
# quotad_config_reloads_total). Loopback only; load and rewrites are bounded by DURATION.
#
#   benches/reload-load.sh
#   RATE=10000 DURATION=20 INTERVAL=0.5 ROUNDS=3 benches/reload-load.sh
#
# Env: QUOTAD / LOADGEN (binaries), RATE (20000), DURATION (seconds, 10), INTERVAL (seconds
# between rewrites, 1), ROUNDS (1), RULES (10000), DOMAINS (10), CONNECTIONS (2), IN_FLIGHT (64,
# the per-connection cap of outstanding calls), KEYS (100000, distinct api_key values),
# GRPC_PORT (18081), HTTP_PORT (18080), SERVER_CPU (0) / CLIENT_CPU (1) (taskset; empty: not
# pinned), QUOTAD_WORKER_THREADS (reaches the server).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
quotad=${QUOTAD:-$here/target/release/quotad}
loadgen=${LOADGEN:-$here/target/release/examples/loadgen}
rate=${RATE:-20000}
duration=${DURATION:-10}
interval=${INTERVAL:-1}
grpc_port=${GRPC_PORT:-18081}
http_port=${HTTP_PORT:-18080}
tmp=$(mktemp -d)
server=
rewriter=
cleanup() {
    if [ -n "$rewriter" ]; then kill "$rewriter" 2>/dev/null || true; wait "$rewriter" 2>/dev/null || true; fi
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

gen=(python3 "$here/benches/gen-rules.py" --rules "${RULES:-10000}" --domains "${DOMAINS:-10}")
"${gen[@]}" --variant 0 --out "$tmp/a" >&2
"${gen[@]}" --variant 1 --out "$tmp/b" >&2
mkdir "$tmp/live"
cp "$tmp"/a/*.yaml "$tmp/live/"

server_pin=()
client_pin=()
if [ -n "${SERVER_CPU-0}" ]; then server_pin=(taskset -c "${SERVER_CPU-0}"); fi
if [ -n "${CLIENT_CPU-1}" ]; then client_pin=(taskset -c "${CLIENT_CPU-1}"); fi

"${server_pin[@]}" "$quotad" serve --config "$tmp/live" --grpc-addr "127.0.0.1:$grpc_port" \
    --http-addr "127.0.0.1:$http_port" --drain-delay 0 --log-level info >"$tmp/server.log" 2>&1 &
server=$!

target=(--addr "http://127.0.0.1:$grpc_port" --domain svc_00
    --descriptor 'plan=plan_1,endpoint=ep_0007,api_key=k_{}' --descriptor 'plan=plan_1,api_key=k_{}'
    --key-space "${KEYS:-100000}")
"$loadgen" "${target[@]}" --wait-ready 30s --exit-when-ready >&2 || {
    cat "$tmp/server.log" >&2
    exit 1
}

# Rewrites every rule file every $interval s for $1 s, alternating variants b and a.
rewrite_for() {
    local rounds variant
    # The last rewrite lands one interval before the load ends, so its reload is measured.
    rounds=$(awk -v d="$1" -v i="$interval" 'BEGIN {print int(d / i) - 1}')
    for round in $(seq "$rounds"); do
        sleep "$interval"
        if [ $((round % 2)) -eq 1 ]; then variant=b; else variant=a; fi
        for file in "$tmp/$variant"/*.yaml; do
            name=$(basename "$file")
            cp "$file" "$tmp/live/.$name.tmp"
            mv "$tmp/live/.$name.tmp" "$tmp/live/$name"
        done
    done
}

reload_attempts() {
    curl -fs "http://127.0.0.1:$http_port/metrics" |
        awk '/^quotad_config_reloads_total\{result="success"\}/ {print $2}'
}
applied() { grep -c "configuration reloaded" "$tmp/server.log" || true; }

# Short warm-up: connections, counters and the rule-metric handles exist before measuring.
"${client_pin[@]}" "$loadgen" "${target[@]}" -c "${CONNECTIONS:-2}" -m 8 -n 20000 >/dev/null

echo "quotad pid $server on ${RULES:-10000} rules in ${DOMAINS:-10} files; open loop $rate req/s for ${duration}s; rewrites every ${interval}s"
for round in $(seq "${ROUNDS:-1}"); do
    for mode in quiet reloading; do
        attempts_before=$(reload_attempts)
        applied_before=$(applied)
        if [ "$mode" = reloading ]; then
            rewrite_for "$duration" &
            rewriter=$!
        fi
        result=$("${client_pin[@]}" "$loadgen" "${target[@]}" -c "${CONNECTIONS:-2}" \
            -m "${IN_FLIGHT:-64}" --rate "$rate" -d "${duration}s" -n $((rate * duration)) \
            --server-pid "$server" | tail -1)
        if [ -n "$rewriter" ]; then wait "$rewriter"; rewriter=; fi
        sleep 1 # the last rewrite's debounce and reload land before counting
        echo "round $round $mode: reloads applied=$(($(applied) - applied_before)) attempts=$(awk -v a="$(reload_attempts)" -v b="$attempts_before" 'BEGIN {print a - b}')"
        echo "  $result"
    done
done
