#!/bin/bash
# mxguard as a system of the shared bench harness (../shared/bench): the
# same job as the anchors — MX for example.test, DNSBL bl.test, FCrDNS,
# HELO and sender-domain checks, the 100-user recipient table — relaying to
# the harness's smtp-sink on 127.0.0.1:2526, inside the mxbench namespace.
# The binary is target/release/mxguard of this repository (bench/run.sh
# builds it), or $MXGUARD_BIN. The greeting test is off, as in the
# anchors' plain Postfix; MXBENCH_GREET_WAIT=1s turns it on (mxguard's
# default, postscreen's job).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BENCH="${BENCH:-$HERE/../../../shared/bench}"
. "$BENCH/lib/common.sh"
BIN="${MXGUARD_BIN:-$HERE/../../target/release/mxguard}"
[ -x "$BIN" ] || { log "mxbench: no $BIN (cargo build --release)"; exit 1; }
DIR="$RUN/mxguard"
rm -rf "$DIR"
mkdir -p "$DIR"
for i in $(seq 1 100); do echo "user$i@example.test"; done >"$DIR/recipients"
echo "postmaster@example.test" >>"$DIR/recipients"
cat >"$DIR/mxguard.toml" <<TOML
[server]
hostname = "mx.example.test"
listen = ["127.0.0.1:25"]

[relay]
domains = ["example.test"]
trusted_networks = ["127.0.0.1/32"]

[recipients]
table = "recipients"

[downstream]
targets = ["smtp://127.0.0.1:2526"]
concurrency = 50
# The harness's sink offers XCLIENT to anyone, and Postfix, the anchor,
# tells its downstream nothing: neither does mxguard here (XCLIENT would
# also end connection reuse).
xclient = false

[spool]
dir = "spool"

[log]
file = "mxguard.log"

[dns]
nameservers = ["127.0.0.1:53"]
timeout = "3s"

[[dnsbl]]
zone = "bl.test"
action = "reject"

[checks]
reverse_dns = "reject"
forged_reverse_dns = "reject"
helo = "reject"
sender_domain = "reject"
dmarc = "off"

[limits]
max_connections = 12000
max_connections_per_client = 200

[abuse]
greet_wait = "${MXBENCH_GREET_WAIT:-0s}"
TOML
"$BIN" config check "$DIR/mxguard.toml" >/dev/null
ulimit -n "$(ulimit -Hn)"
$NSX "$BIN" serve --config "$DIR/mxguard.toml" >"$DIR/stderr" 2>&1 &
echo $! >"$RUN/mxguard.pid"
wait_port 127.0.0.1 25 30
