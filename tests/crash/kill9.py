#!/usr/bin/python3
"""Crash test: concurrent writers, kill -9 at a random moment, restart,
and every acknowledged write must be there, exactly.

Each writer thread puts keys w<thread>/<seq> with a value derived from the
key and records (key, revision) for every put the server acknowledged.
After each kill and restart:
  - every acknowledged key is present with its value;
  - the store's revision is at least the highest acknowledged revision;
  - revisions are unique: no two acknowledged puts share one (a crash must
    not make the server reuse revisions it already handed out);
  - keys that were written but not acknowledged may or may not exist, but
    if they do their value is the one written.
Also runs transactions (a put pair that must appear together or not at all).

SYNOD_CRASH_ROUNDS (default 5) sets how many kill/restart rounds run.
"""

import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "interop"))
import grpc  # noqa: E402
from harness import Member, rpc_pb2, rpc_pb2_grpc  # noqa: E402

ROUNDS = int(os.environ.get("SYNOD_CRASH_ROUNDS", "5"))
WRITERS = 8


def value_for(key):
    return (b"v:" + key) * 4


class Writer(threading.Thread):
    def __init__(self, endpoint, tid, round_no, acked, stop):
        super().__init__(daemon=True)
        self.endpoint, self.tid, self.round_no = endpoint, tid, round_no
        self.acked, self.stop = acked, stop
        self.attempted = []

    def run(self):
        ch = grpc.insecure_channel(self.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        seq = 0
        while not self.stop.is_set():
            key = b"w%d/r%d/%06d" % (self.tid, self.round_no, seq)
            seq += 1
            self.attempted.append(key)
            try:
                if seq % 5 == 0:
                    pair = key + b"/pair"
                    self.attempted.append(pair)
                    r = kv.Txn(rpc_pb2.TxnRequest(success=[
                        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value_for(key))),
                        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=pair, value=value_for(pair)))]),
                        timeout=5)
                    self.acked.append((key, r.header.revision, pair))
                else:
                    r = kv.Put(rpc_pb2.PutRequest(key=key, value=value_for(key)), timeout=5)
                    self.acked.append((key, r.header.revision, None))
            except grpc.RpcError:
                break  # the server died under us
        ch.close()


class Kill9(unittest.TestCase):
    def test_acknowledged_writes_survive(self):
        work = tempfile.mkdtemp(prefix="synod-crash-")
        m = Member(work, target="synod")
        acked, attempted = [], []
        rng = random.Random(int(os.environ.get("SYNOD_SEED", "1")))
        try:
            for round_no in range(ROUNDS):
                m.start()
                self.verify(m, acked, attempted)
                stop = threading.Event()
                writers = [Writer(m.endpoint, t, round_no, acked, stop) for t in range(WRITERS)]
                for w in writers:
                    w.start()
                time.sleep(rng.uniform(0.3, 1.5))
                m.kill(signal.SIGKILL)
                stop.set()
                for w in writers:
                    w.join(timeout=30)
                    attempted.extend(w.attempted)
                sys.stderr.write("round %d: %d acknowledged so far\n" % (round_no, len(acked)))
            m.start()
            self.verify(m, acked, attempted)
            self.assertGreater(len(acked), 100, "the writers made too little progress to test anything")
            self.assertEqual(m.stop(), 0)
        finally:
            m.kill()
            if not os.environ.get("SYNOD_TEST_KEEP"):
                shutil.rmtree(work, ignore_errors=True)

    def verify(self, m, acked, attempted):
        ch = grpc.insecure_channel(m.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        try:
            r = kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0"), timeout=60)
            store = {x.key: x for x in r.kvs}
            revs = set()
            for key, rev, pair in acked:
                self.assertIn(key, store, "acknowledged key %r lost" % key)
                self.assertEqual(store[key].value, value_for(key))
                self.assertEqual(store[key].mod_revision, rev, "acknowledged put %r moved revision" % key)
                self.assertLessEqual(rev, r.header.revision)
                self.assertNotIn(rev, revs, "revision %d acknowledged twice" % rev)
                revs.add(rev)
                if pair:
                    self.assertIn(pair, store, "half of an acknowledged txn lost")
                    self.assertEqual(store[pair].mod_revision, rev)
            for key in attempted:
                if key in store:
                    self.assertEqual(store[key].value, value_for(key))
            # transactions are atomic even when not acknowledged
            for key, x in store.items():
                if key.endswith(b"/pair"):
                    self.assertIn(key[:-5], store)
                    self.assertEqual(store[key[:-5]].mod_revision, x.mod_revision)
        finally:
            ch.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
