#!/bin/bash
# A clean client's latency with and without a bot flood. Unloaded: 5 clean
# clients send 10 KB messages for 20 s. Flooded: the same while 5,000 bot
# connections are held open (addresses without reverse DNS, past the
# banner, silent) and CHURN more bots at a time (DNSBL-listed addresses)
# connect, talk before the banner and send garbage, as fast as mxguard
# lets them: the greeting test refuses them, then their bans do. Prints
# the session and decision latency percentiles of both runs, the p99
# ratio (target: at most 2) and where the CPU went.
#   bench/flood.sh                # needs root (the harness's namespace)
#   BOTS=5000 CHURN=20 CLEAN_C=5 DURATION=20 bench/flood.sh
set -euo pipefail
# The greeting test on (mxguard's default): it is what turns the churning
# bots away.
export MXBENCH_GREET_WAIT="${MXBENCH_GREET_WAIT:-1s}"
. "$(dirname "$0")/common.sh"
BOTS="${BOTS:-5000}" CHURN="${CHURN:-20}" CLEAN_C="${CLEAN_C:-5}" DURATION="${DURATION:-20}"
clean() {
  loadgen tx --profiles clean -c "$CLEAN_C" -n 200000 -d "$DURATION" --size 10240 --out "$OUT/$1.json" >/dev/null
}
report() {
  json "$OUT/$1.json" "'$1: ' + ', '.join(f'{k}={v}' for k, v in d['outcomes'].items()) + ' | session ' + str(d['latency_session']) + ' | decision ' + str(d['latency_decision'])"
}
warm_up
clean unloaded
report unloaded
loadgen idle -m "$BOTS" --hold $((DURATION + 120)) --open-parallel 200 --op-timeout 60 \
  --ready-file "$OUT/ready" --stop-file "$OUT/stop" --profiles noptr --out "$OUT/bots.json" >/dev/null &
held_pid=$!
for _ in $(seq 1800); do [ -e "$OUT/ready" ] && break; sleep 0.1; done
echo "bots held: $(json "$OUT/ready" "d['held']") of $BOTS (failed: $(json "$OUT/ready" "d['failed']"))"
garbage_pid=
if [ "$CHURN" -gt 0 ]; then
  loadgen garbage --profiles listed --pregreet -c "$CHURN" -n 1000000 -d "$DURATION" --garbage-wait 10 \
    --out "$OUT/garbage.json" >/dev/null &
  garbage_pid=$!
fi
cpu0=$(cpu)
clean flooded
cpu1=$(cpu)
report flooded
touch "$OUT/stop"
wait $garbage_pid "$held_pid" || true
echo "mxguard CPU while flooded: $(( (cpu1 - cpu0) * 1000 / $(getconf CLK_TCK) )) ms in ${DURATION} s; clean load generator: $(json "$OUT/flooded.json" "d['loadgen_cpu_s']") s"
if [ -n "$garbage_pid" ]; then
  echo "garbage bots: $(json "$OUT/garbage.json" "d['sessions']") sessions, $(json "$OUT/garbage.json" "d['outcomes']"), load generator CPU $(json "$OUT/garbage.json" "d['loadgen_cpu_s']") s"
fi
json "$OUT/unloaded.json" "d['latency_session']['p99_ms']" >"$OUT/p0"
json "$OUT/flooded.json" "d['latency_session']['p99_ms']" >"$OUT/p1"
python3 -c "import sys; a=float(open(sys.argv[1]).read()); b=float(open(sys.argv[2]).read()); print(f'clean session p99: unloaded {a} ms, flooded {b} ms, ratio {b/a:.2f}')" "$OUT/p0" "$OUT/p1"
