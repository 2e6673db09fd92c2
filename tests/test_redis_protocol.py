"""The redis-adapter wire format as pure functions (no Redis needed)."""

from __future__ import annotations

import json

import msgpack
import pytest

from geventsio import redis_protocol as proto
from geventsio.redis_protocol import MalformedMessage, RequestType


def test_request_types_are_numbered_as_node_adapter_8() -> None:
    assert [t.value for t in RequestType] == list(range(10))
    assert RequestType.REMOTE_FETCH == 5 and RequestType.SERVER_SIDE_EMIT == 6
    assert RequestType.BROADCAST_ACK == 9


def test_channels() -> None:
    assert proto.broadcast_channel("socket.io", "/") == "socket.io#/#"
    assert proto.request_channel("k", "/chat") == "k-request#/chat#"
    assert proto.response_channel("k", "/") == "k-response#/#"
    assert proto.specific_response_channel("k", "/", "abc") == "k-response#/#abc#"
    assert proto.broadcast_target("k", "/", ["room"]) == "k#/#room#"
    assert proto.broadcast_target("k", "/", ["a", "b"]) == "k#/#"
    assert proto.broadcast_target("k", "/", []) == "k#/#"
    assert proto.room_of_channel("k#/#room#", "k", "/") == "room"
    assert proto.room_of_channel("k#/#", "k", "/") == ""
    with pytest.raises(MalformedMessage):
        proto.room_of_channel("other#/#", "k", "/")


def test_broadcast_round_trip_with_binary() -> None:
    raw = proto.encode_broadcast("uid1", "/", ["ev", b"\x00\xff", {"a": [1, None]}], ["r"], ["x"])
    assert msgpack.unpackb(raw) == ["uid1", {"type": 2, "data": ["ev", b"\x00\xff", {"a": [1, None]}],
                                             "nsp": "/"}, {"rooms": ["r"], "except": ["x"], "flags": {}}]
    # bytes travel as msgpack bin (0xc4), strings as str
    assert b"\xc4\x02\x00\xff" in raw
    uid, packet, rooms, except_rooms, flags = proto.decode_broadcast(raw)
    assert uid == "uid1" and packet["data"] == ["ev", b"\x00\xff", {"a": [1, None]}]
    assert (rooms, except_rooms, flags) == (["r"], ["x"], {})


def test_node_specific_msgpack() -> None:
    # notepack's undefined: fixext 1 of type 0; an absent nsp means "/"
    raw = msgpack.packb(["emitter", {"type": 2, "data": ["ev", msgpack.ExtType(0, b"\x00")]}, {}])
    uid, packet, rooms, except_rooms, _ = proto.decode_broadcast(raw)
    assert packet == {"type": 2, "data": ["ev", None], "nsp": "/"} and rooms == [] and except_rooms == []
    # a Date as msgpack timestamp (ext -1): the ISO string Node's JSON would send a client
    stamp = msgpack.Timestamp.from_unix_nano(1_700_000_000_123_000_000)
    raw = msgpack.packb(["n", {"type": 2, "data": ["ev", stamp], "nsp": "/"}, {}], datetime=False)
    assert proto.decode_broadcast(raw)[1]["data"][1] == "2023-11-14T22:13:20.123Z"


def test_requests_json_or_msgpack() -> None:
    raw = proto.encode_json({"uid": "u", "type": 5, "requestId": "r", "opts": {"rooms": ["a"], "except": []}})
    assert json.loads(raw)["type"] == 5
    request = proto.decode_message(raw)
    assert proto.targets_of(request) == (["a"], [])
    packed = proto.pack({"type": 7, "requestId": "r", "packet": {"type": 2, "data": ["e"]}, "opts": {}})
    assert proto.decode_message(packed)["type"] == RequestType.BROADCAST
    assert json.loads(proto.encode_json({"data": [b"\x01"]})) == {"data": [{"type": "Buffer", "data": [1]}]}


@pytest.mark.parametrize("raw", [
    b"\xc1", b"", b"{nope", b"[1,2]", b'{"type": "1"}', msgpack.packb([1, 2]), msgpack.packb("text"),
])
def test_malformed_requests(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        proto.decode_message(raw)


@pytest.mark.parametrize("value", [
    "x", [], ["uid"], ["uid", 1, 2], ["uid", {"type": 2}, {}], ["uid", {"type": 2, "data": []}, {}],
    ["uid", {"type": 2, "data": ["e"]}, {"rooms": "r"}], ["uid", {"type": 2, "data": ["e"], "nsp": 3}, {}],
])
def test_malformed_broadcasts(value) -> None:
    with pytest.raises(MalformedMessage):
        proto.decode_broadcast(msgpack.packb(value))
    with pytest.raises(MalformedMessage):
        proto.decode_broadcast(b"\xc1")


def test_in_memory_adapter_answers_cluster_operations_locally() -> None:
    import geventsio

    sio = geventsio.Server()
    adapter = sio.adapters["/"]
    assert sio.all_rooms() == set() and sio.fetch_sockets() == [] and sio.server_count() == 1
    answers: list = []
    sio.server_side_emit("ask", 1, callback=answers.append)
    assert answers == [[]]
    assert type(adapter).__name__ == "InMemoryAdapter"
