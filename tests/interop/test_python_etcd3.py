#!/usr/bin/python3
"""The KV API through Debian's python3-etcd3, the way applications use it."""

import grpc

from harness import MemberTest, main


class PythonClient(MemberTest):
    def setUp(self):
        super().setUp()
        self.c = self.m.client()
        self.addCleanup(self.c.close)

    def test_put_get_delete(self):
        self.c.put("/app/a", "1")
        value, meta = self.c.get("/app/a")
        self.assertEqual(value, b"1")
        self.assertEqual((meta.key, meta.version, meta.create_revision, meta.mod_revision), (b"/app/a", 1, 2, 2))
        self.assertEqual(self.c.get("/app/none"), (None, None))
        self.assertTrue(self.c.delete("/app/a"))
        self.assertFalse(self.c.delete("/app/a"))
        self.c.put("/app/b", "2")
        resp = self.c.put("/app/b", "3", prev_kv=True)
        self.assertEqual(resp.prev_kv.value, b"2")

    def test_prefix_range_all_sort(self):
        for i in range(10):
            self.c.put("/p/%02d" % i, str(9 - i))
        self.c.put("/q", "x")
        got = [(m.key, v) for v, m in self.c.get_prefix("/p/")]
        self.assertEqual(got, [(b"/p/%02d" % i, str(9 - i).encode()) for i in range(10)])
        got = [m.key for _, m in self.c.get_prefix("/p/", sort_order="descend", sort_target="value")]
        self.assertEqual(got[0], b"/p/00")
        got = [m.key for _, m in self.c.get_range("/p/03", "/p/06")]
        self.assertEqual(got, [b"/p/03", b"/p/04", b"/p/05"])
        self.assertEqual(len(list(self.c.get_all())), 11)
        got = [m.key for _, m in self.c.get_prefix("/p/", keys_only=True)]
        self.assertEqual(len(got), 10)
        self.c.delete_prefix("/p/")
        self.assertEqual(len(list(self.c.get_all())), 1)

    def test_transactions(self):
        self.c.put("/t/k", "v1")
        ok, responses = self.c.transaction(
            compare=[self.c.transactions.value("/t/k") == "v1",
                     self.c.transactions.version("/t/k") > 0],
            success=[self.c.transactions.put("/t/k", "v2"), self.c.transactions.get("/t/k")],
            failure=[self.c.transactions.put("/t/failed", "yes")])
        self.assertTrue(ok)
        self.assertEqual(responses[1][0][0], b"v2")
        ok, _ = self.c.transaction(
            compare=[self.c.transactions.mod("/t/k") < 2],
            success=[self.c.transactions.delete("/t/k")],
            failure=[self.c.transactions.put("/t/failed", "yes")])
        self.assertFalse(ok)
        self.assertEqual(self.c.get("/t/failed")[0], b"yes")
        # compare-and-swap, python3-etcd3's replace()
        self.assertTrue(self.c.replace("/t/k", "v2", "v3"))
        self.assertFalse(self.c.replace("/t/k", "v2", "v4"))
        self.assertEqual(self.c.get("/t/k")[0], b"v3")

    def test_status_members_compaction(self):
        st = self.c.status()
        self.assertEqual(st.leader.name, "default")
        self.assertGreater(st.db_size, 0)
        self.assertTrue(st.version.startswith("3."))
        members = list(self.c.members)
        self.assertEqual(len(members), 1)
        self.assertEqual(members[0].name, "default")
        for i in range(3):
            self.c.put("/c", str(i))
        self.c.compact(3, physical=True)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.compact(2)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
        self.assertEqual(self.c.get("/c")[0], b"2")

    def test_lease_errors(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.put("/l", "v", lease=12345)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(cm.exception.details(), "etcdserver: requested lease not found")


if __name__ == "__main__":
    main()
