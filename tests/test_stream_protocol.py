"""The codec of a streams cluster's entries and stored sessions (geventsio.stream_protocol)."""

from __future__ import annotations

import base64

import msgpack
import pytest

from geventsio import stream_protocol as sp
from geventsio.redis_protocol import MalformedMessage


def as_read(fields: dict) -> dict:
    """The fields as redis-py returns them from XREAD/XRANGE (bytes keys and values)."""
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_a_broadcast_without_binary_is_json_as_node_writes_it():
    data = sp.broadcast_data("/chat", ["msg", {"n": 1}], ["r1"], ["r2"], False)
    fields = sp.encode_entry("emitter", "/chat", sp.MessageType.BROADCAST, data)
    assert fields == {"uid": "emitter", "nsp": "/chat", "type": "3",
                      "data": '{"packet":{"type":2,"data":["msg",{"n":1}],"nsp":"/chat"},'
                              '"opts":{"rooms":["r1"],"except":["r2"],"flags":{}}}'}
    uid, nsp, kind, decoded = sp.decode_entry(as_read(fields))
    assert (uid, nsp, kind) == ("emitter", "/chat", 3)
    assert sp.decode_broadcast(decoded) == (["msg", {"n": 1}], ["r1"], ["r2"], False, False)


def test_a_broadcast_with_binary_is_base64_msgpack():
    data = sp.broadcast_data("/", ["bin", b"\x00\xff", [b"x"]], [], [], True)
    fields = sp.encode_entry("u", "/", sp.MessageType.BROADCAST, data)
    assert msgpack.unpackb(base64.b64decode(fields["data"]))["packet"]["data"] == ["bin", b"\x00\xff", [b"x"]]
    decoded = sp.decode_broadcast(sp.decode_entry(as_read(fields))[3])
    assert decoded == (["bin", b"\x00\xff", [b"x"]], [], [], True, False)


def test_broadcasts_with_acks_are_recognised():
    data = {"packet": {"type": 2, "data": ["q"], "nsp": "/", "id": 3}, "requestId": "r", "opts": {}}
    assert sp.decode_broadcast(data)[4] is True


def test_values_json_cannot_hold_are_refused_when_encoding():
    with pytest.raises((TypeError, ValueError)):
        sp.encode_entry("u", "/", sp.MessageType.BROADCAST, {"x": float("nan")})
    with pytest.raises((TypeError, ValueError)):
        sp.encode_entry("u", "/", sp.MessageType.BROADCAST, {"x": object()})


@pytest.mark.parametrize("fields", [
    {}, {"uid": "u", "nsp": "/"}, {"uid": "u", "nsp": "/", "type": "x"},
    {"uid": "u", "nsp": "/", "type": "99999"},
    {"uid": "u", "nsp": "/", "type": "3", "data": "{no"}, {"uid": "u", "nsp": "/", "type": "3", "data": "@@"},
    {"uid": "u", "nsp": "/", "type": "3", "data": base64.b64encode(b"\xc1").decode()},
])
def test_malformed_entries_are_refused(fields):
    with pytest.raises(MalformedMessage):
        sp.decode_entry(as_read(fields))


def test_non_utf8_fields_are_refused():
    with pytest.raises(MalformedMessage):
        sp.decode_entry({b"uid": b"\xff", b"nsp": b"/", b"type": b"3"})


@pytest.mark.parametrize("data", [
    None, [], {"packet": 1}, {"packet": {"data": []}}, {"packet": {"data": [1]}},
    {"packet": {"data": ["e"]}, "opts": {"rooms": "r"}}])
def test_malformed_broadcasts_are_refused(data):
    with pytest.raises(MalformedMessage):
        sp.decode_broadcast(data)


@pytest.mark.parametrize("value, parsed", [
    ("1700000000000-0", (1700000000000, 0)), (b"5-12", (5, 12)), ("5", None), ("-1", None), ("a-b", None),
    ("1" * 21 + "-0", None), (7, None), (None, None), ("5-1 ", None)])
def test_entry_ids_parse_only_when_they_are_ids(value, parsed):
    assert sp.parse_entry_id(value) == parsed
    if parsed is not None:
        assert sp.parse_entry_id(sp.format_entry_id(parsed)) == parsed


def test_entry_ids_order_as_the_stream_does():
    ids = ["10-2", "9-100", "10-10", "100-0"]
    assert sorted(ids, key=sp.parse_entry_id) == ["9-100", "10-2", "10-10", "100-0"]


def test_a_session_is_stored_as_node_stores_it():
    raw = sp.encode_session("/", "sid1", "pid1", {"sid1", "a"}, {"nick": "ann", "b": b"\x01"})
    stored = msgpack.unpackb(base64.b64decode(raw))
    assert stored == {"sid": "sid1", "pid": "pid1", "rooms": ["a", "sid1"],
                      "data": {"nick": "ann", "b": b"\x01"}, "nsp": "/"}
    assert sp.decode_session(raw.encode())["rooms"] == ["a", "sid1"]


def test_a_node_session_without_nsp_decodes():
    raw = base64.b64encode(msgpack.packb({"sid": "s", "pid": "p", "rooms": ["s"], "data": {}}))
    assert sp.decode_session(raw) == {"sid": "s", "pid": "p", "rooms": ["s"], "data": {}}


@pytest.mark.parametrize("raw", [b"@@", base64.b64encode(b"\xc1"), base64.b64encode(msgpack.packb([1])),
                                 base64.b64encode(msgpack.packb({"sid": 1}))])
def test_malformed_sessions_are_refused(raw):
    with pytest.raises(MalformedMessage):
        sp.decode_session(raw)


def test_session_data_msgpack_cannot_hold_is_refused():
    with pytest.raises((TypeError, ValueError)):
        sp.encode_session("/", "s", "p", [], {"x": object()})
