#!/bin/bash
# Instructions per transaction, counted by valgrind's callgrind: mxguard
# (the bench/mxbench system) runs under callgrind twice, for a small and a
# large count of transactions from the Rust load generator (clean 10 KB
# messages, or the storm's rejected transactions); the difference divided
# by the difference of the counts is what one transaction costs, start-up
# and shutdown cancelled out. Unlike CPU time the count repeats from run to
# run whatever else the machine does, so it tells apart changes that
# bench/profile.sh's figures lose in this machine's noise; it counts user
# space only (no system call, no page fault), and a `rep movsb` copy as one
# instruction per byte (memcpy's share is overstated).
#   bench/instructions.sh                   # clean: 200 and 1000 messages
#   MODE=storm bench/instructions.sh        # storm: 500 and 2500 transactions
#   TOP=40 bench/instructions.sh            # and the 40 costliest functions
#   MXGUARD_BIN=/path/mxguard bench/instructions.sh
#   KEEP=/tmp/cg bench/instructions.sh      # keep both profiles there (callgrind_annotate)
# Needs root (the harness's namespace) and valgrind.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
MODE="${MODE:-clean}" TOP="${TOP:-15}"
case "$MODE" in
  clean) profiles=clean small=200 large=1000 ;;
  storm) profiles=listed small=500 large=2500 ;;
  *) echo "instructions.sh: MODE is clean or storm" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
BIN="${MXGUARD_BIN:-$REPO/target/release/mxguard}"
[ -n "${MXGUARD_BIN:-}" ] || (cd "$REPO" && cargo build --release --quiet)
GEN="$REPO/target/loadgen/release/mxbench-loadgen"
CARGO_TARGET_DIR="$REPO/target/loadgen" \
  cargo build --release --quiet --manifest-path "$REPO/bench/loadgen/Cargo.toml"
WORK="$(mktemp -d)"
# What the harness starts as mxguard: `serve` under callgrind.
mkdir "$WORK/bin"
cat >"$WORK/bin/mxguard" <<SH
#!/bin/sh
[ "\$1" = serve ] && exec valgrind --tool=callgrind --callgrind-out-file="\$CALLGRIND_OUT" "$BIN" "\$@"
exec "$BIN" "\$@"
SH
chmod +x "$WORK/bin/mxguard"

# count N: N transactions against a fresh mxguard under callgrind; the
# profile is left in $WORK/N.out once mxguard has stopped.
count() (
  export CALLGRIND_OUT="$WORK/$1.out" MXGUARD_BIN="$WORK/bin/mxguard"
  . "$REPO/bench/common.sh"
  $NSX "$GEN" tx --server 127.0.0.1:25 --profiles "$profiles" -c 10 -n "$1" -d 600 \
    --size 10240 --out "$WORK/$1.json" >/dev/null
  "$SYS/drain.sh" >/dev/null || true
  done=$(json "$WORK/$1.json" "sum(d['outcomes'].values())")
  [ "$done" -eq "$1" ] || { echo "instructions.sh: $done of $1 transactions ended" >&2; exit 1; }
  # Callgrind writes its profile as mxguard exits: give it the time.
  pid=$("$SYS/pids.sh" | head -1)
  kill -TERM "$pid"
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
)
count "$small" >/dev/null
count "$large" >/dev/null

# The total, and each function's own instructions (its code inlined
# elsewhere counted with it), per transaction.
python3 - "$WORK/$small.out" "$WORK/$large.out" $((large - small)) "$TOP" "$MODE" <<'PY'
import re, subprocess, sys
small, large, n, top, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def costs(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", path],
                         capture_output=True, text=True, check=True).stdout
    total, functions = 0, {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \([^)]*\)\s+(.*)$", line)
        if not m:
            continue
        value = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = value
        else:
            name = re.sub(r" \[[^]]*\]$", "", m.group(2)).split(":", 1)[-1]
            functions[name] = functions.get(name, 0) + value
    return total, functions
(t1, f1), (t2, f2) = costs(small), costs(large)
what = "accepted message" if mode == "clean" else "rejected transaction"
print(f"{(t2 - t1) / n:,.0f} instructions per {what} (user space; callgrind)")
rows = sorted(((f2.get(k, 0) - f1.get(k, 0)) / n, k) for k in set(f1) | set(f2))
for per, name in reversed(rows[-top:]):
    print(f"{per:10,.0f}  {name[:110]}")
PY
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP" && cp "$WORK/$small.out" "$WORK/$large.out" "$KEEP/"
  echo "profiles: $KEEP/$small.out $KEEP/$large.out"
fi
rm -rf "$WORK"
