"""WebSocket frames (RFC 6455), pure: opcodes, close codes, unmasking and server frames.

No I/O: ``websocket.WebSocket`` reads and writes them on a connection.
"""

from __future__ import annotations

import struct

from ..exceptions import ProtocolError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009

U16 = struct.Struct("!H")
U64 = struct.Struct("!Q")


class MessageTooBig(ProtocolError):
    """A message announced more bytes than ``max_message_size``."""


def valid_close_code(code: int) -> bool:
    """Codes a peer may put on the wire (RFC 6455 7.4): 1005, 1006, 1015 are never sent."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) \
        or 3000 <= code < 5000


def unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame_header(opcode: int, length: int) -> bytes:
    """The header of one unmasked, final server frame."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 0x10000:
        return bytes((0x80 | opcode, 126)) + U16.pack(length)
    return bytes((0x80 | opcode, 127)) + U64.pack(length)


def encode_frame(data: str | bytes) -> bytes:
    """One complete server frame: text for ``str``, binary for ``bytes``."""
    if isinstance(data, str):
        # "replace": a lone surrogate in app text must not cost the whole batch.
        payload = data.encode("utf-8", "replace")
        n = len(payload)
        if n < 126:  # most packets: a two-byte header, built here
            return bytes((0x80 | OP_TEXT, n)) + payload
        return frame_header(OP_TEXT, n) + payload
    return frame_header(OP_BINARY, len(data)) + data


def encode_frames(messages: list[str | bytes]) -> bytes:
    """Several server frames as one buffer, for one write."""
    if len(messages) == 1:
        return encode_frame(messages[0])
    return b"".join([encode_frame(m) for m in messages])
