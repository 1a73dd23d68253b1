#!/usr/bin/python3
"""Leases in a 3-member cluster: only the leader runs the clocks, so a
keep-alive or time-to-live sent to a follower must reach it; killing the
leader during a lease's life must not expire the lease early (the new leader
gives every lease its remaining TTL plus an election timeout), yet the lease
still expires under the new leader; and with checkpoints the new leader
resumes from the checkpointed remaining TTL instead of the full one. Every
test also runs against Debian's etcd (SYNOD_TEST_TARGET=etcd) except the
checkpoint test, which needs a Synod test knob."""

import os
import re
import subprocess
import time
import unittest

from cluster import Cluster
from harness import ETCDCTL, TARGET, etcdctl, etcdctl_json

GRANTED = re.compile(r"^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n$")


class LeaseClusterTest(unittest.TestCase):
    env = None

    def setUp(self):
        self.c = Cluster(3)
        for m in self.c.members:
            m.env = self.env
        self.addCleanup(self.c.cleanup)
        self.c.start()

    def tearDown(self):
        codes = self.c.stop()
        if TARGET == "synod":
            for name, code in codes.items():
                self.assertIn(code, (0, -9), "%s did not exit cleanly" % name)

    def grant(self, member, ttl):
        out = etcdctl(member, "lease", "grant", str(ttl)).stdout
        m = GRANTED.match(out)
        self.assertIsNotNone(m, out)
        return m.group(1)

    def has(self, key):
        """Whether key exists, read from any live member (linearizable)."""
        r = etcdctl(self.c.endpoints, "get", key, "--print-value-only", check=False, timeout=10)
        self.assertEqual(r.returncode, 0, r)
        return r.stdout != ""

    def remaining(self, member, lid):
        return etcdctl_json(member, "lease", "timetolive", lid)["ttl"]


class Follower(LeaseClusterTest):
    def test_keep_alive_and_time_to_live_through_a_follower(self):
        f = self.c.followers()[0]
        lid = self.grant(f, 4)  # a grant through a follower is proposed like any write
        etcdctl(f, "put", "fk", "v", "--lease", lid)
        self.assertEqual(etcdctl(f, "lease", "keep-alive", "--once", lid).stdout,
                         "lease %s keepalived with TTL(4)\n" % lid)
        out = etcdctl(f, "lease", "timetolive", lid, "--keys").stdout
        self.assertRegex(out, r"^lease %s granted with TTL\(4s\), remaining\([34]s\), attached keys\(\[fk\]\)\n$" % lid)
        # a keep-alive stream to the follower alone holds the lease for three TTLs
        p = subprocess.Popen([ETCDCTL, "--endpoints", f.endpoint, "lease", "keep-alive", lid],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, ETCDCTL_API="3"))
        try:
            deadline = time.time() + 12
            while time.time() < deadline:
                self.assertTrue(self.has("fk"))
                time.sleep(0.5)
        finally:
            p.terminate()
            out, _ = p.communicate(timeout=10)
        self.assertIn("lease %s keepalived with TTL(4)" % lid, out.decode())
        stopped = time.time()
        while self.has("fk"):
            self.assertLess(time.time() - stopped, 4 + 1.5)
            time.sleep(0.1)
        # unknown leases, through a follower: etcd's answers
        self.assertEqual(etcdctl(f, "lease", "timetolive", "1234abcd").stdout,
                         "lease 000000001234abcd already expired\n")
        r = etcdctl(f, "lease", "keep-alive", "--once", "1234abcd", check=False)
        self.assertEqual(r.stderr, "Error: etcdserver: requested lease not found\n")


class LeaderKill(LeaseClusterTest):
    def test_leader_kill_does_not_expire_a_lease_early(self):
        lead = self.c.wait_leader()
        lid = self.grant(self.c.endpoints, 6)
        granted = time.time()
        etcdctl(self.c.endpoints, "put", "lk", "v", "--lease", lid)
        time.sleep(3)
        lead.kill()
        new = self.c.wait_leader(timeout=20)
        elected = time.time()
        self.assertIsNot(new, lead)
        # the new leader gives the lease its TTL again (no checkpoint: the full
        # 6 s) plus an election timeout, counted from its promotion
        self.assertGreaterEqual(self.remaining(new, lid), 5)
        while time.time() < granted + 6 + 1.5:  # past the original deadline
            self.assertTrue(self.has("lk"))
            time.sleep(0.2)
        while self.has("lk"):  # and the new leader does expire it
            self.assertLess(time.time() - elected, 6 + 1 + 2.5)
            time.sleep(0.1)


@unittest.skipIf(TARGET != "synod", "needs SYNOD_LEASE_CHECKPOINT_INTERVAL_MS")
class Checkpoints(LeaseClusterTest):
    env = {"SYNOD_LEASE_CHECKPOINT_INTERVAL_MS": "1000"}

    def test_new_leader_resumes_from_the_checkpoint(self):
        lead = self.c.wait_leader()
        lid = self.grant(self.c.endpoints, 30)
        time.sleep(4.5)  # checkpoints at ~1, 2, 3, 4 s record ~26 s left, on every member
        lead.kill()
        new = self.c.wait_leader(timeout=20)
        left = self.remaining(new, lid)
        # ~26 s plus one election timeout (less the time the election took);
        # without the checkpoint it would be 30 + 1
        self.assertLessEqual(left, 28)
        self.assertGreaterEqual(left, 22)


if __name__ == "__main__":
    unittest.main(verbosity=2)
