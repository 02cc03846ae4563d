#!/bin/bash
# The PIDs of the running mxguard (one process).
BENCH="${BENCH:-$(cd "$(dirname "$0")" && pwd)/../../../shared/bench}"
. "$BENCH/lib/common.sh"
[ -s "$RUN/mxguard.pid" ] && cat "$RUN/mxguard.pid"
true
