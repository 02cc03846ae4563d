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
export SYSTEMS="${SYSTEMS:-postfix,postfix-postscreen,haraka,limit-sink,$REPO/bench/mxbench}"
# smtp-sink cannot hold thousands of idle connections (the harness then
# times out and stops): leave the ceiling out of the idle phase.
idle=()
case " $* " in
  *" --idle-systems "*) ;;
  *) idle=(--idle-systems "$(echo "$SYSTEMS" | tr , '\n' | grep -v '^limit-sink$' | paste -sd,)") ;;
esac
exec ./run-all.sh "${idle[@]}" "$@"
