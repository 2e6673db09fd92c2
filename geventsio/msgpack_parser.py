"""The msgpack parser of the npm package ``socket.io-msgpack-parser`` 3.x, in Python.

Pure codec with no I/O. Every Socket.IO packet is one msgpack map
``{type, data, nsp, id?}`` in one binary Engine.IO message: no attachments,
no BINARY_EVENT/BINARY_ACK types (bytes travel inside the map as msgpack
``bin``). The JavaScript side encodes with notepack.io 2.x; its choices are
mirrored here:

| JavaScript (notepack.io)           | wire                        | Python            |
|------------------------------------|-----------------------------|-------------------|
| integral number / other number     | smallest int / float 64     | ``int``/``float`` |
| string                             | fixstr, str 8/16/32         | ``str``           |
| ``Buffer``                         | bin 8/16/32                 | ``bytes``         |
| ``ArrayBuffer``, typed array       | ext 8/16/32, type 0         | ``bytes``         |
| ``Date``                           | fixext 8, type 0 (ms, i64)  | ``datetime`` (UTC)|
| ``undefined``                      | fixext 1, type 0            | ``None``          |
| any other extension (decode only)  | ext, type t                 | ``[t, bytes]``    |

Python ``bytes``/``bytearray``/``memoryview`` are sent as bin (a ``Buffer``
in Node); a naive ``datetime`` is taken as UTC. Python ``float`` values are
always sent as float 64, where notepack.io would send an integral number as an
int: JavaScript reads the same number. Strings with lone surrogates cannot be
carried (msgpack strings are UTF-8) and raise ``ValueError``.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

import msgpack

from geventsio.exceptions import ProtocolError
from geventsio.socketio_packet import Packet, PacketType, payload_ok

__all__ = ["MsgPackDecoder", "MsgPackParser", "decode", "encode"]

# Types on the wire: the msgpack parser knows no binary variants.
_WIRE_TYPES = {
    PacketType.CONNECT: 0,
    PacketType.DISCONNECT: 1,
    PacketType.EVENT: 2,
    PacketType.ACK: 3,
    PacketType.CONNECT_ERROR: 4,
    PacketType.BINARY_EVENT: 2,
    PacketType.BINARY_ACK: 3,
}
_TYPES = {int(t): t for t in (PacketType.CONNECT, PacketType.DISCONNECT, PacketType.EVENT,
                              PacketType.ACK, PacketType.CONNECT_ERROR)}
_ACK_ID_TYPES = frozenset((PacketType.EVENT, PacketType.ACK))
# Ack ids a JavaScript peer reads exactly.
_MAX_ID = 2**53

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MILLISECOND = datetime.timedelta(milliseconds=1)
_I64 = struct.Struct(">q")
_FIXEXT_SIZES = frozenset((1, 2, 4, 8, 16))
# How deep the careful decoder (below) follows arrays and maps; msgpack's C
# unpacker stops at a similar depth by itself.
_MAX_DEPTH = 200


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, memoryview):
        return obj.tobytes()
    if isinstance(obj, datetime.datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=datetime.timezone.utc)
        return msgpack.ExtType(0, _I64.pack((obj - _EPOCH) // _MILLISECOND))
    if isinstance(obj, int):  # msgpack asks here for an int beyond 64 bits
        raise ValueError(f"integer {obj} is beyond msgpack's 64 bits")
    raise TypeError(f"Object of type {type(obj).__name__} is not msgpack serializable")


# One packer for every packet (gevent runs one greenlet at a time, and a pack
# never yields); it resets its buffer when a pack fails.
_packer = msgpack.Packer(use_bin_type=True, datetime=False, default=_pack_default)


def encode(packet: Packet) -> bytes:
    """Encode ``packet`` as one msgpack message, exactly as notepack.io encodes the same object.

    Raises ``ValueError`` for a packet that cannot be expressed on the wire (bad
    namespace or id, integers beyond 64 bits, strings with lone surrogates) and
    ``TypeError`` for data msgpack cannot carry.
    """
    try:
        wire_type = _WIRE_TYPES[packet.type]
    except KeyError:
        raise ValueError(f"unknown packet type {packet.type!r}") from None
    namespace = packet.namespace
    if not isinstance(namespace, str) or not namespace.startswith("/"):
        raise ValueError(f"invalid namespace {namespace!r}")
    message: dict[str, Any] = {"type": wire_type}
    if packet.data is not None:
        message["data"] = packet.data
    message["nsp"] = namespace
    ack_id = packet.id
    if ack_id is not None:
        if type(ack_id) is not int or not 0 <= ack_id < _MAX_ID:
            raise ValueError(f"invalid ack id {ack_id!r}")
        message["id"] = ack_id
    try:
        return _packer.pack(message)
    except OverflowError as exc:
        raise ValueError(f"cannot encode packet: {exc}") from None


def _ext_value(code: int, data: bytes, fixed: bool) -> Any:
    """What notepack.io decodes an extension to; ``fixed`` for the fixext formats."""
    if code == 0:
        if not fixed:
            return data  # ArrayBuffer
        if len(data) == 1:
            return None  # undefined
        if len(data) == 8:
            try:
                return _EPOCH + _I64.unpack(data)[0] * _MILLISECOND
            except OverflowError:
                raise ProtocolError("date out of range") from None
    return [code, data]


# msgpack's C unpacker hands an extension to ext_hook without saying which
# format carried it, but notepack.io gives type 0 a different meaning in ext
# 8/16/32 (ArrayBuffer) than in fixext (undefined, Date); and it reads type -1
# as a plain extension where msgpack makes a Timestamp. So the fast path (C)
# gives way to the careful one (a Python walk that reads each extension's
# header) when a type 0 extension has a size a fixext could have, or when the
# message may hold a type -1 extension: a Timestamp (sizes 4, 8, 12) needs one
# of the byte pairs below, and any other size makes the C unpacker fail.
_TIMESTAMP_PAIRS = (b"\xd6\xff", b"\xd7\xff", b"\x04\xff", b"\x08\xff", b"\x0c\xff")
_fixext_sized_type0: list[bool] = []  # set by _fast_ext_hook during one decode


def _fast_ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        if len(data) in _FIXEXT_SIZES:
            _fixext_sized_type0.append(True)  # the careful path will read it
            return None
        return data  # only ext 8/16/32 carry other sizes: an ArrayBuffer
    return [code, data]


def _maybe_timestamp(frame: bytes) -> bool:
    return b"\xff" in frame and any(pair in frame for pair in _TIMESTAMP_PAIRS)


def _unpack_fast(frame: bytes) -> Any:
    return msgpack.unpackb(frame, raw=False, ext_hook=_fast_ext_hook, strict_map_key=True)


def _unpack(frame: bytes) -> Any:
    """The fast path when it is sure to read the message as notepack.io does, else the careful one."""
    if _maybe_timestamp(frame):
        return _unpack_careful(frame)
    _fixext_sized_type0.clear()
    try:
        obj = _unpack_fast(frame)
    except Exception:
        if b"\xff" in frame:  # perhaps a type -1 extension of a size msgpack refuses
            return _unpack_careful(frame)
        raise
    if _fixext_sized_type0:
        return _unpack_careful(frame)
    return obj


_EXT_HEADERS = {  # prefix: (header length, data size: a struct after the prefix, or fixed)
    0xc7: (3, struct.Struct(">B")), 0xc8: (4, struct.Struct(">H")), 0xc9: (6, struct.Struct(">I")),
    0xd4: (2, 1), 0xd5: (2, 2), 0xd6: (2, 4), 0xd7: (2, 8), 0xd8: (2, 16),
}
_SIGNED_BYTE = struct.Struct(">b")  # the type byte, just before the data


def _unpack_careful(frame: bytes) -> Any:
    """Decode as notepack.io does, walking containers in Python to read extension headers."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(len(frame), 1))
    unpacker.feed(frame)

    def value(depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ProtocolError("msgpack structure nested too deeply")
        pos = unpacker.tell()
        prefix = frame[pos]
        if 0x90 <= prefix <= 0x9f or prefix in (0xdc, 0xdd):
            items = []
            for _ in range(unpacker.read_array_header()):
                items.append(value(depth + 1))
            return items
        if 0x80 <= prefix <= 0x8f or prefix in (0xde, 0xdf):
            mapping = {}
            for _ in range(unpacker.read_map_header()):
                key = value(depth + 1)
                if type(key) is not str and type(key) is not bytes:  # as strict_map_key
                    raise ProtocolError("map key is neither a string nor binary")
                mapping[key] = value(depth + 1)
            return mapping
        header = _EXT_HEADERS.get(prefix)
        if header is None:
            return unpacker.unpack()
        header_len, size = header
        if not isinstance(size, int):
            size = size.unpack_from(frame, pos + 1)[0]
        start = pos + header_len
        if start + size > len(frame):
            raise ProtocolError("truncated msgpack extension")
        code = _SIGNED_BYTE.unpack_from(frame, start - 1)[0]
        unpacker.skip()
        return _ext_value(code, frame[start:start + size], prefix >= 0xd4)

    result = value(0)
    if unpacker.tell() != len(frame):
        raise ProtocolError("trailing bytes after the msgpack message")
    return result


def decode(frame: bytes) -> Packet:
    """Decode one binary message into a packet, checked as the JavaScript Decoder checks it.

    Raises ``ProtocolError`` for anything that is not one well-formed packet:
    bad msgpack, trailing bytes, nesting past msgpack's stack, a type outside
    0–4, a namespace not starting with ``/``, an ack id that is not a small
    non-negative integer, or data of the wrong shape for the type.
    """
    try:
        obj = _unpack(frame)
    except ProtocolError:
        raise
    except Exception as exc:  # hostile bytes: every unpack failure is the peer's
        raise ProtocolError(f"invalid msgpack message: {type(exc).__name__}: {exc}"[:200]) from None
    if type(obj) is not dict:
        raise ProtocolError("a msgpack packet must be a map")
    raw_type = obj.get("type")
    ptype = _TYPES.get(raw_type) if type(raw_type) is int else None
    if ptype is None:
        raise ProtocolError(f"invalid packet type {raw_type!r}"[:100])
    namespace = obj.get("nsp")
    if type(namespace) is not str or not namespace.startswith("/"):
        raise ProtocolError("invalid namespace")
    ack_id = obj.get("id")
    if ack_id is not None and (type(ack_id) is not int or not 0 <= ack_id < _MAX_ID
                               or ptype not in _ACK_ID_TYPES):
        raise ProtocolError("invalid ack id")
    data = obj.get("data")
    if not payload_ok(ptype, data, ack_id):
        raise ProtocolError(f"invalid payload for {ptype.name}")
    return Packet(ptype, namespace, data, ack_id)


class MsgPackDecoder:
    """Decodes the messages of one connection; each binary message is a whole packet."""

    __slots__ = ()

    def feed(self, frame: str | bytes) -> Packet:
        """Decode one Engine.IO message; text is a ``ProtocolError`` on a msgpack connection."""
        if isinstance(frame, str):
            raise ProtocolError("text message on a msgpack connection")
        if type(frame) is not bytes:
            if not isinstance(frame, (bytearray, memoryview)):
                raise TypeError(f"expected str or bytes, got {type(frame).__name__}")
            frame = bytes(frame)
        return decode(frame)


_DECODER = MsgPackDecoder()


class MsgPackParser:
    """``serializer="msgpack"``: speaks what ``socket.io-msgpack-parser`` 3.x speaks."""

    name = "msgpack"

    @staticmethod
    def to_frames(packet: Packet) -> list:
        """The Engine.IO messages carrying ``packet``: one binary message."""
        return [encode(packet)]

    @staticmethod
    def decoder(max_attachments: int = 10) -> MsgPackDecoder:
        """A decoder for one connection (stateless, so shared; there are no attachments)."""
        return _DECODER
