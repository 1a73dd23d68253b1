#!/usr/bin/python3
"""Single-member lease benchmark: the same loads against Synod and against
Debian's etcd-server, one after the other on this machine; prints
throughput, p99, server CPU per keep-alive, memory per lease, and the ratios
against the targets of issue 5.

  tests/bench/lease_bench.py [--total N] [--rounds N] [--leases N] [--only synod|etcd] [--json FILE]

Loads:
  lease-keepalive  etcd's benchmark tool, 10 connections / 100 clients: each
                   client grants a lease, then renews it with KeepAliveOnce
                   (a new stream per renewal), --total renewals in all;
                   --rounds rounds alternating between the servers, the
                   median round (by server CPU per renewal) reported
  bytes per lease  --leases leases (100k) granted over gRPC; the server's
                   resident memory before and after, divided by the count,
                   split into heap and mapped store files (file pages grow
                   with the write churn of the grants, not only the data)
  steady renewals  with those leases alive, 10k of them renewed every TTL/3
                   (TTL 30 s: 1,000 renewals a second on 10 streams, the
                   issue's "10k clients every TTL/3"): server CPU, as a
                   share of one core, over 20 s
  mass expiry      10k leases (one key each) expiring at once: how long the
                   revocations take (both servers revoke 1,000 a second), how
                   late the last one is, and put latency meanwhile (and just
                   before, as the baseline: the disk is shared and noisy)

Server CPU comes from /proc/<pid>/stat (user+system). This is a benchmark,
not a test: it asserts nothing, it reports.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, "/usr/lib/python3/dist-packages")
import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kv_bench  # noqa: E402  (Server, run_load, cpu_seconds: the same harness as the KV benchmark)

BENCH = kv_bench.BENCH


def rss(pid):
    """Resident bytes: total, anonymous (heap) and file-backed (mapped
    store files: LMDB's map for Synod, bbolt's for etcd)."""
    r = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                r[k] = int(v.split()[0]) * 1024
    return r


def grant_many(stub, n, ttl, window=2000):
    """Grants n leases, `window` requests in flight; returns their IDs."""
    ids = []
    for start in range(0, n, window):
        futs = [stub.LeaseGrant.future(rpc_pb2.LeaseGrantRequest(TTL=ttl)) for _ in range(min(window, n - start))]
        ids.extend(f.result().ID for f in futs)
    return ids


def bytes_per_lease(server, n):
    ch = grpc.insecure_channel(server.endpoint)
    stub = rpc_pb2_grpc.LeaseStub(ch)
    # Warm up with the same concurrency first: gRPC's per-call memory and the
    # allocator's arenas reach their high-water mark here, not in the count.
    grant_many(stub, 20000, 3600)
    time.sleep(1)
    before = rss(server.proc.pid)
    t = time.time()
    ids = grant_many(stub, n, 3600)
    took = time.time() - t
    time.sleep(2)  # let checkpoints and background work settle
    after = rss(server.proc.pid)
    per = {k: (after[k] - before[k]) / float(n) for k in before}
    sys.stderr.write("  %-6s %d leases granted in %.1f s (%.0f/s); per lease: RSS +%.0f B (heap %.0f, mapped files %.0f)\n" % (
        server.kind, n, took, n / took, per["VmRSS"], per["RssAnon"], per["RssFile"]))
    return ch, stub, ids, {"bytes_per_lease": per["VmRSS"], "heap_bytes_per_lease": per["RssAnon"],
                           "file_bytes_per_lease": per["RssFile"], "grant_per_s": n / took,
                           "rss_mb": after["VmRSS"] / 1e6}


def steady_renewals(server, stub, ids, streams=10, rate=1000, seconds=20):
    """rate renewals a second over `streams` keep-alive streams, cycling
    through ids; returns the server's CPU share of one core."""
    stop = threading.Event()
    answered = [0] * streams
    per_stream = rate / float(streams)

    def requests(k):
        mine = ids[k::streams]
        i, start = 0, time.time()
        while not stop.is_set():
            due = start + i / per_stream
            now = time.time()
            if due > now:
                time.sleep(due - now)
            yield rpc_pb2.LeaseKeepAliveRequest(ID=mine[i % len(mine)])
            i += 1

    def run(k):
        try:
            for r in stub.LeaseKeepAlive(requests(k)):
                answered[k] += 1
                if r.TTL <= 0:
                    sys.stderr.write("lease %x lost\n" % r.ID)
        except grpc.RpcError:
            pass

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(streams)]
    for t in threads:
        t.start()
    time.sleep(2)  # ramp up
    c0, a0, t0 = kv_bench.cpu_seconds(server.proc.pid), sum(answered), time.time()
    r0 = rss(server.proc.pid)["VmRSS"]
    time.sleep(seconds)
    c1, a1, t1 = kv_bench.cpu_seconds(server.proc.pid), sum(answered), time.time()
    r1 = rss(server.proc.pid)["VmRSS"]
    stop.set()
    got = (a1 - a0) / (t1 - t0)
    share = (c1 - c0) / (t1 - t0)
    sys.stderr.write("  %-6s steady renewals: %.0f/s answered, server CPU %.1f%% of a core (%.1f us each), "
                     "RSS %+.1f MB over %d s\n" % (server.kind, got, 100 * share, share / got * 1e6 if got else 0,
                                                  (r1 - r0) / 1e6, seconds))
    return {"renewals_per_s": got, "cpu_share": share, "cpu_us_per_renewal": share / got * 1e6 if got else 0,
            "rss_drift_mb": (r1 - r0) / 1e6}


def mass_expiry(server, n=10000, ttl=5):
    ch = grpc.insecure_channel(server.endpoint)
    lease, kv = rpc_pb2_grpc.LeaseStub(ch), rpc_pb2_grpc.KVStub(ch)
    ids = grant_many(lease, n, ttl)
    granted = time.time()  # every lease expires by granted + ttl
    for start in range(0, n, 2000):
        futs = [kv.Put.future(rpc_pb2.PutRequest(key=b"expire/%06d" % i, value=b"v", lease=ids[i]))
                for i in range(start, min(n, start + 2000))]
        for f in futs:
            f.result()
    before, during, first = [], [], None
    while True:
        s = time.time()
        kv.Put(rpc_pb2.PutRequest(key=b"probe", value=b"x"))
        took = time.time() - s
        left = kv.Range(rpc_pb2.RangeRequest(key=b"expire/", range_end=b"expire0", count_only=True)).count
        if left < n and first is None:
            first = time.time()
        (during if first else before).append(took)
        if left == 0 or time.time() > granted + ttl + 120:
            break
        time.sleep(0.01)
    last = time.time()
    ch.close()
    b, d = pct(before), pct(during)
    sys.stderr.write("  %-6s %d leases expired together: revoked over %.1f s, the last %.1f s after its deadline; "
                     "put latency p50/p99/max %.1f/%.1f/%.1f ms (before: %.1f/%.1f/%.1f)\n" % (
                         server.kind, n, last - first, last - granted - ttl, d[0], d[1], d[2], b[0], b[1], b[2]))
    return {"revoke_spread_s": last - first, "last_after_deadline_s": last - granted - ttl,
            "put_ms_during": d, "put_ms_before": b}


def pct(samples):
    """p50, p99 and max of latencies in seconds, as milliseconds."""
    if not samples:
        return [0.0, 0.0, 0.0]
    v = sorted(samples)
    return [1000 * v[len(v) // 2], 1000 * v[min(len(v) - 1, int(len(v) * 0.99))], 1000 * v[-1]]


def keepalive_rounds(servers, total, rounds):
    """etcd's lease-keepalive load, alternating between the servers round
    by round (the machine's load drifts; alternating spreads the drift over
    both); returns each server's median round by server CPU per request."""
    runs = {kind: [] for kind in servers}
    for _ in range(rounds):
        for kind, s in servers.items():
            runs[kind].append(kv_bench.run_load(s, "lease-keepalive", ["--conns", "10", "--clients", "100",
                                                                      "lease-keepalive", "--total", str(total)],
                                                total))
    out = {}
    for kind, rs in runs.items():
        rs.sort(key=lambda r: r["cpu_us_per_req"])
        out[kind] = dict(rs[len(rs) // 2], rounds=rs)
    return out


def scale(s, leases):
    res = {}
    ch, stub, ids, mem = bytes_per_lease(s, leases)
    res.update(mem)
    res["steady"] = steady_renewals(s, stub, ids[:10000])
    ch.close()
    res["expiry"] = mass_expiry(s)
    res["peak_rss_mb"] = kv_bench.peak_rss_mb(s.proc.pid)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--leases", type=int, default=100000)
    ap.add_argument("--only", choices=["synod", "etcd"])
    ap.add_argument("--json")
    ap.add_argument("--workdir", default=os.path.join(kv_bench.ROOT, "build", "bench"))
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="lease-", dir=a.workdir)
    results = {}
    kinds = [k for k in ["etcd", "synod"] if not a.only or k == a.only]
    servers = {}
    try:
        for kind in kinds:
            servers[kind] = kv_bench.Server(kind, work)
        for kind, r in keepalive_rounds(servers, a.total, a.rounds).items():
            results[kind] = {"keepalive": r}
        for kind in kinds:  # one at a time: the idle one costs nothing, but memory is measured alone
            results[kind].update(scale(servers[kind], a.leases))
            servers.pop(kind).stop()
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    if "synod" in results and "etcd" in results:
        s, e = results["synod"], results["etcd"]
        rows = [
            ("keepalive QPS", s["keepalive"]["qps"], e["keepalive"]["qps"], ">= 1"),
            ("keepalive p99 ms", s["keepalive"]["p99_ms"], e["keepalive"]["p99_ms"], ""),
            ("keepalive server CPU us", s["keepalive"]["cpu_us_per_req"], e["keepalive"]["cpu_us_per_req"], "<= 0.5"),
            ("bytes per lease (RSS)", s["bytes_per_lease"], e["bytes_per_lease"], ""),
            ("  of which heap", s["heap_bytes_per_lease"], e["heap_bytes_per_lease"], ""),
            ("  of which mapped store", s["file_bytes_per_lease"], e["file_bytes_per_lease"], ""),
            ("grants per second", s["grant_per_s"], e["grant_per_s"], ""),
            ("steady renewal CPU %core", 100 * s["steady"]["cpu_share"], 100 * e["steady"]["cpu_share"], ""),
            ("steady renewal CPU us", s["steady"]["cpu_us_per_renewal"], e["steady"]["cpu_us_per_renewal"], ""),
            ("steady renewal RSS drift MB", s["steady"]["rss_drift_mb"], e["steady"]["rss_drift_mb"], "~0"),
            ("10k expiry: revoked over s", s["expiry"]["revoke_spread_s"], e["expiry"]["revoke_spread_s"], ""),
            ("10k expiry: last late by s", s["expiry"]["last_after_deadline_s"], e["expiry"]["last_after_deadline_s"], ""),
            ("10k expiry: put p50 ms", s["expiry"]["put_ms_during"][0], e["expiry"]["put_ms_during"][0], ""),
            ("10k expiry: put p99 ms", s["expiry"]["put_ms_during"][1], e["expiry"]["put_ms_during"][1], ""),
            ("  (before expiry: p99 ms)", s["expiry"]["put_ms_before"][1], e["expiry"]["put_ms_before"][1], ""),
            ("peak RSS MB", s["peak_rss_mb"], e["peak_rss_mb"], ""),
        ]
        print("%-30s %12s %12s %8s  %s" % ("", "synod", "etcd", "ratio", "target"))
        for name, sv, ev, target in rows:
            print("%-30s %12.2f %12.2f %8.2f  %s" % (name, sv, ev, sv / ev if ev else 0, target))
    else:
        print(json.dumps(results, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
