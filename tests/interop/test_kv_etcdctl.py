#!/usr/bin/python3
"""The KV API driven by Debian's etcdctl 3.4, as a user drives it: every
RangeRequest option, put/del options, txn, compaction, and the errors, with
etcdctl's exact output."""

import json

from harness import MemberTest, TARGET, b64, main, unb64


class Basics(MemberTest):
    def test_put_get(self):
        self.assertEqual(self.ctl("put", "foo", "bar").stdout, "OK\n")
        self.assertEqual(self.ctl("get", "foo").stdout, "foo\nbar\n")
        self.assertEqual(self.ctl("get", "foo", "--print-value-only").stdout, "bar\n")
        self.assertEqual(self.ctl("get", "nope").stdout, "")

    def test_revisions_and_versions(self):
        h = self.ctl_json("get", "x")["header"]
        self.assertEqual(h["revision"], 1)  # an empty store is at revision 1
        self.ctl("put", "x", "1")
        self.ctl("put", "x", "2")
        self.ctl("put", "y", "3")
        kv = self.ctl_json("get", "x")["kvs"][0]
        self.assertEqual((kv["create_revision"], kv["mod_revision"], kv["version"]), (2, 3, 2))
        self.assertEqual(unb64(kv["value"]), b"2")
        self.ctl("del", "x")
        self.ctl("put", "x", "4")  # a new life: version restarts
        kv = self.ctl_json("get", "x")["kvs"][0]
        self.assertEqual((kv["create_revision"], kv["mod_revision"], kv["version"]), (6, 6, 1))
        r = self.ctl_json("get", "x")
        self.assertEqual(r["header"]["revision"], 6)
        self.assertIn("cluster_id", r["header"])
        self.assertIn("member_id", r["header"])
        self.assertIn("raft_term", r["header"])

    def test_history_reads(self):
        for v in ["a", "b", "c"]:
            self.ctl("put", "k", v)  # revisions 2, 3, 4
        self.ctl("del", "k")          # 5
        self.assertEqual(self.ctl("get", "k", "--rev=2", "--print-value-only").stdout, "a\n")
        self.assertEqual(self.ctl("get", "k", "--rev=4", "--print-value-only").stdout, "c\n")
        self.assertEqual(self.ctl("get", "k", "--rev=5").stdout, "")
        self.assertEqual(self.ctl("get", "k", "--rev=1").stdout, "")
        err = self.ctl_err("get", "k", "--rev=99")
        self.assertIn("etcdserver: mvcc: required revision is a future revision", err)

    def test_prev_kv_ignore_value_ignore_lease(self):
        self.ctl("put", "p", "v1")
        self.assertEqual(self.ctl("put", "p", "v2", "--prev-kv").stdout, "OK\np\nv1\n")
        self.assertEqual(self.ctl("put", "new", "v", "--prev-kv").stdout, "OK\n")
        # ignore-value keeps the value; the version still moves
        self.ctl("put", "p", "--ignore-value")
        kv = self.ctl_json("get", "p")["kvs"][0]
        self.assertEqual((unb64(kv["value"]), kv["version"]), (b"v2", 3))
        self.ctl("put", "p", "v3", "--ignore-lease")
        self.assertEqual(self.ctl("get", "p", "--print-value-only").stdout, "v3\n")
        err = self.ctl_err("put", "missing", "--ignore-value")
        self.assertIn("etcdserver: key not found", err)
        err = self.ctl_err("put", "missing", "v", "--ignore-lease")
        self.assertIn("etcdserver: key not found", err)

    def test_lease_not_found(self):
        err = self.ctl_err("put", "k", "v", "--lease=1234abcd")
        self.assertIn("etcdserver: requested lease not found", err)
        self.assertEqual(self.ctl("get", "k").stdout, "")

    def test_empty_value_and_binary(self):
        self.ctl("put", "empty", "")
        r = self.ctl_json("get", "empty")
        self.assertEqual(r["count"], 1)
        self.assertNotIn("value", r["kvs"][0])


class Ranges(MemberTest):
    def setUp(self):
        super().setUp()
        for k in ["a", "b", "b/1", "b/2", "b/3", "c", "d"]:
            self.ctl("put", k, "v-" + k)

    def keys(self, *args):
        r = self.ctl("get", "--keys-only", *args).stdout
        return [line for line in r.split("\n") if line]

    def test_prefix_from_key_range(self):
        self.assertEqual(self.keys("b/", "--prefix"), ["b/1", "b/2", "b/3"])
        self.assertEqual(self.keys("c", "--from-key"), ["c", "d"])
        self.assertEqual(self.keys("b", "c"), ["b", "b/1", "b/2", "b/3"])
        self.assertEqual(self.keys("c", "b"), [])  # end <= key: empty
        self.assertEqual(self.keys("", "--prefix"), ["a", "b", "b/1", "b/2", "b/3", "c", "d"])
        self.assertEqual(self.keys("", "--from-key"), ["a", "b", "b/1", "b/2", "b/3", "c", "d"])

    def test_limit_more_count(self):
        r = self.ctl_json("get", "b", "--prefix", "--limit=2")
        self.assertEqual([unb64(kv["key"]) for kv in r["kvs"]], [b"b", b"b/1"])
        self.assertTrue(r["more"])
        self.assertEqual(r["count"], 4)
        r = self.ctl_json("get", "b", "--prefix", "--limit=4")
        self.assertNotIn("more", r)

    def test_sort(self):
        self.assertEqual(self.keys("b", "--prefix", "--order=DESCEND"), ["b/3", "b/2", "b/1", "b"])
        self.assertEqual(self.keys("b", "--prefix", "--order=DESCEND", "--limit=1"), ["b/3"])
        self.ctl("put", "b/1", "zz")  # b/1 now has the highest mod revision and value
        self.assertEqual(self.keys("b", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "--limit=1"), ["b/1"])
        self.assertEqual(self.keys("b", "--prefix", "--sort-by=VALUE", "--order=DESCEND"),
                         ["b/1", "b/3", "b/2", "b"])
        self.assertEqual(self.keys("b", "--prefix", "--sort-by=VERSION", "--order=DESCEND", "--limit=1"), ["b/1"])
        self.assertEqual(self.keys("b", "--prefix", "--sort-by=CREATE", "--order=ASCEND"), ["b", "b/1", "b/2", "b/3"])
        self.assertEqual(self.keys("b", "--prefix", "--sort-by=CREATE", "--order=DESCEND"),
                         ["b/3", "b/2", "b/1", "b"])

    def test_keys_only(self):
        r = self.ctl_json("get", "a", "--keys-only")
        self.assertNotIn("value", r["kvs"][0])
        self.assertEqual(self.ctl("get", "b/", "--prefix", "--keys-only").stdout, "b/1\n\nb/2\n\nb/3\n\n")

    def test_delete(self):
        self.assertEqual(self.ctl("del", "a").stdout, "1\n")
        self.assertEqual(self.ctl("del", "a").stdout, "0\n")
        self.assertEqual(self.ctl("del", "b/", "--prefix", "--prev-kv").stdout,
                         "3\nb/1\nv-b/1\nb/2\nv-b/2\nb/3\nv-b/3\n")
        self.assertEqual(self.ctl("del", "c", "--from-key").stdout, "2\n")
        self.assertEqual(self.keys("", "--prefix"), ["b"])
        # a delete that removes nothing does not advance the revision
        rev = self.ctl_json("get", "b")["header"]["revision"]
        self.ctl("del", "zzz")
        self.assertEqual(self.ctl_json("get", "b")["header"]["revision"], rev)


class Txns(MemberTest):
    def txn(self, text):
        return self.ctl("txn", stdin=text).stdout

    def test_success_and_failure(self):
        self.ctl("put", "foo", "bar")
        out = self.txn('value("foo") = "bar"\n\nput foo baz\nput x 1\n\nget foo\n\n')
        self.assertEqual(out, "SUCCESS\n\nOK\n\nOK\n")
        out = self.txn('value("foo") = "bar"\n\nput foo nope\n\nget foo\n\n')
        self.assertEqual(out, "FAILURE\n\nfoo\nbaz\n")
        # both puts of the successful txn share one revision
        r = self.ctl_json("get", "foo")
        self.assertEqual(r["kvs"][0]["mod_revision"], 3)
        self.assertEqual(self.ctl_json("get", "x")["kvs"][0]["mod_revision"], 3)

    def test_compare_targets(self):
        self.ctl("put", "k", "v")      # rev 2
        self.ctl("put", "k", "w")      # rev 3
        cases = [
            ('version("k") = "2"', "SUCCESS"),
            ('version("k") > "1"', "SUCCESS"),
            ('version("k") < "2"', "FAILURE"),
            ('create("k") = "2"', "SUCCESS"),
            ('mod("k") = "3"', "SUCCESS"),
            ('mod("k") != "3"', "FAILURE"),
            ('value("k") > "v"', "SUCCESS"),
            ('version("missing") = "0"', "SUCCESS"),
            ('create("missing") = "0"', "SUCCESS"),
            ('value("missing") = ""', "FAILURE"),  # no value is not the empty value
        ]
        for cmp, want in cases:
            out = self.txn(cmp + "\n\n\n\n")
            self.assertEqual(out.split("\n")[0], want, cmp)

    def test_readonly_txn_does_not_advance_revision(self):
        self.ctl("put", "k", "v")
        out = self.txn('version("k") = "1"\n\nget k\n\n\n')
        self.assertEqual(out, "SUCCESS\n\nk\nv\n")
        self.assertEqual(self.ctl_json("get", "k")["header"]["revision"], 2)

    def test_txn_with_missing_lease_applies_nothing(self):
        out = self.ctl("txn", stdin='\nput a 1\nput b 2 --lease=99\n\n\n', check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("etcdserver: requested lease not found", out.stderr)
        self.assertEqual(self.ctl("get", "a").stdout, "")

    def test_duplicate_key(self):
        r = self.ctl("txn", stdin='\nput a 1\nput a 2\n\n\n', check=False)
        self.assertIn("etcdserver: duplicate key given in txn request", r.stderr)
        r = self.ctl("txn", stdin='\nput a/1 1\ndel a --prefix\n\n\n', check=False)
        self.assertIn("etcdserver: duplicate key given in txn request", r.stderr)
        # delete ranges may overlap each other
        self.assertEqual(self.txn('\ndel a --prefix\ndel a/1\n\n\n'), "SUCCESS\n\n0\n\n0\n")


class TooManyOps(MemberTest):
    member_args = ["--max-txn-ops", "4"]

    def test_limit(self):
        ok = "\n" + "".join("put k%d v\n" % i for i in range(4)) + "\n\n"
        self.assertEqual(self.ctl("txn", stdin=ok).stdout.split("\n")[0], "SUCCESS")
        bad = "\n" + "".join("put k%d v\n" % i for i in range(5)) + "\n\n"
        r = self.ctl("txn", stdin=bad, check=False)
        self.assertIn("etcdserver: too many operations in txn request", r.stderr)


class Compaction(MemberTest):
    def test_compaction(self):
        for i in range(5):
            self.ctl("put", "k", str(i))  # revisions 2..6
        self.ctl("put", "other", "x")       # 7
        self.assertEqual(self.ctl("compaction", "4").stdout, "compacted revision 4\n")
        err = self.ctl_err("get", "k", "--rev=3")
        self.assertIn("etcdserver: mvcc: required revision has been compacted", err)
        self.assertEqual(self.ctl("get", "k", "--rev=4", "--print-value-only").stdout, "2\n")
        err = self.ctl_err("compaction", "4")
        self.assertIn("etcdserver: mvcc: required revision has been compacted", err)
        err = self.ctl_err("compaction", "100")
        self.assertIn("etcdserver: mvcc: required revision is a future revision", err)
        self.assertEqual(self.ctl("compaction", "6", "--physical").stdout, "compacted revision 6\n")
        self.assertEqual(self.ctl("get", "k", "--print-value-only").stdout, "4\n")
        r = self.ctl_json("endpoint", "hashkv")
        self.assertEqual(r[0]["HashKV"]["compact_revision"], 6)


class Maintenance(MemberTest):
    def test_endpoint_status_and_health(self):
        self.ctl("put", "a", "1")
        st = self.ctl_json("endpoint", "status")[0]
        self.assertEqual(st["Endpoint"], self.m.endpoint)
        s = st["Status"]
        self.assertEqual(s["leader"], s["header"]["member_id"])
        self.assertGreater(s["dbSize"], 0)
        self.assertGreaterEqual(s["raftIndex"], s["raftAppliedIndex"])
        self.assertGreater(s["raftAppliedIndex"], 0)
        self.assertTrue(s["version"].startswith("3."))
        table = self.ctl("endpoint", "status").stdout
        self.assertIn(self.m.endpoint, table)
        self.assertIn("%x" % s["header"]["member_id"], table)
        r = self.ctl("endpoint", "health")
        self.assertIn("is healthy: successfully committed proposal", r.stdout + r.stderr)

    def test_member_list(self):
        ml = self.ctl_json("member", "list")
        self.assertEqual(len(ml["members"]), 1)
        m = ml["members"][0]
        self.assertEqual(m["name"], "default")
        self.assertEqual(m["peerURLs"], ["http://127.0.0.1:%d" % self.m.peer_port])
        self.assertEqual(m["clientURLs"], ["http://" + self.m.endpoint])
        line = self.ctl("member", "list").stdout.strip()
        self.assertEqual(line, "%x, started, default, http://127.0.0.1:%d, http://%s, false" % (
            m["ID"], self.m.peer_port, self.m.endpoint))

    def test_alarm_list_empty(self):
        self.assertEqual(self.ctl("alarm", "list").stdout, "")


class Identity(MemberTest):
    """etcd derives IDs from the peer URLs and cluster token; with etcd's
    defaults every etcd user has seen these two IDs."""
    member_args = []

    def setUp(self):
        import tempfile
        from harness import Member
        self.workdir = tempfile.mkdtemp(prefix="synod-it-")
        self.m = Member(self.workdir)
        base = self.m.args
        self.m.args = lambda: [a for a in base()[:1]] + [
            "--name", "default", "--data-dir", self.m.data_dir,
            "--listen-client-urls", "http://" + self.m.endpoint,
            "--advertise-client-urls", "http://" + self.m.endpoint,
            "--listen-peer-urls", "http://127.0.0.1:%d" % self.m.peer_port]
        self.m.start()

    def test_default_ids(self):
        h = self.ctl_json("get", "x")["header"]
        self.assertEqual("%x" % h["member_id"], "8e9e05c52164694d")
        self.assertEqual("%x" % h["cluster_id"], "cdf818194e3a8c32")


if __name__ == "__main__":
    main()
