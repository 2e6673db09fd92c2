"""Engine.IO v4 packet codec: wire vectors from the protocol document, both directions, bad input."""

from __future__ import annotations

import pytest

from geventsio.engine.packet import (
    Packet,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    message_frame,
)
from geventsio.exceptions import ProtocolError

T = PacketType

OPEN_JSON = (
    '{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
    '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
)

# (packet, frame as it travels in one WebSocket frame / one polling record)
VECTORS = [
    pytest.param(Packet(T.OPEN, OPEN_JSON), "0" + OPEN_JSON, id="open"),
    pytest.param(Packet(T.CLOSE), "1", id="close"),
    pytest.param(Packet(T.PING), "2", id="ping"),
    pytest.param(Packet(T.PONG), "3", id="pong"),
    pytest.param(Packet(T.PING, "probe"), "2probe", id="ping-probe"),
    pytest.param(Packet(T.PONG, "probe"), "3probe", id="pong-probe"),
    pytest.param(Packet(T.MESSAGE, "hello"), "4hello", id="message"),
    pytest.param(
        Packet(T.MESSAGE, "h\u00e9llo w\u00f6rld \u20ac"),
        "4h\u00e9llo w\u00f6rld \u20ac",
        id="message-unicode",
    ),
    pytest.param(Packet(T.MESSAGE, "\U0001f600\U0001f680"), "4\U0001f600\U0001f680", id="message-emoji"),
    pytest.param(Packet(T.MESSAGE, "2probe"), "42probe", id="message-looking-like-a-packet"),
    pytest.param(Packet(T.MESSAGE, ""), "4", id="message-empty"),
    pytest.param(Packet(T.UPGRADE), "5", id="upgrade"),
    pytest.param(Packet(T.NOOP), "6", id="noop"),
    pytest.param(Packet(T.MESSAGE, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04", id="binary"),
    pytest.param(Packet(T.MESSAGE, b""), b"", id="binary-empty"),
    pytest.param(Packet(T.MESSAGE, bytes(range(256))), bytes(range(256)), id="binary-all-bytes"),
]


@pytest.mark.parametrize("packet, frame", VECTORS)
def test_encode_packet(packet: Packet, frame) -> None:
    encoded = encode_packet(packet)
    assert encoded == frame
    assert type(encoded) is type(frame)


@pytest.mark.parametrize("packet, frame", VECTORS)
def test_decode_packet(packet: Packet, frame) -> None:
    decoded = decode_packet(frame)
    assert decoded == packet
    assert type(decoded.data) is type(packet.data)


def test_decode_packet_accepts_any_bytes_like_binary_frame() -> None:
    expected = Packet(T.MESSAGE, b"\x00\xff")
    assert decode_packet(bytearray(b"\x00\xff")) == expected
    assert decode_packet(memoryview(b"\x00\xff")) == expected
    assert type(decode_packet(bytearray(b"\x00\xff")).data) is bytes


def test_encode_packet_refuses_binary_data_outside_messages() -> None:
    with pytest.raises(ValueError):
        encode_packet(Packet(T.PING, b"probe"))


# (frames the server queues, packets a decoder sees, the polling body)
PAYLOADS = [
    pytest.param(
        ["4hello", "2", "4world"],
        [Packet(T.MESSAGE, "hello"), Packet(T.PING), Packet(T.MESSAGE, "world")],
        "4hello\x1e2\x1e4world",
        id="text-records",
    ),
    pytest.param(
        ["4hello", b"\x01\x02\x03\x04"],
        [Packet(T.MESSAGE, "hello"), Packet(T.MESSAGE, b"\x01\x02\x03\x04")],
        "4hello\x1ebAQIDBA==",
        id="text-and-binary",
    ),
    pytest.param(["4hello"], [Packet(T.MESSAGE, "hello")], "4hello", id="single-record"),
    pytest.param(
        [b"\xff", "4\u20ac"],
        [Packet(T.MESSAGE, b"\xff"), Packet(T.MESSAGE, "\u20ac")],
        "b/w==\x1e4\u20ac",
        id="binary-first",
    ),
]


@pytest.mark.parametrize("frames, packets, body", PAYLOADS)
def test_encode_payload(frames, packets, body: str) -> None:
    assert encode_payload(frames) == body
    assert encode_payload([encode_packet(p) for p in packets]) == body


@pytest.mark.parametrize("frames, packets, body", PAYLOADS)
def test_decode_payload(frames, packets, body: str) -> None:
    assert decode_payload(body) == packets


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("", id="empty-frame"),
        pytest.param("7", id="unknown-type-7"),
        pytest.param("7hello", id="unknown-type-7-with-data"),
        pytest.param("x", id="not-a-type"),
        pytest.param("bAQIDBA==", id="base64-record-is-not-a-frame"),
        pytest.param("\x1e", id="separator"),
    ],
)
def test_decode_packet_rejects(frame: str) -> None:
    with pytest.raises(ProtocolError):
        decode_packet(frame)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("", id="empty-payload"),
        pytest.param("7", id="unknown-type"),
        pytest.param("x", id="not-a-type"),
        pytest.param("4hello\x1e", id="trailing-empty-record"),
        pytest.param("4a\x1e\x1e4b", id="empty-record-in-the-middle"),
        pytest.param("4hello\x1e7", id="one-bad-record-rejects-the-body"),
        pytest.param("b!!!", id="invalid-base64"),
        pytest.param("bAQI", id="base64-missing-padding"),
        pytest.param("bA", id="base64-truncated"),
        pytest.param("bAQ=D", id="base64-garbage-after-padding"),
        pytest.param("4ok\x1eb%%%%", id="invalid-base64-after-valid-record"),
    ],
)
def test_decode_payload_rejects(body: str) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(body)


@pytest.mark.parametrize(
    "data, frame",
    [
        pytest.param("hello", "4hello", id="str"),
        pytest.param("", "4", id="empty-str"),
        pytest.param("\U0001f600", "4\U0001f600", id="emoji"),
        pytest.param(b"\x01\x02", b"\x01\x02", id="bytes"),
        pytest.param(bytearray(b"\x01\x02"), b"\x01\x02", id="bytearray"),
        pytest.param(memoryview(b"\x00\x01\x02")[1:], b"\x01\x02", id="memoryview"),
    ],
)
def test_message_frame(data, frame) -> None:
    out = message_frame(data)
    assert out == frame
    assert type(out) is type(frame)
    # A message frame is exactly the encoding of the message packet it stands for.
    assert decode_packet(out) == Packet(T.MESSAGE, bytes(data) if not isinstance(data, str) else data)
