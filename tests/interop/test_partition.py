#!/usr/bin/python3
"""Network partitions between members in network namespaces (root only):
the leader cut off from the others, and one-way partitions in both
directions. The minority must not commit or serve linearizable reads; the
majority must elect a leader and serve; after healing, every member agrees
and every acknowledged write is there."""

import json
import time
import unittest

import grpc

from cluster import Writers, check_acked
from harness import TARGET, etcdctl, rpc_pb2, rpc_pb2_grpc
from netns import NetnsCluster, can_use_netns

USABLE, WHY = can_use_netns()
FAST = ["--heartbeat-interval", "50", "--election-timeout", "500"]


def leader_seen_by(m):
    r = etcdctl(m, "endpoint", "status", "-w", "json", check=False, timeout=5)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)[0]["Status"].get("leader", 0)


@unittest.skipUnless(USABLE, WHY)
class Partitions(unittest.TestCase):
    def setUp(self):
        self.c = NetnsCluster(3, extra=FAST)
        self.addCleanup(self.c.cleanup)
        self.c.start()

    def tearDown(self):
        self.c.heal()
        codes = self.c.stop()
        if TARGET == "synod":
            for name, code in codes.items():
                self.assertEqual(code, 0, name)

    def wait_new_leader(self, among, old_id, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            seen = {leader_seen_by(m) for m in among}
            if len(seen) == 1 and None not in seen and 0 not in seen and old_id not in seen:
                return seen.pop()
            time.sleep(0.1)
        self.fail("the majority elected no new leader")

    def member_id(self, m):
        return json.loads(etcdctl(m, "endpoint", "status", "-w", "json").stdout)[0]["Status"]["header"]["member_id"]

    def test_leader_cut_off(self):
        w = Writers(self.c, n=3).start()
        time.sleep(0.5)
        old = self.c.wait_leader()
        old_id = self.member_id(old)
        majority = [m for m in self.c.members if m is not old]
        self.c.isolate(old)
        self.wait_new_leader(majority, old_id)

        # the majority commits and serves linearizable reads
        etcdctl(majority[0], "put", "during", "majority")
        self.assertEqual(etcdctl(majority[1], "get", "during", "--print-value-only").stdout, "majority\n")

        # the minority does neither, though it still answers serializable reads
        ch = grpc.insecure_channel(old.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        with self.assertRaises(grpc.RpcError):
            kv.Put(rpc_pb2.PutRequest(key=b"during", value=b"minority"), timeout=3)
        with self.assertRaises(grpc.RpcError):
            kv.Range(rpc_pb2.RangeRequest(key=b"during"), timeout=3)
        kv.Range(rpc_pb2.RangeRequest(key=b"during", serializable=True), timeout=3)
        ch.close()

        self.c.heal()
        time.sleep(1.0)
        acked = w.stop()
        self.c.wait_converged()
        check_acked(self, self.c, acked)
        for m in self.c.members:
            self.assertEqual(etcdctl(m, "get", "during", "--print-value-only").stdout, "majority\n")

    def test_one_way_partitions(self):
        # 1. the leader's messages are lost, it still hears everyone
        old = self.c.wait_leader()
        old_id = self.member_id(old)
        others = [m for m in self.c.members if m is not old]
        for m in others:
            self.c.cut(old, m, both=False)
        new_id = self.wait_new_leader(others, old_id)
        etcdctl(others[0], "put", "k", "after-outbound-cut")
        self.c.heal()
        self.c.wait_converged()

        # 2. the leader hears nobody, its messages still arrive: check-quorum
        # makes it step down, and the others elect a leader
        lead = self.c.wait_leader()
        lead_id = self.member_id(lead)
        others = [m for m in self.c.members if m is not lead]
        for m in others:
            self.c.cut(m, lead, both=False)
        self.wait_new_leader(others, lead_id)
        etcdctl(others[1], "put", "k", "after-inbound-cut")
        self.c.heal()
        self.c.wait_converged()
        for m in self.c.members:
            self.assertEqual(etcdctl(m, "get", "k", "--print-value-only").stdout, "after-inbound-cut\n")
        self.assertNotEqual(new_id, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
