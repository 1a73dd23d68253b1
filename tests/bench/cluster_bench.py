#!/usr/bin/python3
"""Three-member cluster benchmark: Synod against Debian's etcd, each as three
members on loopback, both clusters up side by side (one idle while the
other is loaded); the loads alternate between them round by round and the
report gives medians and the range of the per-round ratios.

  tests/bench/cluster_bench.py [--total N] [--rounds R] [--kills K] [--only synod|etcd]
                               [--skip failover] [--skip restart]

Loads (etcd's benchmark tool, 10 connections / 100 clients, 256-byte values,
100k distinct keys), sent to all three members:
  put            QPS, p99, server CPU per request summed over the members
  range          linearizable reads of one key: the same
  failover       kill -9 of the leader (default timers) until a write succeeds
                 again through the survivors; median of several kills
  restart        a member restarted on a data dir holding N keys (Synod 1M,
                 etcd 100k, as the issue compares) until it answers a
                 linearizable read
A benchmark, not a test: it reports, it asserts nothing."""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kv_bench import BENCH, ETCD, ROOT, SYNOD, cpu_seconds, free_port, parse  # noqa: E402
from restart_bench import ready_after  # noqa: E402


class Cluster:
    def __init__(self, kind, workdir, size=3):
        self.kind, self.workdir = kind, workdir
        self.ports = [(free_port(), free_port()) for _ in range(size)]
        self.names = ["b%d" % i for i in range(size)]
        self.initial = ",".join("%s=http://127.0.0.1:%d" % (n, p) for n, (_, p) in zip(self.names, self.ports))
        self.procs = [None] * size

    def endpoint(self, i):
        return "127.0.0.1:%d" % self.ports[i][0]

    @property
    def endpoints(self):
        return ",".join(self.endpoint(i) for i in range(len(self.names)) if self.procs[i] and self.procs[i].poll() is None)

    def start_member(self, i, state="new"):
        binary = SYNOD if self.kind == "synod" else ETCD
        c, p = self.ports[i]
        args = [binary, "--name", self.names[i], "--data-dir", os.path.join(self.workdir, self.names[i]),
                "--listen-client-urls", "http://127.0.0.1:%d" % c, "--advertise-client-urls", "http://127.0.0.1:%d" % c,
                "--listen-peer-urls", "http://127.0.0.1:%d" % p, "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % p,
                "--initial-cluster", self.initial, "--initial-cluster-state", state, "--log-level", os.environ.get("BENCH_LOG_LEVEL", "error")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        log = open(os.path.join(self.workdir, "%s-%s.log" % (self.kind, self.names[i])), "ab")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def wait_ready(self, i, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run(["etcdctl", "--endpoints", self.endpoint(i), "--command-timeout", "2s", "get", "x"],
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.02)
        raise RuntimeError("member %d not ready" % i)

    def start(self):
        for i in range(len(self.names)):
            self.start_member(i)
        for i in range(len(self.names)):
            self.wait_ready(i)

    def leader(self):
        r = subprocess.run(["etcdctl", "--endpoints", self.endpoints, "endpoint", "status", "-w", "json"],
                           capture_output=True, text=True)
        for s in json.loads(r.stdout or "[]"):
            st = s["Status"]
            if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                return [self.endpoint(i) for i in range(len(self.names))].index(s["Endpoint"])
        return None

    def cpu(self):
        return sum(cpu_seconds(p.pid) for p in self.procs if p and p.poll() is None)

    def signal(self, sig):
        for p in self.procs:
            if p and p.poll() is None:
                p.send_signal(sig)

    def stop(self):
        self.signal(signal.SIGCONT)  # a paused member could not act on SIGTERM
        for p in self.procs:
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)


def load(c, name, args, total):
    before = c.cpu()
    out = subprocess.run([BENCH, "--endpoints", c.endpoints] + args, capture_output=True, text=True, timeout=3600)
    cpu = c.cpu() - before
    if out.returncode != 0:
        raise RuntimeError("%s failed on %s:\n%s" % (name, c.kind, out.stderr[-2000:]))
    r = parse(out.stdout + out.stderr)
    r["cpu_us_per_req"] = cpu / total * 1e6
    sys.stderr.write("  %-6s %-6s %9.0f req/s  p99 %7.2f ms  cpu(sum) %6.1f us/req\n" % (
        c.kind, name, r["qps"], r["p99_ms"], r["cpu_us_per_req"]))
    return r


def failover(c, rounds):
    times = []
    for _ in range(rounds):
        lead = c.leader()
        if lead is None:
            time.sleep(1)
            continue
        c.procs[lead].send_signal(signal.SIGKILL)
        c.procs[lead].wait()
        t0 = time.time()
        others = [c.endpoint(i) for i in range(len(c.names)) if i != lead]
        ok = False
        while time.time() - t0 < 30 and not ok:
            for ep in others:
                r = subprocess.run(["etcdctl", "--endpoints", ep, "--command-timeout", "300ms", "--dial-timeout", "300ms",
                                    "put", "failover", "x"], capture_output=True)
                if r.returncode == 0:
                    ok = True
                    break
        times.append(time.time() - t0)
        c.start_member(lead)
        c.wait_ready(lead)
        time.sleep(2)
    med = statistics.median(times)
    sys.stderr.write("  %-6s failover: %s s (median %.2f)\n" % (c.kind, ", ".join("%.2f" % t for t in times), med))
    return {"times": times, "median": med}


def restart_time(c, keys):
    """Fills the cluster to `keys` keys, then restarts one follower and
    times it until it serves a linearizable read."""
    load(c, "fill", ["--conns", "10", "--clients", "100", "put", "--key-size", "8", "--sequential-keys",
                     "--key-space-size", str(keys), "--total", str(keys), "--val-size", "256"], keys)
    lead = c.leader()
    i = (lead + 1) % len(c.names)
    c.procs[i].send_signal(signal.SIGTERM)
    c.procs[i].wait()
    t0 = time.time()
    c.start_member(i)
    took = ready_after(c.endpoint(i), t0)
    sys.stderr.write("  %-6s restart with %d keys: %.2f s\n" % (c.kind, keys, took))
    return {"keys": keys, "seconds": took}


def load_rounds(clusters, total, rounds):
    """put and linearizable range on both clusters, round by round, the two
    clusters back to back per load (order alternating): this machine's
    speed drifts by tens of percent within minutes, and runs a few seconds
    apart are what compare fairly. Returns per kind and load the list of
    round results."""
    many = ["--conns", "10", "--clients", "100"]
    loads = [("put", many + ["put", "--key-size", "8", "--sequential-keys", "--key-space-size", "100000",
                             "--total", str(total), "--val-size", "256"]),
             ("range", many + ["range", "bench-range-key", "--consistency", "l", "--total", str(total)])]
    for c in clusters.values():
        subprocess.run(["etcdctl", "--endpoints", c.endpoints, "put", "bench-range-key", "v" * 256], check=True,
                       capture_output=True)
    out = {kind: {name: [] for name, _ in loads} for kind in clusters}
    kinds = list(clusters)
    for r in range(rounds):
        order = kinds if r % 2 == 0 else list(reversed(kinds))
        for name, args in loads:
            for kind in order:
                out[kind][name].append(load(clusters[kind], name, args, total))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3, help="load rounds per cluster")
    ap.add_argument("--kills", type=int, default=5, help="leader kills for failover")
    ap.add_argument("--only", choices=["synod", "etcd"])
    ap.add_argument("--skip", action="append", default=[], choices=["failover", "restart"])
    ap.add_argument("--json")
    a = ap.parse_args()
    os.makedirs(os.path.join(ROOT, "build", "bench"), exist_ok=True)
    kinds = [k for k in ["etcd", "synod"] if not a.only or a.only == k]
    clusters, works, results = {}, [], {k: {} for k in kinds}
    try:
        for kind in kinds:
            works.append(tempfile.mkdtemp(prefix="cl-", dir=os.path.join(ROOT, "build", "bench")))
            clusters[kind] = Cluster(kind, works[-1])
            clusters[kind].start()
        rounds = load_rounds(clusters, a.total, a.rounds)
        for kind in kinds:
            results[kind]["rounds"] = rounds[kind]
        # Failover and restart kill members: one cluster at a time, the
        # other paused (SIGSTOP) so that it takes no CPU meanwhile.
        for kind in kinds:
            for other in kinds:
                if other != kind:
                    clusters[other].signal(signal.SIGSTOP)
            c = clusters[kind]
            if "failover" not in a.skip:
                results[kind]["failover"] = failover(c, a.kills)
            if "restart" not in a.skip:
                results[kind]["restart"] = restart_time(c, 1000000 if kind == "synod" else 100000)
            c.stop()
            for other in kinds:
                if other != kind:
                    clusters[other].signal(signal.SIGCONT)
    finally:
        for c in clusters.values():
            c.stop()
        for w in works:
            shutil.rmtree(w, ignore_errors=True)
    if len(kinds) == 2:
        s, e = results["synod"], results["etcd"]
        print("%-34s %10s %10s %8s %14s  %s" % ("medians over rounds", "synod", "etcd", "ratio", "ratio range",
                                                "target"))
        for name, load_name, key, target in [
                ("put QPS", "put", "qps", ">= 1.5"),
                ("put CPU us/req (sum of members)", "put", "cpu_us_per_req", "<= 0.5"),
                ("put p99 ms", "put", "p99_ms", ""),
                ("linearizable range QPS", "range", "qps", ">= 1.5"),
                ("range CPU us/req (sum)", "range", "cpu_us_per_req", "<= 0.5")]:
            sv = [x[key] for x in s["rounds"][load_name]]
            ev = [x[key] for x in e["rounds"][load_name]]
            ratios = [x / y for x, y in zip(sv, ev) if y]
            med = statistics.median
            print("%-34s %10.2f %10.2f %8.2f %6.2f - %-5.2f  %s" % (name, med(sv), med(ev), med(ratios),
                                                                    min(ratios), max(ratios), target))
        if "failover" in s and "failover" in e:
            print("%-34s %10.2f %10.2f %8.2f %14s  %s" % ("failover median s", s["failover"]["median"],
                                                          e["failover"]["median"],
                                                          s["failover"]["median"] / e["failover"]["median"], "",
                                                          "<= 1"))
        if "restart" in s and "restart" in e:
            print("restart: synod %d keys %.2f s; etcd %d keys %.2f s (target: synod faster)" % (
                s["restart"]["keys"], s["restart"]["seconds"], e["restart"]["keys"], e["restart"]["seconds"]))
    else:
        print(json.dumps(results, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
