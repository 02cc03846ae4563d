# Sourced by bench/idle.sh and bench/flood.sh: builds mxguard, brings up
# the harness's namespace, DNS and sink, starts mxguard as the mxbench
# system, gives it the harness's warm-up, and stops everything on exit.
# Needs root (the harness's network namespace).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BENCH="${BENCH:-$REPO/../shared/bench}"
. "$BENCH/lib/common.sh"
# $MXGUARD_BIN: a binary built elsewhere (then nothing is built here).
[ -n "${MXGUARD_BIN:-}" ] || (cd "$REPO" && cargo build --release --quiet)
SYS="$REPO/bench/mxbench"
OUT="$(mktemp -d)"
"$BENCH/infra.sh" start
trap '"$SYS/stop.sh" >/dev/null 2>&1 || true; "$BENCH/infra.sh" stop; rm -rf "$OUT"' EXIT
"$SYS/start.sh"

# loadgen ARGS...: the harness's load generator inside the namespace.
loadgen() { $NSX python3 "$BENCH/loadgen.py" "$@"; }

# rss: mxguard's resident memory now, in KiB.
rss() { awk '/^VmRSS/ {print $2}' "/proc/$("$SYS/pids.sh" | head -1)/status"; }

# cpu: mxguard's CPU time so far (user + system), in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$("$SYS/pids.sh" | head -1)/stat"; }

# json FILE EXPR: a value from a JSON file (EXPR indexes `d`).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# The harness's warm-up: every clean source address connects (and passes
# the greeting test) before anything is measured.
warm_up() {
  loadgen tx --profiles clean -c 200 -n 400 -d 40 --size 2000 --out "$OUT/warmup.json" >/dev/null
  "$SYS/drain.sh" >/dev/null || true
}
