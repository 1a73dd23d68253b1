#!/usr/bin/python3
"""SIGTERM and SIGINT in the middle of a storm of writes, reads, watches,
lease keep-alives, unknown methods and half-open streams: the member exits
with status 0 (under the sanitizer build a leak or a use-after-free makes the
status non-zero), and a restart finds every acknowledged write."""

import signal
import threading
import time
import unittest

import grpc

from harness import MemberTest, TARGET, rpc_pb2, rpc_pb2_grpc


class Storm:
    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.stop = threading.Event()
        self.acked = {}
        self.lock = threading.Lock()
        self.threads = []

    def writer(self, tid):
        ch = grpc.insecure_channel(self.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        i = 0
        while not self.stop.is_set():
            key = b"s%d/%d" % (tid, i)
            i += 1
            try:
                r = kv.Put(rpc_pb2.PutRequest(key=key, value=key), timeout=5)
                with self.lock:
                    self.acked[key] = r.header.revision
            except grpc.RpcError:
                time.sleep(0.01)
        ch.close()

    def reader(self):
        ch = grpc.insecure_channel(self.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        while not self.stop.is_set():
            try:
                kv.Range(rpc_pb2.RangeRequest(key=b"s", range_end=b"t", limit=50), timeout=5)
                kv.Range(rpc_pb2.RangeRequest(key=b"s", range_end=b"t", serializable=True, count_only=True),
                         timeout=5)
                ch.unary_unary("/etcdserverpb.KV/Nope")(b"", timeout=5)
            except grpc.RpcError:
                time.sleep(0.01)
        ch.close()

    def watcher(self):
        # watches and keep-alive streams left open when the server stops
        ch = grpc.insecure_channel(self.endpoint)
        watch = rpc_pb2_grpc.WatchStub(ch)

        def reqs():
            yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"s", range_end=b"t"))
            while not self.stop.is_set():
                time.sleep(0.05)
        try:
            for _ in watch.Watch(reqs()):
                if self.stop.is_set():
                    break
        except grpc.RpcError:
            pass
        ch.close()

    def leases(self):
        ch = grpc.insecure_channel(self.endpoint)
        lease = rpc_pb2_grpc.LeaseStub(ch)
        try:
            lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=5).ID

            def reqs():
                while not self.stop.is_set():
                    yield rpc_pb2.LeaseKeepAliveRequest(ID=lid)
                    time.sleep(0.02)
            for _ in lease.LeaseKeepAlive(reqs()):
                if self.stop.is_set():
                    break
        except grpc.RpcError:
            pass
        ch.close()

    def start(self):
        targets = [lambda t=t: self.writer(t) for t in range(6)] + [self.reader] * 2 + [self.watcher] * 3 + \
                  [self.leases] * 2
        for fn in targets:
            th = threading.Thread(target=fn, daemon=True)
            th.start()
            self.threads.append(th)

    def join(self):
        self.stop.set()
        for th in self.threads:
            th.join(timeout=30)


@unittest.skipIf(TARGET != "synod", "Synod's exit status")
class ShutdownUnderLoad(MemberTest):
    def storm_then(self, sig):
        s = Storm(self.m.endpoint)
        s.start()
        time.sleep(1.5)
        self.assertGreater(len(s.acked), 20, "the storm did not get going")
        self.m.proc.send_signal(sig)
        code = self.m.proc.wait(timeout=60)
        s.join()
        self.assertEqual(code, 0, "unclean exit on %s:\n%s" % (sig, self.m.read_log()))
        # every acknowledged write survived the stop
        self.m.start()
        ch = grpc.insecure_channel(self.m.endpoint)
        r = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"s", range_end=b"t"), timeout=30)
        ch.close()
        have = {kv.key: kv.mod_revision for kv in r.kvs}
        for key, rev in s.acked.items():
            self.assertEqual(have.get(key), rev, "acknowledged %r lost" % key)

    def test_sigterm(self):
        self.storm_then(signal.SIGTERM)

    def test_sigint(self):
        self.storm_then(signal.SIGINT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
