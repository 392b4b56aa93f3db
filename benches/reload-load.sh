#!/usr/bin/env bash
# Latency under reloads (issue 9: "a reload of that config does not raise the p99 of concurrent
# requests above 2 ms"): one release `quotad serve` on a generated 10,000-rule directory (file
# watcher on), loadgen in open loop at RATE req/s for DURATION, once without reloads and once
# while every rule file is rewritten every INTERVAL seconds (atomic write + rename, alternating
# two variants with different thresholds, so every rewrite is a real change). Rounds alternate
# (quiet, reloading, quiet, ...). Prints loadgen's result for each run and how many reloads were
# applied during it (the server's "configuration reloaded" log lines; attempts from
# quotad_config_reloads_total) and how long the server's main thread (the request worker with
# QUOTAD_WORKER_THREADS=1) waited runnable for a CPU. Loopback only; load and rewrites are
# bounded by DURATION.
#
#   benches/reload-load.sh
#   RATE=10000 DURATION=20 INTERVAL=0.5 ROUNDS=3 benches/reload-load.sh
#
# Env: QUOTAD / LOADGEN (binaries), RATE (20000), DURATION (seconds, 10), INTERVAL (seconds
# between rewrites, 1), ROUNDS (1), RULES (10000), DOMAINS (10), CONNECTIONS (2), IN_FLIGHT (64,
# the per-connection cap of outstanding calls), KEYS (100000, distinct api_key values),
# GRPC_PORT (18081), HTTP_PORT (18080), SERVER_CPU (0) / CLIENT_CPU (1) (taskset; empty: not
# pinned; the file rewriter runs on CLIENT_CPU too), QUOTAD_WORKER_THREADS (reaches the server),
# SERVER_LOG (a path: keep the server's log there).
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
    if [ -n "${SERVER_LOG-}" ]; then cp "$tmp/server.log" "$SERVER_LOG" || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

gen=(python3 "$here/benches/gen-rules.py" --rules "${RULES:-10000}" --domains "${DOMAINS:-10}")
"${gen[@]}" --variant 0 --out "$tmp/a" >&2
"${gen[@]}" --variant 1 --out "$tmp/b" >&2
mkdir "$tmp/live" "$tmp/stage"
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

# Rewrites every rule file every $interval s for $1 s, alternating variants b and a: copy into a
# staging directory, then rename into place (each rename is atomic). One Python process does it
# all on the client's CPU: forking bash, cp and mv (about 40 processes a round) on the server's
# CPU competed with the request worker and counted as reload cost. Not at idle priority: the
# client keeps its CPU busy, and a starved rewriter only rewrote after the load had ended. It
# reports when its last rewrite landed, so a late one shows.
rewrite_for() {
    exec "${client_pin[@]}" python3 - "$1" "$interval" "$tmp" <<'PY'
import os, shutil, sys, time
duration, interval, tmp = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
start = time.monotonic()
# The last rewrite lands one interval before the load ends, so its reload is measured.
rounds = int(duration / interval) - 1
for round in range(1, rounds + 1):
    time.sleep(max(0.0, start + round * interval - time.monotonic()))
    variant = "b" if round % 2 == 1 else "a"
    names = sorted(n for n in os.listdir(f"{tmp}/{variant}") if n.endswith(".yaml"))
    for name in names:
        shutil.copyfile(f"{tmp}/{variant}/{name}", f"{tmp}/stage/{name}")
    for name in names:
        os.replace(f"{tmp}/stage/{name}", f"{tmp}/live/{name}")
print(f"rewrites={rounds} last at +{time.monotonic() - start:.2f}s (planned +{rounds * interval:.2f}s)")
PY
}

reload_attempts() {
    curl -fs "http://127.0.0.1:$http_port/metrics" |
        awk '/^quotad_config_reloads_total\{result="success"\}/ {print $2}'
}
applied() { grep -c "configuration reloaded" "$tmp/server.log" || true; }
# The server's main thread: ns spent runnable but waiting for a CPU (schedstat's second field).
# With QUOTAD_WORKER_THREADS=1 that thread is the only request worker, so this is server-side
# queueing that the client's latency includes, free of the client's own delays.
worker_wait() { awk '{print $2}' "/proc/$server/task/$server/schedstat"; }

# Warm-up: connections, the rule-metric handles and a counter for every key exist before
# measuring. Each key once, in order: after a short random warm-up the first (quiet) run created
# most of the 100k counters and paid the map's growth, which the reloading runs did not.
"${client_pin[@]}" "$loadgen" "${target[@]}" -c "${CONNECTIONS:-2}" -m 8 --pattern sequential \
    -n "$(( ${KEYS:-100000} > 20000 ? ${KEYS:-100000} : 20000 ))" >/dev/null

echo "quotad pid $server on ${RULES:-10000} rules in ${DOMAINS:-10} files; open loop $rate req/s for ${duration}s; rewrites every ${interval}s"
for round in $(seq "${ROUNDS:-1}"); do
    for mode in quiet reloading; do
        attempts_before=$(reload_attempts)
        wait_before=$(worker_wait)
        applied_before=$(applied)
        if [ "$mode" = reloading ]; then
            rewrite_for "$duration" >"$tmp/rewriter.out" &
            rewriter=$!
        fi
        result=$("${client_pin[@]}" "$loadgen" "${target[@]}" -c "${CONNECTIONS:-2}" \
            -m "${IN_FLIGHT:-64}" --rate "$rate" -d "${duration}s" -n $((rate * duration)) \
            --server-pid "$server" | tail -1)
        if [ -n "$rewriter" ]; then wait "$rewriter"; rewriter=; fi
        sleep 1 # the last rewrite's debounce and reload land before counting
        waited=$(awk -v a="$(worker_wait)" -v b="$wait_before" 'BEGIN {printf "%.1f", (a - b) / 1e6}')
        echo "round $round $mode: reloads applied=$(($(applied) - applied_before)) attempts=$(awk -v a="$(reload_attempts)" -v b="$attempts_before" 'BEGIN {print a - b}') main-thread runqueue wait=${waited}ms"
        if [ "$mode" = reloading ]; then echo "  $(cat "$tmp/rewriter.out")"; fi
        echo "  $result"
    done
done
