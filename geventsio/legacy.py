"""Socket.IO protocol v4 (socket.io-client 2.x, over Engine.IO v3): what differs from v5.

A connection whose Engine.IO session speaks revision 3 is a ``LegacyConnection``;
the server joins it to ``"/"`` as soon as the session opens (the client never
asks). The rest of the packet format is the same as v5, except that:

- CONNECT carries no payload either way; a client passes data for a namespace
  as a query in its name (``0/chat?token=x,``), which handlers receive as their
  ``auth`` argument (a dict of the query's parameters; None without a query);
- a refusal (ERROR) carries a plain value: the ``data`` of the
  ``ConnectionRefusedError`` if it has one, else its message.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from .socket import Connection, Socket, to_frames
from .socketio_packet import Packet, PacketType


def split_namespace(name: str) -> tuple[str, dict | None]:
    """``"/chat?token=x"`` → ``("/chat", {"token": "x"})``; no query → ``(name, None)``."""
    path, sep, query = name.partition("?")
    if not sep:
        return name, None
    return path or "/", dict(parse_qsl(query, keep_blank_values=True))


class LegacyConnection(Connection):
    """The Socket.IO side of an Engine.IO v3 session."""

    __slots__ = ()

    def connect_frames(self, namespace: str, socket: Socket) -> list:
        # Protocol v4 has no payload here: no sid, and no pid (no recovery).
        return to_frames(Packet(PacketType.CONNECT, namespace))

    def refusal_frames(self, namespace: str, refusal: dict) -> list:
        data = refusal.get("data")
        return to_frames(Packet(PacketType.CONNECT_ERROR, namespace,
                                data if data is not None else refusal["message"]))

    def feed(self, data: str | bytes) -> Packet | None:
        packet = super().feed(data)
        if packet is not None and packet.type is PacketType.CONNECT:
            # As Node's server does, a payload (which v4 clients never send) is ignored.
            namespace, auth = split_namespace(packet.namespace)
            return Packet(PacketType.CONNECT, namespace, auth)
        return packet
