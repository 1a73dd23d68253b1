"""Multi-member clusters on loopback for tests: start, kill -9, pause
(SIGSTOP), restart, find the leader, check that every member holds the same
data. Like harness.Member, works against Synod or Debian's etcd
(SYNOD_TEST_TARGET=etcd)."""

import json
import os
import shutil
import signal
import tempfile
import threading
import time

import grpc

from harness import Member, TARGET, etcdctl, free_port, rpc_pb2, rpc_pb2_grpc


class ClusterMember(Member):
    def __init__(self, workdir, name, initial_cluster, state="new", extra=None, target=None,
                 client_port=None, peer_port=None):
        super().__init__(workdir, name=name, extra=extra, target=target)
        if client_port:
            self.client_port = client_port
        if peer_port:
            self.peer_port = peer_port
        self.initial_cluster = initial_cluster
        self.state = state

    def args(self):
        a = super().args()
        i = a.index("--initial-cluster")
        a[i + 1] = self.initial_cluster
        return a + ["--initial-cluster-state", self.state]

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, size=3, extra=None, target=None, workdir=None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="synod-cluster-")
        self.extra = list(extra or [])
        self.target = target or TARGET
        ports = [(free_port(), free_port()) for _ in range(size)]
        names = ["m%d" % (i + 1) for i in range(size)]
        self.initial = ",".join("%s=http://127.0.0.1:%d" % (n, p[1]) for n, p in zip(names, ports))
        self.members = [ClusterMember(self.workdir, n, self.initial, extra=self.extra, target=self.target,
                                      client_port=c, peer_port=p) for n, (c, p) in zip(names, ports)]

    def start(self):
        for m in self.members:
            m.start(wait=False)
        for m in self.members:
            m.wait_ready()
        self.wait_leader()
        return self

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members if m.alive())

    def status(self):
        """Status of every live member, by endpoint."""
        out = {}
        for m in self.members:
            if not m.alive():
                continue
            r = etcdctl(m, "endpoint", "status", "-w", "json", check=False, timeout=5)
            if r.returncode == 0:
                out[m.endpoint] = json.loads(r.stdout)[0]["Status"]
        return out

    def leader(self):
        """The member every live member agrees leads, or None."""
        st = self.status()
        leads = {s.get("leader", 0) for s in st.values()}
        if len(leads) != 1 or 0 in leads:
            return None
        lead = leads.pop()
        for m in self.members:
            if m.alive() and m.endpoint in st and st[m.endpoint]["header"]["member_id"] == lead:
                return m
        return None

    def wait_leader(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.leader()
            if m is not None:
                return m
            time.sleep(0.1)
        raise AssertionError("no agreed leader within %ds" % timeout)

    def followers(self):
        lead = self.leader()
        return [m for m in self.members if m.alive() and m is not lead]

    def pause(self, m):
        m.proc.send_signal(signal.SIGSTOP)

    def resume(self, m):
        m.proc.send_signal(signal.SIGCONT)

    def restart(self, m):
        m.start(wait=False)
        m.wait_ready()

    def wait_converged(self, timeout=30):
        """Waits until every live member has applied the same index, then
        returns their HashKV results (which the caller compares)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.status()
            applied = {s.get("raftAppliedIndex", 0) for s in st.values()}
            if len(st) == sum(1 for m in self.members if m.alive()) and len(applied) == 1:
                r = etcdctl(self.endpoints, "endpoint", "hashkv", "-w", "json", check=False, timeout=10)
                if r.returncode == 0:
                    hv = json.loads(r.stdout)
                    hashes = {(h["HashKV"]["header"]["revision"], h["HashKV"]["hash"]) for h in hv}
                    if len(hashes) == 1:
                        return hv
            time.sleep(0.2)
        raise AssertionError("members did not converge: %r" % self.status())

    def stop(self):
        codes = {}
        for m in self.members:
            if m.alive():
                try:
                    self.resume(m)
                except Exception:
                    pass
                codes[m.name] = m.stop()
            else:
                m.kill()
        return codes

    def cleanup(self):
        if not os.environ.get("SYNOD_TEST_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)


class Writers:
    """Threads putting distinct keys through any live member; each records
    the puts that were acknowledged (key -> revision). With overwrite=K each
    thread cycles over K keys instead (updates, which the store keeps in
    its key index's tail until a flush), and a key records its newest
    acknowledged revision: a later put that failed may still have landed."""

    def __init__(self, cluster, n=4, prefix="w", overwrite=0):
        self.cluster, self.n, self.prefix, self.overwrite = cluster, n, prefix, overwrite
        self.acked = {}
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = []

    def _run(self, tid):
        seq = 0
        chans = {}
        while not self.stop_ev.is_set():
            live = [m for m in self.cluster.members if m.alive()]
            if not live:
                time.sleep(0.05)
                continue
            m = live[(tid + seq) % len(live)]
            ch = chans.get(m.endpoint)
            if ch is None:
                ch = chans[m.endpoint] = grpc.insecure_channel(m.endpoint)
            key = b"%s%d/%06d" % (self.prefix.encode(), tid, seq % self.overwrite if self.overwrite else seq)
            try:
                r = rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=key, value=key), timeout=2)
                with self.lock:
                    self.acked[key] = max(r.header.revision, self.acked.get(key, 0))
                seq += 1
            except grpc.RpcError:
                seq += 1  # this key may or may not be there; never reuse it
                time.sleep(0.02)
        for ch in chans.values():
            ch.close()

    def start(self):
        for t in range(self.n):
            th = threading.Thread(target=self._run, args=(t,), daemon=True)
            th.start()
            self.threads.append(th)
        return self

    def stop(self):
        self.stop_ev.set()
        for th in self.threads:
            th.join(timeout=30)
        return dict(self.acked)


def check_acked(testcase, cluster, acked, at_least=False):
    """Every acknowledged put is on every live member, at its revision (or,
    at_least, at that revision or a later one: for overwriting writers)."""
    for m in cluster.members:
        if not m.alive():
            continue
        ch = grpc.insecure_channel(m.endpoint, options=[("grpc.max_receive_message_length", 1 << 30)])
        try:
            r = rpc_pb2_grpc.KVStub(ch).Range(
                rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", serializable=True, keys_only=True), timeout=30)
        finally:
            ch.close()
        have = {kv.key: kv for kv in r.kvs}
        for key, rev in acked.items():
            testcase.assertIn(key, have, "acknowledged %r missing on %s" % (key, m.name))
            if at_least:
                testcase.assertGreaterEqual(have[key].mod_revision, rev, "%r went back on %s" % (key, m.name))
            else:
                testcase.assertEqual(have[key].mod_revision, rev, "%r moved on %s" % (key, m.name))
