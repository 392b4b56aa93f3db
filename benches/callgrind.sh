#!/usr/bin/env bash
# Instructions per call for every scenario of benches/callgrind.rs, measured with callgrind so
# the result does not depend on what else the machine runs: each scenario runs once with
# ITERS iterations and once with 0, and the difference divided by ITERS is printed. Use it
# before and after a hot-path change; a real gain shows up here even on a busy machine.
#
#   cargo bench --bench callgrind --no-run && benches/callgrind.sh [SCENARIO...]
#
# Env: ITERS (default 20000), BIN (the bench binary; default: newest target/release/deps/callgrind-*).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
iters=${ITERS:-20000}
bin=${BIN:-$(ls -t "$here"/target/release/deps/callgrind-* | grep -v '\.d$' | head -1)}
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
    scenarios=(engine/fixed/1/hot engine/fixed/2/hot engine/fixed/5/hot engine/sliding/1/hot
        engine/bucket/1/hot engine/empty/2/hot engine/fixed/1/1M service/empty/2
        service/limited/2 service/limited/2/metrics service/limited/2/metrics/codec
        service/empty/2/metrics/codec)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
total() { # instructions of one run: the `summary:` line callgrind writes
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" "$1" "$2" >/dev/null 2>&1
    awk '/^summary:/ {print $2}' "$out/cg"
}
printf '%-34s %12s\n' scenario "Ir/call"
for scenario in "${scenarios[@]}"; do
    with=$(total "$scenario" "$iters")
    without=$(total "$scenario" 0)
    printf '%-34s %12d\n' "$scenario" $(((with - without) / iters))
done
