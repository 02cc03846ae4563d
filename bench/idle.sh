#!/bin/bash
# Memory of mxguard holding idle connections, measured the harness's way
# (fresh server, the same 400-message warm-up, then M connections that each
# sent EHLO and wait), for M in $IDLE (default 1000,10000). Prints the
# fresh and settled RSS and the RSS added per held connection. Settled:
# two of mxguard's quiet periods (memory::QUIET_PERIOD, 5 s) after a burst,
# when it has handed the burst's free pages back.
#   bench/idle.sh                 # needs root (the harness's namespace)
#   IDLE=10000 bench/idle.sh
set -euo pipefail
. "$(dirname "$0")/common.sh"
echo "fresh: $(rss) KiB"
warm_up
sleep 2
echo "after warm-up: $(rss) KiB"
sleep 10
base=$(rss)
echo "after warm-up, settled: $base KiB"
for m in $(echo "${IDLE:-1000,10000}" | tr , ' '); do
  rm -f "$OUT/ready" "$OUT/stop"
  loadgen idle -m "$m" --ehlo --hold 180 --open-parallel 100 --op-timeout 60 \
    --ready-file "$OUT/ready" --stop-file "$OUT/stop" --profiles clean --out "$OUT/idle$m.json" >/dev/null &
  lg=$!
  for _ in $(seq 1800); do [ -e "$OUT/ready" ] && break; sleep 0.1; done
  sleep 2
  held=$(json "$OUT/ready" "d['held']")
  now=$(rss)
  echo "idle $m: held $held, rss $now KiB, per connection $(( (now - base) * 1024 / (held > 0 ? held : 1) )) bytes"
  touch "$OUT/stop"
  wait "$lg" || true
  sleep 12
  echo "after idle $m closed, settled: $(rss) KiB"
done
