#!/usr/bin/python3
"""KV fields and errors that etcdctl 3.4 cannot express, sent as raw gRPC
requests with the etcd3 package's generated stubs: count_only, revision
filters, lease compares, nested txns, every validation error, size limits,
and unknown methods."""

import grpc

from harness import MemberTest, main, rpc_pb2


def put(k, v=b"", **kw):
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v, **kw))


def rng(k, **kw):
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k, **kw))


class RawKV(MemberTest):
    def setUp(self):
        super().setUp()
        self.kv = self.kv_stub()

    def put(self, k, v=b"v", **kw):
        return self.kv.Put(rpc_pb2.PutRequest(key=k, value=v, **kw))

    def test_count_only_and_filters(self):
        for k in [b"a", b"b", b"b/1", b"b/2", b"c"]:  # revisions 2..6
            self.put(k)
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True))
        self.assertEqual((r.count, len(r.kvs)), (5, 0))
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"b", range_end=b"c", count_only=True))
        self.assertEqual(r.count, 3)
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"a", range_end=b"\0", min_mod_revision=3, max_mod_revision=5))
        self.assertEqual([kv.key for kv in r.kvs], [b"b", b"b/1", b"b/2"])
        self.assertEqual(r.count, 5)
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"a", range_end=b"\0", min_create_revision=5, limit=1))
        self.assertEqual([kv.key for kv in r.kvs], [b"b/2"])
        self.assertTrue(r.more)
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"a", range_end=b"\0", max_create_revision=2))
        self.assertEqual([kv.key for kv in r.kvs], [b"a"])
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"a", range_end=b"\0", keys_only=True, limit=2))
        self.assertEqual([(kv.key, kv.value) for kv in r.kvs], [(b"a", b""), (b"b", b"")])
        # a count at a past revision
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True, revision=3))
        self.assertEqual(r.count, 2)
        # sort by target without an order means ascending
        self.put(b"a", b"zzz")
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"a", range_end=b"\0",
                                                sort_target=rpc_pb2.RangeRequest.VALUE, limit=1))
        self.assertEqual(r.kvs[0].key, b"b")
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"a", range_end=b"\0", sort_target=rpc_pb2.RangeRequest.MOD,
                                                sort_order=rpc_pb2.RangeRequest.DESCEND, limit=2))
        self.assertEqual([kv.key for kv in r.kvs], [b"a", b"c"])
        self.assertEqual(r.count, 5)

    def test_headers_everywhere(self):
        resps = [self.put(b"k"),
                 self.kv.Range(rpc_pb2.RangeRequest(key=b"k")),
                 self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k")),
                 self.kv.Txn(rpc_pb2.TxnRequest()),
                 self.kv.Compact(rpc_pb2.CompactionRequest(revision=2))]
        ids = set()
        for r in resps:
            self.assertTrue(r.HasField("header"))
            self.assertNotEqual(r.header.cluster_id, 0)
            self.assertNotEqual(r.header.member_id, 0)
            self.assertGreater(r.header.raft_term, 0)
            ids.add((r.header.cluster_id, r.header.member_id))
        self.assertEqual(len(ids), 1)
        self.assertEqual([r.header.revision for r in resps], [2, 2, 3, 3, 3])

    def test_validation_errors(self):
        bad = grpc.StatusCode.INVALID_ARGUMENT
        empty = "etcdserver: key is not provided"
        self.assertGrpcError(lambda: self.kv.Range(rpc_pb2.RangeRequest()), bad, empty)
        self.assertGrpcError(lambda: self.kv.Put(rpc_pb2.PutRequest(value=b"x")), bad, empty)
        self.assertGrpcError(lambda: self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest()), bad, empty)
        self.assertGrpcError(lambda: self.kv.Txn(rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(target=rpc_pb2.Compare.VERSION)])), bad, empty)
        self.assertGrpcError(lambda: self.kv.Txn(rpc_pb2.TxnRequest(success=[put(b"")])), bad, empty)
        self.assertGrpcError(lambda: self.put(b"k", b"v", ignore_value=True), bad, "etcdserver: value is provided")
        self.assertGrpcError(lambda: self.put(b"k", b"", lease=5, ignore_lease=True), bad,
                             "etcdserver: lease is provided")
        self.assertGrpcError(lambda: self.kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()])), bad,
                             "etcdserver: key not found")
        self.assertGrpcError(lambda: self.put(b"k", b"v", lease=77), grpc.StatusCode.NOT_FOUND,
                             "etcdserver: requested lease not found")

    def test_revision_errors(self):
        self.put(b"k")
        self.put(b"k")
        out = grpc.StatusCode.OUT_OF_RANGE
        self.assertGrpcError(lambda: self.kv.Range(rpc_pb2.RangeRequest(key=b"k", revision=9)), out,
                             "etcdserver: mvcc: required revision is a future revision")
        self.kv.Compact(rpc_pb2.CompactionRequest(revision=3))
        self.assertGrpcError(lambda: self.kv.Range(rpc_pb2.RangeRequest(key=b"k", revision=2)), out,
                             "etcdserver: mvcc: required revision has been compacted")
        self.assertGrpcError(lambda: self.kv.Compact(rpc_pb2.CompactionRequest(revision=2)), out,
                             "etcdserver: mvcc: required revision has been compacted")
        # the same checks inside a transaction
        self.assertGrpcError(lambda: self.kv.Txn(rpc_pb2.TxnRequest(success=[rng(b"k", revision=2)])), out,
                             "etcdserver: mvcc: required revision has been compacted")
        self.assertGrpcError(lambda: self.kv.Txn(rpc_pb2.TxnRequest(success=[put(b"x"), rng(b"k", revision=9)])),
                             out, "etcdserver: mvcc: required revision is a future revision")
        self.assertEqual(self.kv.Range(rpc_pb2.RangeRequest(key=b"x")).count, 0)

    def test_compare_lease_and_ranges(self):
        self.put(b"r/1", b"a")
        self.put(b"r/2", b"b")
        cmp_lease = rpc_pb2.Compare(key=b"r/1", target=rpc_pb2.Compare.LEASE, lease=0)
        self.assertTrue(self.kv.Txn(rpc_pb2.TxnRequest(compare=[cmp_lease])).succeeded)
        # over a range, every key must satisfy the compare
        all_gt = rpc_pb2.Compare(key=b"r/", range_end=b"r0", target=rpc_pb2.Compare.VERSION,
                                 result=rpc_pb2.Compare.GREATER, version=0)
        self.assertTrue(self.kv.Txn(rpc_pb2.TxnRequest(compare=[all_gt])).succeeded)
        all_a = rpc_pb2.Compare(key=b"r/", range_end=b"r0", target=rpc_pb2.Compare.VALUE, value=b"a")
        self.assertFalse(self.kv.Txn(rpc_pb2.TxnRequest(compare=[all_a])).succeeded)
        # an empty range compares as one missing key
        none = rpc_pb2.Compare(key=b"s/", range_end=b"s0", target=rpc_pb2.Compare.CREATE, create_revision=0)
        self.assertTrue(self.kv.Txn(rpc_pb2.TxnRequest(compare=[none])).succeeded)

    def test_nested_txn(self):
        self.put(b"x", b"1")
        inner = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"x", target=rpc_pb2.Compare.VALUE, value=b"1")],
            success=[put(b"y", b"from-then"), rng(b"x")],
            failure=[put(b"y", b"from-else")])
        outer = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"x", target=rpc_pb2.Compare.VERSION, version=1)],
            success=[put(b"z", b"2"), rpc_pb2.RequestOp(request_txn=inner)])
        r = self.kv.Txn(outer)
        self.assertTrue(r.succeeded)
        self.assertEqual(r.header.revision, 3)
        nested = r.responses[1].response_txn
        self.assertTrue(nested.succeeded)
        self.assertEqual(nested.responses[1].response_range.kvs[0].value, b"1")
        self.assertEqual(self.kv.Range(rpc_pb2.RangeRequest(key=b"y")).kvs[0].value, b"from-then")
        # then and else of a nested txn may write the same key; one level may not
        dup = rpc_pb2.TxnRequest(success=[put(b"y"), rpc_pb2.RequestOp(request_txn=inner)])
        self.assertGrpcError(lambda: self.kv.Txn(dup), grpc.StatusCode.INVALID_ARGUMENT,
                             "etcdserver: duplicate key given in txn request")

    def test_txn_sees_its_own_writes(self):
        r = self.kv.Txn(rpc_pb2.TxnRequest(success=[put(b"w", b"new"), rng(b"w")]))
        self.assertEqual(r.responses[1].response_range.kvs[0].value, b"new")
        self.assertEqual(r.responses[0].response_put.header.revision, 2)

    def test_delete_prev_kvs_and_put_prev_kv(self):
        self.put(b"d/1", b"one")
        self.put(b"d/2", b"two")
        r = self.put(b"d/1", b"uno", prev_kv=True)
        self.assertEqual((r.prev_kv.value, r.prev_kv.version, r.prev_kv.mod_revision), (b"one", 1, 2))
        r = self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"d/", range_end=b"d0", prev_kv=True))
        self.assertEqual(r.deleted, 2)
        self.assertEqual([(kv.key, kv.value) for kv in r.prev_kvs], [(b"d/1", b"uno"), (b"d/2", b"two")])

    def test_request_size_limits(self):
        # over --max-request-bytes (1.5 MiB) but within gRPC's limit: etcd's error
        big = b"x" * (1536 * 1024 + 100)
        self.assertGrpcError(lambda: self.put(b"big", big), grpc.StatusCode.INVALID_ARGUMENT,
                             "etcdserver: request is too large")
        # just under the limit is fine
        self.put(b"ok", b"x" * (1500 * 1024))
        self.assertEqual(len(self.kv.Range(rpc_pb2.RangeRequest(key=b"ok")).kvs[0].value), 1500 * 1024)
        # beyond the transport limit gRPC itself refuses
        huge = b"x" * (3 << 20)
        self.assertGrpcError(lambda: self.put(b"huge", huge), grpc.StatusCode.RESOURCE_EXHAUSTED, None)

    def test_unknown_methods(self):
        ch = self.m.channel()
        self.addCleanup(ch.close)
        m = ch.unary_unary("/etcdserverpb.KV/Frobnicate")
        self.assertGrpcError(lambda: m(b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED, None)
        m = ch.unary_unary("/nosuch.Service/Method")
        self.assertGrpcError(lambda: m(b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED, None)

    def test_malformed_request(self):
        ch = self.m.channel()
        self.addCleanup(ch.close)
        m = ch.unary_unary("/etcdserverpb.KV/Range")
        with self.assertRaises(grpc.RpcError) as cm:
            m(b"\xff\xff\xff", timeout=5)
        self.assertIn(cm.exception.code(), (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT))
        # and the member keeps serving
        self.put(b"still", b"here")


if __name__ == "__main__":
    main()
