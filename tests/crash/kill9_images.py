#!/usr/bin/python3
"""Crash tests around store replacement: kill -9 during `etcdctl defrag`
(under concurrent writers) and during a snapshot's install on a member that
fell behind. After every restart each acknowledged write is there, exactly,
and the members of a cluster agree (HashKV).

SYNOD_CRASH_ROUNDS (default 4) sets how many kills each test makes."""

import os
import random
import shutil
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "interop"))
import grpc  # noqa: E402
from cluster import Cluster, Writers, check_acked  # noqa: E402
from harness import Member, etcdctl, rpc_pb2, rpc_pb2_grpc  # noqa: E402

ROUNDS = int(os.environ.get("SYNOD_CRASH_ROUNDS", "4"))


def load(endpoint, prefix, n, size=1024, threads=8):
    def run(t):
        ch = grpc.insecure_channel(endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(t, n, threads):
            kv.Put(rpc_pb2.PutRequest(key=b"%s/%06d" % (prefix.encode(), i), value=b"x" * size), timeout=30)
        ch.close()
    ths = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()


class KillDuringDefrag(unittest.TestCase):
    def test_kill_during_defrag(self):
        c = Cluster(1)
        self.addCleanup(c.cleanup)
        self.addCleanup(c.stop)
        c.start()
        m = c.members[0]
        load(m.endpoint, "bulk", 10000, size=2048)
        rng = random.Random(int(os.environ.get("SYNOD_SEED", "7")))
        acked_all = {}
        inside = 0
        for rnd in range(ROUNDS):
            # Garbage for the defragmentation to drop, then writers and a
            # defrag, and a kill somewhere inside it.
            ch = m.channel()
            kv = rpc_pb2_grpc.KVStub(ch)
            lo = b"bulk/%d" % (rnd % 2)
            r = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=lo, range_end=lo[:-1] + bytes([lo[-1] + 1])))
            kv.Compact(rpc_pb2.CompactionRequest(revision=r.header.revision, physical=True), timeout=60)
            ch.close()
            load(m.endpoint, "bulk", 4000, size=2048)
            w = Writers(c, n=4, prefix="d%d-" % rnd).start()
            with open(m.log_path, "rb") as f:
                mark = len(f.read())
            d = threading.Thread(target=lambda: etcdctl(m, "defrag", check=False, timeout=60))
            d.start()
            # Kill once the defragmentation has begun, somewhere inside its
            # ~100 ms (copy, swap, reopen).
            deadline = time.time() + 20
            while time.time() < deadline:
                with open(m.log_path, "rb") as f:
                    if b"starting defragment" in f.read()[mark:]:
                        break
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.12))
            m.kill()
            d.join()
            acked_all.update(w.stop())
            with open(m.log_path, "rb") as f:
                tail = f.read()[mark:].decode(errors="replace")
            if "starting defragment" in tail and "defragmented the store" not in tail:
                inside += 1
            c.restart(m)
            check_acked(self, c, acked_all)
        sys.stderr.write("killed inside a defragmentation in %d of %d rounds\n" % (inside, ROUNDS))
        self.assertGreater(inside, 0)
        self.assertEqual(c.stop(), {"m1": 0})


class KillDuringInstall(unittest.TestCase):
    def test_kill_during_snapshot_install(self):
        c = Cluster(3, extra=["--snapshot-count", "2000"])
        self.addCleanup(c.cleanup)
        self.addCleanup(c.stop)
        c.start()
        lead = c.wait_leader()
        behind = [x for x in c.members if x is not lead][0]
        rng = random.Random(int(os.environ.get("SYNOD_SEED", "7")))
        acked_all = {}
        for rnd in range(ROUNDS):
            behind.stop()
            w = Writers(c, n=4, prefix="i%d-" % rnd).start()
            load(lead.endpoint, "r%d" % rnd, 12000, size=256)
            # Restart the member that fell behind and kill it as its
            # snapshot arrives or is being put in place.
            mark = len(behind.read_log())
            behind.start(wait=False)
            deadline = time.time() + 30
            while time.time() < deadline:
                tail = behind.read_log()
                if "received a snapshot" in tail or "raft: snapshot at index" in tail:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.01))
            behind.kill()
            acked_all.update(w.stop())
            c.restart(behind)
            c.wait_converged(timeout=90)
            check_acked(self, c, acked_all)
            del mark
        codes = c.stop()
        for name, code in codes.items():
            self.assertEqual(code, 0, name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
