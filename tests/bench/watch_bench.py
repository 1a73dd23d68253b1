#!/usr/bin/python3
"""Watch benchmark: the same loads, from etcd's own benchmark tool, against
Synod and against Debian's etcd-server, one after the other on this machine;
prints events/s, p99 latency, server CPU per event, and the memory of idle
watchers, with the ratios Synod/etcd.

  tests/bench/watch_bench.py [--puts N] [--idle N] [--only synod|etcd] [--json FILE]

Loads:
  watch          10 streams x 100 watchers on one key (etcd's defaults), N puts
                 from 10 connections / 100 clients: every put is 1000 events
  watch-latency  10 watchers, 2000 puts at 200/s: time from a put's reply to
                 the event (p99)
  idle           --idle watchers (default 100k) on distinct keys over 100
                 streams, created by a raw gRPC client; the server's resident
                 memory before and after, per watcher

Server CPU comes from /proc/<pid>/stat across each load. This is a
benchmark, not a test: it asserts nothing, it reports.
"""

import argparse
import json
import os
import sys
import threading
import time

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


def bench(kind, workdir, puts, idle):
    s = Server(kind, workdir)
    try:
        res = {}
        events = puts * 1000
        res["watch"] = run_tool(s, ["--conns", "10", "--clients", "100", "watch", "--streams", "10",
                                    "--watch-per-stream", "100", "--put-total", str(puts),
                                    "--put-rate", "1000000"], events)
        res["watch_latency"] = run_tool(s, ["--conns", "10", "--clients", "10", "watch-latency", "--total", "2000",
                                            "--put-rate", "200"], 2000 * 10)
        if idle:
            res["idle"] = idle_watchers(s, idle)
        sys.stderr.write("  %-6s watch %9.0f events/s  cpu %6.2f us/event | latency p99 %6.2f ms | idle %s\n" % (
            kind, res["watch"]["qps"], res["watch"]["cpu_us_per_event"], res["watch_latency"]["p99_ms"],
            "%.0f B/watcher" % res["idle"]["bytes_per_watcher"] if idle else "-"))
        return res
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--puts", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=100000)
    ap.add_argument("--only", choices=["synod", "etcd"])
    ap.add_argument("--json")
    a = ap.parse_args()
    import tempfile
    import shutil
    work = tempfile.mkdtemp(prefix="synod-watch-bench-")
    out = {}
    try:
        for kind in ("synod", "etcd"):
            if a.only and a.only != kind:
                continue
            out[kind] = bench(kind, work, a.puts, a.idle)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "synod" in out and "etcd" in out:
        s, e = out["synod"], out["etcd"]
        out["ratios"] = {
            "events_per_s": s["watch"]["qps"] / max(e["watch"]["qps"], 1e-9),
            "cpu_per_event": s["watch"]["cpu_us_per_event"] / max(e["watch"]["cpu_us_per_event"], 1e-9),
            "latency_p99": s["watch_latency"]["p99_ms"] / max(e["watch_latency"]["p99_ms"], 1e-9),
        }
        if a.idle:
            out["ratios"]["bytes_per_idle_watcher"] = (s["idle"]["bytes_per_watcher"] /
                                                      max(e["idle"]["bytes_per_watcher"], 1e-9))
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
