#!/bin/bash
# Waits (at most 120 s) for mxguard's queue to empty; prints what is left.
BENCH="${BENCH:-$(cd "$(dirname "$0")" && pwd)/../../../shared/bench}"
. "$BENCH/lib/common.sh"
left=0
for _ in $(seq 1200); do
  left=$(find "$RUN/mxguard/spool/queue" -maxdepth 1 -type f ! -name '*.state' 2>/dev/null | wc -l)
  [ "$left" -eq 0 ] && break
  sleep 0.1
done
echo "$left"
