"""Property-based tests of the two codecs (hypothesis).

- Engine.IO (geventsio/engine/packet.py): ``decode_packet(encode_packet(p)) == p``,
  ``message_frame`` frames decode to their message, and a payload of frames
  decodes to the packets of those frames; decoding arbitrary text or bytes
  returns packets or raises ``ProtocolError``, nothing else.
- Socket.IO (geventsio/socketio_packet.py): feeding ``encode(p)`` to a
  ``Decoder`` gives ``p`` back (binary values at any depth, namespaces, ack
  ids), with EVENT/ACK promoted to their binary types when they carry bytes;
  ``decode_text`` and ``Decoder.feed`` on arbitrary input return a packet (or
  ``None`` while attachments are due) or raise ``ProtocolError``, nothing else.

Equality is strict (``same``): ``True == 1`` and ``1 == 1.0`` in Python, but
a codec that turned one into the other would be wrong.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from geventsio.engine import packet as eio
from geventsio.exceptions import ProtocolError
from geventsio.socketio_packet import Decoder, Packet, PacketType, decode_text, encode

SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

T = PacketType


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (bool is not int, int is not float)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, Packet):
            if x.type is not y.type or x.namespace != y.namespace:
                return False
            stack += [(x.id, y.id), (x.data, y.data)]
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            stack += zip(x, y)
        elif isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            stack += [(x[k], y[k]) for k in x]
        elif isinstance(x, float) and x == 0:
            if str(x) != str(y):  # -0.0 stays -0.0
                return False
        elif x != y:
            return False
    return True


# -- Engine.IO -----------------------------------------------------------------------

eio_types = st.sampled_from(list(eio.PacketType))
# A text payload may hold anything but the payload separator (as in every Engine.IO v4 implementation).
eio_text = st.text().map(lambda s: s.replace(eio.SEPARATOR, ""))


@st.composite
def eio_packets(draw) -> eio.Packet:
    ptype = draw(eio_types)
    if ptype is eio.PacketType.MESSAGE:
        return eio.Packet(ptype, draw(st.one_of(eio_text, st.binary())))
    data = draw(st.one_of(st.none(), eio_text.filter(bool)))
    return eio.Packet(ptype, data)


@SETTINGS
@given(eio_packets())
@example(eio.Packet(eio.PacketType.MESSAGE, ""))
@example(eio.Packet(eio.PacketType.MESSAGE, b""))
@example(eio.Packet(eio.PacketType.PING, "probe"))
def test_engineio_packet_round_trip(p: eio.Packet) -> None:
    frame = eio.encode_packet(p)
    assert isinstance(frame, (str, bytes))
    assert same(eio.decode_packet(frame).data, p.data) and eio.decode_packet(frame).type is p.type


@SETTINGS
@given(st.sampled_from([t for t in eio.PacketType if t is not eio.PacketType.MESSAGE]), st.binary())
def test_engineio_binary_data_only_in_messages(ptype, data) -> None:
    with pytest.raises(ValueError):
        eio.encode_packet(eio.Packet(ptype, data))


@SETTINGS
@given(st.one_of(eio_text, st.binary(), st.binary().map(bytearray), st.binary().map(memoryview)))
def test_engineio_message_frame(data) -> None:
    decoded = eio.decode_packet(eio.message_frame(data))
    assert decoded.type is eio.PacketType.MESSAGE
    assert same(decoded.data, data if isinstance(data, str) else bytes(data))


@SETTINGS
@given(st.lists(eio_packets(), min_size=1, max_size=20))
def test_engineio_payload_round_trip(packets: list) -> None:
    frames = [eio.encode_packet(p) for p in packets]
    body = eio.encode_payload(frames)
    assert isinstance(body, str)
    decoded = eio.decode_payload(body)
    assert len(decoded) == len(frames)
    for got, frame in zip(decoded, frames):
        want = eio.decode_packet(frame)
        assert got.type is want.type and same(got.data, want.data)


def _eio_packet_or_protocol_error(fn, arg) -> Any:
    try:
        return fn(arg)
    except ProtocolError:
        return None


# Text that looks like Engine.IO: a type character (or "b"), then anything, records joined by \x1e.
eio_like_record = st.tuples(st.sampled_from(list("0123456789bx") + [""]), st.text(max_size=30)).map("".join)
eio_like_payload = st.lists(eio_like_record, min_size=0, max_size=8).map(eio.SEPARATOR.join)
base64ish = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \n-_",
                    max_size=40).map(lambda s: "b" + s)


@SETTINGS
@given(st.one_of(st.text(), eio_like_record, st.binary()))
def test_engineio_decode_packet_of_anything(frame) -> None:
    result = _eio_packet_or_protocol_error(eio.decode_packet, frame)
    assert result is None or isinstance(result, eio.Packet)


@SETTINGS
@given(st.one_of(st.text(), eio_like_payload, base64ish,
                 st.lists(st.one_of(base64ish, eio_like_record), max_size=6).map(eio.SEPARATOR.join)))
def test_engineio_decode_payload_of_anything(body: str) -> None:
    result = _eio_packet_or_protocol_error(eio.decode_payload, body)
    assert result is None or (isinstance(result, list) and result
                              and all(isinstance(p, eio.Packet) for p in result))


# -- Socket.IO: generated packets ----------------------------------------------------------

MAX_ID = 10**15 - 1
json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


def json_values(binary: bool) -> st.SearchStrategy:
    """Nested JSON, with ``bytes`` leaves if ``binary``. No dict looks like a placeholder."""
    leaves = st.one_of(json_scalars, st.binary(max_size=64)) if binary else json_scalars
    keys = st.text(max_size=12).filter(lambda k: k != "_placeholder")
    return st.recursive(
        leaves,
        lambda children: st.one_of(st.lists(children, max_size=5),
                                   st.dictionaries(keys, children, max_size=5)),
        max_leaves=15,
    )


namespaces = st.one_of(
    st.just("/"),
    st.text(max_size=20).map(lambda s: "/" + s.replace(",", "")),
    st.sampled_from(["/admin", "/0", "/123", "/a[b", '/{"x"', "/\u00e9\u4e2d", "/ "]),
)
ack_ids = st.one_of(st.none(), st.integers(min_value=0, max_value=MAX_ID), st.sampled_from([0, MAX_ID]))


def _has_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, list):
        return any(_has_bytes(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    return False


@st.composite
def sio_packets(draw) -> Packet:
    ptype = draw(st.sampled_from(list(T)))
    nsp = draw(namespaces)
    if ptype is T.CONNECT:
        auth = st.dictionaries(st.text(max_size=8), json_values(False), max_size=4)
        data = draw(st.one_of(st.none(), auth))
        return Packet(ptype, nsp, data)
    if ptype is T.DISCONNECT:
        return Packet(ptype, nsp)
    if ptype is T.CONNECT_ERROR:
        data = draw(st.one_of(st.text(), st.fixed_dictionaries({"message": st.text()},
                                                               optional={"data": json_values(False)})))
        return Packet(ptype, nsp, data)
    values = draw(st.lists(json_values(binary=True), max_size=5))
    if ptype in (T.EVENT, T.BINARY_EVENT):
        return Packet(ptype, nsp, [draw(st.text()), *values], draw(ack_ids))
    return Packet(ptype, nsp, values, draw(st.integers(min_value=0, max_value=MAX_ID)))  # ACKs


def feed_all(parts: list, max_attachments: int = 1000) -> Packet:
    decoder = Decoder(max_attachments=max_attachments)
    for part in parts[:-1]:
        assert decoder.feed(part) is None
    result = decoder.feed(parts[-1])
    assert result is not None
    return result


@SETTINGS
@given(sio_packets())
@example(Packet(T.EVENT, "/", ["x", {"deep": [[[b"\x00"]]]}, b""], 0))
@example(Packet(T.ACK, "/a,b".replace(",", ""), [], MAX_ID))
@example(Packet(T.EVENT, "/", ["e", -0.0, 1.0, 1, True, None, "\ud800"]))
@example(Packet(T.BINARY_EVENT, "/", ["no binary after all"]))
def test_socketio_round_trip(p: Packet) -> None:
    parts = encode(p)
    assert isinstance(parts[0], str) and all(isinstance(b, bytes) for b in parts[1:])
    attachments = len(parts) - 1
    expected_type = p.type
    if attachments:
        expected_type = {T.EVENT: T.BINARY_EVENT, T.ACK: T.BINARY_ACK}.get(p.type, p.type)
    assert expected_type in (T.BINARY_EVENT, T.BINARY_ACK) or not _has_bytes(p.data)
    got = feed_all(parts)
    assert same(got, Packet(expected_type, p.namespace, p.data, p.id)), (p, parts[0][:200], got)


@SETTINGS
@given(st.integers(min_value=1, max_value=600))
def test_socketio_round_trip_binary_at_depth(depth: int) -> None:
    value: Any = b"\xff" * (depth % 7)
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    p = Packet(T.EVENT, "/deep", ["e", value], 7)
    got = feed_all(encode(p))
    assert same(got, Packet(T.BINARY_EVENT, "/deep", ["e", value], 7))


@SETTINGS
@given(sio_packets())
def test_socketio_decoder_is_reusable_after_each_packet(p: Packet) -> None:
    decoder = Decoder(max_attachments=1000)
    for _ in range(2):
        parts = encode(p)
        results = [decoder.feed(part) for part in parts]
        assert all(r is None for r in results[:-1]) and results[-1] is not None


# -- Socket.IO: arbitrary input -------------------------------------------------------

protocol_chars = st.sampled_from(list("0123456789-/,[]{}\":_ptn\\ue.") + ["\u0661", "\x1e", "\u00e9"])
sio_like = st.tuples(
    st.sampled_from(list("0123456789") + ["", "x"]),
    st.one_of(st.just(""), st.integers(0, 10**20).map(lambda n: f"{n}-")),
    st.one_of(st.just(""), st.text(max_size=10).map(lambda s: f"/{s},")),
    st.one_of(st.just(""), st.integers(0, 10**20).map(str)),
    st.one_of(
        st.just(""),
        json_values(False).map(lambda v: json.dumps(v, ensure_ascii=False)),
        st.lists(st.one_of(json_values(False), st.fixed_dictionaries(
            {"_placeholder": st.one_of(st.just(True), json_scalars),
             "num": st.one_of(st.integers(-3, 12), json_scalars)})), max_size=4).map(json.dumps),
        st.text(protocol_chars, max_size=40),
    ),
).map("".join)
# Deep nesting (far past the recursion limit among the draws), closed or not: (depth, opener,
# closer, header) -> header + opener * depth + closer * (depth // 2).
deep = st.tuples(
    st.one_of(st.integers(0, 2000), st.sampled_from([100_000, 120_000])),
    st.sampled_from(["[", '{"a":', '["x",']),
    st.sampled_from(["", "]", "1", '"']),
    st.sampled_from(["2", "0", "51-", "3/x,1"]),
).map(lambda t: t[3] + t[1] * t[0] + t[2] * (t[0] // 2))


def _mutations(p: Packet) -> st.SearchStrategy:
    text = encode(p)[0]
    return st.tuples(st.integers(0, len(text)), st.integers(0, 3), st.text(protocol_chars, max_size=3)
                     ).map(lambda t: text[:t[0]] + t[2] + text[t[0] + t[1]:])


mutated = sio_packets().flatmap(_mutations)
anything_text = st.one_of(st.text(), st.text(protocol_chars), sio_like, deep, mutated)


def _decode_text_or_protocol_error(s: str) -> Any:
    try:
        return decode_text(s)
    except ProtocolError:
        return None


@SETTINGS
@given(anything_text)
@example("5" + "9" * 17 + "-[]")
@example('51-["x",{"_placeholder":true,"num":' + "9" * 5000 + "}]")
@example("2[" + "[" * 100_000)
@example('2["x",1e999]')
def test_socketio_decode_text_of_anything(s: str) -> None:
    result = _decode_text_or_protocol_error(s)
    if result is not None:
        packet, count = result
        assert isinstance(packet, Packet) and isinstance(packet.type, PacketType)
        assert isinstance(count, int) and count >= 0
        assert packet.namespace.startswith("/")


@SETTINGS
@given(st.lists(st.one_of(anything_text, st.binary(max_size=16)), min_size=1, max_size=12),
       st.integers(0, 12))
def test_socketio_decoder_feed_of_anything(messages: list, max_attachments: int) -> None:
    decoder = Decoder(max_attachments=max_attachments)
    for message in messages:
        try:
            result = decoder.feed(message)
        except ProtocolError:
            continue
        assert result is None or isinstance(result, Packet)
        if isinstance(result, Packet) and result.type in (T.BINARY_EVENT, T.BINARY_ACK):
            assert not _has_placeholder(result.data)  # every placeholder was filled


@SETTINGS
@given(sio_packets(), st.lists(st.one_of(anything_text, st.binary(max_size=16)), max_size=4))
def test_socketio_decoder_recovers_after_garbage(p: Packet, garbage: list) -> None:
    """Whatever came before, a decoder that raised or completed decodes the next valid packet."""
    decoder = Decoder(max_attachments=1000)
    for message in garbage:
        try:
            decoder.feed(message)
        except ProtocolError:
            pass
    assume(decoder._packet is None)  # garbage that left a packet waiting for attachments: not this test
    got = None
    for part in encode(p):
        got = decoder.feed(part)
    assert got is not None


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get("_placeholder") is True and type(value.get("num")) is int:
            return True
        return any(_has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False
