"""v3lockpb and v3electionpb messages and stubs for the tests, built at run
time on top of python3-etcd3's own descriptors (which lack these two
services), so no code generation is needed. Field numbers are etcd's
(proto/v3lockpb/v3lock.proto, proto/v3electionpb/v3election.proto)."""

import sys

sys.path.insert(0, "/usr/lib/python3/dist-packages")
from etcd3.etcdrpc import kv_pb2, rpc_pb2  # noqa: E402,F401  (registers rpc.proto, kv.proto)
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

F = descriptor_pb2.FieldDescriptorProto


def _file(name, package, messages):
    fd = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3",
                                            dependency=["rpc.proto", "kv.proto"])
    for mname, fields in messages:
        m = fd.message_type.add(name=mname)
        for fname, num, ftype, tname in fields:
            f = m.field.add(name=fname, number=num, label=F.LABEL_OPTIONAL, type=ftype)
            if tname:
                f.type_name = tname
    return fd


HDR = ".etcdserverpb.ResponseHeader"
_lock = _file("synod_test_v3lock.proto", "v3lockpb", [
    ("LockRequest", [("name", 1, F.TYPE_BYTES, None), ("lease", 2, F.TYPE_INT64, None)]),
    ("LockResponse", [("header", 1, F.TYPE_MESSAGE, HDR), ("key", 2, F.TYPE_BYTES, None)]),
    ("UnlockRequest", [("key", 1, F.TYPE_BYTES, None)]),
    ("UnlockResponse", [("header", 1, F.TYPE_MESSAGE, HDR)]),
])
_elect = _file("synod_test_v3election.proto", "v3electionpb", [
    ("CampaignRequest", [("name", 1, F.TYPE_BYTES, None), ("lease", 2, F.TYPE_INT64, None),
                         ("value", 3, F.TYPE_BYTES, None)]),
    ("CampaignResponse", [("header", 1, F.TYPE_MESSAGE, HDR),
                          ("leader", 2, F.TYPE_MESSAGE, ".v3electionpb.LeaderKey")]),
    ("LeaderKey", [("name", 1, F.TYPE_BYTES, None), ("key", 2, F.TYPE_BYTES, None),
                   ("rev", 3, F.TYPE_INT64, None), ("lease", 4, F.TYPE_INT64, None)]),
    ("LeaderRequest", [("name", 1, F.TYPE_BYTES, None)]),
    ("LeaderResponse", [("header", 1, F.TYPE_MESSAGE, HDR), ("kv", 2, F.TYPE_MESSAGE, ".mvccpb.KeyValue")]),
    ("ResignRequest", [("leader", 1, F.TYPE_MESSAGE, ".v3electionpb.LeaderKey")]),
    ("ResignResponse", [("header", 1, F.TYPE_MESSAGE, HDR)]),
    ("ProclaimRequest", [("leader", 1, F.TYPE_MESSAGE, ".v3electionpb.LeaderKey"),
                         ("value", 2, F.TYPE_BYTES, None)]),
    ("ProclaimResponse", [("header", 1, F.TYPE_MESSAGE, HDR)]),
])

_pool = descriptor_pool.Default()
for _fd in (_lock, _elect):
    try:
        _pool.Add(_fd)
    except TypeError:
        pass  # already added (module reloaded)


def _cls(full):
    d = _pool.FindMessageTypeByName(full)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(d)
    return message_factory.MessageFactory(_pool).GetPrototype(d)


LockRequest = _cls("v3lockpb.LockRequest")
LockResponse = _cls("v3lockpb.LockResponse")
UnlockRequest = _cls("v3lockpb.UnlockRequest")
UnlockResponse = _cls("v3lockpb.UnlockResponse")
CampaignRequest = _cls("v3electionpb.CampaignRequest")
CampaignResponse = _cls("v3electionpb.CampaignResponse")
LeaderKey = _cls("v3electionpb.LeaderKey")
LeaderRequest = _cls("v3electionpb.LeaderRequest")
LeaderResponse = _cls("v3electionpb.LeaderResponse")
ResignRequest = _cls("v3electionpb.ResignRequest")
ResignResponse = _cls("v3electionpb.ResignResponse")
ProclaimRequest = _cls("v3electionpb.ProclaimRequest")
ProclaimResponse = _cls("v3electionpb.ProclaimResponse")


def _unary(ch, path, req, resp):
    return ch.unary_unary(path, request_serializer=req.SerializeToString,
                          response_deserializer=resp.FromString)


class LockStub:
    def __init__(self, ch):
        self.Lock = _unary(ch, "/v3lockpb.Lock/Lock", LockRequest, LockResponse)
        self.Unlock = _unary(ch, "/v3lockpb.Lock/Unlock", UnlockRequest, UnlockResponse)


class ElectionStub:
    def __init__(self, ch):
        self.Campaign = _unary(ch, "/v3electionpb.Election/Campaign", CampaignRequest, CampaignResponse)
        self.Proclaim = _unary(ch, "/v3electionpb.Election/Proclaim", ProclaimRequest, ProclaimResponse)
        self.Leader = _unary(ch, "/v3electionpb.Election/Leader", LeaderRequest, LeaderResponse)
        self.Resign = _unary(ch, "/v3electionpb.Election/Resign", ResignRequest, ResignResponse)
        self.Observe = ch.unary_stream("/v3electionpb.Election/Observe",
                                       request_serializer=LeaderRequest.SerializeToString,
                                       response_deserializer=LeaderResponse.FromString)
