#!/bin/bash
# Runs the shared bench harness with mxguard next to Postfix, Haraka and the
# smtp-sink ceiling, in one run (needs root: network namespace, apt).
#   bench/run.sh                      # everything, 3 repetitions
#   SKIP_INSTALL=1 bench/run.sh --reps 1 --idle 1000
# Results: the harness's results/<timestamp>/summary.md (see docs/BENCHMARKS.md).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export BENCH="${BENCH:-$REPO/../shared/bench}"
(cd "$REPO" && cargo build --release --quiet)
cd "$BENCH"
SYSTEMS="${SYSTEMS:-postfix,postfix-postscreen,haraka,limit-sink,$REPO/bench/mxbench}" \
  exec ./run-all.sh "$@"
