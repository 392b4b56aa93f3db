#!/usr/bin/env bash
# Key flood (issue 7's bounded-memory proof): KEYS distinct keys (default 5M) against a memory
# store bounded at MAX_KEYS (default 200k), while one steady key (1000/hour) is hit continuously;
# the server's RSS is sampled every 5 s. Loopback only; bounded by KEYS and DURATION.
#   cargo build --release --bin quotad && cargo build --release --example loadgen
#   benches/keyflood.sh            # then read rss.log and the OK count of the steady key
# Memory per key (issue 9): a bound above KEYS and no steady client; prints RSS per counter key.
#   STEADY=0 MAX_KEYS=10000000 KEYS=1000000 benches/keyflood.sh
# Idle windows reclaimed: per-minute rules, then IDLE seconds without traffic before a last
# reading of RSS and of the counters held (the sweeper runs every 5 s).
#   STEADY=0 MAX_KEYS=10000000 KEYS=1000000 RULES=benches/keyflood-minute.yaml IDLE=150 benches/keyflood.sh
# (AGAIN=1 then floods the same keys once more, in new windows, to show the memory is reused.)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
QUOTAD=${QUOTAD:-$here/target/release/quotad}
LOADGEN=${LOADGEN:-$here/target/release/examples/loadgen}
out=${OUT:-$(mktemp -d)}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
grpc=$(free_port)
http=$(free_port)
"$QUOTAD" serve --config "${RULES:-$here/benches/keyflood-rules.yaml}" --grpc-addr "127.0.0.1:$grpc" \
  --http-addr "127.0.0.1:$http" --max-keys "${MAX_KEYS:-200000}" --no-watch --drain-delay 0s \
  --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/ready" >/dev/null && break; sleep 0.1; done
( for _ in $(seq 120); do
    echo "$(date +%s) $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") kB"; sleep 5
  done ) > "$out/rss.log" &
sampler=$!
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
rss_before=$(rss_kib)
steady=
if [ "${STEADY:-1}" != 0 ]; then
  taskset -c 1 "$LOADGEN" --addr "http://127.0.0.1:$grpc" -c 1 -m 1 -n 100000000 \
    -d "${DURATION:-200s}" --descriptor 'steady=s' > "$out/steady.log" 2>&1 &
  steady=$!
fi
taskset -c 1 "$LOADGEN" --addr "http://127.0.0.1:$grpc" -c 4 -m 32 -n "${KEYS:-5000000}" \
  -d "${DURATION:-200s}" --descriptor 'k0={}' --key-space "${KEYS:-5000000}" \
  --pattern sequential --server-pid "$pid" > "$out/flood.log" 2>&1
rss_after=$(rss_kib)
[ -z "$steady" ] || wait "$steady"
kill "$sampler" 2>/dev/null || true
echo "--- flood"; tail -6 "$out/flood.log"
[ -z "$steady" ] || {
  echo "--- steady key (1000/hour: exactly 1000 OK means it was never evicted)"; tail -6 "$out/steady.log"; }
held=$(curl -s "127.0.0.1:$http/metrics" | awk '/^quotad_store_keys/ {print $2}')
echo "--- RSS ${rss_before} kB before the flood, ${rss_after} kB after it, ${held} counters held:" \
  "$(awk -v a="$rss_after" -v b="$rss_before" -v n="$held" 'BEGIN {printf "%.1f", (a-b)*1024/n}')" \
  "bytes of RSS per counter key"
held_now() { curl -s "127.0.0.1:$http/metrics" | awk '/^quotad_store_keys/ {print $2}'; }
if [ "${IDLE:-0}" != 0 ]; then
  sleep "$IDLE"
  echo "--- after ${IDLE} s idle: RSS $(rss_kib) kB, $(held_now) counters held"
  if [ "${AGAIN:-0}" != 0 ]; then # the same keys again, now in new windows: is the memory reused?
    taskset -c 1 "$LOADGEN" --addr "http://127.0.0.1:$grpc" -c 4 -m 32 -n "${KEYS:-5000000}" \
      -d "${DURATION:-200s}" --descriptor 'k0={}' --key-space "${KEYS:-5000000}" \
      --pattern sequential > "$out/again.log" 2>&1
    echo "--- after a second flood of ${KEYS:-5000000} keys: RSS $(rss_kib) kB, $(held_now) counters held"
  fi
fi
echo "--- RSS every 5 s: $out/rss.log"; awk '{print $2}' "$out/rss.log" | tr '\n' ' '; echo
curl -s "127.0.0.1:$http/metrics" | grep -E '^quotad_store_(keys|evictions_total)'
