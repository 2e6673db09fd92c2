"""Engine.IO v3 codec (socket.io-client 2.x): polling payloads and WebSocket frames, with no I/O.

The session queues the same frames for every protocol (``"4text"``, raw
``bytes`` for a binary message, see ``packet.py``); only their wire form
differs, and this module translates at the edges:

- a text polling payload is ``<length>:<packet>`` per packet, the length
  counting characters as JavaScript does (UTF-16 code units: an emoji outside
  the Basic Multilingual Plane counts 2), a binary message travelling as
  ``b4`` + base64;
- a binary polling payload (clients with XHR2 that did not send ``b64=1``)
  is, per packet, a byte 0 (text) or 1 (binary), the decimal digits of its
  length in bytes *as byte values 0-9*, the byte 255, then the packet: text
  as UTF-8, binary as the type byte ``4`` followed by the data;
- over WebSocket a binary message is the type byte ``4`` followed by the
  data; a text frame ``b4...`` is a base64 binary message.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode, b64encode
from typing import Iterable

from ..exceptions import ProtocolError
from .packet import Frame, Packet, PacketType, decode_packet

TEXT_CONTENT_TYPE = "text/plain; charset=UTF-8"
BINARY_CONTENT_TYPE = "application/octet-stream"

_MESSAGE_BYTE = b"\x04"  # the type byte of a binary message
_STRING_MARK = 0
_BINARY_MARK = 1
_LENGTH_END = 255
# A payload's length fields are bounded: a hostile digit run cannot make int() slow.
_MAX_LENGTH_DIGITS = 12

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def js_length(text: str) -> int:
    """The length JavaScript's ``String.length`` gives ``text``: its UTF-16 code units."""
    n = len(text)
    if text.isascii():
        return n
    return n + len(_ASTRAL.findall(text))


def _base64_record(data: bytes) -> str:
    return "b4" + b64encode(data).decode("ascii")


# -- text payloads ------------------------------------------------------------


def encode_text_payload(frames: Iterable[Frame]) -> str:
    """Frames as one text payload; binary messages as ``b4`` + base64."""
    parts = []
    for frame in frames:
        record = frame if type(frame) is str else _base64_record(frame)
        parts.append(f"{js_length(record)}:{record}")
    return "".join(parts)


def _decode_record(record: str) -> Packet:
    if record[:1] == "b":
        return decode_base64_record(record)
    return decode_packet(record)


def decode_base64_record(record: str) -> Packet:
    """``b4<base64>``: a binary message sent as text (the only packet type that carries binary)."""
    if record[1:2] != "4":
        raise ProtocolError(f"invalid base64 packet {record[:20]!r}")
    try:
        return Packet(PacketType.MESSAGE, b64decode(record[2:], validate=True))
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid base64 in binary record") from None


def decode_text_payload(body: str) -> list[Packet]:
    """Split a text payload into packets; any malformed record rejects the whole body."""
    if not body:
        raise ProtocolError("empty payload")
    if _ASTRAL.search(body) is None:
        return _split_records(body)
    # Lengths count UTF-16 code units: walk the UTF-16 form of the body.
    units = body.encode("utf-16-le", "surrogatepass")
    packets = []
    pos = 0
    end = len(units) // 2
    while pos < end:
        colon = _find_colon(units, pos, end)
        try:
            digits = units[2 * pos:2 * colon].decode("utf-16-le")
        except UnicodeDecodeError:
            raise ProtocolError("invalid payload length") from None
        length = _parse_length(digits)
        start = colon + 1
        if start + length > end:
            raise ProtocolError("payload record longer than the payload")
        try:
            record = units[2 * start:2 * (start + length)].decode("utf-16-le")
        except UnicodeDecodeError:
            raise ProtocolError("payload length splits a character") from None
        if record:
            packets.append(_decode_record(record))
        pos = start + length
    return packets


def _find_colon(units: bytes, pos: int, end: int) -> int:
    for i in range(pos, min(end, pos + _MAX_LENGTH_DIGITS + 1)):
        if units[2 * i:2 * i + 2] == b":\x00":
            return i
    raise ProtocolError("payload record without a valid length")


def _parse_length(digits: str) -> int:
    if not digits or len(digits) > _MAX_LENGTH_DIGITS or not digits.isascii() \
            or not digits.isdigit():
        raise ProtocolError(f"invalid payload length {digits[:20]!r}")
    return int(digits)


def _split_records(body: str) -> list[Packet]:
    # Every character is one UTF-16 unit here, so str indices are JS indices.
    packets = []
    pos = 0
    end = len(body)
    while pos < end:
        colon = body.find(":", pos, pos + _MAX_LENGTH_DIGITS + 1)
        if colon < 0:
            raise ProtocolError("payload record without a valid length")
        length = _parse_length(body[pos:colon])
        start = colon + 1
        if start + length > end:
            raise ProtocolError("payload record longer than the payload")
        if length:  # "0:" is an empty record, skipped as the reference parser does
            packets.append(_decode_record(body[start:start + length]))
        pos = start + length
    return packets


# -- binary payloads (XHR2) ----------------------------------------------------


def _length_header(mark: int, length: int) -> bytes:
    return bytes([mark, *(ord(d) - 48 for d in str(length)), _LENGTH_END])


def encode_binary_payload(frames: Iterable[Frame]) -> bytes:
    """Frames as one binary payload, for a client that reads binary responses."""
    parts = []
    for frame in frames:
        if type(frame) is str:
            data = frame.encode("utf-8", "replace")
            parts.append(_length_header(_STRING_MARK, len(data)))
            parts.append(data)
        else:
            parts.append(_length_header(_BINARY_MARK, len(frame) + 1))
            parts.append(_MESSAGE_BYTE)
            parts.append(frame)
    return b"".join(parts)


def decode_binary_payload(body: bytes) -> list[Packet]:
    """Split a binary payload into packets; any malformed record rejects the whole body."""
    if not body:
        raise ProtocolError("empty payload")
    packets = []
    pos = 0
    end = len(body)
    while pos < end:
        mark = body[pos]
        if mark not in (_STRING_MARK, _BINARY_MARK):
            raise ProtocolError(f"invalid binary payload record mark {mark}")
        stop = body.find(_LENGTH_END, pos + 1, pos + 2 + _MAX_LENGTH_DIGITS)
        digits = body[pos + 1:stop]
        if stop < 0 or not digits or any(d > 9 for d in digits):
            raise ProtocolError("binary payload record without a valid length")
        length = int("".join(chr(48 + d) for d in digits))
        start = stop + 1
        if length == 0 or start + length > end:
            raise ProtocolError("binary payload record longer than the payload")
        data = body[start:start + length]
        if mark == _STRING_MARK:
            try:
                packets.append(_decode_record(data.decode("utf-8")))
            except UnicodeDecodeError:
                raise ProtocolError("text record is not valid UTF-8") from None
        else:
            packets.append(decode_binary_frame(data))
        pos = start + length
    return packets


# -- polling bodies -------------------------------------------------------------


def encode_payload(frames: list[Frame], binary: bool) -> tuple[bytes, str]:
    """A polling response body and its content type.

    The binary form is used only when ``binary`` (the client reads binary
    responses) and a binary message is among the frames, as Node's server does.
    """
    if binary and any(type(f) is not str for f in frames):
        return encode_binary_payload(frames), BINARY_CONTENT_TYPE
    return encode_text_payload(frames).encode("utf-8", "replace"), TEXT_CONTENT_TYPE


def decode_payload(body: bytes, content_type: str | None) -> list[Packet]:
    """A polling request body: binary when sent as ``application/octet-stream``, else text."""
    if content_type is not None and content_type.split(";")[0].strip().lower() == BINARY_CONTENT_TYPE:
        return decode_binary_payload(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("payload is not valid UTF-8") from None
    return decode_text_payload(text)


# -- WebSocket frames ------------------------------------------------------------


def decode_binary_frame(data: bytes) -> Packet:
    """A binary WebSocket frame (or binary payload record): the type byte, then the data."""
    if data[:1] != _MESSAGE_BYTE:
        raise ProtocolError("binary packet that is not a message")
    return Packet(PacketType.MESSAGE, bytes(data[1:]))


def encode_websocket_frames(frames: Iterable[Frame], binary: bool) -> list[Frame]:
    """Queued frames as v3 WebSocket frames: binary gets its type byte, or base64 without ``binary``."""
    if binary:
        return [f if type(f) is str else _MESSAGE_BYTE + f for f in frames]
    return [f if type(f) is str else _base64_record(f) for f in frames]
