#!/usr/bin/env bash
# Builds the release binary and runs the agent/orchestration benchmarks
# (bench/agent_bench.py) on loopback. Extra arguments go to the script, e.g.
#   bench/run.sh --rounds 9 --runs 50
# Set DURE_BIN to benchmark an existing binary without building.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DURE_BIN:-}" ]; then
  # Only the binary crate: a release build of the whole workspace is not needed.
  cargo build --release -p dure
  DURE_BIN="${CARGO_TARGET_DIR:-target}/release/dure"
fi

# The whole run is bounded; on timeout the script gets SIGTERM and kills,
# by process group, everything it started.
exec timeout --kill-after=20 "${BENCH_TIMEOUT:-600}" \
  python3 bench/agent_bench.py --bin "$DURE_BIN" "$@"
