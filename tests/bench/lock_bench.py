#!/usr/bin/python3
"""Lock benchmark, single member: the same loads against Synod and against
Debian's etcd-server, one after the other on this machine.

  tests/bench/lock_bench.py [--seconds S] [--stm-total N] [--only synod|etcd] [--json FILE]

Loads:
  stm lock-rpc  etcd's benchmark tool: `stm --stm-locker=lock-rpc`, each STM
                transaction wrapped in a Lock/Unlock of one lock through
                the v3lockpb RPC (10 connections, 10 clients, 1 key)
  hand-over     N contenders (tests/bench/go/lockbench, etcd's Go stubs from
                Debian's clientv3, one connection and lease each) take one
                lock over and over for --seconds with an empty critical
                section: acquisitions per second, and hand-over latency
                (from the holder sending Unlock to the next holder having
                its grant) p50/p99; N = 10 (the issue's target: 5x etcd) and
                N = 1, 100; then N = 10 through clientv3's Mutex recipe
                (KV + watch + lease, what etcdctl lock does) for reference

Server CPU comes from /proc/<pid>/stat. This is a benchmark, not a test: it
asserts nothing, it reports.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kv_bench  # noqa: E402  (Server, cpu_seconds, the etcd benchmark tool's path)

BENCH = kv_bench.BENCH
if not os.path.exists(BENCH):
    BENCH = os.path.expanduser("~/.cache/synod-tools/bin/etcd-benchmark")


def build_lockbench(workdir):
    out = os.path.join(workdir, "lockbench")
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off", GOFLAGS="",
               GOCACHE=os.path.join(workdir, "gocache"), CGO_ENABLED="0")
    subprocess.run(["go", "build", "-o", out, "."], cwd=os.path.join(HERE, "go", "lockbench"), env=env,
                   check=True)
    return out


def stm(server, total):
    before = kv_bench.cpu_seconds(server.proc.pid)
    out = subprocess.run([BENCH, "--endpoints", server.endpoint, "--conns", "10", "--clients", "10",
                          "stm", "--stm-locker=lock-rpc", "--keys", "1", "--total", str(total)],
                         capture_output=True, text=True, timeout=1800)
    cpu = kv_bench.cpu_seconds(server.proc.pid) - before
    if out.returncode != 0:
        raise RuntimeError("stm failed on %s:\n%s" % (server.kind, out.stderr[-2000:]))
    r = kv_bench.parse(out.stdout + out.stderr)
    r["cpu_us_per_txn"] = cpu / total * 1e6
    sys.stderr.write("  %-6s stm lock-rpc   %8.0f txn/s  avg %7.2f ms  p99 %7.2f ms  cpu %6.0f us/txn\n" % (
        server.kind, r["qps"], r["avg_ms"], r["p99_ms"], r["cpu_us_per_txn"]))
    return r


def handover(server, tool, n, seconds, mode="rpc"):
    before = kv_bench.cpu_seconds(server.proc.pid)
    out = subprocess.run([tool, "-endpoints", server.endpoint, "-contenders", str(n), "-duration",
                          "%ds" % seconds, "-mode", mode, "-name", "bench-%s-%d" % (mode, n)],
                         capture_output=True, text=True, timeout=seconds + 120)
    cpu = kv_bench.cpu_seconds(server.proc.pid) - before
    if out.returncode != 0:
        raise RuntimeError("lockbench failed on %s:\n%s" % (server.kind, out.stderr[-2000:]))
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["cpu_us_per_acq"] = cpu / max(r["acquisitions"], 1) * 1e6
    sys.stderr.write("  %-6s %-6s N=%-4d %8.0f acq/s  hand-over p50 %6.2f ms  p99 %6.2f ms  cpu %5.0f us/acq\n" % (
        server.kind, mode, n, r["per_sec"], r["handover_p50_ms"], r["handover_p99_ms"], r["cpu_us_per_acq"]))
    return r


def bench(kind, workdir, tool, seconds, stm_total):
    s = kv_bench.Server(kind, workdir)
    try:
        res = {"stm": stm(s, stm_total)}
        for n in (10, 1, 100):
            res["rpc%d" % n] = handover(s, tool, n, seconds)
        res["recipe10"] = handover(s, tool, 10, seconds, "recipe")
        return res
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--stm-total", type=int, default=5000)
    ap.add_argument("--only", choices=["synod", "etcd"])
    ap.add_argument("--json")
    a = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="synod-lockbench-")
    try:
        tool = build_lockbench(workdir)
        sys.stderr.write("fdatasync on this disk: %.0f us\n" % kv_bench.fdatasync_us(workdir))
        results = {}
        for kind in ("synod", "etcd"):
            if a.only and a.only != kind:
                continue
            sys.stderr.write("%s:\n" % kind)
            results[kind] = bench(kind, workdir, tool, a.seconds, a.stm_total)
        if len(results) == 2:
            s, e = results["synod"], results["etcd"]
            sys.stderr.write("ratios (synod / etcd):\n")
            sys.stderr.write("  stm lock-rpc txn/s         %5.1fx\n" % (s["stm"]["qps"] / e["stm"]["qps"]))
            for k in ("rpc10", "rpc1", "rpc100", "recipe10"):
                sys.stderr.write("  %-9s acq/s             %5.1fx  (target for rpc10: 5x)\n" % (
                    k, s[k]["per_sec"] / e[k]["per_sec"]))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
