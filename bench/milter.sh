#!/bin/bash
# What a content filter costs (issue #16): the CPU per accepted message of
# mxguard (a) without a milter, (b) with a milter that answers `continue`
# to everything (bench/loadgen's noop-milter, one reply per step), (b')
# the same milter asking for every SMFIP_NR_* no-reply flag (only the end
# of the message answered), (c) with rspamd as a milter, and the filters'
# own CPU per message (for rspamd: all its processes), side by side in one
# run. The configurations are interleaved (a, b, b', c, a, b, …), each
# repetition with a fresh mxguard and spool; medians, and ratios to (a).
#
# Everything on loopback, no network, no root namespace: smtp-sink as the
# downstream, mxguard (release build) relaying example.test with no DNS
# check (its resolver points at a closed port), bench/loadgen's tx load
# (clean profile: 127.0.1.x sources, user1..100@example.test), rspamd's
# proxy worker in milter mode scanning itself, stock modules minus those
# that need the network or Redis (the setup of tests/it/filters.rs).
#
# A repetition's window runs from before the load to the moment mxguard's
# queue is empty again, so the deliveries of the accepted messages are in
# it; a warm-up load (drained) comes before it.
#
#   bench/milter.sh                       # 3 repetitions, 20 clients, 10 s, 10 KB
#   bench/milter.sh --reps 5 -c 20 -d 10 --size 10240 --configs none,noop,rspamd
#   bench/milter.sh --hyperscan           # rspamd with hyperscan (compiled once, seconds)
# Needs: cargo, python3, smtp-sink (Postfix), rspamd (Debian's package);
# run as root (smtp-sink drops to nobody).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"

# -- Options --------------------------------------------------------------
REPS=3 CLIENTS=20 DURATION=10 SIZE=10240 WARMUP=2 HYPERSCAN=0
CONFIGS=none,noop,noop-nr,rspamd
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    -c | --concurrency) CLIENTS=$2; shift 2 ;;
    -d | --duration) DURATION=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --hyperscan) HYPERSCAN=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "milter.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for c in ${CONFIGS//,/ }; do
  case "$c" in none | noop | noop-nr | rspamd) ;; *) echo "milter.sh: unknown configuration $c" >&2; exit 2 ;; esac
done
for tool in smtp-sink python3 cargo; do
  command -v "$tool" >/dev/null || { echo "milter.sh: $tool is needed" >&2; exit 1; }
done
case ",$CONFIGS," in *,rspamd,*) [ -x /usr/bin/rspamd ] || { echo "milter.sh: /usr/bin/rspamd is needed" >&2; exit 1; } ;; esac

# -- Builds ---------------------------------------------------------------
# mxguard's release build (CARGO_TARGET_DIR respected), the load generator
# in its own target directory as bench/rustgen.sh does.
(cd "$REPO" && cargo build --release --quiet)
MXGUARD="${MXGUARD_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/mxguard}"
GEN="$REPO/target/loadgen/release/mxbench-loadgen"
CARGO_TARGET_DIR="$REPO/target/loadgen" \
  cargo build --release --quiet --manifest-path "$REPO/bench/loadgen/Cargo.toml"

# -- Bookkeeping: temp dir, processes, cleanup ------------------------------
OUT="$(mktemp -d /tmp/mxbench-milter.XXXXXX)"
GROUPS_STARTED=() # process-group leaders we started (each with setsid)
cleanup() {
  local pid
  for pid in "${GROUPS_STARTED[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${GROUPS_STARTED[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_group LOG CMD...: CMD in a process group (and session) of its own,
# its output into LOG; sets STARTED to its PID (= its group's ID).
start_group() {
  local log=$1
  shift
  setsid "$@" </dev/null >"$log" 2>&1 &
  STARTED=$!
  GROUPS_STARTED+=("$STARTED")
}

# stop_group PID: SIGTERM to the group, then (after 10 s) SIGKILL.
stop_group() {
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# free_port: a TCP port on loopback nobody listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT PID WHAT: until PORT accepts (at most 60 s; fails early
# if PID exited).
wait_port() {
  for _ in $(seq 600); do
    kill -0 "$2" 2>/dev/null || { echo "milter.sh: $3 exited" >&2; return 1; }
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "milter.sh: $3 does not listen on $1" >&2
  return 1
}

# group_ticks PGID: CPU (user + system, and that of reaped children) of
# every process in the group, in clock ticks. /proc/PID/stat's fields are
# counted after the command name's closing parenthesis (the name may hold
# spaces: rspamd renames its processes).
group_ticks() {
  local pg=$1 total=0 f line rest
  for f in /proc/[0-9]*/stat; do
    # (a process may exit between the glob and the read)
    { read -r line <"$f"; } 2>/dev/null || continue
    rest=${line##*) }
    # shellcheck disable=SC2086
    set -- $rest
    [ "${3:-}" = "$pg" ] && total=$((total + ${12} + ${13} + ${14} + ${15}))
  done
  echo "$total"
}

# pid_ticks PID: the same for one process.
pid_ticks() {
  local line rest
  line=$(cat "/proc/$1/stat")
  rest=${line##*) }
  # shellcheck disable=SC2086
  set -- $rest
  echo $((${12} + ${13} + ${14} + ${15}))
}

TCK=$(getconf CLK_TCK)

# -- The downstream: smtp-sink, for the whole run ---------------------------
SINK_PORT=$(free_port)
start_group "$OUT/sink.log" smtp-sink -4 -c -u nobody -h sink.example.test "127.0.0.1:$SINK_PORT" 1024
SINK_PID=$STARTED
wait_port "$SINK_PORT" "$SINK_PID" smtp-sink

# -- The no-op milters, for the whole run -----------------------------------
NOOP_PORT=$(free_port)
start_group "$OUT/noop.log" "$GEN" noop-milter --listen "127.0.0.1:$NOOP_PORT"
NOOP_PID=$STARTED
wait_port "$NOOP_PORT" "$NOOP_PID" noop-milter
NOOPNR_PORT=$(free_port)
start_group "$OUT/noop-nr.log" "$GEN" noop-milter --listen "127.0.0.1:$NOOPNR_PORT" --no-reply
NOOPNR_PID=$STARTED
wait_port "$NOOPNR_PORT" "$NOOPNR_PID" "noop-milter --no-reply"

# -- rspamd as a milter, for the whole run ----------------------------------
# Its own top-level configuration over the stock common.conf; local.d and
# override.d, database, run and log directories in $OUT/rspamd. Modules
# that look things up on the network (DNS, HTTP maps, fuzzy storage) or
# want Redis are off; its resolver is a closed port; the public-suffix
# list is a tiny one. Hyperscan is off unless --hyperscan (then it is
# compiled once, before the first repetition, and cached in its DBDIR).
RSPAMD_PID=
RSPAMD_PORT=
start_rspamd() {
  local dir="$OUT/rspamd" m
  mkdir -p "$dir/conf/local.d" "$dir/conf/override.d" "$dir/db" "$dir/run" "$dir/log"
  for m in arc asn bimi dcc dkim dmarc emails fuzzy_check greylist hfilter history_redis mid \
    mime_types multimap mx_check neural phishing ratelimit rbl replies reputation rspamd_update \
    spf surbl url_redirector whitelist; do
    echo "enabled = false;" >"$dir/conf/override.d/$m.conf"
  done
  # The headers docs/milter.md suggests: every message is changed, so
  # mxguard rewrites it in the spool before its 250 (as it would live).
  cat >"$dir/conf/local.d/milter_headers.conf" <<'EOF'
use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "x-spam-status"];
skip_local = false;
skip_authenticated = false;
EOF
  printf 'test\nexample\ncom\nnet\norg\n' >"$dir/effective_tld_names.dat"
  local hs=true
  [ "$HYPERSCAN" = 1 ] && hs=false
  RSPAMD_PORT=$(free_port)
  cat >"$dir/conf/rspamd.conf" <<EOF
.include "\$CONFDIR/common.conf"
options {
  pidfile = "\$RUNDIR/rspamd.pid";
  filters = "chartable,regexp";
  cache_file = "\$DBDIR/symbols.cache";
  dynamic_conf = "\$DBDIR/rspamd_dynamic";
  history_file = "\$DBDIR/rspamd.history";
  control_socket = "\$DBDIR/rspamd.sock mode=0600";
  stats_file = "\$DBDIR/stats.ucl";
  hs_cache_dir = "\$DBDIR/";
  disable_hyperscan = $hs;
  url_tld = "$dir/effective_tld_names.dat";
  tempdir = "\$RUNDIR";
  allow_raw_input = true;
  task_timeout = 8s;
  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }
}
logging {
  type = "file";
  filename = "\$LOGDIR/rspamd.log";
  level = "info";
}
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:$RSPAMD_PORT";
  milter = yes;
  timeout = 120s;
  count = 1;
  upstream "local" { default = yes; self_scan = yes; }
}
EOF
  start_group "$dir/rspamd.out" /usr/bin/rspamd -f -i -c "$dir/conf/rspamd.conf" \
    --var "LOCAL_CONFDIR=$dir/conf" --var "DBDIR=$dir/db" --var "RUNDIR=$dir/run" --var "LOGDIR=$dir/log"
  RSPAMD_PID=$STARTED
  wait_port "$RSPAMD_PORT" "$RSPAMD_PID" rspamd
  # The main process listens before its proxy worker is up.
  for _ in $(seq 600); do
    grep -q 'starting rspamd_proxy process' "$dir/log/rspamd.log" 2>/dev/null && break
    sleep 0.1
  done
  if [ "$HYPERSCAN" = 1 ]; then
    # Until the helper has compiled the regexps, the workers use PCRE.
    echo "== rspamd: compiling hyperscan databases (once)"
    for _ in $(seq 3000); do
      grep -q 'rspamd_proxy.*hyperscan database of .* has been loaded' "$dir/log/rspamd.log" 2>/dev/null && break
      sleep 0.1
    done
  fi
}
case ",$CONFIGS," in *,rspamd,*) start_rspamd ;; esac

# -- One repetition of one configuration -------------------------------------
# run_one CONFIG REP: a fresh mxguard (own spool) with CONFIG's milter;
# warm-up, drain; then the measured window (load, drain); appends a line
# to $OUT/results.tsv: config rep accepted other elapsed_s mxguard_ticks
# filter_ticks milter_lines.
run_one() {
  local config=$1 rep=$2 dir="$OUT/mx-$1-$2" port filter_pid= milter=
  mkdir -p "$dir"
  port=$(free_port)
  for i in $(seq 1 100); do echo "user$i@example.test"; done >"$dir/recipients"
  case "$config" in
    noop) filter_pid=$NOOP_PID milter="inet:127.0.0.1:$NOOP_PORT" ;;
    noop-nr) filter_pid=$NOOPNR_PID milter="inet:127.0.0.1:$NOOPNR_PORT" ;;
    rspamd) filter_pid=$RSPAMD_PID milter="inet:127.0.0.1:$RSPAMD_PORT" ;;
  esac
  # The bench/mxbench job without its DNS checks: relay for example.test
  # to the sink, the recipient table, no greeting test, DMARC off; a
  # resolver at a closed port (nothing here should ask it).
  cat >"$dir/mxguard.toml" <<EOF
[server]
hostname = "mx.example.test"
listen = ["127.0.0.1:$port"]

[relay]
domains = ["example.test"]

[recipients]
table = "$dir/recipients"

[downstream]
targets = ["smtp://127.0.0.1:$SINK_PORT"]
concurrency = 50
xclient = false

[spool]
dir = "$dir/spool"

[log]
file = "$dir/mxguard.log"

[dns]
nameservers = ["127.0.0.1:1"]
timeout = "1s"

[checks]
dmarc = "off"

[limits]
max_connections = 12000
max_connections_per_client = 200

[abuse]
greet_wait = "0s"
EOF
  if [ -n "$milter" ]; then
    cat >>"$dir/mxguard.toml" <<EOF

[[milter]]
name = "$config"
address = "$milter"
default_action = "tempfail"   # a filter not asked shows as refused mail, not as a cheap one
content_timeout = "130s"
EOF
  fi
  "$MXGUARD" config check "$dir/mxguard.toml" >/dev/null
  start_group "$dir/stderr" "$MXGUARD" serve --config "$dir/mxguard.toml"
  local mx=$STARTED
  wait_port "$port" "$mx" mxguard
  # drain: until the queue is empty (at most 120 s).
  drain() {
    for _ in $(seq 1200); do
      [ "$(find "$dir/spool/queue" -maxdepth 1 -type f ! -name '*.state' 2>/dev/null | wc -l)" -eq 0 ] && return 0
      sleep 0.05
    done
    echo "milter.sh: $config: the queue did not drain" >&2
  }
  if [ "$WARMUP" != 0 ]; then
    "$GEN" tx --server "127.0.0.1:$port" -c "$CLIENTS" -d "$WARMUP" --size "$SIZE" >/dev/null
    drain
  fi
  local lines0 mx0 f0=0 t0 mx1 f1=0 t1
  lines0=$(grep -c 'event=milter ' "$dir/mxguard.log" 2>/dev/null || true)
  mx0=$(pid_ticks "$mx")
  [ -n "$filter_pid" ] && f0=$(group_ticks "$filter_pid")
  t0=$(date +%s.%N)
  "$GEN" tx --server "127.0.0.1:$port" -c "$CLIENTS" -d "$DURATION" --size "$SIZE" --out "$dir/tx.json" >/dev/null
  drain
  mx1=$(pid_ticks "$mx")
  [ -n "$filter_pid" ] && f1=$(group_ticks "$filter_pid")
  t1=$(date +%s.%N)
  stop_group "$mx"
  local lines1
  lines1=$(grep -c 'event=milter ' "$dir/mxguard.log" 2>/dev/null || true)
  python3 - "$dir/tx.json" "$config" "$rep" "$((mx1 - mx0))" "$((f1 - f0))" "$((lines1 - lines0))" \
    "$(python3 -c "print($t1 - $t0)")" >>"$OUT/results.tsv" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
acc = d["outcomes"].get("accepted", 0)
other = {k: v for k, v in d["outcomes"].items() if k != "accepted"}
print("\t".join([sys.argv[2], sys.argv[3], str(acc), json.dumps(other, separators=(",", ":")),
                 str(d["elapsed_s"]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]]))
PY
  tail -1 "$OUT/results.tsv" | awk -F'\t' -v tck="$TCK" '{
    printf "   %-8s rep %s: %d accepted (%.0f/s), other %s, mxguard %.3f ms CPU/msg, filter %.3f ms CPU/msg, %d event=milter lines\n",
      $1, $2, $3, $3 / $5, $4, $6 * 1000 / tck / ($3 ? $3 : 1), $7 * 1000 / tck / ($3 ? $3 : 1), $8 }'
  rm -rf "$dir/spool"
}

# -- The run: interleaved repetitions, then the table ------------------------
echo "== mxguard $("$MXGUARD" --version 2>/dev/null | head -1); rspamd: $(/usr/bin/rspamd --version 2>/dev/null | head -1)"
echo "== $REPS repetitions of: ${CONFIGS//,/, }; $CLIENTS clients, $DURATION s, $SIZE-byte messages (warm-up ${WARMUP} s)"
: >"$OUT/results.tsv"
for rep in $(seq 1 "$REPS"); do
  for config in ${CONFIGS//,/ }; do
    run_one "$config" "$rep"
  done
done

python3 - "$OUT/results.tsv" "$TCK" "$CONFIGS" "$HYPERSCAN" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
tck = float(sys.argv[2])
order = sys.argv[3].split(",")
names = {
    "none": "(a) no milter",
    "noop": "(b) no-op milter, a reply to every step",
    "noop-nr": "(b') no-op milter, no-reply steps (SMFIP_NR_*)",
    "rspamd": "(c) rspamd milter" + (" (hyperscan)" if sys.argv[4] == "1" else " (no hyperscan)"),
}
per = {}
for c, rep, acc, other, elapsed, mx, flt, lines, window in rows:
    acc = int(acc)
    if acc == 0:
        continue
    p = per.setdefault(c, {"rate": [], "mx": [], "flt": [], "sum": []})
    p["rate"].append(acc / float(elapsed))
    p["mx"].append(int(mx) / tck * 1000 / acc)
    p["flt"].append(int(flt) / tck * 1000 / acc)
    p["sum"].append((int(mx) + int(flt)) / tck * 1000 / acc)
med = {c: {k: statistics.median(v) for k, v in p.items()} for c, p in per.items()}
def rng(v, fmt):
    return f"{fmt.format(min(v))}–{fmt.format(max(v))}"
base = med.get("none")
print()
print("| configuration | accepted msg/s | mxguard ms CPU / accepted msg | ÷ (a) | filter ms CPU / msg | mxguard + filter ms CPU / msg | ÷ (a) |")
print("|---|---|---|---|---|---|---|")
for c in order:
    if c not in med:
        continue
    m, p = med[c], per[c]
    r1 = f"{m['mx'] / base['mx']:.2f}" if base else "–"
    r2 = f"{m['sum'] / base['mx']:.2f}" if base else "–"
    flt = "–" if c == "none" else f"{m['flt']:.3f} ({rng(p['flt'], '{:.3f}')})"
    print(f"| {names[c]} | {m['rate']:.0f} ({rng(p['rate'], '{:.0f}')}) | "
          f"{m['mx']:.3f} ({rng(p['mx'], '{:.3f}')}) | {r1} | {flt} | {m['sum']:.3f} | {r2} |")
print()
print(f"Medians of {max(len(p['mx']) for p in per.values())} repetitions (range in parentheses); "
      "mxguard + filter is the median of each repetition's sum; ÷ (a) divides by (a)'s mxguard figure.")
PY
