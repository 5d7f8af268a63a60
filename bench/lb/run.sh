#!/usr/bin/env bash
# The balancer benchmark: `dure lb`, HAProxy and nginx in front of the same
# three backends, each proxy pinned to core 1 and wrk to core 0, on
# loopback. Prints throughput and p99 ratios at 50 and 200 connections
# (the median of ROUNDS alternating rounds), the errors of each proxy when
# one backend is killed with kill -9 and when one is frozen with SIGSTOP
# during a run, and each proxy's RSS. See bench/README.md.
#
#   bench/lb/run.sh                      # builds the release binary first
#   DURE_BIN=target/release/dure ROUNDS=5 DURATION=5 bench/lb/run.sh
#
# Needs haproxy, nginx, wrk, taskset (util-linux) and python3; two cores.
# Every process it starts is killed by pid on exit (also on error or ^C).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
# Failure runs last longer than the proxies' 5 s read timeouts, so a
# request stalled on a frozen backend shows as an error or as latency.
FAIL_DURATION="${FAIL_DURATION:-8}"
HAPROXY=/usr/sbin/haproxy
NGINX=/usr/sbin/nginx
for tool in "$HAPROXY" "$NGINX" wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found: apt-get install haproxy nginx wrk util-linux python3" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || { echo "error: needs two cores (proxy on core 1, wrk on core 0)" >&2; exit 2; }

if [ -z "${DURE_BIN:-}" ]; then
  cargo build --release -p dure
  DURE_BIN="${CARGO_TARGET_DIR:-target}/release/dure"
fi
DURE_BIN="$(realpath "$DURE_BIN")"

TMP="$(mktemp -d /tmp/dure-bench-lb.XXXXXX)"
PIDS=()          # every process started here, and every backend pid seen
cleanup() {
  set +e
  if [ -n "${DURE_ADDR:-}" ]; then
    "$DURE_BIN" cluster kill bench >/dev/null 2>&1
  fi
  for pid in "${PIDS[@]}"; do
    # Children first (nginx's worker), which would outlive a killed master.
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
      kill -9 "$child" 2>/dev/null
    done
    kill -CONT "$pid" 2>/dev/null
    kill -9 "$pid" 2>/dev/null
  done
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a process in the background, remembered for cleanup.
start() {
  local log="$1"; shift
  "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  LAST_PID=$!
  disown "$LAST_PID"   # killed by pid at exit, without a shell notice
}

wait_for() { # what, seconds, command...
  local what="$1" secs="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || { echo "error: $what did not happen within ${secs}s" >&2; exit 1; }
    sleep 0.2
  done
}

answers() { curl -fsS -m 2 "http://127.0.0.1:$1/" >/dev/null; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- controller, agent, backends ----------------------------------------
mkdir -p "$TMP/c" "$TMP/a" "$TMP/backends"
start "$TMP/controller.log" "$DURE_BIN" controller --listen 127.0.0.1:0 --data "$TMP/c" --auto-save
wait_for "controller.addr" 20 test -s "$TMP/c/controller.addr"
export DURE_ADDR="http://$(cat "$TMP/c/controller.addr")"
export DURE_TOKEN_FILE="$TMP/c/admin.token"
wait_for "controller health" 20 curl -fsS "$DURE_ADDR/v1/health"
start "$TMP/agent.log" "$DURE_BIN" agent --controller "$DURE_ADDR" --node bench --data "$TMP/a" --token-file "$DURE_TOKEN_FILE"
wait_for "node bench online" 20 sh -c "'$DURE_BIN' node list | grep -q online"

# Three identical backends: nginx answering a fixed 3-byte body with
# keep-alive, one process each (so kill -9 and SIGSTOP hit the server).
for i in 1 2 3; do
  port=$(free_port)
  dir="$TMP/backends/b$i"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "ok\n"; }
    }
}
CONF
  "$DURE_BIN" server create "b$i" --node bench --port "http=$port" --ready http:/health \
    --restart on-failure -- "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >/dev/null
done
"$DURE_BIN" cluster create bench --member b1 --member b2 --member b3 >/dev/null
# The same active check for every proxy: HTTP, every 1 s, rise 2, fall 2.
"$DURE_BIN" cluster balance bench --check http:/health >/dev/null
"$DURE_BIN" cluster start bench >/dev/null

backend_pid() { # server name -> pid, remembered for cleanup
  local pid
  pid=$("$DURE_BIN" server show "$1" -o json | python3 -c '
import json, sys
def find(v):
    if isinstance(v, dict):
        if isinstance(v.get("pid"), int): return v["pid"]
        for x in v.values():
            p = find(x)
            if p: return p
    return None
print(find(json.load(sys.stdin)) or "")')
  [ -n "$pid" ] && PIDS+=("$pid")
  echo "$pid"
}
all_ready() { [ "$("$DURE_BIN" cluster show bench -o json | grep -o '"state": *"ready"' | wc -l)" -ge 3 ]; }
wait_for "three ready backends" 30 all_ready
for b in b1 b2 b3; do backend_pid "$b" >/dev/null; done

# --- the three proxies, each on core 1 ----------------------------------
DURE_PORT=$(free_port); HAPROXY_PORT=$(free_port); NGINX_PORT=$(free_port)
"$DURE_BIN" lb create bench --listen "127.0.0.1:$DURE_PORT" --route bench >/dev/null
start "$TMP/lb.log" taskset -c 1 "$DURE_BIN" lb run --name bench --controller "$DURE_ADDR" --token-file "$DURE_TOKEN_FILE"
DURE_PID=$LAST_PID

# Same timeouts as `dure lb`'s defaults: connect 2 s, first byte 5 s.
"$DURE_BIN" cluster export bench --format haproxy "$TMP/backend.cfg" 2>/dev/null
cat >"$TMP/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout server 5s
    timeout client 60s
    timeout http-keep-alive 60s
frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend bench
$(cat "$TMP/backend.cfg")
CONF
"$HAPROXY" -c -q -f "$TMP/haproxy.cfg"
start "$TMP/haproxy.log" taskset -c 1 "$HAPROXY" -db -f "$TMP/haproxy.cfg"
HAPROXY_PID=$LAST_PID

mkdir -p "$TMP/nginx"
"$DURE_BIN" cluster export bench --format nginx "$TMP/upstream.conf" 2>/dev/null
cat >"$TMP/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx/body; proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi; uwsgi_temp_path $TMP/nginx/uwsgi; scgi_temp_path $TMP/nginx/scgi;
$(cat "$TMP/upstream.conf")
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 5s;
        }
    }
}
CONF
"$NGINX" -t -q -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf"
start "$TMP/nginx.log" taskset -c 1 "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf"
NGINX_PID=$LAST_PID

for port in "$DURE_PORT" "$HAPROXY_PORT" "$NGINX_PORT"; do
  wait_for "a proxy answering on $port" 20 answers "$port"
done
port_of() { case "$1" in dure) echo "$DURE_PORT";; haproxy) echo "$HAPROXY_PORT";; nginx) echo "$NGINX_PORT";; esac; }

# wrk on core 0; its output is kept for the summary.
run_wrk() { # proxy connections out-file [seconds]
  taskset -c 0 wrk -t1 -c"$2" -d"${4:-$DURATION}s" --timeout 10s --latency "http://127.0.0.1:$(port_of "$1")/" >"$3" 2>&1
}

RESULTS="$TMP/results"
mkdir -p "$RESULTS"
echo "load: $ROUNDS rounds x {50,200} connections x {dure,haproxy,nginx}, ${DURATION}s each" >&2
order=(dure haproxy nginx)
for round in $(seq 1 "$ROUNDS"); do
  for conns in 50 200; do
    for proxy in "${order[@]}"; do
      run_wrk "$proxy" "$conns" "$RESULTS/load-$proxy-$conns-$round"
    done
  done
  order=("${order[@]:1}" "${order[0]}")   # rotate who goes first
done

# Failure runs: one backend killed (kill -9) or frozen (SIGSTOP) one
# second into a run at 50 connections; the agent restarts a killed one.
fail_run() { # kind proxy
  local victim pid
  wait_for "three ready backends" 30 all_ready
  sleep 3   # every proxy's checks see all three up again (rise 2 x 1 s)
  victim=b$(( (RANDOM % 3) + 1 ))
  pid=$(backend_pid "$victim")
  run_wrk "$2" 50 "$RESULTS/$1-$2" "$FAIL_DURATION" &
  local wrk=$!
  sleep 1
  if [ "$1" = kill ]; then kill -9 "$pid"; else kill -STOP "$pid"; fi
  wait "$wrk" || true
  [ "$1" = stop ] && kill -CONT "$pid"
  echo "$victim" >"$RESULTS/$1-$2.victim"
}
echo "failure runs: kill -9 and SIGSTOP of one backend, ${FAIL_DURATION}s each" >&2
for kind in kill stop; do
  for proxy in dure haproxy nginx; do
    fail_run "$kind" "$proxy"
  done
done

rss() { # pid -> "VmHWM VmRSS" in kB, with its children (nginx's worker)
  local total_hwm=0 total_rss=0 p
  for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    total_hwm=$((total_hwm + $(awk '/^VmHWM/ {print $2}' /proc/"$p"/status)))
    total_rss=$((total_rss + $(awk '/^VmRSS/ {print $2}' /proc/"$p"/status)))
  done
  echo "$total_hwm $total_rss"
}
for proxy in dure haproxy nginx; do
  case "$proxy" in dure) pid=$DURE_PID;; haproxy) pid=$HAPROXY_PID;; nginx) pid=$NGINX_PID;; esac
  rss "$pid" >"$RESULTS/rss-$proxy"
done

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm), $(nproc) cores: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "$("$HAPROXY" -v | head -1 | cut -d' ' -f1-3), $("$NGINX" -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), dure $("$DURE_BIN" --version | cut -d' ' -f2)"
echo "took ${SECONDS}s"
python3 bench/lb/summary.py "$RESULTS"
