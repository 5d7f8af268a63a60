#!/usr/bin/env bash
# Group commit benchmark of the SQLite store: builds `dure-bench-store` in
# release and runs it in a temp dir (see bench/README.md). Extra arguments
# go to the benchmark, e.g.
#   bench/store/run.sh --writers 1,16 --rounds 5
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p dure-bench --bin dure-bench-store

work="$(mktemp -d "${TMPDIR:-/tmp}/dure-store-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# fsync is what is measured: on a RAM file system every variant is free.
fs="$(stat -f -c %T "$work")"
echo "databases in $work ($fs)"
if [ "$fs" = tmpfs ] || [ "$fs" = ramfs ]; then
  echo "warning: $work is in RAM; set TMPDIR to a directory on disk" >&2
fi
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# The whole run is bounded; on timeout the benchmark is killed and the temp
# dir removed.
timeout --kill-after=10 "${BENCH_TIMEOUT:-300}" \
  "$target/release/dure-bench-store" --work "$work" "$@"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
