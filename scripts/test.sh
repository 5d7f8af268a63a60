#!/usr/bin/env bash
# Runs Dure's whole check: formatting, lints and every test (unit, store
# conformance, end-to-end with real processes, and the Tomcat test).
# Installs the system packages the tests need when run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  command -v tomcat10-instance-create >/dev/null || need+=(tomcat10-user)
  [ -d /usr/share/tomcat10-examples ] || need+=(tomcat10-examples)
  command -v python3 >/dev/null || need+=(python3)
  command -v ip >/dev/null || need+=(iproute2)
  command -v iptables >/dev/null || need+=(iptables)
  [ -x /usr/sbin/haproxy ] || need+=(haproxy)
  [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v wrk >/dev/null || need+=(wrk)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  [ -d /usr/share/fonts/truetype/nanum ] || need+=(fonts-nanum)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "installing system packages: ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
  fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
