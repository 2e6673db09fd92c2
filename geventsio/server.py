"""The Socket.IO v5 server: namespaces, handlers, rooms, acknowledgements.

Its public names follow python-socketio's ``Server``, so an app ports by
changing its import. It sits on the Engine.IO server as its listener: packets
are decoded on the greenlet that read them, acknowledgements are resolved there
at once, and everything that runs user code goes through the session's ordered
dispatcher.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import secrets
from typing import Any, Callable, Iterable, Iterator

import gevent
from gevent.event import AsyncResult

from . import engine
from .adapter import Adapter, InMemoryManager
from .broadcast import as_rooms
from .compat import ack_value, args_of, setup_logger
from .engine.session import Session
from .exceptions import ConnectionRefusedError, DisconnectedError, TimeoutError
from .namespace import NOT_HANDLED, RESERVED_EVENTS, HandlerDecorators, HandlerTable, Namespace
from .rooms import RoomsMixin
from .parsers import resolve_parser
from .socket import Connection, Socket
from .socketio_packet import Packet, PacketType

logger = logging.getLogger("geventsio")

# Events the server raises itself: catch-all handlers never receive them.
_OWN_EVENTS = frozenset(["connect", "disconnect"])

# python-socketio / python-engineio options with nothing to configure here:
# handlers always run off the reading greenlet, clients are always watched by
# their heartbeat, and responses are never compressed.
_NO_OP_OPTIONS = ("async_handlers", "monitor_clients", "http_compression", "compression_threshold")


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


class Server(RoomsMixin, HandlerDecorators):
    """A Socket.IO v5 server on gevent.

    Serve it with ``geventsio.WSGIApp(sio, other_wsgi_app)``. Options beyond the
    Socket.IO ones go to ``geventsio.engine.Server`` (``ping_interval``,
    ``ping_timeout``, ``max_http_buffer_size``, ``cors_allowed_origins``,
    ``transports``, ``cookie``, ``allow_request``, ...).

    ``namespaces`` lists the namespaces accepted besides those with handlers:
    names, compiled regular expressions, callables ``f(name) -> bool``, or
    ``"*"`` for any. With ``always_connect`` a client is told it is connected
    before the ``connect`` handler runs, and a refusal disconnects it.
    ``serializer`` is ``"default"`` (JSON), ``"msgpack"`` (the npm package
    ``socket.io-msgpack-parser``) or a parser object (see ``geventsio.parsers``).
    """

    reason = Reason

    def __init__(
        self,
        client_manager: Any = None,
        logger: Any = False,
        engineio_logger: Any = False,
        namespaces: Any = None,
        connect_timeout: float = 45,
        max_attachments: int = 10,
        always_connect: bool = False,
        async_mode: str | None = None,
        **engine_options: Any,
    ):
        if async_mode not in (None, "gevent", "gevent_uwsgi"):
            raise ValueError(f"geventsio runs on gevent only, not async_mode={async_mode!r}")
        message_queue = engine_options.pop("message_queue", None)
        client_manager = client_manager if client_manager is not None else message_queue
        if client_manager is not None and not hasattr(client_manager, "create_adapter"):
            raise TypeError("client_manager must create adapters, like geventsio.RedisManager(url)")
        if engine_options.pop("json", None) is not None:
            raise NotImplementedError("a custom json module is not supported yet")
        self.parser = resolve_parser(engine_options.pop("serializer", None))
        self._to_frames = self.parser.to_frames
        for name in _NO_OP_OPTIONS:
            engine_options.pop(name, None)
        setup_logger("geventsio", logger)
        setup_logger("geventsio.engine", engineio_logger)
        self.eio = engine.Server(listener=self, **engine_options)
        self.always_connect = always_connect
        self.connect_timeout = connect_timeout
        self.max_attachments = max_attachments
        if namespaces is None:
            namespaces = ["/"]
        self._accept_any = namespaces == "*"
        self._accepted = [] if self._accept_any else list(namespaces)
        self.table = HandlerTable(_OWN_EVENTS)
        self.client_manager = client_manager if client_manager is not None else InMemoryManager()
        self.adapters: dict[str, Adapter] = {}
        self.server_side_handlers: dict[tuple[str, str], Callable[..., Any]] = {}
        self.connections: dict[str, Connection] = {}
        self.sockets: dict[str, Socket] = {}
        self._ack_ids = itertools.count()
        self._adapter("/")  # the main namespace is a member of the cluster from the start

    # -- registration ---------------------------------------------------

    def _add_handler(self, namespace: str, event: str, fn: Callable[..., Any]) -> None:
        self.table.set(namespace, event, fn)

    def register_namespace(self, namespace_handler: Namespace) -> None:
        """Register a class-based namespace (a ``geventsio.Namespace`` instance)."""
        if not isinstance(namespace_handler, Namespace):
            raise ValueError("not a geventsio.Namespace instance")
        namespace_handler._set_server(self)
        self.table.namespaces[namespace_handler.namespace] = namespace_handler

    # -- emitting -------------------------------------------------------

    def emit(self, event: str, data: Any = None, to: Any = None, room: Any = None,
             skip_sid: Any = None, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, timeout: float | None = None,
             **kwargs: Any) -> None:
        """Emit an event to one sid, to rooms (``to``/``room``: a name or a list), or to all.

        The packet is encoded once and queued to every target without waiting.
        ``callback`` receives each target's acknowledgement arguments, or one
        ``TimeoutError`` when ``timeout`` seconds pass first.
        """
        rooms = as_rooms(to if to is not None else room)
        self._emit(namespace or "/", rooms, as_rooms(skip_sid), [event, *args_of(data)],
                   callback, timeout)

    def send(self, data: Any, to: Any = None, room: Any = None, skip_sid: Any = None,
             namespace: str | None = None, callback: Callable[..., Any] | None = None,
             **kwargs: Any) -> None:
        """Emit a ``message`` event."""
        self.emit("message", data, to=to, room=room, skip_sid=skip_sid, namespace=namespace,
                  callback=callback, **kwargs)

    def call(self, event: str, data: Any = None, to: Any = None, sid: Any = None,
             namespace: str | None = None, timeout: float = 60, **kwargs: Any) -> Any:
        """Emit to one client and wait for its acknowledgement.

        Returns the acknowledgement's value (a tuple if it has several);
        raises ``geventsio.TimeoutError`` after ``timeout`` seconds, or
        ``geventsio.exceptions.DisconnectedError`` if the client leaves first.
        """
        target = to if to is not None else sid
        socket = self.sockets.get(target) if isinstance(target, str) else None
        if socket is None or socket.namespace != (namespace or "/"):
            raise DisconnectedError(f"no connected client {target!r} in namespace {namespace or '/'!r}")
        result: AsyncResult = AsyncResult()
        ack_id = next(self._ack_ids)
        socket.expect_ack(ack_id, lambda *a: result.set(a), timeout, direct=True)
        socket.send_packet(Packet(PacketType.EVENT, socket.namespace, [event, *args_of(data)], ack_id))
        args = result.get()
        if len(args) == 1 and isinstance(args[0], (TimeoutError, DisconnectedError)):
            raise args[0]
        return ack_value(args)

    def _emit(self, nsp: str, rooms: Iterable[str], except_rooms: Iterable[str], data: list,
              callback: Callable[..., Any] | None, timeout: float | None, direct: bool = False) -> int:
        adapter = self.adapters.get(nsp)
        if adapter is None:
            return 0
        if callback is None:
            frames = self._to_frames(Packet(PacketType.EVENT, nsp, data))
            if len(rooms) == 1 and not except_rooms:
                # The common reply: to one local client by its sid, no set arithmetic, no cluster.
                for room in rooms:
                    socket = adapter.sockets.get(room)
                    if socket is not None and len(adapter.rooms.get(room, ())) == 1:
                        socket.deliver(frames)
                        return 1
            return adapter.broadcast(data, frames, rooms, except_rooms)
        # One ack id for the whole broadcast: every client answers to the same id.
        ack_id = self._next_ack_id()
        frames = self._to_frames(Packet(PacketType.EVENT, nsp, data, ack_id))
        return adapter.broadcast_with_ack(frames, ack_id, callback, timeout, direct, rooms, except_rooms)

    def _next_ack_id(self) -> int:
        return next(self._ack_ids)

    # -- sessions -------------------------------------------------------

    def _socket(self, sid: str, namespace: str | None) -> Socket:
        socket = self.sockets.get(sid)
        if socket is None or socket.namespace != (namespace or "/"):
            raise KeyError(f"no connected client {sid!r} in namespace {namespace or '/'!r}")
        return socket

    def get_session(self, sid: str, namespace: str | None = None) -> dict:
        """The user-data dict kept for this client while it is connected."""
        return self._socket(sid, namespace).data

    def save_session(self, sid: str, session: dict, namespace: str | None = None) -> None:
        self._socket(sid, namespace).data = session

    @contextlib.contextmanager
    def session(self, sid: str, namespace: str | None = None) -> Iterator[dict]:
        """``with sio.session(sid) as s: s["user"] = ...``; saved on exit."""
        data = self.get_session(sid, namespace)
        yield data
        self.save_session(sid, data, namespace)

    def get_environ(self, sid: str, namespace: str | None = None) -> dict | None:
        socket = self.sockets.get(sid)
        return socket.environ if socket is not None else None

    def transport(self, sid: str, namespace: str | None = None) -> str | None:
        """``"polling"`` or ``"websocket"``: the client's current transport."""
        socket = self.sockets.get(sid)
        return self.eio.transport(socket.connection.session.sid) if socket is not None else None

    def disconnect(self, sid: str, namespace: str | None = None, **kwargs: Any) -> None:
        """Disconnect a client from a namespace; its handler gets the reason ``"server disconnect"``."""
        socket = self.sockets.get(sid)
        if socket is None or (namespace is not None and socket.namespace != namespace):
            return
        if not self._detach(socket):
            return  # already on its way out
        socket.send_packet(Packet(PacketType.DISCONNECT, socket.namespace))
        socket.connection.session.schedule(self._finish_disconnect, socket, Reason.SERVER_DISCONNECT)

    # -- runtime --------------------------------------------------------

    def handle_request(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application of the Socket.IO endpoint (mount it with ``WSGIApp``)."""
        return self.eio.handle_request(environ, start_response)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> gevent.Greenlet:
        return gevent.spawn(target, *args, **kwargs)

    def sleep(self, seconds: float = 0) -> None:
        gevent.sleep(seconds)

    def shutdown(self) -> None:
        """Disconnect every client, stop their greenlets and leave the cluster."""
        self.eio.shutdown()
        for adapter in list(self.adapters.values()):
            adapter.close()
        self.client_manager.close()

    # -- engine listener ------------------------------------------------

    def on_connect(self, session: Session) -> None:
        self.connections[session.sid] = Connection(session, self)

    def on_message(self, session: Session, data: str | bytes) -> None:
        conn = self.connections.get(session.sid)
        if conn is None:
            return
        packet = conn.feed(data)
        if packet is None:
            return
        t = packet.type
        if t is PacketType.EVENT or t is PacketType.BINARY_EVENT:
            if packet.data[0] in RESERVED_EVENTS:
                logger.warning("session %s: client emitted reserved event %r; closing",
                               session.sid, packet.data[0])
                session.close("parse error")
                return
            session.run_ordered(self._handle_event, conn, packet)
        elif t is PacketType.ACK or t is PacketType.BINARY_ACK:
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
            session.send_frames(conn.to_frames(Packet(PacketType.CONNECT, nsp, {"sid": existing.sid})))
            return
        if not self._namespace_accepted(nsp):
            logger.info("session %s: refused unknown namespace %r", session.sid, nsp)
            refusal = {"message": "Invalid namespace"}
            session.send_frames(conn.to_frames(Packet(PacketType.CONNECT_ERROR, nsp, refusal)))
            return
        socket = Socket(secrets.token_urlsafe(15), nsp, conn)
        conn.sockets[nsp] = socket
        self.sockets[socket.sid] = socket
        self._adapter(nsp).add_socket(socket, packet.data)
        if self.always_connect:
            # Accepted before the handler runs; a refusal then becomes a disconnect.
            session.send_frames(conn.to_frames(Packet(PacketType.CONNECT, nsp, {"sid": socket.sid})))
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
            self._detach(socket)
            self._remove_from_adapter(socket)
            self.sockets.pop(socket.sid, None)
            session.send_frames(conn.to_frames(Packet(PacketType.CONNECT_ERROR, nsp, refusal)))
            return
        if not socket.connected:
            session.send_frames(conn.to_frames(Packet(PacketType.CONNECT, nsp, {"sid": socket.sid})))
            socket.mark_connected()

    def _handle_event(self, conn: Connection, packet: Packet) -> None:
        socket = conn.sockets.get(packet.namespace)
        if socket is None:
            return
        event, *args = packet.data
        result = self.table.trigger(event, packet.namespace, (socket.sid, *args))
        if packet.id is not None and result is not NOT_HANDLED:
            socket.send_packet(Packet(PacketType.ACK, packet.namespace, args_of(result), packet.id))

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
        try:
            if socket.connected:
                self.table.trigger("disconnect", socket.namespace, (socket.sid,), (reason,))
        except Exception:
            logger.exception("disconnect handler of %r failed", socket.namespace)
        finally:
            self._remove_from_adapter(socket)
            if self.sockets.get(socket.sid) is socket:
                del self.sockets[socket.sid]
            socket.drop_acks()

    def _remove_from_adapter(self, socket: Socket) -> None:
        nsp = socket.namespace
        adapter = self.adapters.get(nsp)
        if adapter is None:
            return
        adapter.remove_socket(socket.sid)
        # A namespace admitted by a pattern ("*", a regex, a callable) keeps no
        # state once empty, or clients could grow the server by naming new ones.
        if not adapter.sockets and nsp != "/" and nsp not in self.table.names() \
                and nsp not in self._accepted:
            del self.adapters[nsp]
            adapter.close()
