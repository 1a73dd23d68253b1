"""Test harness: start members, drive them with Debian's etcdctl and
python3-etcd3, and raw gRPC where a client hides what we need to see.

Every test can run against Synod (the default) or against Debian's etcd
(SYNOD_TEST_TARGET=etcd): that is how the expectations themselves are checked
against the reference implementation.

Environment:
  SYNOD_BIN          path of the synod binary (set by ctest)
  SYNOD_TEST_TARGET  synod (default) or etcd
  SYNOD_TEST_KEEP    keep data directories and logs of passing tests
"""

import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

sys.path.insert(0, "/usr/lib/python3/dist-packages")
import etcd3  # noqa: E402
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc  # noqa: E402

TARGET = os.environ.get("SYNOD_TEST_TARGET", "synod")
SYNOD_BIN = os.environ.get(
    "SYNOD_BIN",
    os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin", "synod"))
ETCD_BIN = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


_claims = []  # open lock files: a port stays claimed while this process lives
_CLAIM_DIR = os.path.join(tempfile.gettempdir(), "synod-test-ports")


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _claim(port):
    """Claims a port against the other test processes running beside this
    one: an exclusive lock on a file named after it, held (the file left
    open) until this process exits, when the kernel drops the lock. A
    second claim from this process fails too (each open file holds its own
    lock), so no port is handed out twice. The files are never removed: a
    removed file could be locked by one process while another creates and
    locks its successor."""
    os.makedirs(_CLAIM_DIR, exist_ok=True)
    fd = os.open(os.path.join(_CLAIM_DIR, str(port)), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _claims.append(fd)
    return True


def free_port():
    """A free port below the kernel's ephemeral range, chosen at random and
    claimed for this process.

    A port the kernel hands out for bind(0) is also what it hands out for
    outgoing connections and to the other tests running in parallel, so it
    can be taken again between this check and the server's bind; a server
    refuses a port in use ("address already in use"), and the test then
    fails. Ports below the ephemeral range are never picked by the kernel.
    Random picks alone still met another test's ports now and then (a few
    hundred picks per `make test` among some twenty thousand ports, with
    tests running in pairs): each port is also claimed (_claim), so two
    test processes never get the same one.
    """
    low, high = 10000, _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _claim(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0, proc=None, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %d" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d did not open" % port)


class Member:
    """One server process (synod or etcd) with its own data dir and ports."""

    def __init__(self, workdir, name="default", extra=None, env=None,
                 target=None):
        self.target = target or TARGET
        self.workdir = workdir
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = os.path.join(workdir, name + ".data")
        self.extra = list(extra or [])
        self.env = env
        self.proc = None
        self.log_path = os.path.join(workdir, name + ".log")

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    def args(self):
        binary = SYNOD_BIN if self.target == "synod" else ETCD_BIN
        peer = "http://127.0.0.1:%d" % self.peer_port
        client = "http://127.0.0.1:%d" % self.client_port
        return [binary, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", client,
                "--advertise-client-urls", client,
                "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "%s=%s" % (self.name, peer)] + self.extra

    def start(self, wait=True):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("ETCD_"):
                del env[k]
        if self.env:
            env.update(self.env)
        if getattr(self, "log", None):
            self.log.close()  # a restart after the process exited by itself
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30.0):
        try:
            wait_port(self.client_port, timeout, self.proc, host=self.endpoint.rsplit(":", 1)[0])
        except RuntimeError as e:
            # Say why: a server that stopped at start-up says so in its log.
            raise RuntimeError("%s: %s; its log ends:\n%s" % (self.name, e, self.read_log()[-1500:])) from None
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = etcdctl(self, "endpoint", "health", check=False, timeout=5)
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("member never became healthy:\n" + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def stop(self):
        """Graceful stop (SIGTERM); returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
        return self.proc.returncode if self.proc else 0

    def client(self, **kw):
        host, port = self.endpoint.split(":")
        return etcd3.client(host=host, port=int(port), **kw)

    def channel(self):
        return grpc.insecure_channel(self.endpoint)


class Result:
    def __init__(self, p):
        self.returncode = p.returncode
        self.stdout = p.stdout.decode(errors="replace")
        self.stderr = p.stderr.decode(errors="replace")

    def __repr__(self):
        return "rc=%d stdout=%r stderr=%r" % (
            self.returncode, self.stdout, self.stderr)


def etcdctl(member, *args, stdin=None, check=True, timeout=30, env=None):
    """Runs etcdctl (API v3) against a member; returns a Result."""
    e = dict(os.environ)
    e["ETCDCTL_API"] = "3"
    for k in list(e):
        if k.startswith("ETCD_"):
            del e[k]
    if env:
        e.update(env)
    endpoints = member if isinstance(member, str) else member.endpoint
    cmd = [ETCDCTL, "--endpoints", endpoints, "--dial-timeout", "5s",
           "--command-timeout", "%ds" % max(timeout - 2, 3)] + list(args)
    p = subprocess.run(cmd, input=stdin.encode() if stdin else None,
                       capture_output=True, timeout=timeout, env=e)
    r = Result(p)
    if check and r.returncode != 0:
        raise AssertionError("etcdctl %s failed: %r" % (" ".join(args), r))
    return r


def etcdctl_json(member, *args, **kw):
    r = etcdctl(member, "-w", "json", *args, **kw)
    return json.loads(r.stdout)


class MemberTest(unittest.TestCase):
    """A test case with one fresh member per test (self.m)."""

    member_args = []

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="synod-it-")
        self.m = Member(self.workdir, extra=self.member_args).start()

    def tearDown(self):
        code = self.m.stop()
        if TARGET == "synod":
            # A clean shutdown must exit 0: anything else is a crash.
            self.assertEqual(code, 0, "synod did not exit cleanly:\n" +
                             self.m.read_log())
        if os.environ.get("SYNOD_TEST_KEEP"):
            sys.stderr.write("kept %s\n" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # helpers
    def ctl(self, *args, **kw):
        return etcdctl(self.m, *args, **kw)

    def ctl_json(self, *args, **kw):
        return etcdctl_json(self.m, *args, **kw)

    def ctl_err(self, *args, **kw):
        r = etcdctl(self.m, *args, check=False, **kw)
        self.assertNotEqual(r.returncode, 0, "expected failure: %r" % r)
        return r.stderr

    def kv_stub(self):
        ch = self.m.channel()
        self.addCleanup(ch.close)
        return rpc_pb2_grpc.KVStub(ch)

    def assertGrpcError(self, fn, code, message):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        if message is not None:
            self.assertEqual(cm.exception.details(), message)
        return cm.exception


def b64(s):
    import base64
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    import base64
    return base64.b64decode(s)


def main():
    unittest.main(verbosity=2)
