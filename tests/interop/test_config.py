#!/usr/bin/python3
"""The server's command line, environment and config file, as etcd has them:
what is accepted, what is refused and with which message."""

import os
import shutil
import subprocess
import tempfile
import unittest

from harness import Member, SYNOD_BIN, TARGET, etcdctl, etcdctl_json, main


def run(args, env=None, timeout=20):
    e = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    if env:
        e.update(env)
    binary = SYNOD_BIN if TARGET == "synod" else "/usr/bin/etcd"
    return subprocess.run([binary] + args, capture_output=True, timeout=timeout, env=e, text=True)


@unittest.skipIf(TARGET != "synod", "Synod's own start-up messages")
class Refusals(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="synod-cfg-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data = ["--data-dir", os.path.join(self.dir, "d")]

    def test_unknown_flag(self):
        r = run(["--no-such-flag"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("flag provided but not defined: -no-such-flag", r.stderr)

    def test_positional_argument(self):
        r = run(["stray"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("'stray' is not a valid flag", r.stderr)

    def test_missing_value(self):
        r = run(["--name"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("flag needs an argument: -name", r.stderr)

    def test_bad_values(self):
        r = run(["--heartbeat-interval", "abc"] + self.data)
        self.assertIn('invalid value "abc" for flag -heartbeat-interval', r.stderr)
        r = run(["--election-timeout", "400"] + self.data)
        self.assertIn("--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]",
                      r.stderr)
        r = run(["--listen-client-urls", "127.0.0.1:2379"] + self.data)
        self.assertIn("URL scheme must be http or https", r.stderr)
        r = run(["--log-level", "loud"] + self.data)
        self.assertIn('unknown log-level "loud"', r.stderr)
        r = run(["--initial-cluster-state", "maybe"] + self.data)
        self.assertIn("initial-cluster-state", r.stderr)

    def test_not_supported_yet_is_never_silent(self):
        for flag in ["--cert-file=/tmp/c.pem", "--auto-tls", "--discovery=http://d", "--enable-v2",
                     "--force-new-cluster", "--unsafe-no-fsync", "--experimental-initial-corrupt-check"]:
            r = run([flag] + self.data)
            self.assertEqual(r.returncode, 1, flag)
            self.assertIn("is not supported yet by Synod", r.stderr, flag)

    def test_joining_needs_a_reachable_cluster(self):
        r = run(["--initial-cluster-state", "existing", "--initial-cluster",
                 "default=http://localhost:2380,other=http://127.0.0.1:9"] + self.data, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot fetch cluster info from any peer", r.stderr)

    def test_initial_cluster_must_name_this_member(self):
        r = run(["--name", "a", "--initial-cluster", "b=http://localhost:2380"] + self.data)
        self.assertIn('couldn\'t find local name "a" in the initial cluster configuration', r.stderr)
        r = run(["--initial-cluster", "default=http://localhost:9999"] + self.data)
        self.assertIn("missing from --initial-advertise-peer-urls", r.stderr)

    def test_env_conflict(self):
        r = run(["--name", "x"] + self.data, env={"ETCD_NAME": "y"})
        self.assertEqual(r.returncode, 1)
        self.assertIn('conflicting environment variable "ETCD_NAME" is shadowed', r.stderr)

    def test_version_and_help(self):
        r = run(["--version"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("etcd API Version: 3.5", r.stdout)
        r = run(["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("--initial-cluster", r.stdout)


class Sources(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="synod-cfg-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_environment_variables(self):
        m = Member(self.dir, name="envy")
        args = m.args()
        binary, rest = args[0], args[1:]
        env = {}
        it = iter(rest)
        for flag, value in zip(it, it):
            env["ETCD_" + flag[2:].upper().replace("-", "_")] = value
        m.args = lambda: [binary]
        m.env = env
        m.start()
        try:
            ml = etcdctl_json(m, "member", "list")
            self.assertEqual(ml["members"][0]["name"], "envy")
        finally:
            m.stop()

    def test_config_file(self):
        m = Member(self.dir, name="filed")
        peer = "http://127.0.0.1:%d" % m.peer_port
        client = "http://127.0.0.1:%d" % m.client_port
        path = os.path.join(self.dir, "synod.yaml")
        with open(path, "w") as f:
            f.write("# a config file as etcd's sample has it\n"
                    "name: 'filed'\n"
                    "data-dir: %s\n"
                    "listen-client-urls: %s\n"
                    "advertise-client-urls: %s\n"
                    "listen-peer-urls: %s\n"
                    "initial-advertise-peer-urls: %s\n"
                    "initial-cluster: filed=%s\n"
                    "initial-cluster-token: 'etcd-cluster'\n"
                    "initial-cluster-state: 'new'\n"
                    "max-txn-ops: 7\n"
                    "log-level: warn\n"
                    "client-transport-security:\n"
                    "  client-cert-auth: false\n"
                    "  cert-file:\n" % (m.data_dir, client, client, peer, peer, peer))
        binary = m.args()[0]
        m.args = lambda: [binary, "--config-file", path]
        m.start()
        try:
            self.assertEqual(etcdctl_json(m, "member", "list")["members"][0]["name"], "filed")
            ops = "\n" + "".join("put k%d v\n" % i for i in range(8)) + "\n\n"
            r = etcdctl(m, "txn", stdin=ops, check=False)
            self.assertIn("too many operations in txn request", r.stderr)
        finally:
            m.stop()

    def test_restart_keeps_identity(self):
        m = Member(self.dir, name="keep").start()
        etcdctl(m, "put", "k", "v")
        first = etcdctl_json(m, "get", "k")["header"]
        m.stop()
        # a different token would give a different ID, but data exists: ignored
        m.extra = ["--initial-cluster-token", "another-token"]
        m.start()
        try:
            again = etcdctl_json(m, "get", "k")
            self.assertEqual(again["header"]["member_id"], first["member_id"])
            self.assertEqual(again["header"]["cluster_id"], first["cluster_id"])
            self.assertEqual(again["kvs"][0]["mod_revision"], 2)
        finally:
            m.stop()


if __name__ == "__main__":
    main()
