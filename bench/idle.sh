#!/bin/bash
# Memory of mxguard holding idle connections, measured the harness's way
# (fresh server, the same 400-message warm-up, then M connections that each
# sent EHLO and wait), for M in $IDLE (default 1000,10000). Prints the
# fresh and settled RSS and the RSS added per held connection.
#   bench/idle.sh                 # needs root (the harness's namespace)
#   IDLE=10000 bench/idle.sh
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export BENCH="${BENCH:-$REPO/../shared/bench}"
. "$BENCH/lib/common.sh"
(cd "$REPO" && cargo build --release --quiet)
SYS="$REPO/bench/mxbench"
OUT="$(mktemp -d)"
"$BENCH/infra.sh" start
trap '"$SYS/stop.sh" >/dev/null 2>&1 || true; "$BENCH/infra.sh" stop; rm -rf "$OUT"' EXIT
"$SYS/start.sh"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$("$SYS/pids.sh" | head -1)/status"; }
echo "fresh: $(rss) KiB"
$NSX python3 "$BENCH/loadgen.py" tx --profiles clean -c 200 -n 400 -d 40 --size 2000 --out "$OUT/warmup.json" >/dev/null
"$SYS/drain.sh" >/dev/null || true
sleep 2
base=$(rss)
echo "after warm-up: $base KiB"
for m in $(echo "${IDLE:-1000,10000}" | tr , ' '); do
  rm -f "$OUT/ready" "$OUT/stop"
  $NSX python3 "$BENCH/loadgen.py" idle -m "$m" --ehlo --hold 180 --open-parallel 100 --op-timeout 60 \
    --ready-file "$OUT/ready" --stop-file "$OUT/stop" --profiles clean --out "$OUT/idle$m.json" >/dev/null &
  lg=$!
  for _ in $(seq 1800); do [ -e "$OUT/ready" ] && break; sleep 0.1; done
  sleep 2
  held=$(python3 -c "import json; print(json.load(open('$OUT/ready'))['held'])")
  now=$(rss)
  echo "idle $m: held $held, rss $now KiB, per connection $(( (now - base) * 1024 / (held > 0 ? held : 1) )) bytes"
  touch "$OUT/stop"
  wait "$lg" || true
  sleep 3
done
