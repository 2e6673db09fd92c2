"""Socket.IO protocol v5 packets: encoding to, and decoding from, Engine.IO messages.

Pure codec with no I/O. A packet travels as one text message, optionally followed
by binary messages (its attachments); the Engine.IO ``4`` prefix is the caller's job.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any

from geventsio.exceptions import ProtocolError

__all__ = ["Decoder", "Packet", "PacketType", "decode_text", "encode", "encode_fields", "payload_ok"]


class PacketType(enum.IntEnum):
    """Socket.IO packet types; the value is the first character on the wire."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(frozen=True, slots=True)
class Packet:
    """One Socket.IO packet.

    ``data`` is the JSON payload, with binary values as ``bytes`` at any depth.
    An EVENT or ACK given binary data is sent as BINARY_EVENT or BINARY_ACK;
    decoding keeps the type that was on the wire.
    """

    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


# Enum members are slow lookups (through the enum's metaclass): the per-packet code uses these.
_EVENT, _BINARY_EVENT = PacketType.EVENT, PacketType.BINARY_EVENT
_ACK, _BINARY_ACK = PacketType.ACK, PacketType.BINARY_ACK
_BINARY_TYPES = frozenset((PacketType.BINARY_EVENT, PacketType.BINARY_ACK))
_ACK_ID_TYPES = frozenset((PacketType.EVENT, PacketType.ACK)) | _BINARY_TYPES
_PROMOTE = {
    PacketType.EVENT: PacketType.BINARY_EVENT,
    PacketType.ACK: PacketType.BINARY_ACK,
    PacketType.BINARY_EVENT: PacketType.BINARY_EVENT,
    PacketType.BINARY_ACK: PacketType.BINARY_ACK,
}
_TYPE_CHARS = {t: str(t.value) for t in PacketType}
_CHAR_TYPES = {str(t.value): t for t in PacketType}
_PLAIN_TYPE_CHARS = frozenset(c for c, t in _CHAR_TYPES.items() if t not in _BINARY_TYPES)
_BINARY_LIKE = (bytes, bytearray, memoryview)

# Ack ids stay below 2**53 so that JavaScript peers read them exactly, and
# bounded digit runs keep int() cheap on hostile input.
_MAX_ID_DIGITS = 15
_MAX_ID = 10**_MAX_ID_DIGITS

# Only [0-9] (never other Unicode digits). Runs are capped one past the limit so
# that an over-long number is detected without scanning all of it.
_HEADER = re.compile(r"([0-9])(?:([0-9]{1,16})-)?(?:(/[^,]*),?)?([0-9]{0,16})")

_SEPARATORS = (",", ":")
# NaN and Infinity are not JSON and JSON.parse on the other side would choke on them.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=_SEPARATORS, allow_nan=False)


def _not_json(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _make_dumps() -> Any:
    """The same output as ``_JSON_ENCODER.encode``, with the C encoder built once.

    ``JSONEncoder.encode`` rebuilds its C encoder on every call (~1.7 µs of an
    echo's ~15); built once, a dump costs ~0.5 µs. Without circular-reference
    markers a cycle ends in RecursionError instead of ValueError.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    escape = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or escape is None:
        return _JSON_ENCODER.encode
    encode_chunks = make(None, _not_json, escape, None, ":", ",", False, False, False)

    def dumps(data: Any) -> str:
        return "".join(encode_chunks(data, 0))
    return dumps


_dumps = _make_dumps()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):  # 1e999 overflows to infinity, which no peer can be sent
        raise ValueError(f"{text[:20]} is out of range")
    return value


_INF = float("inf")
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_scan_json = _JSON_DECODER.scan_once


def _parse_json(text: str) -> Any:
    """``_JSON_DECODER.decode(text)``, without its two whitespace scans when there is no whitespace.

    Anything but one value spanning the whole text (surrounding whitespace,
    trailing data, an error) goes through ``decode``, which raises the same
    errors as before.
    """
    try:
        data, end = _scan_json(text, 0)
    except (StopIteration, ValueError):
        end = -1
    if end != len(text):
        data = _JSON_DECODER.decode(text)
    return data

# A lone surrogate ("\ud800", as JavaScript's JSON.stringify writes it) decodes
# to a str that UTF-8 cannot carry; such text is sent \u-escaped instead.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _dumps_with_attachments(data: Any, ensure_ascii: bool = False) -> tuple[str, list[bytes]]:
    """Serialize ``data``, swapping each binary value for a numbered placeholder."""
    attachments: list[bytes] = []

    def placeholder(obj: Any) -> Any:
        if isinstance(obj, _BINARY_LIKE):
            attachments.append(obj if type(obj) is bytes else bytes(obj))
            return {"_placeholder": True, "num": len(attachments) - 1}
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    # json calls `default` in serialization order, which is the placeholder order.
    encoder = json.JSONEncoder(
        ensure_ascii=ensure_ascii, separators=_SEPARATORS, allow_nan=False, default=placeholder
    )
    return encoder.encode(data), attachments


def encode(packet: Packet) -> list[str | bytes]:
    """Encode ``packet`` as its text message followed by its binary attachments.

    Raises ``ValueError`` for a packet that cannot be expressed on the wire (bad
    namespace or id, binary data in a packet type that cannot carry it) and
    ``TypeError`` for data that is neither JSON nor binary.
    """
    return encode_fields(packet.type, packet.namespace, packet.data, packet.id)


def encode_fields(ptype: PacketType, namespace: str, data: Any, ack_id: int | None) -> list[str | bytes]:
    """``encode(Packet(ptype, namespace, data, ack_id))``, for senders that need no packet object."""
    attachments: list[bytes] = []
    if data is None:
        body = ""
    else:
        try:
            # Most packets hold no binary: one C-level dump and no tree scan. The
            # plain encoder rejects bytes with TypeError, which sends us the slow way.
            body = _dumps(data)
        except TypeError:
            body, attachments = _dumps_with_attachments(data)
        if not body.isascii() and _SURROGATE.search(body):
            body, attachments = _dumps_with_attachments(data, ensure_ascii=True)
    if attachments:
        try:
            ptype = _PROMOTE[ptype]
        except KeyError:
            raise ValueError(f"packet type {ptype!r} cannot carry binary data") from None
    try:
        head = _TYPE_CHARS[ptype]
    except KeyError:
        raise ValueError(f"unknown packet type {ptype!r}") from None
    if ptype in _BINARY_TYPES:
        head += f"{len(attachments)}-"
    if namespace != "/":
        if not isinstance(namespace, str) or not namespace.startswith("/") or "," in namespace:
            raise ValueError(f"invalid namespace {namespace!r}")
        head += namespace + ","
    if ack_id is not None:
        if type(ack_id) is not int or not 0 <= ack_id < _MAX_ID:
            raise ValueError(f"invalid ack id {ack_id!r}")
        head += str(ack_id)
    return [head + body, *attachments]


def payload_ok(ptype: PacketType, data: Any, ack_id: int | None) -> bool:
    """Whether ``data`` (and ``ack_id``) have the shape the packet type requires (any parser)."""
    if ptype is _EVENT or ptype is _BINARY_EVENT:
        return type(data) is list and len(data) > 0 and type(data[0]) is str
    if ptype is _ACK or ptype is _BINARY_ACK:
        return type(data) is list and ack_id is not None
    if ptype is PacketType.CONNECT:
        return data is None or type(data) is dict
    if ptype is PacketType.CONNECT_ERROR:
        return type(data) is dict or type(data) is str
    return data is None  # DISCONNECT


def decode_text(s: str) -> tuple[Packet, int]:
    """Decode one text message into a packet and the number of attachments it announces.

    Placeholders in a binary packet are left as they are; :class:`Decoder`
    replaces them once the attachments have arrived.
    """
    if s[1:2] == "[" and s[:1] in _PLAIN_TYPE_CHARS:
        # The usual event: no attachments, namespace or ack id; the header is its type.
        ptype = _CHAR_TYPES[s[0]]
        namespace = None
        ack_id = None
        count = 0
        start = 1
    else:
        m = _HEADER.match(s)
        if m is None:
            raise ProtocolError(f"invalid packet type in {s[:20]!r}")
        type_char, count_digits, namespace, id_digits = m.groups()
        ptype = _CHAR_TYPES.get(type_char)
        if ptype is None:
            raise ProtocolError(f"unknown packet type {type_char}")
        if ptype in _BINARY_TYPES:
            if count_digits is None or len(count_digits) > _MAX_ID_DIGITS:
                raise ProtocolError("binary packet without a valid attachment count")
            count = int(count_digits)
        elif count_digits is not None:
            raise ProtocolError("attachment count on a non-binary packet")
        else:
            count = 0
        ack_id = None
        if id_digits:
            if len(id_digits) > _MAX_ID_DIGITS or ptype not in _ACK_ID_TYPES:
                raise ProtocolError("invalid ack id")
            ack_id = int(id_digits)
        start = m.end()
    data = None
    rest = s[start:]
    if rest:
        try:
            data = _parse_json(rest)
        except (ValueError, RecursionError) as e:
            # RecursionError: hostile nesting depth, not a bug of ours.
            raise ProtocolError(f"invalid JSON payload: {e}") from None
    if not payload_ok(ptype, data, ack_id):
        raise ProtocolError(f"invalid payload for {ptype.name}")
    return Packet(ptype, namespace or "/", data, ack_id), count


def _find_placeholders(data: Any, count: int) -> list[tuple[Any, Any, int]]:
    """Locate every placeholder as (container, key, num), checking num against count."""
    slots = []
    # An explicit stack: the JSON may nest nearly as deep as the recursion limit.
    stack = [data]
    while stack:
        node = stack.pop()
        for key, value in enumerate(node) if type(node) is list else node.items():
            if type(value) is dict:
                if value.get("_placeholder") is True:
                    num = value.get("num")
                    if type(num) is not int or not 0 <= num < count:
                        raise ProtocolError(f"invalid attachment placeholder {num!r}")
                    slots.append((node, key, num))
                else:
                    stack.append(value)
            elif type(value) is list:
                stack.append(value)
    return slots


class Decoder:
    """Reassembles packets from the messages of one connection, fed in order."""

    def __init__(self, max_attachments: int = 10) -> None:
        self.max_attachments = max_attachments
        self._packet: Packet | None = None
        self._slots: list[tuple[Any, Any, int]] = []
        self._count = 0
        self._buffers: list[bytes] = []

    def feed(self, frame: str | bytes) -> Packet | None:
        """Take one message; return the packet it completes, or None while attachments are due.

        Raises ``ProtocolError`` on anything the protocol forbids; the partial
        packet, if any, is dropped so the decoder can be reused.
        """
        if isinstance(frame, str):
            if self._packet is not None:
                self._reset()
                raise ProtocolError("text message while binary attachments are pending")
            packet, count = decode_text(frame)
            if packet.type not in _BINARY_TYPES:
                return packet
            if count > self.max_attachments:
                raise ProtocolError(f"too many attachments ({count})")
            slots = _find_placeholders(packet.data, count)
            if count == 0:
                return packet
            self._packet, self._slots, self._count = packet, slots, count
            return None
        if not isinstance(frame, _BINARY_LIKE):
            raise TypeError(f"expected str or bytes, got {type(frame).__name__}")
        if self._packet is None:
            raise ProtocolError("binary message without a pending binary packet")
        self._buffers.append(frame if type(frame) is bytes else bytes(frame))
        if len(self._buffers) < self._count:
            return None
        packet, buffers = self._packet, self._buffers
        for container, key, num in self._slots:
            container[key] = buffers[num]
        self._reset()
        return packet

    def _reset(self) -> None:
        self._packet = None
        self._slots = []
        self._count = 0
        self._buffers = []
