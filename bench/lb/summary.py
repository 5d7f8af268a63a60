"""Summarizes bench/lb/run.sh's wrk outputs: medians over rounds, ratios
against HAProxy and nginx, failure-run errors and RSS, against the
balancer's targets (throughput >= 1.0x HAProxy, p99 <= 1.0x HAProxy, no
error in either failure run, RSS <= 20 MB)."""

import glob
import os
import re
import statistics
import sys

PROXIES = ["dure", "haproxy", "nginx"]
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse(path):
    text = open(path).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    if not rps or not p99:
        raise SystemExit(f"cannot read wrk output {path}:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    return {
        "rps": float(rps.group(1)),
        "p99": float(p99.group(1)) * UNITS[p99.group(2)],
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket": sum(int(x) for x in sock.groups()) if sock else 0,
        "socket_detail": "connect {}, read {}, write {}, timeout {}".format(*sock.groups()) if sock else "none",
        "requests": int(total.group(1)) if total else 0,
    }


def main(results):
    print()
    print("== throughput and p99 latency (median of rounds) ==")
    print(f"{'conns':>5}  {'proxy':8} {'req/s':>10} {'p99 ms':>8}  {'rps/haproxy':>11} {'rps/nginx':>9}  {'p99/haproxy':>11} {'p99/nginx':>9}")
    verdicts = []
    for conns in (50, 200):
        med = {}
        for proxy in PROXIES:
            runs = [parse(p) for p in sorted(glob.glob(os.path.join(results, f"load-{proxy}-{conns}-*")))]
            med[proxy] = (statistics.median(r["rps"] for r in runs), statistics.median(r["p99"] for r in runs),
                          sum(r["non2xx"] + r["socket"] for r in runs), len(runs))
        for proxy in PROXIES:
            rps, p99, errors, n = med[proxy]
            print(f"{conns:>5}  {proxy:8} {rps:>10.0f} {p99:>8.2f}  {rps / med['haproxy'][0]:>10.2f}x {rps / med['nginx'][0]:>8.2f}x"
                  f"  {p99 / med['haproxy'][1]:>10.2f}x {p99 / med['nginx'][1]:>8.2f}x" + (f"  ({errors} errors)" if errors else ""))
        verdicts.append((f"throughput at {conns} >= 1.0x HAProxy", med["dure"][0] / med["haproxy"][0] >= 1.0,
                         f"{med['dure'][0] / med['haproxy'][0]:.2f}x"))
        verdicts.append((f"p99 at {conns} <= 1.0x HAProxy", med["dure"][1] / med["haproxy"][1] <= 1.0,
                         f"{med['dure'][1] / med['haproxy'][1]:.2f}x"))
    print()
    print("== one backend killed (kill -9) / frozen (SIGSTOP) 1 s into a run at 50 connections ==")
    print(f"{'run':5} {'proxy':8} {'victim':6} {'requests':>9} {'non-2xx':>8} {'socket errors':>14}  {'p99 ms':>8}  detail")
    for kind in ("kill", "stop"):
        for proxy in PROXIES:
            r = parse(os.path.join(results, f"{kind}-{proxy}"))
            victim = open(os.path.join(results, f"{kind}-{proxy}.victim")).read().strip()
            print(f"{kind:5} {proxy:8} {victim:6} {r['requests']:>9} {r['non2xx']:>8} {r['socket']:>14}  {r['p99']:>8.2f}  {r['socket_detail']}")
            if proxy == "dure":
                errors = r["non2xx"] + r["socket"]
                verdicts.append((f"no error under {'kill -9' if kind == 'kill' else 'SIGSTOP'}", errors == 0, f"{errors} errors"))
    print()
    print("== memory after the load (kB; nginx: master + worker) ==")
    print(f"{'proxy':8} {'peak RSS':>9} {'RSS':>9}")
    for proxy in PROXIES:
        hwm, rss = (int(x) for x in open(os.path.join(results, f"rss-{proxy}")).read().split())
        print(f"{proxy:8} {hwm:>9} {rss:>9}")
        if proxy == "dure":
            verdicts.append(("peak RSS <= 20 MB", hwm <= 20 * 1024, f"{hwm / 1024:.1f} MB"))
    print()
    print("== dure lb against its targets ==")
    for what, ok, figure in verdicts:
        print(f"{'met ' if ok else 'MISSED'}  {what}: {figure}")


if __name__ == "__main__":
    main(sys.argv[1])
