#!/usr/bin/python3
"""Maintenance on whole-store images, checked with Debian's etcdctl and
against Debian's etcd (SYNOD_TEST_TARGET=etcd) where the behaviour is
shared: `etcdctl defrag` shrinks the file and keeps the data; the backend
quota raises NOSPACE (puts refused with etcd's error, the alarm listed and
shown by `endpoint status`) and delete + compact + defrag + disarm bring
writes back; `etcdctl snapshot save` writes the image with etcd's sha256
trailer."""

import hashlib
import json
import os
import unittest

import grpc

from harness import MemberTest, TARGET, etcdctl, rpc_pb2, rpc_pb2_grpc

NOSPACE_ERR = "etcdserver: mvcc: database space exceeded"


def db_size(test):
    return test.ctl_json("endpoint", "status")[0]["Status"]["dbSize"]


class Defrag(MemberTest):
    def test_defrag_shrinks_and_keeps_data(self):
        kv = self.kv_stub()
        big = b"v" * 4096
        for i in range(3000):
            kv.Put(rpc_pb2.PutRequest(key=b"big/%05d" % i, value=big))
        self.ctl("put", "keep", "me")
        r = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"big/", range_end=b"big0"))
        self.assertEqual(r.deleted, 3000)
        self.ctl("compact", str(r.header.revision), "--physical")
        before = db_size(self)
        out = self.ctl("defrag").stdout
        self.assertEqual(out.strip(), "Finished defragmenting etcd member[%s]" % self.m.endpoint)
        after = db_size(self)
        self.assertLess(after * 4, before, (before, after))
        self.assertEqual(self.ctl("get", "keep", "--print-value-only").stdout.strip(), "me")
        self.ctl("put", "later", "1")
        self.assertEqual(self.ctl("get", "later", "--print-value-only").stdout.strip(), "1")


class NoSpace(MemberTest):
    member_args = ["--quota-backend-bytes", str(16 * 1024 * 1024)]

    def fill_until_nospace(self):
        kv = self.kv_stub()
        big = b"x" * (256 * 1024)
        for i in range(1000):
            try:
                kv.Put(rpc_pb2.PutRequest(key=b"fill/%04d" % i, value=big))
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                self.assertEqual(e.details(), NOSPACE_ERR)
                return i
        self.fail("the quota was never reached")

    def test_nospace_alarm_and_recovery(self):
        self.fill_until_nospace()
        member_id = self.ctl_json("endpoint", "status")[0]["Status"]["header"]["member_id"]
        # etcdctl's error and the alarm, as etcd shows them.
        err = self.ctl_err("put", "k", "v")
        self.assertIn(NOSPACE_ERR, err)
        out = self.ctl("alarm", "list").stdout
        self.assertEqual(out, "memberID:%d alarm:NOSPACE \n" % member_id)
        st = self.ctl_json("endpoint", "status")[0]["Status"]
        self.assertIn("memberID:%d alarm:NOSPACE " % member_id, st.get("errors", []))
        table = self.ctl("endpoint", "status", "-w", "table").stdout
        self.assertIn("alarm:NOSPACE", table)
        # Small puts are refused too while the alarm stands (the capped
        # applier), and so is a txn that puts; reads and deletes work.
        self.assertIn(NOSPACE_ERR, self.ctl_err("put", "tiny", "1"))
        self.assertIn(NOSPACE_ERR, self.ctl_err("txn", stdin="\n\nput t 1\n\n"))
        self.assertIn(NOSPACE_ERR, self.ctl_err("lease", "grant", "60"))
        self.assertEqual(json.loads(self.ctl("get", "fill/", "--prefix", "--limit", "1", "-w", "json").stdout)["count"] > 0, True)
        r = self.kv_stub().DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"fill/", range_end=b"fill0"))
        self.assertGreater(r.deleted, 0)
        self.ctl("compact", str(r.header.revision), "--physical")
        self.ctl("defrag")
        # Still refused until the alarm is disarmed.
        self.assertIn(NOSPACE_ERR, self.ctl_err("put", "k", "v"))
        out = self.ctl("alarm", "disarm").stdout
        self.assertEqual(out, "memberID:%d alarm:NOSPACE \n" % member_id)
        self.assertEqual(self.ctl("alarm", "list").stdout, "")
        self.ctl("put", "k", "v")
        self.assertEqual(self.ctl("get", "k", "--print-value-only").stdout.strip(), "v")
        self.assertIn("granted", self.ctl("lease", "grant", "60").stdout)

    def test_alarm_survives_restart(self):
        self.fill_until_nospace()
        self.m.stop()
        self.m.start()
        self.assertIn("alarm:NOSPACE", self.ctl("alarm", "list").stdout)
        self.assertIn(NOSPACE_ERR, self.ctl_err("put", "tiny", "1"))


class SnapshotSave(MemberTest):
    def test_snapshot_save_has_sha256_trailer(self):
        for i in range(500):
            self.ctl("put", "k%03d" % i, "v%d" % i) if i % 100 == 0 else None
        kv = self.kv_stub()
        for i in range(2000):
            kv.Put(rpc_pb2.PutRequest(key=b"k/%05d" % i, value=b"v" * 100))
        path = os.path.join(self.workdir, "snap.db")
        out = self.ctl("snapshot", "save", path).stdout
        self.assertEqual(out.strip(), "Snapshot saved at %s" % path)
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(len(data) % 512, 32)
        self.assertEqual(hashlib.sha256(data[:-32]).digest(), data[-32:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
