#!/usr/bin/python3
"""Restart time of a single member holding many keys: Synod with 1M keys
against Debian's etcd with 100k (the foundation issue's comparison), after a
clean stop (SIGTERM) and after kill -9. Time runs from the process start to
the first linearizable read it answers.

  tests/bench/restart_bench.py [--synod-keys N] [--etcd-keys N]"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kv_bench import BENCH, ROOT, Server  # noqa: E402


sys.path.insert(0, "/usr/lib/python3/dist-packages")
import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc  # noqa: E402


def ready_after(endpoint, t0, timeout=600):
    """Seconds from t0 until a linearizable read succeeds, polled every 5 ms
    (spawning etcdctl would cost more than it measures). A new channel per
    attempt: a channel whose first connections were refused can stay in
    back-off long after the server is up."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ch = grpc.insecure_channel(endpoint)
        try:
            rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"x"), timeout=1)
            return time.time() - t0
        except grpc.RpcError:
            time.sleep(0.005)
        finally:
            ch.close()
    raise RuntimeError("not ready after restart")


def measure(kind, keys, workdir):
    s = Server(kind, workdir)
    subprocess.run([BENCH, "--endpoints", s.endpoint, "--conns", "10", "--clients", "100", "put", "--key-size", "8",
                    "--sequential-keys", "--key-space-size", str(keys), "--total", str(keys), "--val-size", "256"],
                   check=True, capture_output=True, timeout=3600)
    out = {}
    for how in ("sigterm", "kill9"):
        s.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        s.proc.wait(timeout=120)
        s.log.close()
        t0 = time.time()
        s.restart(wait=False)
        out[how] = ready_after(s.endpoint, t0)
        sys.stderr.write("  %-5s %8d keys, restart after %-7s: %.3f s\n" % (kind, keys, how, out[how]))
    s.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synod-keys", type=int, default=1000000)
    ap.add_argument("--etcd-keys", type=int, default=100000)
    a = ap.parse_args()
    base = os.path.join(ROOT, "build", "bench")
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="restart-", dir=base)
    try:
        e = measure("etcd", a.etcd_keys, work)
        s = measure("synod", a.synod_keys, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for how in ("sigterm", "kill9"):
        print("restart after %-7s synod %d keys %.3f s, etcd %d keys %.3f s: ratio %.2f (target < 1)" % (
            how, a.synod_keys, s[how], a.etcd_keys, e[how], s[how] / e[how]))


if __name__ == "__main__":
    main()
