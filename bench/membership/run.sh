#!/usr/bin/env bash
# Membership at scale, in virtual time: builds `dure-bench-membership` in
# release and simulates clusters of agents' detectors over an in-process
# network with packet loss (see bench/README.md). Extra arguments go to the
# benchmark, e.g.
#   bench/membership/run.sh --nodes 100,1000 --loss 0.05 --steady-secs 300 --kills 20
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p dure-bench --bin dure-bench-membership
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# Bounded: a thousand nodes for the default 300 simulated seconds take a
# few minutes of one core.
timeout --kill-after=10 "${BENCH_TIMEOUT:-900}" \
  "$target/release/dure-bench-membership" "$@"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
