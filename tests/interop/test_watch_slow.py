#!/usr/bin/python3
"""Slow watch readers: a client that creates watchers and then does not read
while writers run. The server's memory stays bounded (its watchers become
victims: no events queued for them beyond a limit), another client's watcher
keeps receiving everything, and once the slow client reads it is caught up
from history, every event exactly once and in order. A client that stays
stuck past the time limit gets its watchers cancelled with a reason."""

import threading
import os
import time

from harness import TARGET, MemberTest, main, rpc_pb2
from watchclient import RawWatch

WATCHERS = 40
PUTS = 2000
VALUE = b"v" * 1024


def anon_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):  # not the store's map
                return int(line.split()[1]) / 1024.0
    return 0.0


class SlowReader(MemberTest):
    member_args = ["--log-level", "warn"]

    def setUp(self):
        super().setUp()
        self.kv = self.kv_stub()

    def write(self, n, threads=4):
        def run(t):
            for i in range(t, n, threads):
                self.kv.Put(rpc_pb2.PutRequest(key=b"s/%06d" % i, value=VALUE))
        ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def test_bounded_and_others_unaffected(self):
        slow = RawWatch(self.m, read=False)
        self.addCleanup(slow.close)
        for i in range(WATCHERS):
            slow.create(b"s/", range_end=b"s0", watch_id=i + 1)
        fast = RawWatch(self.m)
        self.addCleanup(fast.close)
        fast.created(b"s/", range_end=b"s0")
        time.sleep(0.5)
        before = anon_mb(self.m.proc.pid)
        self.write(PUTS)
        evs, _ = fast.events(PUTS, timeout=60)
        self.assertEqual(len({e.kv.mod_revision for e in evs}), PUTS)
        self.assertEqual([e.kv.mod_revision for e in evs], sorted(e.kv.mod_revision for e in evs))
        grown = anon_mb(self.m.proc.pid) - before
        print("server anonymous memory grew by %.1f MiB" % grown)
        # Unbounded, the slow stream would hold WATCHERS x PUTS x 1 KiB = 80 MiB.
        if TARGET == "synod":
            # AddressSanitizer's quarantine keeps up to 256 MiB of freed
            # memory, so under it only runaway growth can be told apart.
            limit = 400 if "ASAN_OPTIONS" in os.environ else 40
            self.assertLess(grown, limit, "server memory grew by %.0f MiB" % grown)
        # Now the slow client reads: everything arrives, exactly once, in order.
        slow.start_reading()
        got = {}
        deadline = time.time() + 120
        while sum(len(v) for v in got.values()) < WATCHERS * PUTS and time.time() < deadline:
            r = slow.next(timeout=30)
            if r.created:
                continue
            got.setdefault(r.watch_id, []).extend(e.kv.mod_revision for e in r.events)
        want = sorted(e.kv.mod_revision for e in evs)
        self.assertEqual(sorted(got), list(range(1, WATCHERS + 1)))
        for wid, revs in got.items():
            self.assertEqual(revs, want, "watcher %d" % wid)

    def test_stuck_victims_are_cancelled(self):
        if TARGET != "synod":
            self.skipTest("a Synod limit (etcd keeps stuck watchers forever)")
        self.m.stop()
        self.m.env = {"SYNOD_WATCH_VICTIM_TIMEOUT_MS": "1000", "SYNOD_WATCH_QUEUE_LIMIT": "65536"}
        self.m.start()
        slow = RawWatch(self.m, read=False)
        self.addCleanup(slow.close)
        for i in range(WATCHERS):
            slow.create(b"s/", range_end=b"s0", watch_id=i + 1)
        time.sleep(0.3)
        self.write(500)
        time.sleep(2.5)
        slow.start_reading()
        canceled = {}
        deadline = time.time() + 30
        while len(canceled) < WATCHERS and time.time() < deadline:
            r = slow.next(timeout=10)
            if r.canceled:
                canceled[r.watch_id] = r.cancel_reason
        self.assertEqual(len(canceled), WATCHERS)
        self.assertRegex(list(canceled.values())[0], r"^synod: watcher canceled: the client did not read")


if __name__ == "__main__":
    main()
