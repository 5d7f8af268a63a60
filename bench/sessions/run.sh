#!/usr/bin/env bash
# The session failover benchmark: three templated Tomcats with session
# replication behind `dure lb run` (sticky on jvmRoute), on loopback. For
# each replication mode (delta, backup) it prints
#   - the time from `kill -9` of the member a session lives on to the first
#     request through the balancer that answers with that session intact
#     (its count going on), and
#   - the response time through the balancer with that member down against
#     all three up (medians over REQUESTS requests of one session each), as
#     a ratio measured in the same run.
# See bench/README.md.
#
#   bench/sessions/run.sh                    # builds the release binary first
#   DURE_BIN=target/release/dure REQUESTS=400 bench/sessions/run.sh
#
# Needs Debian's tomcat10-user, python3 and curl. Every process it starts
# is killed by pid on exit (also on error or ^C).
set -euo pipefail
cd "$(dirname "$0")/../.."

REQUESTS="${REQUESTS:-300}"
MODES="${MODES:-delta backup}"
for tool in tomcat10-instance-create python3 curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found: apt-get install tomcat10-user python3 curl" >&2; exit 2; }
done

if [ -z "${DURE_BIN:-}" ]; then
  cargo build --release -p dure
  DURE_BIN="${CARGO_TARGET_DIR:-target}/release/dure"
fi
DURE_BIN="$(realpath "$DURE_BIN")"
APP="$(realpath crates/dure/tests/fixtures/session-app)"

TMP="$(mktemp -d /tmp/dure-bench-sessions.XXXXXX)"
PIDS=()
cleanup() {
  set +e
  if [ -n "${DURE_ADDR:-}" ]; then
    "$DURE_BIN" cluster kill shop >/dev/null 2>&1
  fi
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() {
  local log="$1"; shift
  "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  disown "$!"
}

wait_for() { # what, seconds, command...
  local what="$1" secs="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || { echo "error: $what did not happen within ${secs}s" >&2; exit 1; }
    sleep 0.2
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$TMP/c" "$TMP/a"
start "$TMP/controller.log" "$DURE_BIN" controller --listen 127.0.0.1:0 --data "$TMP/c" --auto-save
wait_for "controller.addr" 20 test -s "$TMP/c/controller.addr"
export DURE_ADDR="http://$(cat "$TMP/c/controller.addr")"
export DURE_TOKEN_FILE="$TMP/c/admin.token"
wait_for "controller health" 20 curl -fsS "$DURE_ADDR/v1/health"
start "$TMP/agent.log" "$DURE_BIN" agent --controller "$DURE_ADDR" --node bench --data "$TMP/a" --token-file "$DURE_TOKEN_FILE"
wait_for "node bench online" 20 sh -c "'$DURE_BIN' node list | grep -q online"

LB_PORT=$(free_port)
declare -A HTTP
for i in 1 2 3; do
  mkdir -p "$TMP/apps/t$i"
  cp -r "$APP" "$TMP/apps/t$i/session"
  HTTP[t$i]=$(free_port)
  # The member stays down after the kill (--restart never): the second
  # figure is the cost of serving with one member less.
  "$DURE_BIN" server create "t$i" --template tomcat --node bench --heap 256m \
    --port "http=${HTTP[t$i]}" --port "shutdown=$(free_port)" --port "replication=$(free_port)" \
    --app-dir "$TMP/apps/t$i" --ready-timeout 120s --restart never >/dev/null
done
"$DURE_BIN" cluster create shop --member t1 --member t2 --member t3 >/dev/null
"$DURE_BIN" cluster balance shop --sticky session >/dev/null
"$DURE_BIN" lb create front --listen "127.0.0.1:$LB_PORT" --route shop >/dev/null
start "$TMP/lb.log" "$DURE_BIN" lb run --name front --controller "$DURE_ADDR" --token-file "$DURE_TOKEN_FILE"

for mode in $MODES; do
  "$DURE_BIN" cluster update shop --session-replication "$mode" >/dev/null
  "$DURE_BIN" cluster start shop >/dev/null
  for i in 1 2 3; do
    wait_for "t$i sees two members" 120 sh -c "[ \$(grep -c 'Replication member added' '$TMP/a/servers/t$i/server.log') -ge 2 ]"
  done
  python3 - "$mode" "$LB_PORT" "$REQUESTS" "$DURE_BIN" <<'PY'
import json, os, signal, statistics, subprocess, sys, time, urllib.request

mode, lb_port, requests, dure = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
url = f"http://127.0.0.1:{lb_port}/session/count.jsp"

class Session:
    def __init__(self):
        self.cookie = None
    def visit(self):
        request = urllib.request.Request(url)
        if self.cookie:
            request.add_header("Cookie", f"JSESSIONID={self.cookie}")
        with urllib.request.urlopen(request, timeout=30) as response:
            for header in response.headers.get_all("Set-Cookie") or []:
                if header.startswith("JSESSIONID="):
                    self.cookie = header.split(";")[0].split("=", 1)[1]
            return int(response.read().decode().strip())
    def route(self):
        return self.cookie.rsplit(".", 1)[1]

def timed(session):
    start = time.perf_counter()
    count = session.visit()
    return count, time.perf_counter() - start

def median_ms(session):
    times = [timed(session)[1] for _ in range(requests)]
    return statistics.median(times) * 1000, sorted(times)[int(len(times) * 0.99) - 1] * 1000

# The balancer answers once it has its table; then every member's JSP is
# warmed through it (new sessions land round robin).
deadline = time.perf_counter() + 60
while True:
    try:
        Session().visit()
        break
    except Exception:
        if time.perf_counter() > deadline:
            raise
        time.sleep(0.2)
for _ in range(9):
    Session().visit()
steady = Session()
steady.visit()
all_up, all_up_p99 = median_ms(steady)

victim_session = Session()
for _ in range(5):
    victim_session.visit()
victim = victim_session.route()
show = json.loads(subprocess.check_output([dure, "server", "show", victim, "-o", "json"]))
pid = show["observed"]["pid"]
expected = 6
cookie = victim_session.cookie
killed = time.perf_counter()
os.kill(pid, signal.SIGKILL)
# Requests go on with the session's cookie until one answers with it intact
# (its count going on). One answered with a new session (count 1) lost it
# for a browser, which would keep the new cookie; here the old one is
# sent again, to see when the session comes back.
lost = 0
failover = None
while time.perf_counter() - killed < 60:
    victim_session.cookie = cookie
    try:
        count = victim_session.visit()
    except Exception:
        count = None
    if count == expected:
        failover = time.perf_counter() - killed
        break
    if count == 1:
        lost += 1
    time.sleep(0.01)
one_down, one_down_p99 = median_ms(steady)
if failover is None:
    print(f"{mode}: kill -9 of `{victim}`: the session did not come back within 60 s (miss)")
else:
    verdict = "pass" if failover < 1 and lost == 0 else "miss"
    print(f"{mode}: kill -9 of `{victim}` -> first request with the session intact after {failover * 1000:.0f} ms, "
          f"{lost} request(s) before it answered with a new session (target < 1000 ms, none lost: {verdict})")
ratio = one_down / all_up
print(f"{mode}: response time through the balancer, median {all_up:.2f} ms all up, {one_down:.2f} ms one of three down: "
      f"{ratio:.2f}x (target <= 1.5x: {'pass' if ratio <= 1.5 else 'miss'}); p99 {all_up_p99:.2f} / {one_down_p99:.2f} ms")
PY
  "$DURE_BIN" cluster kill shop >/dev/null
done
