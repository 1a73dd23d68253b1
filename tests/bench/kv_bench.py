#!/usr/bin/python3
"""Single-member KV benchmark: the same load, from etcd's own benchmark tool,
against Synod and against Debian's etcd-server, one after the other on this
machine; prints QPS, p99, server CPU per request, peak RSS, and the ratios
against the targets of the foundation issue.

  tests/bench/kv_bench.py [--total N] [--rounds R] [--only synod|etcd] [--json FILE]

Both servers run side by side (idle while the other is loaded); each round
runs every load on one server and then on the other, alternating which goes
first, and the report gives medians over the rounds and the median and range
of the per-round ratios: this machine's speed drifts by tens of percent
within minutes, and runs a few seconds apart are what compare fairly.

Loads (10 connections / 100 clients, 256-byte values, 100k distinct keys):
  put     sequential keys over a 100k key space
  range   serializable reads of one existing key
  put-1   one client, one connection: latency of a single durable write,
          compared with one fdatasync measured on the same disk
  range-1 one client, serializable reads of one key: the client's own
          round trip, which every put-1 latency includes

Server CPU comes from /proc/<pid>/stat (user+system) across each load, and
per thread name from /proc/<pid>/task/*/stat (synod-apply, synod-wal,
synod-grpc, synod-ckpt...); peak RSS is VmHWM at the end. This is a benchmark, not a test: it asserts
nothing, it reports.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from statistics import median

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SYNOD = os.environ.get("SYNOD_BIN", os.path.join(ROOT, "build", "bin", "synod"))
ETCD = "/usr/bin/etcd"
BENCH = os.environ.get("ETCD_BENCHMARK", os.path.join(ROOT, "..", "shared", "tools", "etcd-benchmark"))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def thread_cpu_seconds(pid):
    """CPU seconds per thread name (threads of one name added up)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                text = f.read()
        except OSError:
            continue  # the thread ended
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return out


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def fdatasync_us(directory, n=500):
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"\0" * (1 << 20))
    os.fsync(fd)
    t = time.perf_counter()
    for i in range(n):
        os.pwrite(fd, b"x" * 300, (i * 512) % (1 << 20))
        os.fdatasync(fd)
    us = (time.perf_counter() - t) / n * 1e6
    os.close(fd)
    os.unlink(path)
    return us


def parse(out):
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["qps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Average:\s+([\d.]+) secs", out)
    r["avg_ms"] = float(m.group(1)) * 1000 if m else 0.0
    m = re.search(r"99% in ([\d.]+) secs", out)
    r["p99_ms"] = float(m.group(1)) * 1000 if m else 0.0
    return r


class Server:
    def __init__(self, kind, workdir):
        self.kind = kind
        self.workdir = workdir
        self.port, self.peer = free_port(), free_port()
        self.data = os.path.join(workdir, kind + ".data")
        binary = SYNOD if kind == "synod" else ETCD
        client = "http://127.0.0.1:%d" % self.port
        peer = "http://127.0.0.1:%d" % self.peer
        self.args = [binary, "--data-dir", self.data, "--listen-client-urls", client,
                     "--advertise-client-urls", client, "--listen-peer-urls", peer,
                     "--initial-advertise-peer-urls", peer, "--initial-cluster", "default=" + peer,
                     "--log-level", "error"]
        self.restart()

    def restart(self, wait=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        self.log = open(os.path.join(self.workdir, self.kind + ".log"), "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if not wait:
            return
        deadline = time.time() + 600
        while time.time() < deadline:
            if subprocess.run(["etcdctl", "--endpoints", self.endpoint, "endpoint", "health"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.01)
        raise RuntimeError(self.kind + " did not start")

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


def run_load(server, name, args, total):
    before = cpu_seconds(server.proc.pid)
    threads_before = thread_cpu_seconds(server.proc.pid)
    out = subprocess.run([BENCH, "--endpoints", server.endpoint] + args, capture_output=True, text=True,
                         timeout=1800)
    cpu = cpu_seconds(server.proc.pid) - before
    threads = thread_cpu_seconds(server.proc.pid)
    if out.returncode != 0:
        raise RuntimeError("%s failed on %s:\n%s" % (name, server.kind, out.stderr[-2000:]))
    r = parse(out.stdout + out.stderr)
    r["cpu_us_per_req"] = cpu / total * 1e6
    r["thread_cpu_us_per_req"] = {
        n: (v - threads_before.get(n, 0.0)) / total * 1e6 for n, v in threads.items()
        if v - threads_before.get(n, 0.0) > 0}
    sys.stderr.write("  %-6s %-6s %9.0f req/s  p99 %7.2f ms  avg %6.3f ms  cpu %6.1f us/req\n" % (
        server.kind, name, r["qps"], r["p99_ms"], r["avg_ms"], r["cpu_us_per_req"]))
    busiest = sorted(r["thread_cpu_us_per_req"].items(), key=lambda kv: -kv[1])[:6]
    sys.stderr.write("         threads, us/req: %s\n" % ", ".join("%s %.1f" % kv for kv in busiest))
    return r


LOADS = ["put", "range", "put1", "range1"]


def load_args(load, total):
    many = ["--conns", "10", "--clients", "100"]
    if load == "put":
        return total, many + ["put", "--key-size", "8", "--sequential-keys", "--key-space-size", "100000",
                              "--total", str(total), "--val-size", "256"]
    if load == "range":
        return 2 * total, many + ["range", "bench-range-key", "--consistency", "s", "--total", str(2 * total)]
    one = max(1000, total // 50)
    if load == "range1":
        return one, ["--conns", "1", "--clients", "1", "range", "bench-range-key", "--consistency", "s",
                     "--total", str(one)]
    return one, ["--conns", "1", "--clients", "1", "put", "--key-size", "8", "--sequential-keys",
                 "--key-space-size", "100000", "--total", str(one), "--val-size", "256"]


def run_round(servers, r, total, results):
    """One round: every load on every server, the servers back to back per
    load (their order alternating between rounds), so that each ratio
    compares two runs made a few seconds apart on this shared machine."""
    order = list(servers) if r % 2 == 0 else list(reversed(servers))
    for load in LOADS:
        n, args = load_args(load, total)
        for kind in order:
            x = run_load(servers[kind], {"put1": "put-1", "range1": "range-1"}.get(load, load), args, n)
            if load in ("put1", "range1"):
                x["avg_ms"] = 1000.0 / x["qps"]  # one client: exact, unlike the tool's 0.1 ms rounding
            results[kind][load].append(x)


def report(results, fsync):
    s, e = results["synod"], results["etcd"]
    rows = [("put QPS", "put", "qps", ">= 1.3"), ("put p99 ms", "put", "p99_ms", ""),
            ("put server CPU us/req", "put", "cpu_us_per_req", "<= 0.5"),
            ("range QPS", "range", "qps", ">= 1.5"), ("range p99 ms", "range", "p99_ms", ""),
            ("range server CPU us/req", "range", "cpu_us_per_req", "<= 0.33"),
            ("1-client put avg ms", "put1", "avg_ms", ""),
            ("1-client read avg ms", "range1", "avg_ms", "")]
    print("%-26s %10s %10s %8s %14s  %s" % ("medians over rounds", "synod", "etcd", "ratio", "ratio range", "target"))
    for name, load, key, target in rows:
        sv = [x[key] for x in s[load]]
        ev = [x[key] for x in e[load]]
        ratios = [a / b for a, b in zip(sv, ev) if b]
        print("%-26s %10.2f %10.2f %8.2f %6.2f - %-5.2f  %s" % (name, median(sv), median(ev), median(ratios),
                                                                min(ratios), max(ratios), target))
    rss = results["synod"]["peak_rss_mb"] / results["etcd"]["peak_rss_mb"]
    print("%-26s %10.2f %10.2f %8.2f %14s  %s" % ("peak RSS MB", results["synod"]["peak_rss_mb"],
                                                  results["etcd"]["peak_rss_mb"], rss, "", "<= 0.33"))
    lat = [x["avg_ms"] * 1000 / fsync for x in s["put1"]]
    print("1-client put latency = %.2f x one fdatasync (%.0f us; rounds %.2f-%.2f); target <= 2" % (
        median(lat), fsync, min(lat), max(lat)))
    # What a put adds to the client's round trip: the same client's
    # serializable read of one key measures the round trip itself.
    extra = [(p["avg_ms"] - r["avg_ms"]) * 1000 / fsync for p, r in zip(s["put1"], s["range1"])]
    floor = [r["avg_ms"] * 1000 / fsync for r in s["range1"]]
    print("  of which the client's round trip (1-client read) = %.2f x; the put's own time = %.2f x one fdatasync" % (
        median(floor), median(extra)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["synod", "etcd"])
    ap.add_argument("--json")
    ap.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench"))
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="kv-", dir=a.workdir)
    kinds = [k for k in ["etcd", "synod"] if not a.only or k == a.only]
    servers = {}
    results = {"fdatasync_us": 0.0}
    try:
        results["fdatasync_us"] = fsync = fdatasync_us(work)
        sys.stderr.write("fdatasync on this disk: %.0f us\n" % fsync)
        for kind in kinds:
            servers[kind] = Server(kind, work)
            subprocess.run(["etcdctl", "--endpoints", servers[kind].endpoint, "put", "bench-range-key", "v" * 256],
                           check=True, capture_output=True)
            results[kind] = {load: [] for load in LOADS}
        for r in range(a.rounds):
            sys.stderr.write("round %d of %d\n" % (r + 1, a.rounds))
            run_round(servers, r, a.total, results)
        for kind in kinds:
            results[kind]["peak_rss_mb"] = peak_rss_mb(servers[kind].proc.pid)
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)

    if len(kinds) == 2:
        report(results, results["fdatasync_us"])
    else:
        print(json.dumps(results, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
