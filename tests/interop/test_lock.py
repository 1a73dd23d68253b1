"""v3lockpb.Lock on one member: hand-over on Unlock, lease revoke and lease
expiry; FIFO order; re-entrance; cancellation and deadlines leave no key;
fencing with the key's create revision; etcdctl lock (with and without a
command) and python3-etcd3's lock.

Shared expectations also run against Debian's etcd (SYNOD_TEST_TARGET=etcd);
tests of etcd's known bugs (a waiter whose lease dies is granted anyway)
run against Synod only."""

import os
import signal
import subprocess
import threading
import time
import unittest

import grpc

from concurrency_pb import LockRequest, LockStub, UnlockRequest
from harness import ETCDCTL, TARGET, MemberTest, main


def synod_only(fn):
    return unittest.skipIf(TARGET != "synod", "etcd's known bug")(fn)


class LockTest(MemberTest):
    def setUp(self):
        super().setUp()
        self.c = self.m.client()
        self.ch = self.m.channel()
        self.lk = LockStub(self.ch)

    def tearDown(self):
        self.ch.close()
        self.c.close()
        super().tearDown()

    def lease(self, ttl=30):
        return self.c.lease(ttl)

    def keys(self, prefix):
        return sorted(md.key for _, md in self.c.get_prefix(prefix))

    def create_rev(self, key):
        v, md = self.c.get(key)
        return md.create_revision if md else 0

    def wait_pending(self, fut, t=0.3):
        time.sleep(t)
        self.assertFalse(fut.done(), "granted while another holds the lock")

    def test_lock_unlock_handover(self):
        l1, l2 = self.lease(), self.lease()
        r1 = self.lk.Lock(LockRequest(name=b"lk", lease=l1.id))
        self.assertEqual(r1.key, b"lk/%x" % l1.id)
        self.assertGreaterEqual(r1.header.revision, self.create_rev(r1.key))
        v, md = self.c.get(r1.key)
        self.assertEqual(md.lease_id, l1.id)
        self.assertEqual(v, b"")
        fut = self.lk.Lock.future(LockRequest(name=b"lk", lease=l2.id))
        self.wait_pending(fut)
        u = self.lk.Unlock(UnlockRequest(key=r1.key))
        r2 = fut.result(timeout=5)
        self.assertEqual(r2.key, b"lk/%x" % l2.id)
        self.assertGreaterEqual(r2.header.revision, u.header.revision)
        self.assertEqual(self.keys("lk/"), [r2.key])
        # Unlocking a key that is gone is not an error (etcd: a Delete).
        self.lk.Unlock(UnlockRequest(key=r1.key))
        self.lk.Unlock(UnlockRequest(key=r2.key))
        self.assertEqual(self.keys("lk/"), [])

    def test_reentrant(self):
        l1, l2 = self.lease(), self.lease()
        r1 = self.lk.Lock(LockRequest(name=b"re", lease=l1.id))
        r1b = self.lk.Lock(LockRequest(name=b"re", lease=l1.id), timeout=5)
        self.assertEqual(r1.key, r1b.key)
        self.assertEqual(self.create_rev(r1.key), self.create_rev(r1b.key))
        # A waiter asking twice with the same lease is granted twice, once.
        f1 = self.lk.Lock.future(LockRequest(name=b"re", lease=l2.id))
        f2 = self.lk.Lock.future(LockRequest(name=b"re", lease=l2.id))
        self.wait_pending(f1)
        self.lk.Unlock(UnlockRequest(key=r1.key))
        self.assertEqual(f1.result(timeout=5).key, f2.result(timeout=5).key)

    def test_fifo(self):
        holder = self.lk.Lock(LockRequest(name=b"q", lease=self.lease().id))
        waiters = []
        for i in range(5):
            le = self.lease()
            waiters.append((le.id, self.lk.Lock.future(LockRequest(name=b"q", lease=le.id))))
            time.sleep(0.05)
        self.wait_pending(waiters[-1][1], 0.2)
        cur = holder
        for lid, fut in waiters:
            self.lk.Unlock(UnlockRequest(key=cur.key))
            cur = fut.result(timeout=5)
            self.assertEqual(cur.key, b"q/%x" % lid)
            for _, other in waiters:
                if other is not fut and not other.done():
                    pass
        self.lk.Unlock(UnlockRequest(key=cur.key))

    def test_handover_on_revoke(self):
        l1, l2 = self.lease(), self.lease()
        r1 = self.lk.Lock(LockRequest(name=b"rv", lease=l1.id))
        fut = self.lk.Lock.future(LockRequest(name=b"rv", lease=l2.id))
        self.wait_pending(fut)
        l1.revoke()
        self.assertEqual(fut.result(timeout=5).key, b"rv/%x" % l2.id)
        self.assertNotIn(r1.key, self.keys("rv/"))

    def test_handover_on_expiry(self):
        l1, l2 = self.lease(2), self.lease(30)
        self.lk.Lock(LockRequest(name=b"ex", lease=l1.id))
        fut = self.lk.Lock.future(LockRequest(name=b"ex", lease=l2.id))
        self.wait_pending(fut)
        t0 = time.time()
        r2 = fut.result(timeout=15)
        self.assertEqual(r2.key, b"ex/%x" % l2.id)
        self.assertGreater(time.time() - t0, 0.5)

    @synod_only
    def test_waiter_lease_revoked_is_never_granted(self):
        l1, l2 = self.lease(), self.lease()
        r1 = self.lk.Lock(LockRequest(name=b"wr", lease=l1.id))
        fut = self.lk.Lock.future(LockRequest(name=b"wr", lease=l2.id))
        self.wait_pending(fut)
        l2.revoke()
        with self.assertRaises(grpc.RpcError) as cm:
            fut.result(timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNKNOWN)
        self.assertEqual(cm.exception.details(), "mutex: session is expired")
        self.lk.Unlock(UnlockRequest(key=r1.key))
        self.assertEqual(self.keys("wr/"), [])

    @synod_only
    def test_waiter_lease_expires_is_never_granted(self):
        l1, l2 = self.lease(30), self.lease(2)
        r1 = self.lk.Lock(LockRequest(name=b"we", lease=l1.id))
        fut = self.lk.Lock.future(LockRequest(name=b"we", lease=l2.id))
        with self.assertRaises(grpc.RpcError) as cm:
            fut.result(timeout=15)
        self.assertEqual(cm.exception.details(), "mutex: session is expired")
        self.assertEqual(self.keys("we/"), [r1.key])

    def test_deadline_leaves_no_key(self):
        l1, l2 = self.lease(), self.lease()
        r1 = self.lk.Lock(LockRequest(name=b"dl", lease=l1.id))
        with self.assertRaises(grpc.RpcError) as cm:
            self.lk.Lock(LockRequest(name=b"dl", lease=l2.id), timeout=0.5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        deadline = time.time() + 5
        while time.time() < deadline and self.keys("dl/") != [r1.key]:
            time.sleep(0.05)
        self.assertEqual(self.keys("dl/"), [r1.key])

    def test_cancel_leaves_no_key(self):
        l1 = self.lease()
        r1 = self.lk.Lock(LockRequest(name=b"cn", lease=l1.id))
        futs = [self.lk.Lock.future(LockRequest(name=b"cn", lease=self.lease().id)) for _ in range(3)]
        self.wait_pending(futs[0])
        self.assertEqual(len(self.keys("cn/")), 4)
        for f in futs:
            f.cancel()
        deadline = time.time() + 5
        while time.time() < deadline and self.keys("cn/") != [r1.key]:
            time.sleep(0.05)
        self.assertEqual(self.keys("cn/"), [r1.key])
        # the holder is unaffected, and the lock still hands over
        fut = self.lk.Lock.future(LockRequest(name=b"cn", lease=self.lease().id))
        self.wait_pending(fut, 0.1)
        self.lk.Unlock(UnlockRequest(key=r1.key))
        fut.result(timeout=5)

    @synod_only
    def test_cancel_of_reentrant_call_keeps_the_lock(self):
        # A second Lock with the holder's lease returns at once; one that
        # waits with a waiter's lease and is cancelled must not delete the
        # key an earlier call with the same lease made (etcd deletes it,
        # and the first call then waits on a key that no longer exists).
        l1, l2 = self.lease(), self.lease()
        r1 = self.lk.Lock(LockRequest(name=b"cr", lease=l1.id))
        f1 = self.lk.Lock.future(LockRequest(name=b"cr", lease=l2.id))
        self.wait_pending(f1)
        f2 = self.lk.Lock.future(LockRequest(name=b"cr", lease=l2.id))
        time.sleep(0.2)
        f2.cancel()
        time.sleep(0.3)
        self.assertEqual(len(self.keys("cr/")), 2)
        self.lk.Unlock(UnlockRequest(key=r1.key))
        self.assertEqual(f1.result(timeout=5).key, b"cr/%x" % l2.id)

    def test_errors(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.lk.Lock(LockRequest(name=b"err", lease=0x7777), timeout=5)
        self.assertEqual(cm.exception.details(), "etcdserver: requested lease not found")
        # KV errors reach Lock callers as Unknown: etcd's server runs client
        # code there, whose errors carry no gRPC status
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNKNOWN)
        with self.assertRaises(grpc.RpcError) as cm:
            self.lk.Unlock(UnlockRequest(key=b""), timeout=5)
        self.assertEqual(cm.exception.details(), "etcdserver: key is not provided")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNKNOWN)
        self.assertEqual(self.keys("err/"), [])

    def test_lease_zero_grants_a_session_lease(self):
        # etcd's server makes a session with a fresh 60 s lease.
        r = self.lk.Lock(LockRequest(name=b"z", lease=0), timeout=5)
        v, md = self.c.get(r.key)
        self.assertNotEqual(md.lease_id, 0)
        self.assertEqual(r.key, b"z/%x" % md.lease_id)
        ttl = self.c.get_lease_info(md.lease_id)
        self.assertGreater(ttl.TTL, 50)
        self.assertLessEqual(ttl.grantedTTL, 60)
        self.lk.Unlock(UnlockRequest(key=r.key))

    def test_fencing(self):
        """The key's create revision is a fencing token: a holder that lost
        the lock (here: its lease revoked) can no longer pass the guard,
        and the next holder can."""
        l1, l2 = self.lease(), self.lease()
        r1 = self.lk.Lock(LockRequest(name=b"fence", lease=l1.id))
        rev1 = self.create_rev(r1.key)
        tx = self.c.transactions

        def guarded_put(key, rev, value):
            ok, _ = self.c.transaction(compare=[tx.create(key) == rev],
                                       success=[tx.put("fenced-resource", value)], failure=[])
            return ok

        self.assertTrue(guarded_put(r1.key, rev1, "one"))
        fut = self.lk.Lock.future(LockRequest(name=b"fence", lease=l2.id))
        self.wait_pending(fut)
        l1.revoke()
        r2 = fut.result(timeout=5)
        self.assertFalse(guarded_put(r1.key, rev1, "stale"))
        rev2 = self.create_rev(r2.key)
        self.assertGreater(rev2, rev1)
        self.assertTrue(guarded_put(r2.key, rev2, "two"))
        self.assertEqual(self.c.get("fenced-resource")[0], b"two")

    def test_many_contenders(self):
        inside = [0]
        overlap = []
        count = [0]
        mu = threading.Lock()

        def contender():
            ch = self.m.channel()
            lk = LockStub(ch)
            le = self.c.lease(30)
            for _ in range(15):
                r = lk.Lock(LockRequest(name=b"many", lease=le.id), timeout=30)
                with mu:
                    inside[0] += 1
                    if inside[0] != 1:
                        overlap.append(inside[0])
                time.sleep(0.001)
                with mu:
                    inside[0] -= 1
                    count[0] += 1
                lk.Unlock(UnlockRequest(key=r.key), timeout=10)
            ch.close()

        ts = [threading.Thread(target=contender) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(overlap, [])
        self.assertEqual(count[0], 8 * 15)

    # ------------------------------------------------------------ etcdctl

    def test_etcdctl_lock_exec(self):
        """etcdctl lock NAME -- cmd: the recipe (KV + watch + lease), with
        ETCD_LOCK_KEY / ETCD_LOCK_REV in the command's environment; it waits
        for a Lock RPC holder."""
        holder = self.lk.Lock(LockRequest(name=b"ctl", lease=self.lease().id))
        env = dict(os.environ, ETCDCTL_API="3")
        for k in list(env):
            if k.startswith("ETCD_"):
                del env[k]
        p = subprocess.Popen([ETCDCTL, "--endpoints", self.m.endpoint, "lock", "ctl", "--",
                              "sh", "-c", 'echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"'],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        time.sleep(0.5)
        self.assertIsNone(p.poll(), "etcdctl lock ran while the lock was held")
        u = self.lk.Unlock(UnlockRequest(key=holder.key))
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 0, err)
        key, rev = out.decode().split()
        self.assertTrue(key.startswith("ctl/"), key)
        self.assertGreaterEqual(int(rev), u.header.revision)
        self.assertEqual(self.keys("ctl/"), [])

    def test_etcdctl_lock_hold_then_signal(self):
        env = dict(os.environ, ETCDCTL_API="3")
        for k in list(env):
            if k.startswith("ETCD_"):
                del env[k]
        p = subprocess.Popen([ETCDCTL, "--endpoints", self.m.endpoint, "lock", "held"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.time() + 10
        while time.time() < deadline and not self.keys("held/"):
            time.sleep(0.05)
        (key,) = self.keys("held/")
        # A Lock RPC on the same name waits for etcdctl's holder.
        fut = self.lk.Lock.future(LockRequest(name=b"held", lease=self.lease().id))
        self.wait_pending(fut, 0.5)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=10)
        self.assertIn(key, out)
        r = fut.result(timeout=5)
        self.assertNotEqual(r.key, key)

    # ------------------------------------------------------------ python3-etcd3

    def test_python_etcd3_lock(self):
        """python3-etcd3's Lock is its own recipe (one key, a version-0
        Txn, a watch for the delete): it must work against Synod too.

        Debian's python3-etcd3 0.12 waits through tenacity with a callback
        signature that Debian's tenacity no longer accepts, so a contended
        acquire(timeout>0) raises TypeError against any server. The test
        waits the same way the library means to (watch the key, try
        again) with acquire(timeout=0), which never reaches that path."""
        inside = [0]
        overlap = []
        errors = []
        mu = threading.Lock()

        def contender(i):
            c = self.m.client()
            for _ in range(5):
                lock = c.lock("py-lock", ttl=30)
                deadline = time.time() + 30
                while not lock.acquire(timeout=0):
                    if time.time() > deadline:
                        errors.append("timed out")
                        return
                    try:
                        c.watch_once(lock.key, 0.2)
                    except Exception:
                        pass
                with mu:
                    inside[0] += 1
                    if inside[0] != 1:
                        overlap.append(inside[0])
                time.sleep(0.005)
                with mu:
                    inside[0] -= 1
                self.assertTrue(lock.release())
            c.close()

        ts = [threading.Thread(target=contender, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(overlap, [])
        self.assertEqual(errors, [])
        lock = self.c.lock("py-lock2", ttl=30)
        self.assertTrue(lock.acquire(timeout=5))
        self.assertTrue(lock.is_acquired())
        other = self.c.lock("py-lock2", ttl=30)
        self.assertFalse(other.acquire(timeout=0))
        lock.release()
        self.assertTrue(other.acquire(timeout=0))
        other.release()


if __name__ == "__main__":
    main()
