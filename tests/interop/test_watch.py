#!/usr/bin/python3
"""Watch: etcdctl watch (--rev, --prefix, --prev-kv, interactive), python3-etcd3
watch / watch_prefix, and raw gRPC streams for what clients hide: exact
created / canceled / compacted / progress responses, IDs, filters, prev_kv,
fragmentation, atomicity of a revision, resumption and compaction.

SYNOD_TEST_TARGET=etcd runs the same against Debian's etcd 3.4; the two
places where Synod follows etcd 3.5 instead (negative start revision,
progress requests while not synced) are marked."""

import os
import queue
import subprocess
import threading
import time

from harness import ETCDCTL, TARGET, MemberTest, main, rpc_pb2
from watchclient import RawWatch

ETCD35 = TARGET == "synod"  # Synod answers as etcd 3.5; Debian's etcd is 3.4


def put_op(k, v):
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v))


class Watch(MemberTest):
    member_args = ["--experimental-watch-progress-notify-interval", "200ms"]

    def setUp(self):
        super().setUp()
        self.kv = self.kv_stub()

    def stream(self, **kw):
        w = RawWatch(self.m, **kw)
        self.addCleanup(w.close)
        return w

    def put(self, k, v=b"v"):
        return self.kv.Put(rpc_pb2.PutRequest(key=k, value=v)).header.revision

    # ------------------------------------------------------------ etcdctl

    def ctl_watch(self, *args, stdin=None):
        e = dict(os.environ, ETCDCTL_API="3")
        p = subprocess.Popen([ETCDCTL, "--endpoints", self.m.endpoint, "watch"] + list(args),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l.decode().rstrip("\n")) for l in p.stdout], daemon=True).start()
        if stdin:
            p.stdin.write(stdin.encode())
            p.stdin.flush()

        def stop():
            p.kill()
            p.wait()
        self.addCleanup(stop)
        return p, lines

    def read_lines(self, lines, n, timeout=10):
        out = []
        deadline = time.time() + timeout
        while len(out) < n:
            try:
                out.append(lines.get(timeout=max(0.01, deadline - time.time())))
            except queue.Empty:
                self.fail("etcdctl printed %r, wanted %d lines" % (out, n))
        return out

    def test_etcdctl_watch_rev_prev_kv(self):
        self.ctl("put", "a", "1")  # 2
        self.ctl("put", "a", "2")  # 3
        _, lines = self.ctl_watch("a", "--rev", "2", "--prev-kv")
        self.assertEqual(self.read_lines(lines, 3), ["PUT", "a", "1"])
        self.assertEqual(self.read_lines(lines, 5), ["PUT", "a", "1", "a", "2"])
        self.ctl("del", "a")
        # with --prev-kv: type, previous key and value, then key and value
        self.assertEqual(self.read_lines(lines, 5), ["DELETE", "a", "2", "a", ""])

    def test_etcdctl_watch_prefix(self):
        _, lines = self.ctl_watch("--prefix", "svc/")
        time.sleep(0.5)  # etcdctl prints nothing when the watch is established
        self.ctl("put", "svc/a", "x")
        self.ctl("put", "other", "y")
        self.ctl("put", "svc/b", "z")
        self.assertEqual(self.read_lines(lines, 6), ["PUT", "svc/a", "x", "PUT", "svc/b", "z"])

    def test_etcdctl_interactive(self):
        self.ctl("put", "x", "0")
        p, lines = self.ctl_watch("-i", stdin="watch x\nprogress\n")
        got = self.read_lines(lines, 1)
        self.assertRegex(got[0], r"^progress notify: 2$")
        p.stdin.write(b"watch --prefix p --rev 1\n")
        p.stdin.flush()
        time.sleep(0.5)
        self.ctl("put", "x", "1")
        self.ctl("put", "p1", "2")
        got = self.read_lines(lines, 6)
        self.assertEqual(sorted([got[0:3], got[3:6]]), [["PUT", "p1", "2"], ["PUT", "x", "1"]])

    # ------------------------------------------------------------ python3-etcd3

    def test_python_etcd3(self):
        c = self.m.client()
        self.addCleanup(c.close)
        events, cancel = c.watch("k")
        pevents, pcancel = c.watch_prefix("dir/", prev_kv=True)
        c.put("k", "1")
        c.put("dir/x", "a")
        c.put("dir/x", "b")
        c.delete("dir/x")
        e = next(events)
        self.assertEqual((type(e).__name__, e.key, e.value), ("PutEvent", b"k", b"1"))
        got = [next(pevents) for _ in range(3)]
        self.assertEqual([type(e).__name__ for e in got], ["PutEvent", "PutEvent", "DeleteEvent"])
        self.assertEqual([e.value for e in got[:2]], [b"a", b"b"])
        self.assertEqual(got[1].prev_value, b"a")
        self.assertEqual(got[2].prev_value, b"b")
        cancel()
        pcancel()
        ev = c.watch_once("k", timeout=5, start_revision=2)
        self.assertEqual(ev.value, b"1")

    # ------------------------------------------------------------ raw stream

    def test_created_and_events_headers(self):
        rev = self.put(b"k", b"0")
        w = self.stream()
        r = w.created(b"k")
        self.assertEqual((r.watch_id, r.header.revision), (0, rev))
        self.assertNotEqual(r.header.cluster_id, 0)
        self.assertNotEqual(r.header.member_id, 0)
        self.assertGreater(r.header.raft_term, 0)
        r2 = w.created(b"k")
        self.assertEqual(r2.watch_id, 1)
        rev2 = self.put(b"k", b"1")
        got = sorted([w.next(), w.next()], key=lambda r: r.watch_id)
        for i, r in enumerate(got):
            self.assertEqual((r.watch_id, r.header.revision, len(r.events)), (i, rev2, 1))
            ev = r.events[0]
            self.assertEqual((ev.type, ev.kv.key, ev.kv.value, ev.kv.mod_revision, ev.kv.version), (0, b"k", b"1", rev2, 2))
        w.none(0.3)

    def test_ids_and_errors(self):
        w = self.stream()
        self.assertEqual(w.created(b"a", watch_id=5).watch_id, 5)
        r = w.created(b"a", watch_id=5)
        self.assertEqual((r.watch_id, r.canceled, r.cancel_reason),
                         (-1, True, "mvcc: duplicate watch ID provided on the WatchStream"))
        r = w.created(b"b", range_end=b"a")
        self.assertEqual((r.watch_id, r.canceled, r.cancel_reason), (-1, True, "mvcc: watcher range is empty"))
        self.assertEqual(w.created(b"a").watch_id, 0)
        if ETCD35:
            r = w.created(b"a", start_revision=-1)
            self.assertEqual((r.watch_id, r.canceled, r.cancel_reason),
                             (-1, True, "etcdserver: mvcc: required revision has been compacted"))
        w.cancel(5)
        r = w.next()
        self.assertEqual((r.watch_id, r.canceled, r.created), (5, True, False))
        w.cancel(5)
        w.cancel(1234)
        w.none(0.3)  # etcd says nothing about unknown IDs
        self.put(b"a")
        r = w.next()
        self.assertEqual(r.watch_id, 0)
        w.none(0.3)  # 5 is gone

    def test_ranges_filters_prev_kv(self):
        w = self.stream()
        w.created(b"b", range_end=b"d", watch_id=1)
        w.created(b"c", range_end=b"\0", watch_id=2)
        w.created(b"", range_end=b"\0", watch_id=3, filters=[0])  # NOPUT: deletes only
        w.created(b"b", watch_id=4, filters=[1], prev_kv=True)  # NODELETE
        self.put(b"a", b"1")
        self.put(b"b", b"1")
        self.put(b"b", b"2")
        self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"b"))
        self.put(b"zz", b"3")
        self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"zz"))
        got = {}
        deadline = time.time() + 10
        while sum(len(v) for v in got.values()) < 9 and time.time() < deadline:
            r = w.next()
            got.setdefault(r.watch_id, []).extend(r.events)
        w.none(0.3)
        brief = {k: [(e.type, e.kv.key, e.kv.mod_revision) for e in v] for k, v in got.items()}
        self.assertEqual(brief[1], [(0, b"b", 3), (0, b"b", 4), (1, b"b", 5)])
        self.assertEqual(brief[2], [(0, b"zz", 6), (1, b"zz", 7)])
        self.assertEqual(brief[3], [(1, b"b", 5), (1, b"zz", 7)])
        self.assertEqual(brief[4], [(0, b"b", 3), (0, b"b", 4)])
        self.assertFalse(got[4][0].HasField("prev_kv"))  # a creation has none
        self.assertEqual(got[4][1].prev_kv.value, b"1")
        self.assertFalse(got[1][0].HasField("prev_kv"))  # not asked for

    def test_revision_is_atomic(self):
        w = self.stream()
        w.created(b"t/", range_end=b"t0", prev_kv=True)
        self.put(b"t/1", b"old")
        r = self.kv.Txn(rpc_pb2.TxnRequest(success=[put_op(b"t/%d" % i, b"x") for i in range(50)]))
        rev = r.header.revision
        w.events(1)
        r = w.next()
        self.assertEqual(len(r.events), 50)
        self.assertEqual({e.kv.mod_revision for e in r.events}, {rev})
        self.assertEqual(r.events[1].prev_kv.value, b"old")

    def test_resume_from_any_revision(self):
        revs = [self.put(b"r%d" % (i % 3), b"%d" % i) for i in range(20)]
        for start in (1, revs[0], revs[7], revs[-1], revs[-1] + 1):
            w = self.stream()
            r = w.created(b"r", range_end=b"s", start_revision=start)
            self.assertEqual(r.header.revision, revs[-1])
            want = [rv for rv in revs if rv >= start]
            if want:
                evs, _ = w.events(len(want))
                self.assertEqual([e.kv.mod_revision for e in evs], want)
            w.none(0.2)
            nxt = self.put(b"r1", b"live")
            evs, _ = w.events(1)
            self.assertEqual(evs[0].kv.mod_revision, nxt)
            revs.append(nxt)
            w.close()

    def test_compaction(self):
        revs = [self.put(b"c", b"%d" % i) for i in range(6)]
        live = self.stream()
        live.created(b"c")
        self.kv.Compact(rpc_pb2.CompactionRequest(revision=revs[3], physical=True))
        w = self.stream()
        r = w.created(b"c", start_revision=revs[1], watch_id=9)
        r = w.next()
        self.assertEqual((r.watch_id, r.canceled, r.compact_revision, r.header.revision, r.cancel_reason),
                         (9, True, revs[3], 0, ""))
        # At the compact revision itself: what compaction kept, no prev_kv below it
        r = w.created(b"c", start_revision=revs[3], prev_kv=True)
        evs, _ = w.events(3)
        self.assertEqual([e.kv.mod_revision for e in evs], revs[3:])
        self.assertFalse(evs[0].HasField("prev_kv"))
        self.assertEqual(evs[1].prev_kv.mod_revision, revs[3])
        # a live watcher is not disturbed by compaction
        nxt = self.put(b"c", b"after")
        self.assertEqual(live.next().events[0].kv.mod_revision, nxt)
        self.assertEqual(w.next().events[0].kv.mod_revision, nxt)
        # the compacted ID stays taken until cancelled (etcd keeps it)
        r = w.created(b"c", watch_id=9)
        self.assertEqual(r.cancel_reason, "mvcc: duplicate watch ID provided on the WatchStream")
        w.cancel(9)
        r = w.next()
        self.assertEqual((r.watch_id, r.canceled), (9, True))

    def test_compact_at_current_revision_keeps_live_watchers_whole(self):
        w = self.stream()
        w.created(b"q", range_end=b"r")
        revs = []
        for i in range(30):
            revs.append(self.put(b"q%d" % i))
            if i % 10 == 9:
                self.kv.Compact(rpc_pb2.CompactionRequest(revision=revs[-1]))
        evs, _ = w.events(30)
        self.assertEqual([e.kv.mod_revision for e in evs], revs)

    def test_progress(self):
        w = self.stream()
        rev = self.put(b"p")
        w.progress()
        if ETCD35:
            w.none(0.3)  # etcd 3.5: nothing for a stream without watchers
        else:
            w.next()
        w.created(b"p")
        w.progress()
        r = w.next()
        self.assertEqual((r.watch_id, r.header.revision, len(r.events), r.created, r.canceled), (-1, rev, 0, False, False))
        w.created(b"future", start_revision=rev + 100)
        w.progress()
        if ETCD35:
            w.none(0.3)  # etcd 3.5: not every watcher is synced
        else:
            w.next()

    def test_progress_notify_interval(self):
        w = self.stream()
        rev = self.put(b"n")
        w.created(b"n", progress_notify=True)
        r = w.next(timeout=3)
        self.assertEqual((r.watch_id, r.header.revision, len(r.events)), (0, rev, 0))
        quiet = self.stream()
        quiet.created(b"n")
        quiet.none(0.6)  # only watchers that asked get notifications

    def test_fragment(self):
        self.m.stop()
        self.m.extra += ["--max-request-bytes", "100000"]
        self.m.start()
        w = self.stream()
        w.created(b"f/", range_end=b"f0", prev_kv=True, fragment=True, watch_id=1)
        w.created(b"f/", range_end=b"f0", prev_kv=True, watch_id=2)
        big = b"x" * 90000
        for i in range(10):
            self.put(b"f/%d" % i, big)
        w.events(20)
        rev = self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"f/", range_end=b"f0")).header.revision
        frags, whole = [], None
        while whole is None or not frags or frags[-1].fragment:
            r = w.next()
            if r.watch_id == 1:
                frags.append(r)
            else:
                whole = r
        self.assertEqual(len(whole.events), 10)
        self.assertFalse(whole.fragment)
        self.assertGreater(len(frags), 1)
        self.assertTrue(all(f.fragment for f in frags[:-1]))
        self.assertEqual(sum(len(f.events) for f in frags), 10)
        self.assertEqual({f.header.revision for f in frags}, {rev})
        for f in frags:  # each piece stays under etcd's limit (100000 + 512 KiB)
            self.assertLess(f.ByteSize(), 100000 + 512 * 1024)

    def test_many_streams_and_cancel_on_close(self):
        streams = [self.stream() for _ in range(5)]
        for s in streams:
            for i in range(20):
                s.created(b"m%d" % (i % 4))
        streams[0].close()
        rev = self.put(b"m1")
        for s in streams[1:]:
            evs, resps = s.events(5)
            self.assertEqual({e.kv.mod_revision for e in evs}, {rev})
            s.none(0.2)


if __name__ == "__main__":
    main()
