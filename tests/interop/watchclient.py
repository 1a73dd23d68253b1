"""A raw gRPC Watch stream for tests: send WatchRequests, read WatchResponses
with timeouts, see every field (clients hide created/canceled/headers).

python3-etcd3 ships etcd 3.3's rpc.proto, which lacks the watch fields added
since (watch_id, fragment, progress requests). The messages here come from
that descriptor with those fields added, in a private descriptor pool: the
wire format is etcd 3.5's, and nothing clashes with the etcd3 package."""

import queue
import threading

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from harness import rpc_pb2  # noqa: F401 (registers etcd3's descriptors)
from etcd3.etcdrpc import auth_pb2, kv_pb2

_END = object()


def _watch_messages():
    F = descriptor_pb2.FieldDescriptorProto
    files = [descriptor_pb2.FileDescriptorProto.FromString(m.DESCRIPTOR.serialized_pb)
             for m in (kv_pb2, auth_pb2, rpc_pb2)]
    rpc = files[2]
    msgs = {m.name: m for m in rpc.message_type}

    def add(msg, name, number, ftype, type_name=None, oneof=None):
        f = msgs[msg].field.add(name=name, number=number, label=F.LABEL_OPTIONAL, type=ftype)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof
    add("WatchCreateRequest", "watch_id", 7, F.TYPE_INT64)
    add("WatchCreateRequest", "fragment", 8, F.TYPE_BOOL)
    add("WatchResponse", "fragment", 7, F.TYPE_BOOL)
    rpc.message_type.add(name="WatchProgressRequest")
    add("WatchRequest", "progress_request", 3, F.TYPE_MESSAGE, ".etcdserverpb.WatchProgressRequest", 0)
    pool = descriptor_pool.DescriptorPool()
    for f in files:
        pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    return {n: factory.GetPrototype(pool.FindMessageTypeByName("etcdserverpb." + n))
            for n in ("WatchRequest", "WatchCreateRequest", "WatchCancelRequest", "WatchProgressRequest",
                      "WatchResponse")}


pb = _watch_messages()


class RawWatch:
    """One Watch stream. Responses are read by a thread into a queue unless
    read=False (a client that never reads)."""

    def __init__(self, member, read=True):
        self.channel = member.channel()
        watch = self.channel.stream_stream("/etcdserverpb.Watch/Watch",
                                           request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=pb["WatchResponse"].FromString)
        self.requests = queue.Queue()
        self.responses = queue.Queue()
        self.call = watch(iter(self.requests.get, _END))
        self.error = None
        if read:
            self.start_reading()

    def start_reading(self):
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for r in self.call:
                self.responses.put(r)
        except grpc.RpcError as e:
            self.error = e
        self.responses.put(None)

    def create(self, key, range_end=b"", **kw):
        self.requests.put(pb["WatchRequest"](create_request=pb["WatchCreateRequest"](
            key=key, range_end=range_end, **kw)))

    def cancel(self, watch_id):
        self.requests.put(pb["WatchRequest"](cancel_request=pb["WatchCancelRequest"](watch_id=watch_id)))

    def progress(self):
        self.requests.put(pb["WatchRequest"](progress_request=pb["WatchProgressRequest"]()))

    def next(self, timeout=10.0):
        """The next response; AssertionError if none comes in time."""
        try:
            r = self.responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no watch response within %.1fs" % timeout)
        if r is None:
            raise AssertionError("watch stream ended: %r" % self.error)
        return r

    def none(self, wait=0.5):
        """Asserts nothing arrives for `wait` seconds."""
        try:
            r = self.responses.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError("unexpected watch response: %s" % r)

    def created(self, key, range_end=b"", **kw):
        """Creates a watcher and returns its created response."""
        self.create(key, range_end, **kw)
        r = self.next()
        assert r.created, r
        return r

    def events(self, n, timeout=10.0):
        """Reads responses until n events arrived; returns (events, responses)."""
        evs, resps = [], []
        while len(evs) < n:
            r = self.next(timeout)
            resps.append(r)
            evs.extend(r.events)
        return evs, resps

    def close(self):
        self.requests.put(_END)
        self.call.cancel()
        self.channel.close()
