"""What the Socket.IO server does with each Engine.IO session: its packets, its namespaces, its end.

``PacketHandling`` is a part of ``geventsio.Server`` (a mixin, as
``RoomsMixin`` is): the engine reports sessions opened, messages and closes
to it (its ``Listener`` methods); packets are decoded on the reading
greenlet, acknowledgements resolved there at once, and everything that runs
the application's code (connect, events, disconnect) is queued on the
session's ordered dispatcher.
"""

from __future__ import annotations

import logging
import re
import secrets

from . import recovery
from .adapter import Adapter
from .compat import args_of
from .engine.session import Session
from .exceptions import ConnectionRefusedError
from .legacy import LegacyConnection
from .namespace import NOT_HANDLED, RESERVED_EVENTS
from .socket import Connection, Socket
from .socketio_packet import _ACK, _BINARY_ACK, _BINARY_EVENT, _EVENT, Packet, PacketType

logger = logging.getLogger("geventsio")


class Reason:
    """Why a socket disconnected, as passed to ``disconnect(sid, reason)`` handlers."""

    CLIENT_DISCONNECT = "client disconnect"
    SERVER_DISCONNECT = "server disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"
    PARSE_ERROR = "parse error"
    SEND_BUFFER_FULL = "send buffer full"
    SERVER_SHUTDOWN = "server shutting down"


_ENGINE_REASONS = {
    "forced close": Reason.SERVER_DISCONNECT,
    "ping timeout": Reason.PING_TIMEOUT,
    "transport close": Reason.TRANSPORT_CLOSE,
    "transport error": Reason.TRANSPORT_ERROR,
    "parse error": Reason.PARSE_ERROR,
    "send buffer full": Reason.SEND_BUFFER_FULL,
    "server shutting down": Reason.SERVER_SHUTDOWN,
}


class PacketHandling:
    """The engine listener half of ``geventsio.Server`` (see the module docstring)."""

    # -- engine listener ------------------------------------------------

    def on_connect(self, session: Session) -> None:
        if session.protocol == 3:
            # socket.io-client 2.x: joined to "/" without asking (Socket.IO protocol v4).
            conn = self.connections[session.sid] = LegacyConnection(session, self)
            session.schedule(self._handle_connect, conn, Packet(PacketType.CONNECT, "/"))
            return
        self.connections[session.sid] = Connection(session, self)

    def on_message(self, session: Session, data: str | bytes) -> None:
        conn = self.connections.get(session.sid)
        if conn is None:
            return
        packet = conn.feed(data)
        if packet is None:
            return
        t = packet.type
        if t is _EVENT or t is _BINARY_EVENT:
            if packet.data[0] in RESERVED_EVENTS:
                logger.warning("session %s: client emitted reserved event %r; closing",
                               session.sid, packet.data[0])
                session.close("parse error")
                return
            session.run_ordered(self._handle_event, conn, packet)
        elif t is _ACK or t is _BINARY_ACK:
            socket = conn.sockets.get(packet.namespace)
            ack = socket.acks.pop(packet.id, None) if socket is not None else None
            if ack is not None:
                ack.resolve(packet.data)
        elif t is PacketType.CONNECT:
            session.run_ordered(self._handle_connect, conn, packet)
        elif t is PacketType.DISCONNECT:
            socket = conn.sockets.get(packet.namespace)
            if socket is not None:
                self._detach(socket)
                session.run_ordered(self._finish_disconnect, socket, Reason.CLIENT_DISCONNECT)
        else:
            logger.warning("session %s: client sent a %s packet; closing", session.sid, t.name)
            session.close("parse error")

    def on_close(self, session: Session, reason: str) -> None:
        conn = self.connections.pop(session.sid, None)
        if conn is None:
            return
        conn.connect_timer.stop()
        why = _ENGINE_REASONS.get(reason, reason)
        for socket in list(conn.sockets.values()):
            self._detach(socket)
            self._finish_disconnect(socket, why)

    # -- packet handling (on the session's dispatcher) ------------------

    def _namespace_accepted(self, nsp: str) -> bool:
        registered = self.table.names()
        if self._accept_any or nsp in registered or "*" in registered:
            return True
        for accepted in self._accepted:
            if accepted == nsp:
                return True
            if isinstance(accepted, re.Pattern) and accepted.fullmatch(nsp):
                return True
            if callable(accepted) and accepted(nsp):
                return True
        return False

    def _handle_connect(self, conn: Connection, packet: Packet) -> None:
        nsp = packet.namespace
        session = conn.session
        existing = conn.sockets.get(nsp)
        if existing is not None:
            session.send_frames(conn.connect_frames(nsp, existing))
            return
        if not self._namespace_accepted(nsp):
            logger.info("session %s: refused unknown namespace %r", session.sid, nsp)
            refusal = {"message": "Invalid namespace"}
            session.send_frames(conn.refusal_frames(nsp, refusal))
            return
        adapter = self._adapter(nsp)
        restored = recovery.restore(self, adapter, packet.data)
        socket = Socket(restored.sid if restored else secrets.token_urlsafe(15), nsp, conn)
        conn.sockets[nsp] = socket
        self.sockets[socket.sid] = socket
        adapter.add_socket(socket, packet.data)
        if adapter.recovery is not None:
            recovery.start_socket(socket, adapter, restored)
            if restored is not None and self.connection_state_recovery.skip_middlewares:
                session.send_frames(conn.connect_frames(nsp, socket))
                socket.mark_connected()
                return
        if self.always_connect:
            # Accepted before the handler runs; a refusal then becomes a disconnect.
            session.send_frames(conn.connect_frames(nsp, socket))
            socket.mark_connected()
        refusal: dict | None = None
        try:
            result = self.table.trigger("connect", nsp, (socket.sid, session.environ), (packet.data,))
            if result is False:
                refusal = {"message": "Connection rejected by server"}
        except ConnectionRefusedError as exc:
            refusal = {"message": exc.message}
            if exc.data is not None:
                refusal["data"] = exc.data
        except Exception:
            logger.exception("connect handler of %r failed; refusing the connection", nsp)
            refusal = {"message": "Connection rejected by server"}
        if refusal is None and conn.sockets.get(nsp) is not socket:
            # The connect handler disconnected the client it was admitting.
            refusal = {"message": "Connection rejected by server"}
        if refusal is not None and self.always_connect:
            self.disconnect(socket.sid, nsp)
            return
        if refusal is not None:
            self.eio.counters.count(self.eio.counters.connect_refusals, nsp)
            self._detach(socket)
            self._remove_from_adapter(socket)
            self.sockets.pop(socket.sid, None)
            session.send_frames(conn.refusal_frames(nsp, refusal))
            return
        if not socket.connected:
            session.send_frames(conn.connect_frames(nsp, socket))
            socket.mark_connected()
        self.eio.counters.count(self.eio.counters.connects, nsp)
        for observer in self.observers:
            observer.socket_connected(socket)

    def _handle_event(self, conn: Connection, packet: Packet) -> None:
        socket = conn.sockets.get(packet.namespace)
        if socket is None:
            return
        if self.observers:
            for observer in self.observers:
                observer.event_received(socket, packet.data)
        event, *args = packet.data
        result = self.table.trigger(event, packet.namespace, (socket.sid, *args))
        if packet.id is not None and result is not NOT_HANDLED:
            socket.deliver(self._frames_of(_ACK, packet.namespace, args_of(result), packet.id))

    def _detach(self, socket: Socket) -> bool:
        """Stop routing the client's packets to ``socket``; False if that was done already.

        The socket stays known by its sid (its session, environ and rooms) until
        ``_finish_disconnect`` has run the disconnect handler.
        """
        conn = socket.connection
        if conn.sockets.get(socket.namespace) is not socket:
            return False
        del conn.sockets[socket.namespace]
        return True

    def _finish_disconnect(self, socket: Socket, reason: str) -> None:
        # The handler runs while the socket is still in its rooms, as in python-socketio.
        keep = recovery.session_to_keep(self, socket, reason)
        try:
            if socket.connected:
                self.table.trigger("disconnect", socket.namespace, (socket.sid,), (reason,))
        except Exception:
            logger.exception("disconnect handler of %r failed", socket.namespace)
        finally:
            self.eio.counters.count(self.eio.counters.disconnects, reason)
            if keep is not None:
                keep()  # before it leaves the adapter: no restore can come in between
            self._remove_from_adapter(socket)
            if self.sockets.get(socket.sid) is socket:
                del self.sockets[socket.sid]
            socket.drop_acks()
            for observer in self.observers:
                observer.socket_disconnected(socket, reason)

    def _remove_from_adapter(self, socket: Socket) -> None:
        nsp = socket.namespace
        adapter = self.adapters.get(nsp)
        if adapter is None:
            return
        adapter.remove_socket(socket.sid)
        self._drop_if_idle(nsp, adapter)

    def _drop_if_idle(self, nsp: str, adapter: Adapter) -> None:
        # A namespace admitted by a pattern ("*", a regex, a callable) keeps no
        # state once empty (and no session to recover), or clients could grow
        # the server by naming new ones.
        if not adapter.sockets and nsp != "/" and nsp not in self.table.names() \
                and nsp not in self._accepted and self.adapters.get(nsp) is adapter \
                and not (adapter.recovery is not None and len(adapter.recovery)):
            del self.adapters[nsp]
            adapter.close()
            if adapter.recovery is not None:
                adapter.recovery.close()
