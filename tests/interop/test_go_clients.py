#!/usr/bin/python3
"""etcd's own Go clients against Synod: the generated v3lockpb/v3electionpb
stubs and clientv3's concurrency recipes (Mutex, Election), as Debian's
golang-etcd-server-dev ships them (clientv3 3.4), on one member and across
a 3-member cluster. The program (tests/interop/go/lockclient) is built here
with GOPATH=/usr/share/gocode GO111MODULE=off; see its scenarios.

Runs against Debian's etcd too (SYNOD_TEST_TARGET=etcd), except the
scenario that shows etcd's bug (a waiter whose lease is revoked)."""

import os
import shutil
import subprocess
import tempfile
import unittest

from cluster import Cluster
from harness import SYNOD_BIN, TARGET, Member

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = ["lock-rpc", "mutex", "mixed", "election-rpc", "election-recipe", "revoked-waiter"]
GO = shutil.which("go") or "/usr/lib/go/bin/go"
HAVE_GO = os.path.exists(GO) and os.path.isdir("/usr/share/gocode/src/go.etcd.io/etcd/clientv3")


def build():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(SYNOD_BIN)), "..", "go")
    os.makedirs(out_dir, exist_ok=True)
    binary = os.path.join(out_dir, "lockclient")
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off", GOFLAGS="",
               GOCACHE=os.path.join(out_dir, "cache"), GOTOOLCHAIN="local", CGO_ENABLED="0")
    r = subprocess.run([GO, "build", "-o", binary, "."], cwd=os.path.join(HERE, "go", "lockclient"),
                       env=env, capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("go build failed:\n" + r.stderr.decode())
    return binary


@unittest.skipUnless(HAVE_GO, "golang-go and golang-etcd-server-dev are needed (.ci/install-deps)")
class GoClients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = build()

    def run_scenario(self, endpoints, scenario, *flags):
        if scenario == "revoked-waiter" and TARGET != "synod":
            return  # etcd keeps the waiter waiting (then grants it)
        r = subprocess.run([self.binary, "-endpoints", endpoints] + list(flags) + [scenario],
                           capture_output=True, timeout=300)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, "%s: %s\n%s" % (scenario, out, r.stderr.decode()[-2000:]))
        self.assertIn("ok " + scenario, out)

    def test_one_member(self):
        m = Member(tempfile.mkdtemp(prefix="synod-go-")).start()
        try:
            for s in SCENARIOS:
                with self.subTest(scenario=s):
                    self.run_scenario(m.endpoint, s)
        finally:
            code = m.stop()
            shutil.rmtree(m.workdir, ignore_errors=True)
        if TARGET == "synod":
            self.assertEqual(code, 0)

    def test_three_members(self):
        c = Cluster(3).start()
        try:
            for s in SCENARIOS:
                with self.subTest(scenario=s):
                    self.run_scenario(c.endpoints, s, "-contenders", "6", "-rounds", "15")
        finally:
            codes = c.stop()
            c.cleanup()
        if TARGET == "synod":
            self.assertEqual(set(codes.values()), {0})


if __name__ == "__main__":
    unittest.main(verbosity=2)
