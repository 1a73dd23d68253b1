"""Members in network namespaces, for partition tests (root only).

Each member runs in its own namespace with one veth interface on a bridge in
the root namespace; the test (in the root namespace) reaches every member.
Partitions are blackhole routes inside a member's namespace: A drops what it
sends to B (one-way), or both do (symmetric); the test's own address is
never blackholed. Healing removes the routes; nothing restarts. (Kernels
without modules lack tc's qdiscs; routing needs none. Over TCP a one-way
drop stalls both directions of a connection, which is still the asymmetric
loss check-quorum must handle.)"""

import os
import random
import subprocess

from cluster import Cluster, ClusterMember


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def can_use_netns():
    if os.geteuid() != 0:
        return False, "needs root for network namespaces"
    try:
        sh("ip", "netns", "add", "synod-probe-%d" % os.getpid())
        sh("ip", "netns", "del", "synod-probe-%d" % os.getpid())
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        return False, "network namespaces unavailable: %s" % e
    return True, ""


class NetnsMember(ClusterMember):
    def __init__(self, workdir, name, ns, ip, initial_cluster, extra=None, target=None):
        super().__init__(workdir, name, initial_cluster, extra=extra, target=target)
        self.ns, self.ip = ns, ip
        self.client_port, self.peer_port = 2379, 2380

    @property
    def endpoint(self):
        return "%s:%d" % (self.ip, self.client_port)

    @property
    def peer_url(self):
        return "http://%s:%d" % (self.ip, self.peer_port)

    def args(self):
        client = "http://%s:%d" % (self.ip, self.client_port)
        a = super().args()
        for flag, value in (("--listen-client-urls", client), ("--advertise-client-urls", client),
                            ("--listen-peer-urls", self.peer_url), ("--initial-advertise-peer-urls", self.peer_url)):
            a[a.index(flag) + 1] = value
        return ["ip", "netns", "exec", self.ns] + a


class NetnsCluster(Cluster):
    """A cluster whose members each live in a namespace on 10.N.M.0/24."""

    def __init__(self, size=3, extra=None, target=None):
        self.tag = "%04x" % random.randrange(1 << 16)
        self.subnet = "10.%d.%d" % (77 + random.randrange(50), random.randrange(250))
        self.bridge = "sbr" + self.tag
        super().__init__(0, extra=extra, target=target)
        self.nets = []
        names = ["m%d" % (i + 1) for i in range(size)]
        ips = ["%s.%d" % (self.subnet, i + 1) for i in range(size)]
        self.initial = ",".join("%s=http://%s:2380" % (n, ip) for n, ip in zip(names, ips))
        self._setup(size)
        self.members = [NetnsMember(self.workdir, n, "syn%s-%d" % (self.tag, i), ip, self.initial,
                                    extra=self.extra, target=self.target)
                        for i, (n, ip) in enumerate(zip(names, ips))]

    def _setup(self, size):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", "%s.254/24" % self.subnet, "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(size):
            ns = "syn%s-%d" % (self.tag, i)
            host, inner = "sv%s%d" % (self.tag, i), "eth0"
            sh("ip", "netns", "add", ns)
            self.nets.append(ns)
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", "tmp" + host)
            sh("ip", "link", "set", "tmp" + host, "netns", ns)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "tmp" + host, "name", inner)
            sh("ip", "link", "set", host, "master", self.bridge)
            sh("ip", "link", "set", host, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", "%s.%d/24" % (self.subnet, i + 1), "dev", inner)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def cut(self, a, b, both=True):
        """Drops a's packets to b (and b's to a if both)."""
        pairs = [(a, b), (b, a)] if both else [(a, b)]
        for x, y in pairs:
            sh("ip", "netns", "exec", x.ns, "ip", "route", "replace", "blackhole", "%s/32" % y.ip)

    def isolate(self, m, both=True):
        for other in self.members:
            if other is not m:
                self.cut(m, other, both)

    def heal(self):
        for m in self.members:
            for other in self.members:
                if other is not m:
                    sh("ip", "netns", "exec", m.ns, "ip", "route", "del", "blackhole", "%s/32" % other.ip,
                       check=False)

    def cleanup(self):
        for ns in self.nets:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        super().cleanup()
