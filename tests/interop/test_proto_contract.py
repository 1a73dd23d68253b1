#!/usr/bin/python3
"""The wire contract: every package, service, method (with its streaming
shape), message, field (number, type, label, name) and enum value in the
.proto files Debian's golang-etcd-server-dev ships for etcd must appear,
identically, in Synod's own proto/ files. Synod may have more (etcd 3.5's
additions); it may not differ.

A small parser suffices: etcd's files use messages, nested messages and
enums, oneofs, field options in brackets, services with stream markers."""

import os
import re
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
OURS = os.path.join(HERE, "..", "..", "proto")
GOCODE = "/usr/share/gocode/src/go.etcd.io/etcd"
THEIRS = {
    "etcdserverpb": GOCODE + "/etcdserver/etcdserverpb/rpc.proto",
    "mvccpb": GOCODE + "/mvcc/mvccpb/kv.proto",
    "authpb": GOCODE + "/auth/authpb/auth.proto",
    "v3lockpb": GOCODE + "/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "v3electionpb": GOCODE + "/etcdserver/api/v3election/v3electionpb/v3election.proto",
}
MINE = {
    "etcdserverpb": OURS + "/etcdserverpb/rpc.proto",
    "mvccpb": OURS + "/mvccpb/kv.proto",
    "authpb": OURS + "/authpb/auth.proto",
    "v3lockpb": OURS + "/v3lockpb/v3lock.proto",
    "v3electionpb": OURS + "/v3electionpb/v3election.proto",
}


def tokens(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"\[[^\]]*\]", "", text)  # field options
    return re.findall(r'"[^"]*"|[A-Za-z_][\w.]*|-?\d+|[{}();=<>,]', text)


def parse(path):
    """Returns {package, messages: {name: {field_name: (number, label, type)}},
    enums: {name: {value_name: number}}, services: {name: {method: (req, resp,
    client_stream, server_stream)}}}. Nested names are dotted."""
    with open(path) as f:
        t = tokens(f.read())
    out = {"package": None, "messages": {}, "enums": {}, "services": {}}
    i = 0

    def block_end(j):
        depth = 0
        while True:
            if t[j] == "{":
                depth += 1
            elif t[j] == "}":
                depth -= 1
                if depth == 0:
                    return j
            j += 1

    def parse_enum(j, scope):
        name = scope + t[j + 1]
        vals = {}
        k = j + 3
        while t[k] != "}":
            if t[k] == "option":
                while t[k] != ";":
                    k += 1
                k += 1
                continue
            vals[t[k]] = int(t[k + 2])
            k += 4
        out["enums"][name] = vals
        return k + 1

    def parse_message(j, scope):
        name = scope + t[j + 1]
        fields = {}
        out["messages"][name] = fields
        k = j + 3
        while t[k] != "}":
            if t[k] == "message":
                k = parse_message(k, name + ".")
            elif t[k] == "enum":
                k = parse_enum(k, name + ".")
            elif t[k] == "oneof":
                k += 3
                while t[k] != "}":
                    fields[t[k + 1]] = (int(t[k + 3]), "oneof", t[k])
                    k += 5
                k += 1
            elif t[k] in ("option", "reserved"):
                while t[k] != ";":
                    k += 1
                k += 1
            elif t[k] == "map":
                # map < K , V > name = N ;
                fields[t[k + 6]] = (int(t[k + 8]), "map", "%s,%s" % (t[k + 2], t[k + 4]))
                k += 10
            else:
                label = "single"
                if t[k] in ("repeated", "optional"):
                    label = t[k]
                    k += 1
                fields[t[k + 1]] = (int(t[k + 3]), label, t[k])
                k += 5
        return k + 1

    def parse_service(j):
        name = t[j + 1]
        methods = {}
        k = j + 3
        while t[k] != "}":
            if t[k] == "rpc":
                m = t[k + 1]
                k += 3
                cs = t[k] == "stream"
                if cs:
                    k += 1
                req = t[k]
                k += 3  # req ) returns
                k += 1  # (
                ss = t[k] == "stream"
                if ss:
                    k += 1
                resp = t[k]
                k += 2
                methods[m] = (req.split(".")[-1], resp.split(".")[-1], cs, ss)
                if t[k] == "{":
                    k = block_end(k) + 1
                if k < len(t) and t[k] == ";":
                    k += 1
            else:
                k += 1
        out["services"][name] = methods
        return k + 1

    while i < len(t):
        if t[i] == "package":
            out["package"] = t[i + 1]
            i += 3
        elif t[i] == "message":
            i = parse_message(i, "")
        elif t[i] == "enum":
            i = parse_enum(i, "")
        elif t[i] == "service":
            i = parse_service(i)
        else:
            i += 1
    return out


def short(typ):
    """Type names compare without their package: etcd writes
    mvccpb.KeyValue where we may too; scalars stay as they are."""
    return typ.split(".")[-1]


@unittest.skipUnless(os.path.exists(THEIRS["etcdserverpb"]),
                     "needs Debian's golang-etcd-server-dev (.ci/install-deps installs it)")
class Contract(unittest.TestCase):
    def test_every_etcd_definition_is_ours(self):
        for pkg in THEIRS:
            theirs, mine = parse(THEIRS[pkg]), parse(MINE[pkg])
            self.assertEqual(theirs["package"], pkg)
            self.assertEqual(mine["package"], pkg)
            for msg, fields in theirs["messages"].items():
                self.assertIn(msg, mine["messages"], "%s.%s missing" % (pkg, msg))
                for fname, (num, label, typ) in fields.items():
                    self.assertIn(fname, mine["messages"][msg], "%s.%s.%s missing" % (pkg, msg, fname))
                    onum, olabel, otyp = mine["messages"][msg][fname]
                    where = "%s.%s.%s" % (pkg, msg, fname)
                    self.assertEqual(onum, num, where + ": field number")
                    self.assertEqual(olabel, label, where + ": label")
                    self.assertEqual(short(otyp), short(typ), where + ": type")
            for enum, vals in theirs["enums"].items():
                self.assertIn(enum, mine["enums"], "%s enum %s missing" % (pkg, enum))
                for v, n in vals.items():
                    self.assertEqual(mine["enums"][enum].get(v), n, "%s.%s.%s" % (pkg, enum, v))
            for svc, methods in theirs["services"].items():
                self.assertIn(svc, mine["services"], "%s service %s missing" % (pkg, svc))
                for m, shape in methods.items():
                    self.assertEqual(mine["services"][svc].get(m), shape, "%s.%s/%s" % (pkg, svc, m))

    def test_the_parser_sees_everything(self):
        # guard against a parser that silently reads nothing
        theirs = parse(THEIRS["etcdserverpb"])
        self.assertGreater(len(theirs["messages"]), 80)
        self.assertIn("Range", theirs["services"]["KV"])
        self.assertEqual(theirs["messages"]["Compare"]["range_end"][0], 64)
        self.assertEqual(theirs["services"]["Watch"]["Watch"][2:], (True, True))


if __name__ == "__main__":
    unittest.main(verbosity=2)
