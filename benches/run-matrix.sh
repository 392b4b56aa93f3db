#!/usr/bin/env bash
# The load matrix behind docs/PERFORMANCE.md: every scenario ROUNDS times, alternating
# scenarios within each round (so slow drift from other work on the machine hits them all
# alike), each on a fresh server via benches/run-load.sh; prints each run's RESULT line and
# then the median of every field per scenario. Bounded: each run is capped by -n and -d.
#
#   ROUNDS=3 benches/run-matrix.sh            # about 5 minutes on 2 cores
#
# Env: ROUNDS (default 3), plus everything benches/run-load.sh reads (QUOTAD, LOADGEN, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-3}
limited=$here/bench-rules.yaml
empty=$here/bench-empty.yaml
saturate=(-c 16 -m 32 -n 300000 -d 30s --warmup 20000)
latency=(-c 1 -m 1 -n 30000 -d 30s --warmup 3000)

# name | config | loadgen arguments
scenarios=(
    "sat/empty/1desc|$empty|${saturate[*]} --descriptors 1"
    "sat/limited/1desc/hot|$limited|${saturate[*]} --descriptors 1"
    "sat/empty/2desc|$empty|${saturate[*]} --descriptors 2"
    "sat/limited/2desc/hot|$limited|${saturate[*]} --descriptors 2"
    "sat/limited/2desc/1M|$limited|-c 16 -m 32 -n 300000 -d 30s --descriptors 2 --key-space 1000000 --pattern sequential --warmup 1000000"
    "lat/empty/2desc|$empty|${latency[*]} --descriptors 2"
    "lat/limited/2desc/hot|$limited|${latency[*]} --descriptors 2"
)

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "$rounds"); do
    for scenario in "${scenarios[@]}"; do
        IFS='|' read -r name config args <<<"$scenario"
        # shellcheck disable=SC2086 # args is a word list on purpose
        line=$("$here/run-load.sh" "$config" $args 2>/dev/null | grep '^RESULT' || echo "RESULT failed=1")
        echo "round=$round scenario=$name ${line#RESULT }" | tee -a "$results"
    done
done

echo
echo "medians over $rounds rounds:"
for scenario in "${scenarios[@]}"; do
    name=${scenario%%|*}
    grep " scenario=$name " "$results" | python3 -c '
import sys, statistics
runs = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in sys.stdin]
keys = ["rps", "server_cpu_us", "p50_us", "p99_us", "p999_us", "max_us", "errors"]
med = {k: statistics.median(float(r[k]) for r in runs if k in r) for k in keys if any(k in r for r in runs)}
print(sys.argv[1].ljust(24), "  ".join(f"{k}={v:g}" for k, v in med.items()))
' "$name"
done
