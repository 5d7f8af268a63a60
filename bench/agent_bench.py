#!/usr/bin/env python3
"""Agent and orchestration benchmarks of Dure, on loopback only.

Starts a real `dure controller` and `dure agent` in a temp dir and measures:

  (a) the agent's resident memory, idle and with 20 running demo-app servers;
  (b) the orchestration overhead of a sequential `cluster start` of 10
      demo-app members, against a baseline measured in the same run: the same
      10 demo-apps started directly one after another, each waited for until
      /health answers, polled at the same interval as the agent's probe;
  (c) apply latency: from a start/stop request to the agent acting on it
      (process exists / is gone) and to the new state being visible in the
      API, against a plain HTTP round trip to the controller's /v1/health.

Every process it starts runs in its own process group and is killed by group
at the end, also on errors and on SIGTERM/SIGINT (never by name). Every wait
is bounded. Python standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# Targets from the project brief.
TARGET_RSS_MB = 15.0
TARGET_OVERHEAD_MS = 20.0
TARGET_APPLY_MS = 100.0

# Loopback only: never let an http_proxy setting route these requests.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def now():
    return time.perf_counter()


_handed_out = set()


def free_port():
    """A port that was free a moment ago on 127.0.0.1 and was not handed out
    before: defined servers keep their ports while stopped, and the domain
    rules refuse a port used twice on a node."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_until(what, probe, timeout, interval=0.05):
    """Polls `probe` until it returns something truthy; bounded by `timeout`."""
    deadline = now() + timeout
    while True:
        value = probe()
        if value:
            return value
        if now() >= deadline:
            raise BenchError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid):
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return not stat.rsplit(") ", 1)[1].startswith("Z")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def http_status(port, path, timeout=1.0):
    """Status of GET on a local port, or None if nothing answers."""
    try:
        with OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, urllib.error.URLError):
        return None


class Processes:
    """Every process group the bench started or caused, killed at the end.

    Groups are checked before a kill: a live leader must still run our binary,
    so a recycled pid of some unrelated process is never signalled.
    """

    def __init__(self, exe):
        self.exe = os.path.realpath(exe)
        self.groups = set()

    def spawn(self, argv, log_path=None, env=None):
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            # start_new_session: its own session and process group (pgid = pid).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        finally:
            if log_path:
                out.close()
        self.groups.add(proc.pid)
        return proc

    def adopt(self, pid):
        """A server the agent spawned (it leads its own group)."""
        if pid:
            self.groups.add(int(pid))

    def ours(self, pgid):
        try:
            exe = os.readlink(f"/proc/{pgid}/exe")
        except FileNotFoundError:
            # Leader gone: the group, if it still exists, can only be ours
            # (Linux does not hand out a pid that is still a group id).
            return True
        except OSError:
            return False
        return exe.removesuffix(" (deleted)") == self.exe

    def kill_group(self, pgid, sig=signal.SIGKILL):
        if pgid > 1 and self.ours(pgid):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def kill_all(self):
        for pgid in sorted(self.groups):
            self.kill_group(pgid)


class Stack:
    """A controller and one agent on loopback, driven over the REST API."""

    def __init__(self, bin_path, tmp, procs):
        self.bin = bin_path
        self.tmp = tmp
        self.procs = procs
        self.base = None
        self.token = None
        self.controller = None
        self.agent = None
        self.node = "bench"

    def start(self):
        cdata = os.path.join(self.tmp, "c")
        adata = os.path.join(self.tmp, "a")
        os.makedirs(cdata)
        os.makedirs(adata)
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.controller = self.procs.spawn(
            # --auto-save: every definition takes effect at once, as the
            # measurements assume (a plain controller stages changes).
            [self.bin, "controller", "--listen", "127.0.0.1:0", "--data", cdata, "--auto-save"],
            os.path.join(self.tmp, "controller.log"),
            env,
        )
        addr_file = os.path.join(cdata, "controller.addr")

        def read_addr():
            if self.controller.poll() is not None:
                raise BenchError("controller exited at start; see controller.log")
            try:
                with open(addr_file) as f:
                    return f.read().strip()
            except FileNotFoundError:
                return None

        addr = wait_until("controller.addr", read_addr, 20)
        self.base = f"http://{addr}"
        with open(os.path.join(cdata, "admin.token")) as f:
            self.token = f.read().strip()
        wait_until("controller /v1/health", lambda: self.try_api("GET", "/v1/health"), 20)

        self.agent = self.procs.spawn(
            [self.bin, "agent", "--controller", self.base, "--node", self.node,
             "--data", adata, "--token", self.token],
            os.path.join(self.tmp, "agent.log"),
            env,
        )

        def online():
            if self.agent.poll() is not None:
                raise BenchError("agent exited at start; see agent.log")
            nodes = self.try_api("GET", "/v1/nodes") or []
            return any(n["spec"]["name"] == self.node and n["status"] == "online" for n in nodes)

        wait_until(f"node `{self.node}` online", online, 20)

    def api(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with OPENER.open(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise BenchError(f"{method} {path}: http {e.code}: {e.read().decode(errors='replace')}")
        return json.loads(raw) if raw else None

    def try_api(self, method, path):
        try:
            return self.api(method, path)
        except (BenchError, OSError, urllib.error.URLError):
            return None

    def create_demo_server(self, name, port, ready, interval="100ms"):
        self.api("POST", "/v1/servers", {
            "name": name,
            "node": self.node,
            "argv": [self.bin, "demo-app", "--name", name, "--port", str(port)],
            "ports": {"http": port},
            "ready": {"check": ready, "interval": interval, "timeout": "1s", "start_timeout": "20s"},
            "stop": {"timeout": "5s"},
            "restart": {"mode": "never"},
        })

    def cluster_op(self, cluster, kind, parallel=False, timeout=60, poll=0.005):
        """Runs a cluster operation; returns (operation, seconds seen by the client)."""
        t0 = now()
        op = self.api("POST", f"/v1/clusters/{cluster}/{kind}", {"parallel": parallel})
        while op["status"] == "running":
            if now() - t0 > timeout:
                raise BenchError(f"{kind} of `{cluster}` still running after {timeout}s")
            time.sleep(poll)
            op = self.api("GET", f"/v1/operations/{op['id']}")
        took = now() - t0
        if op["status"] != "succeeded":
            raise BenchError(f"{kind} of `{cluster}` {op['status']}: {op.get('message')}")
        return op, took

    def adopt_cluster_pids(self, cluster):
        view = self.api("GET", f"/v1/clusters/{cluster}")
        for m in view["members"]:
            self.procs.adopt(m["observed"].get("pid"))
        return view

    def server_pidfiles(self):
        """Pids from the agent's pid files, for the final cleanup."""
        servers = os.path.join(self.tmp, "a", "servers")
        pids = []
        for name in os.listdir(servers) if os.path.isdir(servers) else []:
            try:
                with open(os.path.join(servers, name, "server.pid")) as f:
                    pids.append(int(json.load(f)["pid"]))
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return pids


def median_rss(pid, samples=5, gap=0.2):
    values = []
    for _ in range(samples):
        values.append(rss_kb(pid))
        time.sleep(gap)
    return statistics.median(values)


def bench_rss(stack, servers, settle):
    """(a) agent VmRSS idle and with `servers` running demo-apps."""
    time.sleep(settle)
    idle = median_rss(stack.agent.pid)
    names = [f"rss-{i:02d}" for i in range(1, servers + 1)]
    for name in names:
        stack.create_demo_server(name, free_port(), "tcp:http")
    stack.api("POST", "/v1/clusters", {"name": "rss", "members": names})
    stack.cluster_op("rss", "start", parallel=True)
    view = stack.adopt_cluster_pids("rss")
    time.sleep(settle)
    loaded = median_rss(stack.agent.pid)
    demo_pid = view["members"][0]["observed"].get("pid")
    demo = rss_kb(demo_pid) if demo_pid and pid_alive(demo_pid) else None
    stack.cluster_op("rss", "kill")
    return idle, loaded, demo


def baseline_round(procs, bin_path, ports, interval):
    """The same demo-apps started directly, one after another, each waited
    for until /health answers; returns the total seconds."""
    started = []
    t0 = now()
    try:
        for i, port in enumerate(ports):
            p = procs.spawn([bin_path, "demo-app", "--name", f"base-{i}", "--port", str(port)])
            started.append(p)
            wait_until(f"baseline demo-app on {port}", lambda: http_status(port, "/health") == 200,
                       20, interval)
        return now() - t0
    finally:
        for p in started:
            procs.kill_group(p.pid, signal.SIGTERM)
        for p in started:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                procs.kill_group(p.pid)
                p.wait(timeout=5)


def bench_overhead(stack, procs, members, rounds, interval_ms):
    """(b) sequential cluster start vs. direct starts, alternating rounds."""
    names = [f"seq-{i:02d}" for i in range(1, members + 1)]
    for name in names:
        stack.create_demo_server(name, free_port(), "http:/health", f"{interval_ms}ms")
    stack.api("POST", "/v1/clusters", {"name": "seq", "members": names})
    base_ports = [free_port() for _ in names]
    base, dure, ctl = [], [], []
    for r in range(rounds):
        base.append(baseline_round(procs, stack.bin, base_ports, interval_ms / 1000))
        op, took = stack.cluster_op("seq", "start")
        stack.adopt_cluster_pids("seq")
        dure.append(took)
        ctl.append((op["finished_ms"] - op["created_ms"]) / 1000)
        stack.cluster_op("seq", "kill")
        log(f"round {r + 1}/{rounds}: baseline {base[-1] * 1000:.0f} ms, "
            f"dure {took * 1000:.0f} ms (controller {ctl[-1] * 1000:.0f} ms)")
    return statistics.median(base), statistics.median(dure), statistics.median(ctl)


def bench_apply(stack, runs):
    """(c) apply latency of server start and stop, and /v1/health round trip."""
    health = []
    for _ in range(max(runs, 20)):
        t0 = now()
        stack.api("GET", "/v1/health")
        health.append(now() - t0)

    name = "apply"
    stack.create_demo_server(name, free_port(), "none")
    pidfile = os.path.join(stack.tmp, "a", "servers", name, "server.pid")
    seen = set()

    def new_pid():
        try:
            with open(pidfile) as f:
                pid = int(json.load(f)["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if pid not in seen and pid_alive(pid) else None

    def observed():
        return stack.api("GET", f"/v1/servers/{name}")["observed"]

    start_proc, start_api, stop_proc, stop_api, saves = [], [], [], [], []
    for _ in range(runs):
        t0 = now()
        stack.api("POST", f"/v1/servers/{name}/start")
        saves.append(now() - t0)
        pid = wait_until("the agent to spawn the server", new_pid, 10, 0.001)
        start_proc.append(now() - t0)
        seen.add(pid)
        stack.procs.adopt(pid)
        wait_until("the start to show in the API",
                   lambda: observed().get("pid") == pid, 10, 0.002)
        start_api.append(now() - t0)

        t0 = now()
        stack.api("POST", f"/v1/servers/{name}/stop")
        saves.append(now() - t0)
        wait_until("the server process to end", lambda: not pid_alive(pid), 10, 0.001)
        stop_proc.append(now() - t0)
        wait_until("the stop to show in the API",
                   lambda: observed()["state"] == "stopped", 10, 0.002)
        stop_api.append(now() - t0)
    med = statistics.median
    return (med(health), med(saves), med(start_proc), med(start_api), med(stop_proc),
            med(stop_api))


def verdict(value, target):
    return "PASS" if value < target else "MISS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the dure binary (release build)")
    ap.add_argument("--servers", type=int, default=20, help="servers running for the RSS figure")
    ap.add_argument("--members", type=int, default=10, help="cluster members for the overhead")
    ap.add_argument("--rounds", type=int, default=5, help="alternating baseline/dure rounds")
    ap.add_argument("--probe-interval-ms", type=int, default=10,
                    help="readiness probe interval; the baseline polls /health as often")
    ap.add_argument("--runs", type=int, default=20, help="runs of the apply latency")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before an RSS sample")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = ap.parse_args()

    bin_path = os.path.realpath(args.bin)
    if not os.access(bin_path, os.X_OK):
        sys.exit(f"not an executable: {bin_path}")

    # SIGTERM (from `timeout`) and SIGHUP unwind through `finally` like Ctrl-C.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="dure-bench-")
    procs = Processes(bin_path)
    stack = Stack(bin_path, tmp, procs)
    ok = False
    interrupted = False
    try:
        log(f"stack in {tmp}")
        stack.start()
        log("(a) agent RSS")
        idle, loaded, demo = bench_rss(stack, args.servers, args.settle)
        log("(b) orchestration overhead")
        base, dure, ctl = bench_overhead(stack, procs, args.members, args.rounds,
                                         args.probe_interval_ms)
        log("(c) apply latency")
        health, save, start_proc, start_api, stop_proc, stop_api = bench_apply(stack, args.runs)
        ok = True
    except BenchError as e:
        log(f"error: {e}")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        interrupted = True
    finally:
        # Servers first: they outlive the agent by design.
        for pid in stack.server_pidfiles():
            procs.adopt(pid)
        procs.kill_all()
        for p in (stack.agent, stack.controller):
            if p is not None:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        # Logs are worth keeping after a failure, not after an interruption.
        failed = not ok and not interrupted
        if failed:
            for role in ("controller", "agent"):
                path = os.path.join(tmp, f"{role}.log")
                if os.path.exists(path):
                    with open(path, errors="replace") as f:
                        tail = f.read()[-3000:]
                    log(f"--- {role}.log (tail) ---\n{tail}")
        if args.keep or failed:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        return 1

    def mb(kb):
        return kb / 1024

    per_member = (dure - base) * 1000 / args.members
    rows = [
        ("agent RSS, idle", f"{mb(idle):.1f} MB", f"< {TARGET_RSS_MB:.0f} MB",
         verdict(mb(idle), TARGET_RSS_MB), ""),
        (f"agent RSS, {args.servers} servers running", f"{mb(loaded):.1f} MB",
         f"< {TARGET_RSS_MB:.0f} MB", verdict(mb(loaded), TARGET_RSS_MB),
         f"+{(loaded - idle) / args.servers:.0f} KB/server"
         + (f"; one demo-app {mb(demo):.1f} MB" if demo else "")),
        (f"cluster start overhead ({args.members} sequential)", f"{per_member:.1f} ms/member",
         f"< {TARGET_OVERHEAD_MS:.0f} ms", verdict(per_member, TARGET_OVERHEAD_MS),
         f"dure/baseline {dure / base:.2f}x (dure {dure * 1000:.0f} ms, controller "
         f"{ctl * 1000:.0f} ms; baseline {base * 1000:.0f} ms)"),
    ]
    for label, value in (("apply start -> process exists", start_proc),
                         ("apply start -> visible in API", start_api),
                         ("apply stop -> process gone", stop_proc),
                         ("apply stop -> visible in API", stop_api)):
        rows.append((label, f"{value * 1000:.1f} ms", f"< {TARGET_APPLY_MS:.0f} ms",
                     verdict(value * 1000, TARGET_APPLY_MS),
                     f"{value / health:.1f}x /v1/health RTT ({health * 1000:.2f} ms); "
                     f"the saving POST itself {save * 1000:.1f} ms"))

    head = ("figure", "value", "target", "result", "ratio / notes")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(head, widths + [0])).rstrip())
    print("  ".join("-" * w for w in widths + [len(head[4])]))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths + [0])).rstrip())
    print(f"\nmedians: RSS of 5 samples; overhead of {args.rounds} rounds "
          f"(probe/poll interval {args.probe_interval_ms} ms); apply of {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
