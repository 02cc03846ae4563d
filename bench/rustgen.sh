#!/bin/bash
# bench/run.sh with the Rust load generator (bench/loadgen) for the tx and
# garbage phases: the harness runs from a copy of itself whose loadgen.py
# hands those modes to mxbench-loadgen (the same profiles, bounds and
# JSON, at about half the client CPU per session) and the other modes
# (probe, idle) to the original. Options as bench/run.sh; results under
# the copy's results/ (printed at the end).
#   SKIP_INSTALL=1 bench/rustgen.sh --reps 1 --idle 1000
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${BENCH:-$REPO/../shared/bench}"
GEN="$REPO/target/loadgen/release/mxbench-loadgen"
CARGO_TARGET_DIR="$REPO/target/loadgen" \
  cargo build --release --quiet --manifest-path "$REPO/bench/loadgen/Cargo.toml"
COPY="$(mktemp -d /tmp/mxbench-rustgen.XXXXXX)"
cp -a "$SHARED/." "$COPY/"
mv "$COPY/loadgen.py" "$COPY/loadgen_py.py"
cat >"$COPY/loadgen.py" <<PY
import os, sys
if len(sys.argv) > 1 and sys.argv[1] in ("tx", "garbage"):
    os.execv("$GEN", ["mxbench-loadgen"] + sys.argv[1:])
here = os.path.dirname(os.path.abspath(__file__))
os.execv(sys.executable, [sys.executable, os.path.join(here, "loadgen_py.py")] + sys.argv[1:])
PY
echo "== harness copy with the Rust load generator: $COPY (results in $COPY/results)"
BENCH="$COPY" exec "$REPO/bench/run.sh" "$@"
