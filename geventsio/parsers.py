"""The parser seam: how Socket.IO packets become Engine.IO messages and back.

A parser is any object with

- ``to_frames(packet) -> list``: the Engine.IO messages carrying one packet,
  text (``str``, with the ``4`` message prefix) or binary (``bytes``). The
  server calls it once per broadcast and queues the same list to every target;
- ``decoder(max_attachments) -> decoder``: a decoder for one connection, whose
  ``feed(message) -> Packet | None`` takes each Engine.IO message in order and
  returns the packet it completes (``None`` while more messages are due),
  raising ``geventsio.exceptions.ProtocolError`` on anything the peer may not
  send.

``Server(serializer=...)`` and ``Client(serializer=...)`` take ``"default"``
(Socket.IO's JSON parser with binary attachments), ``"msgpack"`` (the npm
package ``socket.io-msgpack-parser``; needs ``pip install geventsio[msgpack]``)
or such an object. Both ends of a connection must use the same parser.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from .socketio_packet import Decoder, Packet, PacketType, encode_fields

__all__ = ["DEFAULT_PARSER", "DefaultParser", "PacketDecoder", "Parser", "frames_maker", "json_frames",
           "resolve_parser", "to_json_frames"]


class PacketDecoder(Protocol):
    def feed(self, frame: str | bytes) -> Packet | None: ...


class Parser(Protocol):
    name: str

    def to_frames(self, packet: Packet) -> list: ...

    def decoder(self, max_attachments: int = 10) -> PacketDecoder: ...


def to_json_frames(packet: Packet) -> list:
    """Encode a packet as the Engine.IO frames that carry it: text with the ``4`` prefix, then binaries."""
    return json_frames(packet.type, packet.namespace, packet.data, packet.id)


def json_frames(ptype: PacketType, namespace: str, data: Any, ack_id: int | None) -> list:
    """``to_json_frames`` of the packet with these fields, without building it."""
    parts = encode_fields(ptype, namespace, data, ack_id)
    parts[0] = "4" + parts[0]
    return parts


def frames_maker(parser: Parser) -> Callable[[PacketType, str, Any, "int | None"], list]:
    """``f(ptype, namespace, data, ack_id)``: ``parser.to_frames`` of that packet.

    The server's senders call it on every emit; for the default parser it
    skips building the packet object.
    """
    if getattr(parser, "to_frames", None) is to_json_frames:
        return json_frames
    to_frames = parser.to_frames

    def frames(ptype: PacketType, namespace: str, data: Any, ack_id: int | None) -> list:
        return to_frames(Packet(ptype, namespace, data, ack_id))
    return frames


class DefaultParser:
    """Socket.IO's own parser: JSON text, binary values as attachments."""

    name = "default"
    to_frames = staticmethod(to_json_frames)

    @staticmethod
    def decoder(max_attachments: int = 10) -> Decoder:
        return Decoder(max_attachments=max_attachments)


DEFAULT_PARSER = DefaultParser()


def resolve_parser(serializer: Any) -> Parser:
    """The parser named by a ``serializer`` option: ``"default"``, ``"msgpack"`` or a parser object.

    Raises ``ValueError`` for python-socketio's other serializers (``"pickle"``,
    a packet class), which no Socket.IO client of another language speaks.
    """
    if serializer is None or serializer == "default":
        return DEFAULT_PARSER
    if serializer == "msgpack":
        try:
            from .msgpack_parser import MsgPackParser
        except ImportError as exc:  # pragma: no cover - msgpack is a test dependency
            raise ImportError("serializer='msgpack' needs the msgpack package: "
                              "pip install geventsio[msgpack]") from exc
        return MsgPackParser()
    if not isinstance(serializer, (str, type)) and callable(getattr(serializer, "to_frames", None)) \
            and callable(getattr(serializer, "decoder", None)):
        return serializer
    raise ValueError(f"unsupported serializer {serializer!r}: use 'default', 'msgpack' or an object "
                     "with to_frames(packet) and decoder(max_attachments) (see geventsio.parsers)")
