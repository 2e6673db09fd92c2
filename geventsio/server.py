"""The Socket.IO v5 server: namespaces, handlers, rooms, acknowledgements.

Its public names follow python-socketio's ``Server``, so an app ports by
changing its import. It sits on the Engine.IO server as its listener; what it
does with each session's packets is in ``packet_handling``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any, Callable, Iterable, Iterator

import gevent
from gevent.event import AsyncResult

from . import engine, metrics
from .adapter import Adapter, InMemoryManager
from .broadcast import as_rooms
from .compat import ack_value, args_of, setup_logger
from .exceptions import DisconnectedError, TimeoutError
from .namespace import HandlerDecorators, HandlerTable, Namespace
from .packet_handling import PacketHandling, Reason
from .recovery import RecoveryOptions
from .rooms import RoomsMixin
from .parsers import frames_maker, resolve_parser
from .socket import Connection, Socket
from .socketio_packet import _EVENT, Packet, PacketType

logger = logging.getLogger("geventsio")

_NO_ROOMS: frozenset[str] = frozenset()

# Events the server raises itself: catch-all handlers never receive them.
_OWN_EVENTS = frozenset(["connect", "disconnect"])

# python-socketio / python-engineio options with nothing to configure here:
# handlers always run off the reading greenlet, and clients are always watched
# by their heartbeat.
_NO_OP_OPTIONS = ("async_handlers", "monitor_clients")


class Server(PacketHandling, RoomsMixin, HandlerDecorators):
    """A Socket.IO v5 server on gevent.

    Serve it with ``geventsio.WSGIApp(sio, other_wsgi_app)``. Options beyond the
    Socket.IO ones go to ``geventsio.engine.Server`` (``ping_interval``,
    ``ping_timeout``, ``max_http_buffer_size``, ``cors_allowed_origins``,
    ``transports``, ``cookie``, ``allow_request``, ``allow_eio3`` for
    socket.io-client 2.x, ``http_compression`` and ``compression_threshold``
    for long-polling responses, ...).

    ``namespaces`` lists the namespaces accepted besides those with handlers:
    names, compiled regular expressions, callables ``f(name) -> bool``, or
    ``"*"`` for any. With ``always_connect`` a client is told it is connected
    before the ``connect`` handler runs, and a refusal disconnects it.

    ``connection_state_recovery`` (a dict of ``geventsio.recovery.RecoveryOptions``,
    or True for the defaults) lets a client that lost its connection come back
    with its sid, rooms and session and receive what it missed; see
    ``is_recovered``.

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
        connection_state_recovery: Any = None,
        **engine_options: Any,
    ):
        if async_mode not in (None, "gevent", "gevent_uwsgi"):
            raise ValueError(f"geventsio runs on gevent only, not async_mode={async_mode!r}")
        message_queue = engine_options.pop("message_queue", None)
        client_manager = client_manager if client_manager is not None else message_queue
        if isinstance(client_manager, str):
            from .redis_manager import RedisManager  # redis is an optional dependency
            client_manager = RedisManager(client_manager)
        if client_manager is not None and not hasattr(client_manager, "create_adapter"):
            raise TypeError("client_manager must create adapters, like geventsio.RedisManager(url)")
        if engine_options.pop("json", None) is not None:
            raise NotImplementedError("a custom json module is not supported yet")
        self.parser = resolve_parser(engine_options.pop("serializer", None))
        self._frames_of = frames_maker(self.parser)  # (type, namespace, data, id) -> frames
        for name in _NO_OP_OPTIONS:
            engine_options.pop(name, None)
        setup_logger("geventsio", logger)
        setup_logger("geventsio.engine", engineio_logger)
        self.eio = engine.Server(listener=self, **engine_options)
        self.always_connect = always_connect
        self.connect_timeout = connect_timeout
        self.max_attachments = max_attachments
        self.connection_state_recovery: RecoveryOptions | None = RecoveryOptions.of(connection_state_recovery)
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
        # Instrumentation (geventsio.admin) watching sockets, rooms and events; empty unless
        # instrument() ran, so the data path pays one falsy check.
        self.observers: list[Any] = []
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
        target = to if to is not None else room
        # The usual reply (one sid, one argument) without the general conversions.
        rooms = frozenset((target,)) if type(target) is str else as_rooms(target)
        args = [event, data] if data is not None and type(data) is not tuple else [event, *args_of(data)]
        self._emit(namespace or "/", rooms, as_rooms(skip_sid) if skip_sid is not None else _NO_ROOMS,
                   args, callback, timeout)

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
        packet = Packet(PacketType.EVENT, socket.namespace, [event, *args_of(data)], ack_id)
        for observer in self.observers:
            observer.event_sent(socket, packet.data)
        socket.send_packet(packet)
        session = socket.connection.session
        session.awaiting_ack(True)
        try:
            args = result.get()
        finally:
            session.awaiting_ack(False)
        if len(args) == 1 and isinstance(args[0], (TimeoutError, DisconnectedError)):
            raise args[0]
        return ack_value(args)

    def _emit(self, nsp: str, rooms: Iterable[str], except_rooms: Iterable[str], data: list,
              callback: Callable[..., Any] | None, timeout: float | None, direct: bool = False,
              volatile: bool = False, on_remote_count: Callable[[int], Any] | None = None) -> int:
        adapter = self.adapters.get(nsp)
        if adapter is None:
            return 0
        if self.observers:
            for observer in self.observers:
                observer.events_sent(adapter, rooms, except_rooms, data)
        if callback is None:
            if adapter.sequenced:  # a cluster log orders every delivery (geventsio.redis_streams)
                return adapter.broadcast(data, None, rooms, except_rooms, volatile)
            if adapter.recovery is None or volatile:  # a volatile packet is not worth replaying
                frames = self._frames_of(_EVENT, nsp, data, None)
            else:  # logged, and the offset appended, for clients that come back
                frames = adapter.recovery.record(data, rooms, except_rooms)
            if len(rooms) == 1 and not except_rooms:
                # The common reply: to one local client by its sid, no set arithmetic, no cluster.
                for room in rooms:
                    socket = adapter.sockets.get(room)
                    if socket is not None and len(adapter.rooms.get(room, ())) == 1:
                        if volatile:
                            return int(socket.deliver_volatile(frames))
                        socket.deliver(frames)
                        return 1
            return adapter.broadcast(data, frames, rooms, except_rooms, volatile)
        # One ack id for the whole broadcast: every client answers to the same id.
        ack_id = self._next_ack_id()
        frames = self._frames_of(PacketType.EVENT, nsp, data, ack_id)
        return adapter.broadcast_with_ack(frames, ack_id, callback, timeout, direct, rooms, except_rooms,
                                          data, on_remote_count)

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

    def is_recovered(self, sid: str, namespace: str | None = None) -> bool:
        """Whether this client's connection state was recovered (same sid, rooms, session, missed packets)."""
        socket = self.sockets.get(sid)
        return socket is not None and socket.recovered and socket.namespace == (namespace or "/")

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

    def stats(self) -> dict[str, Any]:
        """Counters since the server started, and its clients now, as a plain dict.

        Keys: ``clients_by_namespace``, ``sessions`` and ``sessions_by_transport``
        (Engine.IO sessions open now), ``handshakes``, ``packets_in`` /
        ``packets_out`` and ``bytes_in`` / ``bytes_out`` (Engine.IO packets and
        the bytes of WebSocket messages and polling bodies carrying them),
        ``queued_bytes_high_water`` (the most unsent data one session had
        queued), ``closes_by_reason`` (Engine.IO sessions),
        ``connects_by_namespace``, ``connect_refusals_by_namespace``,
        ``disconnects_by_reason`` (as disconnect handlers get it),
        ``ack_timeouts``, ``uptime`` (seconds); with ``RedisStreamsManager`` also
        ``stream_gaps`` and ``stream_entries_missed`` (entries trimmed from the
        stream before this server's reader read them). ``WSGIApp(...,
        metrics_path="/metrics")`` serves the same in Prometheus' text format.
        """
        return metrics.server_stats(self)

    def instrument(self, auth: Any = None, mode: str = "development", read_only: bool = False,
                   server_id: str | None = None, namespace: str = "/admin",
                   server_stats_interval: float = 2) -> Any:
        """Serve the Socket.IO Admin UI (``@socket.io/admin-ui``) on ``namespace``.

        ``auth``: ``{"username": ..., "password": ...}`` (the password plain, or
        a bcrypt hash if the ``bcrypt`` package is installed), a list of such
        dicts, a callable ``f(auth_dict) -> bool``, or ``False`` for no
        authentication. ``mode="production"`` reports only server statistics;
        ``"development"`` also every socket, room change and event.
        ``read_only`` refuses the UI's actions (emit, join, leave,
        disconnect). Returns an object whose ``stop()`` undoes it all.
        """
        from .admin import AdminInstrumentation
        self._instrumentation = AdminInstrumentation(
            self, auth=auth, mode=mode, read_only=read_only, server_id=server_id, namespace=namespace,
            server_stats_interval=server_stats_interval)
        return self._instrumentation

    def handle_request(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application of the Socket.IO endpoint (mount it with ``WSGIApp``)."""
        return self.eio.handle_request(environ, start_response)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> gevent.Greenlet:
        return gevent.spawn(target, *args, **kwargs)

    def sleep(self, seconds: float = 0) -> None:
        gevent.sleep(seconds)

    def shutdown(self, timeout: float = 5) -> None:
        """Disconnect every client gracefully, stop their greenlets and leave the cluster.

        New connections are refused. Each client receives what was already
        queued for it, then its transport is closed (so it reconnects, to a
        restarted server or another worker); ``disconnect`` handlers run with
        reason ``"server shutting down"``. Returns when all of that is done, or
        after ``timeout`` seconds, when whatever is left is stopped.
        """
        instrumentation = getattr(self, "_instrumentation", None)
        if instrumentation is not None:
            instrumentation.stop()
        self.eio.shutdown(timeout)
        for adapter in list(self.adapters.values()):
            adapter.close()
            if adapter.recovery is not None:
                adapter.recovery.close()
        self.client_manager.close()
