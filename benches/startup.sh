#!/usr/bin/env bash
# Start-up time (issue 9: "serving within 200 ms of launch for a config of 10,000 rules"):
# launches a fresh release `quotad serve` RUNS times on each config and measures launch -> first
# answered ShouldRateLimit. A loadgen poller (`--wait-ready`, a connect + call every 1 ms) is
# started first; the launch timestamp is taken just before quotad is exec'd and handed to it
# through a file, so the poller's own start-up is not counted. Prints each run (with the
# server's CPU time to that point), the medians, and the server's log timestamps for the last
# run (where the time went). Loopback only; every wait is bounded.
#
#   benches/startup.sh                        # 10,000 generated rules, then benches/bench-rules.yaml
#   CONFIGS=/path/to/rules RUNS=9 benches/startup.sh
#
# Env: QUOTAD / LOADGEN (binaries; default target/release/...), RUNS (5), CONFIGS (space-separated
# files or directories; default: a fresh benches/gen-rules.py --rules $RULES directory, then
# benches/bench-rules.yaml as the small-config reference), RULES (10000), DOMAINS (10),
# GRPC_PORT (18081), HTTP_PORT (18080), SERVER_CPU (unset: not pinned), DEADLINE (10s per run),
# NICE (unset; e.g. -20 as root: see below).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
quotad=${QUOTAD:-$here/target/release/quotad}
loadgen=${LOADGEN:-$here/target/release/examples/loadgen}
runs=${RUNS:-5}
grpc_port=${GRPC_PORT:-18081}
http_port=${HTTP_PORT:-18080}
tmp=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "${CONFIGS:-}" ]; then
    python3 "$here/benches/gen-rules.py" --rules "${RULES:-10000}" --domains "${DOMAINS:-10}" \
        --out "$tmp/rules" >&2
    CONFIGS="$tmp/rules $here/benches/bench-rules.yaml"
fi
pin=()
if [ -n "${SERVER_CPU:-}" ]; then pin=(taskset -c "$SERVER_CPU"); fi
# On a shared machine, NICE=-20 (root) lets the server and the poller preempt other work for
# the few hundred ms a start-up takes, approximating a quiet machine; say so with the numbers.
if [ -n "${NICE:-}" ]; then pin=(nice -n "$NICE" "${pin[@]}"); fi
poller_nice=()
if [ -n "${NICE:-}" ]; then poller_nice=(nice -n "$NICE"); fi

for config in $CONFIGS; do
    "$quotad" check --config "$config" >/dev/null || { echo "invalid config $config" >&2; exit 1; }
    times=()
    cpus=()
    for run in $(seq "$runs"); do
        rm -f "$tmp/t0"
        # Any answer means serving: quotad loads its rules before it opens its listeners.
        "${poller_nice[@]}" "$loadgen" --addr "http://127.0.0.1:$grpc_port" --domain svc_00 \
            --descriptor 'plan=plan_1,endpoint=ep_0007,api_key=k_{}' \
            --wait-ready "${DEADLINE:-10s}" --ready-poll 1ms --exit-when-ready \
            --launched-at "@$tmp/t0" >"$tmp/ready.log" 2>&1 &
        poller=$!
        sleep 0.3 # the poller is up and being refused
        date +%s%N >"$tmp/t0"
        "${pin[@]}" "$quotad" serve --config "$config" --grpc-addr "127.0.0.1:$grpc_port" \
            --http-addr "127.0.0.1:$http_port" --no-watch --drain-delay 0 \
            --log-level info >"$tmp/server.$run.log" 2>&1 &
        server=$!
        if ! wait "$poller"; then
            cat "$tmp/ready.log" "$tmp/server.$run.log" >&2
            exit 1
        fi
        # The server's own CPU time up to now (user + system, every thread including finished
        # ones; 10 ms ticks): start-up work, independent of how busy the machine is.
        cpu=$(awk '{print ($14 + $15) * 10}' /proc/"$server"/stat)
        ms=$(sed -n 's/^READY ms=\([0-9.]*\).*/\1/p' "$tmp/ready.log")
        times+=("$ms")
        cpus+=("$cpu")
        kill -TERM "$server"
        wait "$server" 2>/dev/null || true
        server=
        echo "$(basename "$config") run $run: ${ms} ms from launch to first answer (server CPU ${cpu} ms)"
    done
    median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    median=$(median "${times[@]}")
    cpu_median=$(median "${cpus[@]}")
    echo "$(basename "$config"): median ${median} ms over $runs runs [${times[*]}]; server CPU median ${cpu_median} ms [${cpus[*]}]"
    echo "  server log of the last run, launched at $(date -u -d "@$(cut -c1-10 "$tmp/t0").$(cut -c11-16 "$tmp/t0")" +%H:%M:%S.%6N) (timestamps show where start-up time goes):"
    sed 's/^/    /' "$tmp/server.$runs.log" | head -20
    echo "RESULT config=$(basename "$config") runs=$runs median_ms=$median all_ms=$(IFS=,; echo "${times[*]}") cpu_median_ms=$cpu_median"
done
