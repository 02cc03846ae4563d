#!/bin/bash
# Where mxguard's CPU per message goes, on the harness's job (the
# bench/mxbench system: DNS checks, recipient table, fsync, relay to
# smtp-sink): the Rust load generator sends clean 10 KB messages (or the
# storm's rejected transactions) while strace counts mxguard's system
# calls, or perf samples its stacks. Prints system calls per accepted
# message (or per rejected transaction) and CPU per message without the
# tracer attached, from the same load.
#   bench/profile.sh                      # clean, 20 clients, 10 s, strace -c
#   MODE=storm bench/profile.sh           # the storm's rejected transactions
#   TOOL=perf bench/profile.sh            # perf record; report in $KEEP/perf.txt
#   TOOL=perf CALLGRAPH=dwarf FREQ=500 DURATION=3 bench/profile.sh   # with the callers of libc
#   TOOL=stat bench/profile.sh            # CPU (task-clock, ms) and context switches per tx
#   KEEP=/tmp/prof bench/profile.sh       # keep the raw output there
#   CPUS=0 TOOL=stat bench/profile.sh     # mxguard on one core (scaling: compare the rate)
# Needs root (the harness's namespace), strace or perf.
set -euo pipefail
. "$(dirname "$0")/common.sh"
MODE="${MODE:-clean}" TOOL="${TOOL:-strace}" CLIENTS="${CLIENTS:-20}" DURATION="${DURATION:-10}"
KEEP="${KEEP:-$OUT}"
mkdir -p "$KEEP"
GEN="$REPO/target/loadgen/release/mxbench-loadgen"
CARGO_TARGET_DIR="$REPO/target/loadgen" \
  cargo build --release --quiet --manifest-path "$REPO/bench/loadgen/Cargo.toml"
case "$MODE" in
  clean) profiles=clean what="accepted" clients=$CLIENTS ;;
  storm) profiles=listed what="reject" clients=${CLIENTS_STORM:-50} ;;
  *) echo "profile.sh: MODE is clean or storm" >&2; exit 2 ;;
esac
load() { $NSX "$GEN" tx --server 127.0.0.1:25 --profiles "$profiles" -c "$clients" -d "$DURATION" --size 10240 --out "$1" >/dev/null; }
count() { json "$1" "sum(v for k, v in d['outcomes'].items() if k.split('@')[0] == '$what')"; }
warm_up
pid=$("$SYS/pids.sh" | head -1)
# CPUS=0: mxguard (every thread, and those it starts later) on CPU 0 only.
[ -n "${CPUS:-}" ] && taskset -a -p -c "$CPUS" "$pid" >/dev/null
# Without a tracer: CPU per transaction.
cpu0=$(cpu)
load "$OUT/plain.json"
"$SYS/drain.sh" >/dev/null
cpu1=$(cpu)
n=$(count "$OUT/plain.json")
echo "untraced: $n $what ($(json "$OUT/plain.json" "round($n / d['elapsed_s'])")/s), $(python3 -c "print(round(($cpu1-$cpu0)*1000/$(getconf CLK_TCK)/max($n,1), 3))") ms CPU per transaction (deliveries included)"
# With the tracer.
case "$TOOL" in
  strace)
    strace -c -f -q -o "$KEEP/strace.txt" -p "$pid" &
    tracer=$!
    ;;
  perf)
    perf record --call-graph "${CALLGRAPH:-fp}" -F "${FREQ:-4000}" -q -o "$KEEP/perf.data" -p "$pid" 2>/dev/null &
    tracer=$!
    ;;
  stat)
    perf stat -e task-clock,context-switches,cpu-migrations -x, -o "$KEEP/stat.txt" -p "$pid" &
    tracer=$!
    ;;
  *) echo "profile.sh: TOOL is strace, perf or stat" >&2; exit 2 ;;
esac
sleep 1
load "$OUT/traced.json"
"$SYS/drain.sh" >/dev/null
kill -INT "$tracer"
wait "$tracer" || true
n=$(count "$OUT/traced.json")
echo "traced: $n $what"
case "$TOOL" in
  strace)
    awk -v n="$n" 'NR <= 2 || /^-/ { print; next }
      $4 ~ /^[0-9]+$/ { printf "%s\t%.2f per tx\n", $0, $4 / n; next }
      { printf "%s\t%.2f per tx\n", $0, $3 / n }' "$KEEP/strace.txt"
    ;;
  perf)
    perf report -i "$KEEP/perf.data" --no-children --sort sym --stdio 2>/dev/null | head -80 >"$KEEP/perf.txt"
    head -60 "$KEEP/perf.txt"
    ;;
  stat)
    awk -F, -v n="$n" '$1 ~ /^[0-9.]+$/ { printf "%s: %.2f per tx\n", $3, $1 / n }' "$KEEP/stat.txt"
    ;;
esac
