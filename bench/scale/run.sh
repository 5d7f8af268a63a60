#!/usr/bin/env bash
# Controller scale benchmark: builds the release `dure` and `dure-bench-scale`,
# then runs a real controller against simulated agents (see bench/README.md).
# Extra arguments go to the benchmark, e.g.
#   bench/scale/run.sh --nodes 100,500 --window 5
# Set DURE_BIN to an existing `dure` binary to skip building it.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p dure-bench
if [ -z "${DURE_BIN:-}" ]; then
  cargo build --release -p dure
  DURE_BIN="$target/release/dure"
fi

# 2000 agents hold two connections each (long poll and report), and the
# controller the other end of every one.
ulimit -n "$(ulimit -Hn)"
need=$((2 * 2000 * 2 + 512))
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "warning: the open-file limit is $(ulimit -n); 2000 agents need about $need" >&2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/dure-scale.XXXXXX")"
cleanup() {
  # The benchmark kills the controller's process group itself; this is for
  # the case where it was killed before it could.
  if [ -f "$work/controller.pid" ]; then
    kill -KILL -- "-$(cat "$work/controller.pid")" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The whole run is bounded; on timeout the benchmark gets SIGTERM, stops its
# controller and exits.
timeout --kill-after=20 "${BENCH_TIMEOUT:-420}" \
  "$target/release/dure-bench-scale" --dure "$DURE_BIN" --work "$work" "$@"
