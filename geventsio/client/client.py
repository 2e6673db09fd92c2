"""The Socket.IO v5 client on gevent: reconnection with back-off, buffering, acks with retries.

Its names are python-socketio's ``Client`` (a script ports by changing its
import); its behaviour follows the reference JavaScript client
(socket.io-client 4.x). Design, in short:

- **Modules.** This file is the API. ``manager.py`` holds the
  connection (Engine.IO session, namespace handshakes, reconnection),
  ``delivery.py`` what becomes of each emit (buffer, acks, retries),
  ``dispatch.py`` the dispatcher, ``namespace.py`` the handlers,
  ``backoff.py`` the delays, ``../engine/client.py`` the Engine.IO client.
- **Greenlets.** The Engine.IO session owns a reader, a writer draining one
  bounded queue, a heartbeat watchdog and, while upgrading, an upgrader. The
  client adds a dispatcher, spawned when work arrives and gone when idle,
  and, while the connection is down, the reconnect loop. ``disconnect()``
  stops them all.
- **Ordering.** Handlers, ack callbacks and lifecycle events of one client
  run one at a time, in arrival order, on the dispatcher, never on the reader.
  The waiters of ``call()`` are resolved on the reader at once, so a handler
  may ``call()`` the server without waiting behind itself.
- **Reconnection.** A connection lost for any reason but ``disconnect()`` or
  the server disconnecting every namespace is re-established after
  ``Backoff(reconnection_delay, reconnection_delay_max, randomization_factor)``
  delays, and every namespace still wanted is joined again with fresh
  ``auth``. Observe it with the ``reconnect_attempt(n)``, ``reconnect(n)``,
  ``reconnect_error(exc)`` and ``reconnect_failed()`` events (registered on
  the default namespace); each failed attempt also raises ``connect_error``.
- **Buffering.** What is emitted while a namespace is not connected waits in
  that namespace's buffer and leaves, in order, as soon as it is connected
  again (before its ``connect`` handler runs). The buffer holds at most
  ``max_buffered_packets``; when full, the *oldest* packet is dropped with a
  warning and its callback (or ``call()``) gets ``BufferFullError``: a client
  that was offline for long keeps the freshest data and nothing blocks.
  ``volatile=True`` emits are never buffered: dropped while disconnected
  (a callback hears ``DisconnectedError``). When a connection dies, what
  was still queued for it and never handed to the transport goes back to
  the front of the buffer (it certainly never arrived); what was already
  written to a connection that died before the client noticed (at most
  ``pingInterval + pingTimeout``) is lost, as with the JS client: use
  ``retries`` for at-least-once.
- **Connection state recovery.** When the server gives a ``pid`` (its
  ``connection_state_recovery`` is on), the client notes the offset the
  server appends to each event (and takes it off before the handlers see the
  arguments) and names both in its CONNECT auth on reconnection; when the
  server recovers the session, ``is_recovered(namespace)`` / ``recovered`` is
  True, the sid is the same and the missed events follow.
- **Acks.** ``emit(callback=cb, timeout=t)`` calls ``cb(*ack_args)`` or, on
  expiry, ``cb(TimeoutError)``; the timer runs from the emit, buffered or not
  (an expired packet still in the buffer is not sent). ``ack_timeout`` is the
  default ``timeout``. When the connection is lost, callbacks with a timeout
  get ``DisconnectedError`` at once; others are dropped.
- **Retries** (``retries=n`` with ``ack_timeout``, like the JS client's
  ``retries`` + ``ackTimeout``): every non-volatile emit is acknowledged, sent
  one at a time in order, and re-sent after each ``ack_timeout`` without an
  ack (and after a reconnection), at most ``n + 1`` times in all. Unlike the
  JS client, which gives each attempt a new ack id and ignores a late ack of
  an earlier attempt, every attempt carries the same ack id: whichever
  attempt is acknowledged first completes the emit, its callback runs once,
  and no attempt is sent after an ack arrived. That is at-least-once to the
  server's handler (the server may see an attempt whose ack was late or lost,
  so make such handlers idempotent) and exactly-once to the caller.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Callable

import gevent
from gevent.event import AsyncResult

from .backoff import Backoff
from ..compat import ack_value, args_of, setup_logger
from .delivery import BufferFullError, Delivery, Outgoing
from .dispatch import Dispatcher
from .manager import SERVER_DISCONNECT, Manager, message_of
from .namespace import OWN_EVENTS, ClientNamespace, HandlerTable
from ..engine import client as eio_client
from ..engine.client import ConnectionError, EngineClient
from ..exceptions import GeventSIOError, TimeoutError
from ..namespace import RESERVED_EVENTS, HandlerDecorators
from ..parsers import resolve_parser
from ..socketio_packet import Packet, PacketType

__all__ = ["BadNamespaceError", "BufferFullError", "Client", "ClientNamespace", "ConnectionError",
           "Reason"]

logger = logging.getLogger("geventsio.client")


class BadNamespaceError(GeventSIOError):
    """An emit to a namespace this client is not connected (nor reconnecting) to."""


class Reason:
    """Why a namespace disconnected, as passed to ``disconnect(reason)`` handlers."""

    CLIENT_DISCONNECT = eio_client.CLIENT_DISCONNECT
    SERVER_DISCONNECT = SERVER_DISCONNECT
    TRANSPORT_CLOSE = eio_client.TRANSPORT_CLOSE
    TRANSPORT_ERROR = eio_client.TRANSPORT_ERROR
    PING_TIMEOUT = eio_client.PING_TIMEOUT
    PARSE_ERROR = eio_client.PARSE_ERROR


class Client(HandlerDecorators):
    """A Socket.IO v5 client. See the module docstring for the design.

    Options beyond python-socketio's: ``ack_timeout`` (default ``timeout`` of
    emits with a callback), ``retries``, ``max_buffered_packets`` (per
    namespace), ``request_timeout`` (HTTP requests and handshakes),
    ``max_queued_bytes`` (``emit`` waits while more than this waits for the
    network), ``max_inbox`` (events queued for the dispatcher before the reader
    stops reading), ``ssl_verify``.
    """

    reason = Reason

    def __init__(self, reconnection: bool = True, reconnection_attempts: int = 0,
                 reconnection_delay: float = 1, reconnection_delay_max: float = 5,
                 randomization_factor: float = 0.5, logger: Any = False,
                 ack_timeout: float | None = None, retries: int = 0,
                 max_buffered_packets: int = 1000, request_timeout: float = 5,
                 ssl_verify: bool = True, max_queued_bytes: int = 16 * 1024 * 1024,
                 max_inbox: int = 1024, engineio_logger: Any = False, handle_sigint: bool = True,
                 serializer: Any = "default", json: Any = None, **kwargs: Any):
        if json is not None:
            raise NotImplementedError("a custom json module is not supported")
        # "default" (JSON), "msgpack" or a parser object: see geventsio.parsers.
        self.parser = resolve_parser(serializer)
        if kwargs:
            raise TypeError(f"unsupported options: {', '.join(sorted(kwargs))}")
        if retries and ack_timeout is None:
            raise ValueError("retries need an ack_timeout: an attempt fails when it expires")
        if max_buffered_packets < 1:
            raise ValueError("max_buffered_packets must be at least 1")
        setup_logger("geventsio.client", logger)
        # The Engine.IO layer logs to "geventsio.client.engine" (engineio_logger).
        setup_logger("geventsio.client.engine", engineio_logger)
        if engineio_logger is False and logger is not False:
            engine_log = logging.getLogger("geventsio.client.engine")
            if engine_log.level == logging.NOTSET:
                engine_log.setLevel(logging.WARNING)
        self.reconnection = reconnection
        self.reconnection_attempts = reconnection_attempts
        self.reconnection_delay = reconnection_delay
        self.reconnection_delay_max = reconnection_delay_max
        self.randomization_factor = randomization_factor
        self.backoff = Backoff(reconnection_delay, max(reconnection_delay, reconnection_delay_max),
                               randomization_factor)
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.max_buffered_packets = max_buffered_packets
        self.engine_options = dict(request_timeout=request_timeout, ssl_verify=ssl_verify,
                                   max_queued_bytes=max_queued_bytes)
        self.table = HandlerTable(OWN_EVENTS)
        self.connection_url: Any = None
        self.connection_headers: Any = None
        self.connection_auth: Any = None
        self.connection_transports: Any = None
        self.connection_namespaces: list[str] = []
        self.socketio_path = "socket.io"
        self.dispatcher = Dispatcher(max_inbox)
        self.delivery = Delivery(retries, self.dispatcher.schedule)
        self.manager = Manager(self)
        self._ids = itertools.count()

    # -- handlers -------------------------------------------------------

    @property
    def handlers(self) -> dict:
        return self.table.handlers

    @property
    def namespace_handlers(self) -> dict:
        return self.table.namespaces

    def _add_handler(self, namespace: str, event: str, fn: Callable[..., Any]) -> None:
        self.table.set(namespace, event, fn)

    def register_namespace(self, namespace_handler: ClientNamespace) -> None:
        """Register a class-based namespace (a ``geventsio.ClientNamespace`` instance)."""
        if not isinstance(namespace_handler, ClientNamespace):
            raise ValueError("not a geventsio.ClientNamespace instance")
        namespace_handler._set_client(self)
        self.table.namespaces[namespace_handler.namespace] = namespace_handler

    # -- state ----------------------------------------------------------

    @property
    def eio(self) -> EngineClient | None:
        """The current Engine.IO session; None while there is none."""
        return self.delivery.engine

    @property
    def connected(self) -> bool:
        """True while at least one namespace is connected."""
        return any(ns.connected for ns in self.delivery.namespaces.values())

    @property
    def namespaces(self) -> dict[str, str]:
        """The connected namespaces and their sids (python-socketio's ``namespaces``)."""
        return {ns.name: ns.sid for ns in self.delivery.namespaces.values() if ns.connected and ns.sid}

    def get_sid(self, namespace: str | None = None) -> str | None:
        """The sid of this client in ``namespace`` (default "/"), as the server's handlers see it."""
        ns = self.delivery.namespaces.get(namespace or "/")
        return ns.sid if ns is not None and ns.connected else None

    @property
    def sid(self) -> str | None:
        """The sid in the default namespace (python-socketio's ``sid`` is the Engine.IO one:
        see ``eio_sid``)."""
        return self.get_sid("/")

    def is_recovered(self, namespace: str | None = None) -> bool:
        """Whether the last (re)connection to ``namespace`` recovered its state on the server
        (connection state recovery: same sid, rooms and session; missed events delivered)."""
        ns = self.delivery.namespaces.get(namespace or "/")
        return ns is not None and ns.connected and ns.recovered

    @property
    def recovered(self) -> bool:
        """``is_recovered()`` for the default namespace (the JS client's ``socket.recovered``)."""
        return self.is_recovered("/")

    @property
    def eio_sid(self) -> str | None:
        eio = self.eio
        return eio.sid if eio is not None and eio.connected else None

    def transport(self) -> str | None:
        """``"polling"`` or ``"websocket"``; None while not connected."""
        eio = self.eio
        return eio.transport if eio is not None and eio.connected else None

    # -- connecting -----------------------------------------------------

    def connect(self, url: Any, headers: Any = None, auth: Any = None, transports: Any = None,
                namespaces: Any = None, socketio_path: str = "socket.io", wait: bool = True,
                wait_timeout: float = 1, retry: bool = False) -> None:
        """Connect to a Socket.IO server and join ``namespaces``.

        ``url``, ``headers`` and ``auth`` may be callables, evaluated at every
        (re)connection. ``namespaces`` defaults to those with handlers, or "/".
        With ``wait`` the call returns once every namespace is connected (and
        its ``connect`` handler has run), raising ``ConnectionError`` if one was
        refused or did not answer within ``wait_timeout``. With ``retry`` a
        failed first attempt goes through the reconnection loop before giving up.
        """
        manager = self.manager
        if manager.busy:
            raise ConnectionError("Already connected")
        self.connection_url = url
        self.connection_headers = headers
        self.connection_auth = auth
        self.connection_transports = transports
        self.socketio_path = socketio_path
        if namespaces is None:
            namespaces = sorted(self.table.names() - {"*"}) or ["/"]
        elif isinstance(namespaces, str):
            namespaces = [namespaces]
        self.connection_namespaces = list(namespaces)
        manager.start(self.connection_namespaces, self.max_buffered_packets)
        try:
            manager.open()
        except ConnectionError as exc:
            manager.connect_failed(exc)
            if not (retry and self.reconnection):
                manager.finish()
                self.dispatcher.flush()
                raise
            manager.start_reconnecting()
            if wait:
                self._wait_connected(None)
            return
        if wait:
            self._wait_connected(wait_timeout)

    def _wait_connected(self, timeout: float | None) -> None:
        """Wait until every namespace answered; raise (after disconnecting) if one did not join."""
        manager = self.manager
        namespaces = self.delivery.namespaces.values()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not manager.finished.is_set():
            manager.answered.clear()
            if self.eio is not None and all(ns.answered or not ns.active for ns in namespaces):
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            # Set when every namespace answered, the connection ended (reconnection may
            # bring another), or the client finished.
            manager.answered.wait(remaining)
        failed = [ns for ns in self.delivery.namespaces.values() if not ns.connected]
        if failed:
            self.disconnect()
            why = [f"{ns.name} ({message_of(ns.refusal)})" if ns.refusal is not None else ns.name
                   for ns in failed]
            raise ConnectionError("One or more namespaces failed to connect: " + ", ".join(why),
                                  next((ns.refusal for ns in failed if ns.refusal is not None), None))
        self.dispatcher.flush()  # their connect handlers have run, as with python-socketio

    def disconnect(self) -> None:
        """Leave every namespace, close the connection, stop reconnecting; handlers hear
        ``disconnect("client disconnect")``. Returns after they have run (unless called by one)."""
        self.manager.shutdown()
        self.dispatcher.flush()

    shutdown = disconnect

    def wait(self) -> None:
        """Block until the client is disconnected for good (``disconnect()``, the server
        disconnecting every namespace, or reconnection giving up or disabled)."""
        self.manager.finished.wait()

    # -- emitting -------------------------------------------------------

    def emit(self, event: str, data: Any = None, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, timeout: float | None = None,
             volatile: bool = False) -> None:
        """Emit ``event`` with ``data`` (a tuple for several arguments) to ``namespace``.

        While the namespace is not connected the packet is buffered (see the
        module docstring); ``volatile`` packets are dropped instead.
        ``callback(*ack_args)`` runs on the dispatcher, or ``callback(error)``
        when ``timeout`` (default ``ack_timeout``) expires or the connection is
        lost first.
        """
        self._emit(event, data, namespace, callback, None, timeout, volatile)

    def send(self, data: Any, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, **kwargs: Any) -> None:
        """Emit a ``message`` event."""
        self.emit("message", data, namespace=namespace, callback=callback, **kwargs)

    def call(self, event: str, data: Any = None, namespace: str | None = None,
             timeout: float = 60) -> Any:
        """Emit and wait for the acknowledgement: None, its one argument, or a tuple.

        Raises ``geventsio.TimeoutError`` after ``timeout`` seconds (buffering
        and retries included), or ``DisconnectedError`` if the connection is
        lost after the packet was sent (without ``retries``).
        """
        result: AsyncResult = AsyncResult()
        attempt_timeout = self.ack_timeout if self.retries else timeout
        out = self._emit(event, data, namespace, None, result, attempt_timeout, False)
        try:
            value = result.get(timeout=timeout)
        except gevent.Timeout:
            self.delivery.complete(out, error=TimeoutError("no acknowledgement within the time limit"))
            value = result.get()
        if isinstance(value, BaseException):
            raise value
        return ack_value(value)

    def _emit(self, event: str, data: Any, namespace: str | None, callback: Any, waiter: Any,
              timeout: float | None, volatile: bool) -> Outgoing:
        if not isinstance(event, str):
            raise TypeError("the event name must be a string")
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is a reserved event name")
        ns = self.delivery.namespaces.get(namespace or "/")
        if ns is None or not ns.active:
            raise BadNamespaceError(f"{namespace or '/'} is not a connected namespace.")
        if timeout is None:
            timeout = self.ack_timeout
        wants_ack = callback is not None or waiter is not None
        sequential = bool(self.retries) and not volatile
        ack_id = next(self._ids) if wants_ack or sequential else None
        frames = self.parser.to_frames(Packet(PacketType.EVENT, ns.name, [event, *args_of(data)], ack_id))
        out = Outgoing(ns.name, frames, ack_id, callback, waiter, timeout, sequential, volatile)
        self.delivery.submit(ns, out)
        return out

    # -- utilities (python-socketio names) ------------------------------

    def start_background_task(self, target: Callable[..., Any], *args: Any,
                              **kwargs: Any) -> gevent.Greenlet:
        return gevent.spawn(target, *args, **kwargs)

    def sleep(self, seconds: float = 0) -> None:
        gevent.sleep(seconds)

    def greenlets(self) -> list[gevent.Greenlet]:
        """The live greenlets of this client (for tests and diagnostics)."""
        found = [self.dispatcher.greenlet, self.manager.reconnect_task]
        if self.eio is not None:
            found += self.eio.greenlets()
        return [g for g in found if g is not None and not g.dead]
