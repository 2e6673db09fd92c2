"""An Engine.IO v3 session (socket.io-client 2.x): what differs from a v4 session.

Only sessions opened with ``EIO=3`` (when the server allows them) are of this
class, so the v4 session keeps its code paths as they are. The differences:

- heartbeat: the *client* pings, the server answers each ``2`` with a ``3``;
  a session that receives nothing within ``ping_interval + ping_timeout`` is
  closed (a client pong is a protocol error, as a v4 client's ping is);
- wire forms: polling bodies use the v3 payload framing and binary messages
  carry a type byte over WebSocket (``packet_v3``); a client that sent
  ``b64=1`` in its handshake gets binary messages as base64 text.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import gevent

from . import packet_v3
from .packet import PONG_FRAME, Frame, Packet, PacketType
from .session import REASON_PING_TIMEOUT, Session, State
from ..exceptions import ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server
    from .websocket import WebSocket

logger = logging.getLogger("geventsio.engine")


class SessionV3(Session):
    """An Engine.IO session speaking protocol revision 3; ``binary`` is False for ``b64=1`` clients."""

    protocol = 3

    def __init__(self, server: "Server", sid: str, environ: dict, state: State, binary: bool):
        super().__init__(server, sid, environ, state)
        self.binary = binary
        # The v3 spec: a client that sends nothing (pings included) for this long is gone.
        self._silence_limit = server.ping_interval + server.ping_timeout
        # Each packet only notes the loop's clock; the one timer (the ping timer
        # Session started, re-armed) checks it when it fires.
        self._last_heard = self._loop.now()
        self._ping_timer.stop()
        self._ping_timer = self._start_timer(self._silence_limit, self._check_silence)

    def _check_silence(self) -> None:
        # On the event loop.
        if self.state is State.CLOSED:
            return
        left = self._last_heard + self._silence_limit - self._loop.now()
        if left > 0:
            self._ping_timer = self._start_timer(left, self._check_silence)
            return
        logger.info("session %s: nothing received within %ss; closing", self.sid, self._silence_limit)
        gevent.spawn(self.close, REASON_PING_TIMEOUT)

    # -- incoming -------------------------------------------------------

    def receive_frame(self, frame: Frame) -> None:
        self._last_heard = self._loop.now()
        if type(frame) is str:
            if frame[:1] == "b":
                self.receive(packet_v3.decode_base64_record(frame))
                return
            super().receive_frame(frame)
            return
        self.receive(packet_v3.decode_binary_frame(frame))

    def receive(self, packet: Packet) -> None:
        self._last_heard = self._loop.now()
        t = packet.type
        if t is PacketType.PING:
            self.send_frames([PONG_FRAME + packet.data if packet.data else PONG_FRAME])
        elif t is PacketType.PONG:
            raise ProtocolError("pong from an Engine.IO v3 client (the client pings in v3)")
        else:
            super().receive(packet)

    # -- outgoing -------------------------------------------------------

    def attach_websocket(self, ws: "WebSocket", query: dict | None = None) -> None:
        # As Node's server does, each transport asks for base64 or not in its own request.
        if query is not None:
            self.binary = not query.get("b64")
        super().attach_websocket(ws, query)

    def drain(self) -> list[Frame]:
        """Take every queued frame; once on WebSocket, in their v3 WebSocket form."""
        frames = super().drain()
        if self.websocket is not None and frames:
            return packet_v3.encode_websocket_frames(frames, self.binary)
        return frames

    def encode_polling(self, frames: list[Frame]) -> tuple[bytes, str]:
        """A polling response body (and its content type) carrying ``frames``."""
        return packet_v3.encode_payload(frames, self.binary)

    def decode_polling(self, body: bytes, content_type: str | None) -> list[Packet]:
        """The packets of a polling request body."""
        return packet_v3.decode_payload(body, content_type)
