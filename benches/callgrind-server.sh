#!/usr/bin/env bash
# User-space instructions per request of the whole server (transport included), exact and
# independent of machine noise: `quotad serve` runs under callgrind (via run-load.sh's
# SERVER_WRAP) twice, for SMALL and LARGE measured requests after the same warm-up, and the
# difference of the two totals divided by LARGE - SMALL is printed, so start-up, warm-up and
# shutdown cancel out. Loopback only; both runs are bounded by their request counts.
#
#   benches/callgrind-server.sh LABEL [loadgen args except -n...]
#   QUOTAD_WORKER_THREADS=1 benches/callgrind-server.sh one-thread --descriptors 2
#
# Env: as run-load.sh (QUOTAD, LOADGEN, ports; the environment reaches `quotad serve`), plus
# CONFIG (default benches/bench-rules.yaml), SMALL (5000), LARGE (25000), OUT (a directory for
# the callgrind files, default a fresh temporary one, kept for callgrind_annotate).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
label=${1:?usage: callgrind-server.sh LABEL [loadgen args...]}
shift
small=${SMALL:-5000}
large=${LARGE:-25000}
out=${OUT:-$(mktemp -d)}
for requests in "$small" "$large"; do
    SERVER_WRAP="valgrind --tool=callgrind --callgrind-out-file=$out/$label.$requests.out" \
        READY_TRIES=${READY_TRIES:-600} "$here/benches/run-load.sh" "${CONFIG:-$here/benches/bench-rules.yaml}" \
        -c 4 -m 8 --warmup 2000 "$@" -n "$requests" >"$out/$label.$requests.log" 2>&1
done
total() { awk '/^summary:/ {print $2}' "$out/$label.$1.out"; }
echo "$label Ir/request=$((($(total "$large") - $(total "$small")) / (large - small))) (files: $out)"
