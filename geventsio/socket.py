"""Socket.IO connections: one per Engine.IO session, with one socket per namespace joined."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import gevent

from .engine.session import Session
from .exceptions import DisconnectedError, ProtocolError, TimeoutError
from .parsers import to_json_frames as to_frames  # noqa: F401 - other modules import it from here
from .socketio_packet import Packet, PacketType

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server

logger = logging.getLogger("geventsio")


class PendingAck:
    """One acknowledgement awaited from a client, with its optional time limit.

    The callback gets the ack's arguments, or a single ``TimeoutError`` when
    the time limit passes first. User callbacks run on the session's
    dispatcher, in order with its events; ``direct`` callbacks (the waiters of
    ``call``) run at once, so a handler that calls its own client cannot wait
    behind itself.
    """

    __slots__ = ("callback", "timer", "socket", "id", "direct")

    def __init__(self, socket: "Socket", ack_id: int, callback: Callable[..., Any],
                 timeout: float | None, direct: bool = False):
        self.socket = socket
        self.id = ack_id
        self.callback = callback
        self.direct = direct
        self.timer = None
        if timeout is not None:
            self.timer = gevent.get_hub().loop.timer(timeout)
            self.timer.start(self._expire)

    def _run(self, *args: Any) -> None:
        if self.direct:
            self.callback(*args)
        else:
            self.socket.connection.session.schedule(self.callback, *args)

    def _expire(self) -> None:
        if self.socket.acks.pop(self.id, None) is self:
            self.socket.connection.session.server.counters.ack_timeouts += 1
            self._run(TimeoutError("no acknowledgement within the time limit"))

    def resolve(self, args: list) -> None:
        if self.timer is not None:
            self.timer.stop()
        self._run(*args)

    def drop(self) -> None:
        """The socket is gone: waiters that set a time limit hear of it now."""
        if self.timer is not None:
            self.timer.stop()
            self._run(DisconnectedError("the client disconnected before acknowledging"))


class Socket:
    """One client connected to one namespace.

    ``deliver(frames)`` queues encoded frames for the client. Until the
    namespace CONNECT answer is sent it buffers them, so that what a connect
    handler emits reaches the client after it knows it is connected.
    """

    __slots__ = ("sid", "namespace", "connection", "acks", "data", "deliver", "_held", "connected",
                 "pid", "recovered")

    def __init__(self, sid: str, namespace: str, connection: "Connection"):
        self.sid = sid
        self.namespace = namespace
        self.connection = connection
        self.acks: dict[int, PendingAck] = {}
        self.data: dict[str, Any] = {}  # the user's session (get_session / save_session)
        self._held: list = []
        self.deliver: Callable[[list], Any] = self._held.extend
        self.connected = False
        self.pid: str | None = None  # private id, with connection state recovery only
        self.recovered = False  # came back with its state (connection state recovery)

    def connect_payload(self) -> dict:
        """The CONNECT answer's payload: the sid, and the pid when the state is recoverable."""
        return {"sid": self.sid} if self.pid is None else {"sid": self.sid, "pid": self.pid}

    @property
    def environ(self) -> dict:
        return self.connection.session.environ

    def mark_connected(self) -> None:
        """Send what was held while connecting, then deliver straight to the session."""
        # Joined a namespace: the connection no longer needs its connect timeout.
        self.connection.connect_timer.stop()
        send = self.connection.session.send_frames
        if self._held:
            send(self._held)
        self._held = []
        self.deliver = send
        self.connected = True

    def deliver_volatile(self, frames: list) -> bool:
        """Queue frames unless the client lags (or is not connected yet); True if queued."""
        return self.connected and self.connection.session.send_volatile(frames)

    def send_packet(self, packet: Packet) -> None:
        self.deliver(self.connection.to_frames(packet))

    def expect_ack(self, ack_id: int, callback: Callable[..., Any], timeout: float | None,
                   direct: bool = False) -> None:
        self.acks[ack_id] = PendingAck(self, ack_id, callback, timeout, direct)

    def drop_acks(self) -> None:
        acks = list(self.acks.values())
        self.acks.clear()
        for ack in acks:
            ack.drop()


class Connection:
    """The Socket.IO side of one Engine.IO session: its decoder and its namespace sockets."""

    __slots__ = ("session", "decoder", "to_frames", "sockets", "connect_timer")

    def __init__(self, session: Session, server: "Server"):
        self.session = session
        self.decoder = server.parser.decoder(server.max_attachments)
        self.to_frames = server.parser.to_frames  # the server's parser, for replies to this client
        self.sockets: dict[str, Socket] = {}
        self.connect_timer = gevent.get_hub().loop.timer(server.connect_timeout)
        self.connect_timer.start(self._connect_timeout)

    def _connect_timeout(self) -> None:
        if not self.sockets and not self.session.closed:
            logger.info("session %s joined no namespace within connect_timeout; closing",
                        self.session.sid)
            self.session.close()

    def connect_frames(self, namespace: str, socket: Socket) -> list:
        """The frames telling the client it joined ``namespace`` as ``socket``."""
        return self.to_frames(Packet(PacketType.CONNECT, namespace, socket.connect_payload()))

    def refusal_frames(self, namespace: str, refusal: dict) -> list:
        """The frames refusing ``namespace``; ``refusal`` is ``{"message": ..., ["data": ...]}``."""
        return self.to_frames(Packet(PacketType.CONNECT_ERROR, namespace, refusal))

    def feed(self, data: str | bytes) -> Packet | None:
        """Decode one Engine.IO message; a protocol violation closes the session."""
        try:
            return self.decoder.feed(data)
        except ProtocolError as exc:
            logger.warning("session %s: invalid Socket.IO packet (%s); closing", self.session.sid, exc)
            self.session.close("parse error")
            return None
