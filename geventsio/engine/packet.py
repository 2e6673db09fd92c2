"""Engine.IO v4 codec: packets and polling payloads, with no I/O.

A packet on the wire is a *frame*: a ``str`` for text packets (``"4hello"``,
``"2probe"``) or ``bytes`` for a binary message (sent as is over WebSocket).
The session queues frames, not packet objects, so a broadcast is encoded once
and every transport drains the same values: the WebSocket writer sends each
frame, the polling transport joins them into one payload.
"""

from __future__ import annotations

import binascii
import enum
from base64 import b64decode, b64encode
from dataclasses import dataclass
from typing import Iterable, Union

from ..exceptions import ProtocolError

Frame = Union[str, bytes]

SEPARATOR = "\x1e"


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


@dataclass(frozen=True, slots=True)
class Packet:
    """One Engine.IO packet. ``data`` is ``bytes`` only for binary messages."""

    type: PacketType
    data: str | bytes | None = None


# Frames that carry no payload are interned: the heartbeat and upgrade paths
# send them constantly, and decoding them should not allocate.
_TYPE_CHARS = "0123456"
_BARE = {str(int(t)): Packet(t) for t in PacketType if t is not PacketType.MESSAGE}
_BARE["4"] = Packet(PacketType.MESSAGE, "")  # an empty message is an empty string, not no data

PING_FRAME = "2"
PONG_FRAME = "3"
NOOP_FRAME = "6"
CLOSE_FRAME = "1"
PROBE_PING = "2probe"
PROBE_PONG = "3probe"


def encode_packet(packet: Packet) -> Frame:
    """Encode one packet as a WebSocket frame (``str`` or, for binary messages, ``bytes``)."""
    data = packet.data
    if data is None:
        return _TYPE_CHARS[packet.type]
    if isinstance(data, str):
        return _TYPE_CHARS[packet.type] + data
    if packet.type != PacketType.MESSAGE:
        raise ValueError("only message packets may carry binary data")
    return bytes(data)


def message_frame(data: str | bytes | bytearray | memoryview) -> Frame:
    """The frame of a message packet: the hot path for everything a server sends."""
    if isinstance(data, str):
        return "4" + data
    return bytes(data)


def decode_packet(frame: Frame) -> Packet:
    """Decode one WebSocket frame (or one payload record) into a packet."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return Packet(PacketType.MESSAGE, bytes(frame))
    bare = _BARE.get(frame)
    if bare is not None:
        return bare
    if not frame or frame[0] not in _TYPE_CHARS:
        raise ProtocolError(f"invalid packet type in {frame[:20]!r}")
    return Packet(PacketType(ord(frame[0]) - 48), frame[1:])


def encode_payload(frames: Iterable[Frame]) -> str:
    """Join frames into one HTTP long-polling body; binary frames travel as ``b`` + base64."""
    return SEPARATOR.join(
        f if isinstance(f, str) else "b" + b64encode(f).decode("ascii") for f in frames
    )


def decode_payload(body: str) -> list[Packet]:
    """Split a long-polling body into packets; any malformed record rejects the whole body."""
    if not body:
        raise ProtocolError("empty payload")
    packets = []
    for record in body.split(SEPARATOR):
        if record[:1] == "b":
            try:
                packets.append(Packet(PacketType.MESSAGE, b64decode(record[1:], validate=True)))
            except (binascii.Error, ValueError):
                raise ProtocolError("invalid base64 in binary record") from None
        else:
            packets.append(decode_packet(record))
    return packets
