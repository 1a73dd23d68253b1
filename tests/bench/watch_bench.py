#!/usr/bin/python3
"""Watch benchmark: the same loads, from etcd's own benchmark tool, against
Synod and against Debian's etcd-server, one after the other on this machine;
prints events/s, p99 latency, server CPU per event, and the memory of idle
watchers, with the ratios Synod/etcd.

  tests/bench/watch_bench.py [--puts N] [--rounds R] [--idle N] [--only synod|etcd] [--json FILE]

Loads:
  watch          10 streams x 100 watchers on one key (etcd's defaults), N puts
                 from 10 connections / 100 clients: every put is 1000 events
  watch-latency  10 watchers, 2000 puts at 200/s: time from a put's reply to
                 the event (p99)
  idle           --idle watchers (default 100k) on distinct keys over 100
                 streams, created by a raw gRPC client; the server's resident
                 memory before and after, per watcher

Both servers run side by side (one idle while the other is loaded); each
round runs every load on both, alternating which goes first, and the report
gives the medians over the rounds and the median and range of the per-round
ratios. Server CPU comes from /proc/<pid>/stat across each load. This is a
benchmark, not a test: it asserts nothing, it reports.
"""

import argparse
import json
import os
import sys
import threading
import time
from statistics import median

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "interop"))
sys.path.insert(0, HERE)

from kv_bench import BENCH, Server, cpu_seconds, parse  # noqa: E402
import subprocess  # noqa: E402


def rss_kb(pid, field="VmRSS:"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def run_tool(server, args, events):
    before = cpu_seconds(server.proc.pid)
    t = time.time()
    out = subprocess.run([BENCH, "--endpoints", server.endpoint] + args, capture_output=True, text=True,
                         timeout=1800)
    wall = time.time() - t
    cpu = cpu_seconds(server.proc.pid) - before
    if out.returncode != 0:
        raise RuntimeError("%s failed on %s:\n%s" % (args, server.kind, out.stderr[-2000:]))
    text = out.stdout + out.stderr
    # `watch` prints two summaries (creation, then events): keep the events one
    if "Watch events received summary" in text:
        text = text.split("Watch events received summary")[1]
    r = parse(text)
    r["cpu_s"] = cpu
    r["cpu_us_per_event"] = cpu / events * 1e6 if events else 0.0
    r["wall_s"] = wall
    return r


def idle_watchers(server, n, streams=100):
    """Creates n watchers on distinct keys; returns bytes of server memory each."""
    from harness import Member  # noqa: F401 (grpc, etcd3 paths)
    from watchclient import RawWatch

    class Ep:
        endpoint = server.endpoint

        def channel(self):
            import grpc
            return grpc.insecure_channel(server.endpoint)
    time.sleep(1)
    base, base_anon = rss_kb(server.proc.pid), rss_kb(server.proc.pid, "RssAnon:")
    ws = [RawWatch(Ep()) for _ in range(streams)]
    per = n // streams

    def fill(i, w):
        for j in range(per):
            w.create(b"idle/%03d/%06d" % (i, j))
        for j in range(per):
            w.next(timeout=120)
    ts = [threading.Thread(target=fill, args=(i, w)) for i, w in enumerate(ws)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    time.sleep(2)
    after, after_anon = rss_kb(server.proc.pid), rss_kb(server.proc.pid, "RssAnon:")
    res = {"watchers": per * streams, "rss_before_mb": base / 1024.0, "rss_after_mb": after / 1024.0,
           "bytes_per_watcher": (after - base) * 1024.0 / (per * streams),
           "anon_bytes_per_watcher": (after_anon - base_anon) * 1024.0 / (per * streams)}
    for w in ws:
        w.close()
    return res


LOADS = ("watch", "watch_latency")


def run_round(servers, r, puts, results):
    """One round: each load on each server, back to back (the servers'
    order alternating between rounds), so that each ratio compares two runs
    made a second apart; this machine's speed drifts by tens of percent
    within minutes, and one run of `watch` lasts about one second."""
    order = list(servers) if r % 2 == 0 else list(reversed(servers))
    for load in LOADS:
        for kind in order:
            if load == "watch":
                x = run_tool(servers[kind], ["--conns", "10", "--clients", "100", "watch", "--streams", "10",
                                             "--watch-per-stream", "100", "--put-total", str(puts),
                                             "--put-rate", "1000000"], puts * 1000)
            else:
                x = run_tool(servers[kind], ["--conns", "10", "--clients", "10", "watch-latency", "--total", "2000",
                                             "--put-rate", "200"], 2000 * 10)
            results[kind][load].append(x)
    for kind in order:
        w, lat = results[kind]["watch"][-1], results[kind]["watch_latency"][-1]
        sys.stderr.write("  round %d %-6s watch %9.0f events/s  cpu %5.2f us/event | latency p99 %6.2f ms\n" % (
            r + 1, kind, w["qps"], w["cpu_us_per_event"], lat["p99_ms"]))


def report(results, kinds):
    rows = [("events/s", "watch", "qps", ">= 1"), ("server CPU us/event", "watch", "cpu_us_per_event", "<= 0.5"),
            ("watch-latency p99 ms", "watch_latency", "p99_ms", "")]
    out = {}
    print("%-24s %10s %10s %8s %14s  %s" % ("medians over rounds", "synod", "etcd", "ratio", "ratio range", "target"))
    for name, load, key, target in rows:
        sv = [x[key] for x in results["synod"][load]]
        ev = [x[key] for x in results["etcd"][load]]
        ratios = [a / b for a, b in zip(sv, ev) if b]
        out[name] = {"synod": median(sv), "etcd": median(ev), "ratio": median(ratios),
                     "ratio_min": min(ratios), "ratio_max": max(ratios)}
        print("%-24s %10.2f %10.2f %8.2f %6.2f - %-5.2f  %s" % (name, median(sv), median(ev), median(ratios),
                                                              min(ratios), max(ratios), target))
    if "idle" in results["synod"]:
        s, e = results["synod"]["idle"], results["etcd"]["idle"]
        out["bytes per idle watcher"] = {"synod": s["bytes_per_watcher"], "etcd": e["bytes_per_watcher"],
                                         "ratio": s["bytes_per_watcher"] / max(e["bytes_per_watcher"], 1e-9)}
        print("%-24s %10.0f %10.0f %8.2f %14s  %s" % ("bytes per idle watcher", s["bytes_per_watcher"],
                                                      e["bytes_per_watcher"], out["bytes per idle watcher"]["ratio"],
                                                      "", "flat"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--puts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--idle", type=int, default=100000)
    ap.add_argument("--only", choices=["synod", "etcd"])
    ap.add_argument("--json")
    a = ap.parse_args()
    import tempfile
    import shutil
    work = tempfile.mkdtemp(prefix="synod-watch-bench-")
    kinds = [k for k in ("synod", "etcd") if not a.only or k == a.only]
    servers, results = {}, {}
    try:
        for kind in kinds:
            servers[kind] = Server(kind, work)
            results[kind] = {load: [] for load in LOADS}
        for r in range(a.rounds):
            run_round(servers, r, a.puts, results)
        if a.idle:  # on fresh servers, so the baseline is a server at rest
            idle_dir = os.path.join(work, "idle")
            os.makedirs(idle_dir)
            for kind in kinds:
                servers.pop(kind).stop()
                servers[kind] = Server(kind, idle_dir)
                results[kind]["idle"] = idle_watchers(servers[kind], a.idle)
                sys.stderr.write("  %-6s idle %.0f B/watcher\n" % (kind, results[kind]["idle"]["bytes_per_watcher"]))
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    if len(kinds) == 2:
        results["summary"] = report(results, kinds)
    else:
        print(json.dumps(results, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
