#!/usr/bin/env bash
# Latency percentiles from an h2load per-request log (`h2load --log-file=FILE`, columns: start
# µs since the epoch, HTTP status, µs until the end of the response). h2load itself prints only
# min/max/mean/sd; the latency targets are percentiles.
#
#   CLIENT=h2load benches/run-load.sh benches/bench-rules.yaml -n 500000 -c 16 -m 32 -t 1 \
#       -d body2.bin --log-file=/tmp/h2.log
#   benches/h2load-percentiles.sh /tmp/h2.log
set -euo pipefail
log=${1:?usage: h2load-percentiles.sh H2LOAD_LOG}
awk -F'\t' '$2 != -1 { print $3 }' "$log" | sort -n | awk '
    { v[NR] = $1 }
    END {
        if (NR == 0) { print "no completed requests"; exit 1 }
        split("50 90 99 99.9", ps, " ")
        line = sprintf("requests=%d", NR)
        for (i = 1; i <= 4; i++) {
            rank = int(NR * ps[i] / 100 + 0.999999); if (rank < 1) rank = 1
            line = line sprintf(" p%s=%dus", ps[i], v[rank])
        }
        print line sprintf(" max=%dus", v[NR])
    }'
awk -F'\t' '$2 != 200 { bad++ } END { printf "non-200 or failed streams=%d\n", bad + 0 }' "$log"
