"""v3electionpb.Election on one member: campaign order, Leader, Proclaim,
Resign hand-over, lease loss, re-campaign, Observe (every change, in order,
and Synod's "no leader"), cancellation; etcdctl elect and elect -l.

Shared expectations also run against Debian's etcd (SYNOD_TEST_TARGET=etcd)."""

import os
import queue
import signal
import subprocess
import threading
import time
import unittest

import grpc

from concurrency_pb import (CampaignRequest, ElectionStub, LeaderKey, LeaderRequest,
                            ProclaimRequest, ResignRequest)
from harness import ETCDCTL, TARGET, MemberTest, main, rpc_pb2


def synod_only(fn):
    return unittest.skipIf(TARGET != "synod", "Synod-only behaviour (etcd differs)")(fn)


class Observer:
    """Collects an Observe stream in a thread."""

    def __init__(self, stub, name):
        self.call = stub.Observe(LeaderRequest(name=name))
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for r in self.call:
                self.q.put((r.header.revision, r.kv.key, r.kv.value, r.kv.create_revision))
        except grpc.RpcError as e:
            self.q.put(("end", e.code()))

    def next(self, timeout=5):
        return self.q.get(timeout=timeout)

    def drain(self, settle=0.3):
        out = []
        deadline = time.time() + settle
        while True:
            try:
                out.append(self.q.get(timeout=max(deadline - time.time(), 0.01)))
            except queue.Empty:
                return out

    def close(self):
        self.call.cancel()


class ElectionBase(MemberTest):
    def setUp(self):
        super().setUp()
        self.c = self.m.client()
        self.ch = self.m.channel()
        self.e = ElectionStub(self.ch)

    def tearDown(self):
        self.ch.close()
        self.c.close()
        super().tearDown()

    def keys(self, prefix):
        return sorted(md.key for _, md in self.c.get_prefix(prefix))

    def campaign(self, name, value, ttl=30, **kw):
        le = self.c.lease(ttl)
        return le, self.e.Campaign(CampaignRequest(name=name, lease=le.id, value=value), **kw)



class ElectionTest(ElectionBase):
    def test_campaign_order_and_resign(self):
        l0, r0 = self.campaign(b"el", b"v0")
        self.assertEqual(r0.leader.name, b"el")
        self.assertEqual(r0.leader.key, b"el/%x" % l0.id)
        self.assertEqual(r0.leader.lease, l0.id)
        v, md = self.c.get(r0.leader.key)
        self.assertEqual(v, b"v0")
        self.assertEqual(r0.leader.rev, md.create_revision)
        futs = []
        for i in (1, 2):
            le = self.c.lease(30)
            futs.append(self.e.Campaign.future(CampaignRequest(name=b"el", lease=le.id, value=b"v%d" % i)))
            time.sleep(0.1)
        time.sleep(0.2)
        self.assertFalse(any(f.done() for f in futs))
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"el")).kv.value, b"v0")
        self.e.Resign(ResignRequest(leader=r0.leader))
        r1 = futs[0].result(timeout=5)
        self.assertEqual(self.c.get(r1.leader.key)[0], b"v1")
        time.sleep(0.2)
        self.assertFalse(futs[1].done())
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"el")).kv.value, b"v1")
        self.e.Resign(ResignRequest(leader=r1.leader))
        r2 = futs[1].result(timeout=5)
        self.e.Resign(ResignRequest(leader=r2.leader))
        self.assertEqual(self.keys("el/"), [])

    def test_leader_errors(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.e.Leader(LeaderRequest(name=b"nobody"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNKNOWN)
        self.assertEqual(cm.exception.details(), "election: no leader")
        with self.assertRaises(grpc.RpcError) as cm:
            self.e.Proclaim(ProclaimRequest(value=b"x"))
        self.assertEqual(cm.exception.details(), '"leader" field must be provided')
        with self.assertRaises(grpc.RpcError) as cm:
            self.e.Resign(ResignRequest())
        self.assertEqual(cm.exception.details(), '"leader" field must be provided')
        # KV errors come back as Unknown, as from etcd's client-side recipes
        empty = LeaderKey(name=b"x", key=b"", rev=1, lease=1)
        for call, message in (
                (lambda: self.e.Resign(ResignRequest(leader=empty)), "etcdserver: key is not provided"),
                (lambda: self.e.Proclaim(ProclaimRequest(leader=empty, value=b"v")), "etcdserver: key is not provided"),
                (lambda: self.e.Campaign(CampaignRequest(name=b"x", lease=0x7777, value=b"v"), timeout=5),
                 "etcdserver: requested lease not found")):
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNKNOWN)
            self.assertEqual(cm.exception.details(), message)

    def test_proclaim(self):
        l0, r0 = self.campaign(b"pr", b"a")
        self.e.Proclaim(ProclaimRequest(leader=r0.leader, value=b"b"))
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"pr")).kv.value, b"b")
        # a stale leader key (resigned) cannot proclaim
        self.e.Resign(ResignRequest(leader=r0.leader))
        with self.assertRaises(grpc.RpcError) as cm:
            self.e.Proclaim(ProclaimRequest(leader=r0.leader, value=b"c"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNKNOWN)
        self.assertEqual(cm.exception.details(), "election: not leader")
        # a wrong create revision cannot either
        l1, r1 = self.campaign(b"pr", b"d")
        bad = LeaderKey(name=r1.leader.name, key=r1.leader.key, rev=r1.leader.rev + 1, lease=r1.leader.lease)
        with self.assertRaises(grpc.RpcError) as cm:
            self.e.Proclaim(ProclaimRequest(leader=bad, value=b"e"))
        self.assertEqual(cm.exception.details(), "election: not leader")
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"pr")).kv.value, b"d")

    @synod_only
    def test_proclaim_only_while_leading(self):
        # etcd lets a waiting candidate "proclaim" (its own key's value);
        # Synod only lets the leader.
        l0, r0 = self.campaign(b"pw", b"a")
        le = self.c.lease(30)
        fut = self.e.Campaign.future(CampaignRequest(name=b"pw", lease=le.id, value=b"b"))
        time.sleep(0.3)
        key = b"pw/%x" % le.id
        rev = self.c.get(key)[1].create_revision
        with self.assertRaises(grpc.RpcError) as cm:
            self.e.Proclaim(ProclaimRequest(leader=LeaderKey(name=b"pw", key=key, rev=rev, lease=le.id), value=b"x"))
        self.assertEqual(cm.exception.details(), "election: not leader")
        self.e.Resign(ResignRequest(leader=r0.leader))
        r1 = fut.result(timeout=5)
        self.e.Proclaim(ProclaimRequest(leader=r1.leader, value=b"x"))
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"pw")).kv.value, b"x")

    def test_recampaign_same_lease(self):
        l0, r0 = self.campaign(b"rc", b"a")
        r0b = self.e.Campaign(CampaignRequest(name=b"rc", lease=l0.id, value=b"b"), timeout=5)
        self.assertEqual(r0b.leader.key, r0.leader.key)
        self.assertEqual(r0b.leader.rev, r0.leader.rev)
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"rc")).kv.value, b"b")

    def test_handover_on_lease_revoke_and_expiry(self):
        l0, r0 = self.campaign(b"hl", b"a", ttl=30)
        l1 = self.c.lease(2)
        f1 = self.e.Campaign.future(CampaignRequest(name=b"hl", lease=l1.id, value=b"b"))
        time.sleep(0.2)
        l0.revoke()
        r1 = f1.result(timeout=5)
        self.assertEqual(r1.leader.lease, l1.id)
        l2 = self.c.lease(30)
        f2 = self.e.Campaign.future(CampaignRequest(name=b"hl", lease=l2.id, value=b"c"))
        r2 = f2.result(timeout=15)  # l1 expires
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"hl")).kv.value, b"c")
        self.assertEqual(r2.leader.lease, l2.id)

    @synod_only
    def test_candidate_whose_lease_dies_never_wins(self):
        l0, r0 = self.campaign(b"cd", b"a")
        l1 = self.c.lease(30)
        f1 = self.e.Campaign.future(CampaignRequest(name=b"cd", lease=l1.id, value=b"b"))
        time.sleep(0.2)
        l1.revoke()
        with self.assertRaises(grpc.RpcError) as cm:
            f1.result(timeout=5)
        self.assertEqual(cm.exception.details(), "election: session is expired")
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"cd")).kv.value, b"a")

    def test_cancelled_campaign_leaves_no_key(self):
        l0, r0 = self.campaign(b"cc", b"a")
        with self.assertRaises(grpc.RpcError) as cm:
            self.campaign(b"cc", b"b", timeout=0.5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        deadline = time.time() + 5
        while time.time() < deadline and self.keys("cc/") != [r0.leader.key]:
            time.sleep(0.05)
        self.assertEqual(self.keys("cc/"), [r0.leader.key])

    def test_observe(self):
        o = Observer(self.e, b"ob")
        l0, r0 = self.campaign(b"ob", b"a")
        le = self.c.lease(30)
        f1 = self.e.Campaign.future(CampaignRequest(name=b"ob", lease=le.id, value=b"b"))
        time.sleep(0.2)
        for v in (b"a1", b"a2", b"a3"):
            self.e.Proclaim(ProclaimRequest(leader=r0.leader, value=v))
        self.e.Resign(ResignRequest(leader=r0.leader))
        r1 = f1.result(timeout=5)
        self.e.Proclaim(ProclaimRequest(leader=r1.leader, value=b"b1"))
        self.e.Resign(ResignRequest(leader=r1.leader))
        got = o.drain(1.0)
        o.close()
        values = [g[2] for g in got if g[1]]
        if TARGET == "synod":
            # exactly: none, then every leader and proclamation, then none
            self.assertEqual([g[1] for g in got][0], b"")
            self.assertEqual(got[-1][1], b"")
            self.assertEqual(got[-1][3], 0)
            self.assertEqual(values, [b"a", b"a1", b"a2", b"a3", b"b", b"b1"])
            revs = [g[0] for g in got]
            self.assertEqual(revs, sorted(revs))
        else:
            for v in values:
                self.assertIn(v, [b"a", b"a1", b"a2", b"a3", b"b", b"b1"])
            self.assertEqual(values[-1], b"b1")

    def test_observe_starts_with_current_leader(self):
        l0, r0 = self.campaign(b"os", b"now")
        o = Observer(self.e, b"os")
        first = o.next()
        self.assertEqual(first[1], r0.leader.key)
        self.assertEqual(first[2], b"now")
        o.close()

    @synod_only
    def test_observe_burst_drops_nothing(self):
        l0, r0 = self.campaign(b"burst", b"0")
        o = Observer(self.e, b"burst")
        self.assertEqual(o.next()[2], b"0")
        n = 300
        errs = []

        def proclaimer(k):
            ch = self.m.channel()
            e = ElectionStub(ch)
            for i in range(k, n, 4):
                try:
                    e.Proclaim(ProclaimRequest(leader=r0.leader, value=b"%d" % (i + 1)))
                except grpc.RpcError as ex:
                    errs.append(ex)
            ch.close()

        ts = [threading.Thread(target=proclaimer, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errs, [])
        got = o.drain(1.0)
        o.close()
        self.assertEqual(len(got), n)
        self.assertEqual(sorted(int(g[2]) for g in got), list(range(1, n + 1)))
        revs = [g[0] for g in got]
        self.assertEqual(revs, sorted(set(revs)))
        # each value as applied at its revision, and the last one is current
        kv = self.kv_stub()
        for rev, _, val, _ in got[:: n // 10]:
            r = kv.Range(rpc_pb2.RangeRequest(key=r0.leader.key, revision=rev))
            self.assertEqual(r.kvs[0].value, val)
        self.assertEqual(got[-1][2], self.c.get(r0.leader.key)[0])

    # ------------------------------------------------------------ etcdctl

    def ctl_proc(self, *args):
        env = dict(os.environ, ETCDCTL_API="3")
        for k in list(env):
            if k.startswith("ETCD_"):
                del env[k]
        return subprocess.Popen([ETCDCTL, "--endpoints", self.m.endpoint] + list(args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def test_etcdctl_elect(self):
        """etcdctl elect (clientv3's recipe) and the Election RPC share the
        same keys: each waits for the other."""
        l0, r0 = self.campaign(b"ctl", b"rpc")
        obs = self.ctl_proc("elect", "-l", "ctl")
        cand = self.ctl_proc("elect", "ctl", "from-etcdctl")
        time.sleep(1.0)
        self.assertIsNone(cand.poll())
        self.assertEqual(len(self.keys("ctl/")), 2)
        self.e.Resign(ResignRequest(leader=r0.leader))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.e.Leader(LeaderRequest(name=b"ctl")).kv.value == b"from-etcdctl":
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        self.assertEqual(self.e.Leader(LeaderRequest(name=b"ctl")).kv.value, b"from-etcdctl")
        # an RPC candidate waits for etcdctl's leader
        le = self.c.lease(30)
        fut = self.e.Campaign.future(CampaignRequest(name=b"ctl", lease=le.id, value=b"next"))
        time.sleep(0.3)
        self.assertFalse(fut.done())
        cand.send_signal(signal.SIGINT)  # etcdctl resigns
        out, _ = cand.communicate(timeout=10)
        self.assertIn(b"from-etcdctl", out)
        fut.result(timeout=10)
        time.sleep(0.5)
        obs.send_signal(signal.SIGINT)
        out, _ = obs.communicate(timeout=10)
        lines = out.decode().split()
        for v in ("rpc", "from-etcdctl", "next"):
            self.assertIn(v, lines)
        self.assertLess(lines.index("rpc"), lines.index("from-etcdctl"))
        self.assertLess(lines.index("from-etcdctl"), lines.index("next"))


@unittest.skipIf(TARGET != "synod", "a Synod test hook")
class SlowObserverTest(ElectionBase):
    """A small queue limit (SYNOD_OBSERVE_QUEUE_LIMIT) and debug logs, to
    see the observer fall behind and catch up."""

    member_args = ["--log-level", "debug"]

    def setUp(self):
        os.environ["SYNOD_OBSERVE_QUEUE_LIMIT"] = "65536"
        try:
            super().setUp()
        finally:
            del os.environ["SYNOD_OBSERVE_QUEUE_LIMIT"]

    def test_observe_slow_reader_catches_up(self):
        """An observer that does not read while 3 MiB of proclamations go
        by: past its queue limit the server stops queueing for it and keeps
        only the revision it needs; when it reads again it is caught up from
        history. Every proclamation arrives, in order."""
        l0, r0 = self.campaign(b"slow", b"start")
        # The observer's own channel, without BDP probing: its flow-control
        # window stays at 64 KiB, so what the server cannot send must queue
        # there. With probing the window may grow to megabytes, absorb the
        # whole 3 MiB, and the limit is never reached (seen under load).
        slow_ch = grpc.insecure_channel(self.m.endpoint, options=[("grpc.http2.bdp_probe", 0)])
        self.addCleanup(slow_ch.close)
        call = ElectionStub(slow_ch).Observe(LeaderRequest(name=b"slow"))
        first = next(call)
        self.assertEqual(first.kv.value, b"start")
        n = 3000
        pad = b"x" * 1024
        futs = []
        for i in range(n):
            futs.append(self.e.Proclaim.future(ProclaimRequest(leader=r0.leader, value=b"%06d" % i + pad)))
            if len(futs) >= 64:
                futs.pop(0).result(timeout=30)
        for f in futs:
            f.result(timeout=30)
        got = []
        for r in call:
            got.append(int(r.kv.value[:6]))
            if len(got) == n:
                break
        call.cancel()
        self.assertEqual(sorted(got), list(range(n)))
        # the pipelined Proclaims may commit in any order; the stream must
        # follow the store's order: compare with history
        kv = self.kv_stub()
        hist = kv.Range(rpc_pb2.RangeRequest(key=r0.leader.key))
        self.assertEqual(int(hist.kvs[0].value[:6]), got[-1])
        log = open(self.m.log_path, errors="replace").read()
        self.assertIn("is over its queue limit", log)
        self.assertIn("caught up from history", log)



if __name__ == "__main__":
    main()
