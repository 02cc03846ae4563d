#!/bin/bash
# Stops the mxguard started by start.sh (by PID, checked against its command line).
set -euo pipefail
BENCH="${BENCH:-$(cd "$(dirname "$0")" && pwd)/../../../shared/bench}"
. "$BENCH/lib/common.sh"
kill_pidfile "$RUN/mxguard.pid" "mxguard serve"
