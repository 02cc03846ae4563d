#!/bin/bash
# One line: what is being measured.
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="${MXGUARD_BIN:-$HERE/../../target/release/mxguard}"
echo "$("$BIN" --version 2>/dev/null || echo mxguard) (release build, memory state, fsync per message, greet_wait ${MXBENCH_GREET_WAIT:-0s})"
