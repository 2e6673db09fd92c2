"""The connection side of ``geventsio.Client``: one Engine.IO session at a time, the namespace
handshakes on it, and the reconnection loop (the part socket.io-client calls its Manager).

It is the Engine.IO session's listener. ``on_message`` runs on the reader:
it decodes with the client's parser, resolves acks at once, updates
namespace state, and queues everything that runs user code on the
dispatcher. ``on_close`` runs once per session on whichever greenlet noticed
the end and decides: reconnect, or finish.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event

from .delivery import NamespaceState
from .namespace import MANAGER_EVENTS, NOT_HANDLED
from ..engine import client as eio_client
from ..engine.client import ConnectionError, EngineClient
from ..compat import args_of
from ..exceptions import DisconnectedError, ProtocolError
from ..socketio_packet import Packet, PacketType

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

logger = logging.getLogger("geventsio.client")

SERVER_DISCONNECT = "server disconnect"


def message_of(data: Any) -> str:
    return str(data.get("message")) if isinstance(data, dict) else str(data)


def recovery_auth(ns: NamespaceState, auth: Any) -> Any:
    """The CONNECT payload: the user's ``auth``, with the pid and offset that recover the state.

    As the JS client does, the user's keys win; a non-dict ``auth`` is sent as it is.
    """
    if ns.pid is None or not (auth is None or isinstance(auth, dict)):
        return auth
    payload: dict = {"pid": ns.pid}
    if ns.offset is not None:
        payload["offset"] = ns.offset
    payload.update(auth or {})
    return payload


def real(value: Any) -> Any:
    """url, headers and auth may be callables, evaluated at every (re)connection."""
    return value() if callable(value) else value


class Manager:
    """The connection of one client; see the module docstring."""

    def __init__(self, client: "Client"):
        self.client = client
        self.delivery = client.delivery
        self.schedule = client.dispatcher.schedule
        self.decoder = client.parser.decoder()
        self.reconnect_task: gevent.Greenlet | None = None
        self.answered = Event()  # every wanted namespace answered, or the connection ended
        self.finished = Event()  # disconnected for good (or never connected)
        self.finished.set()
        self.stopping = False

    @property
    def engine(self) -> EngineClient | None:
        return self.delivery.engine

    @property
    def namespaces(self) -> dict[str, NamespaceState]:
        return self.delivery.namespaces

    @property
    def busy(self) -> bool:
        """Connected, connecting or reconnecting."""
        return self.delivery.engine is not None or self.reconnect_task is not None

    def start(self, namespaces: list[str], max_buffered: int) -> None:
        self.delivery.namespaces = {n: NamespaceState(n, max_buffered) for n in namespaces}
        self.stopping = False
        self.finished.clear()

    # -- opening --------------------------------------------------------

    def open(self) -> None:
        """Open an Engine.IO session and send CONNECT for every wanted namespace.

        Raises ``ConnectionError`` when the server cannot be reached or refuses."""
        c = self.client
        eio = EngineClient(self, **c.engine_options)
        self.answered.clear()
        eio.connect(real(c.connection_url), headers=real(c.connection_headers),
                    transports=c.connection_transports, engineio_path=c.socketio_path)
        if self.stopping:
            eio.close()
            raise ConnectionError("disconnected while connecting")
        self.delivery.engine = eio
        self.decoder = c.parser.decoder()
        auth = real(c.connection_auth)
        frames: list = []
        for ns in self.namespaces.values():
            if ns.active:
                ns.answered = False
                frames += c.parser.to_frames(Packet(PacketType.CONNECT, ns.name, recovery_auth(ns, auth)))
        eio.send(frames)

    def connect_failed(self, exc: ConnectionError) -> None:
        data = exc.data if exc.data is not None else exc.message
        for ns in self.namespaces.values():
            if ns.active:
                self.schedule(self.client.table.trigger, "connect_error", ns.name, (data,))

    def start_reconnecting(self) -> None:
        if self.reconnect_task is None:
            self.reconnect_task = gevent.spawn(self._reconnect_loop)

    def _reconnect_loop(self) -> None:
        c = self.client
        attempt = 0
        try:
            while not self.stopping:
                if c.reconnection_attempts and attempt >= c.reconnection_attempts:
                    logger.info("giving up after %d reconnection attempts", attempt)
                    self.manager_event("reconnect_failed")
                    self.finish()
                    return
                delay = c.backoff.delay(attempt)
                attempt += 1
                logger.info("reconnection attempt %d in %.3fs", attempt, delay)
                gevent.sleep(delay)
                if self.stopping:
                    return
                self.manager_event("reconnect_attempt", attempt)
                try:
                    self.open()
                except ConnectionError as exc:
                    logger.info("reconnection attempt %d failed: %s", attempt, exc)
                    self.manager_event("reconnect_error", exc)
                    self.connect_failed(exc)
                    continue
                logger.info("reconnected after %d attempt(s)", attempt)
                self.manager_event("reconnect", attempt)
                return
        finally:
            if self.reconnect_task is gevent.getcurrent():
                self.reconnect_task = None

    # -- closing --------------------------------------------------------

    def shutdown(self) -> None:
        """The user's ``disconnect()``: leave every namespace, close, stop reconnecting."""
        self.stopping = True
        task = self.reconnect_task
        if task is not None and task is not gevent.getcurrent():
            task.kill()
            self.reconnect_task = None
        eio = self.engine
        if eio is not None:
            if eio.connected:
                frames: list = []
                for ns in self.namespaces.values():
                    if ns.connected:
                        frames += self.client.parser.to_frames(Packet(PacketType.DISCONNECT, ns.name))
                eio.send(frames)
            eio.close(eio_client.CLIENT_DISCONNECT)
        self.finish()

    def finish(self) -> None:
        """Disconnected for good: nothing is wanted any more; what waits to be sent fails."""
        self.delivery.engine = None
        for ns in self.namespaces.values():
            ns.active = False
            ns.connected = False
            self.delivery.fail_all(ns, DisconnectedError("the client disconnected before sending it"))
        self.answered.set()
        self.finished.set()

    def _maybe_finish(self) -> None:
        if not any(ns.active for ns in self.namespaces.values()):
            self.stopping = True
            eio = self.engine
            if eio is not None:
                eio.close(eio_client.CLIENT_DISCONNECT)
            self.finish()

    # -- engine listener ------------------------------------------------

    def on_message(self, engine: EngineClient, data: str | bytes) -> None:
        if engine is not self.engine:
            return
        try:
            packet = self.decoder.feed(data)
        except ProtocolError as exc:
            logger.warning("invalid Socket.IO packet from the server (%s); reconnecting", exc)
            engine.close(eio_client.PARSE_ERROR)
            return
        if packet is None:
            return
        t = packet.type
        ns = self.namespaces.get(packet.namespace)
        if t is PacketType.EVENT or t is PacketType.BINARY_EVENT:
            # Node's server sends a recovered socket's missed events before its CONNECT
            # answer: like the JS client, handle them (before the connect handler then).
            if ns is not None and (ns.connected or (ns.active and not ns.answered)):
                if ns.pid is not None and packet.id is None:
                    take_offset(ns, packet)
                self.client.dispatcher.wait_for_room(lambda: engine.connected)
                self.schedule(self._handle_event, engine, ns.name, packet)
        elif t is PacketType.ACK or t is PacketType.BINARY_ACK:
            self.delivery.acknowledge(packet.namespace, packet.id, packet.data)
        elif ns is None or not ns.active:
            return
        elif t is PacketType.CONNECT:
            self._on_connected(ns, packet.data)
        elif t is PacketType.CONNECT_ERROR:
            self._on_refused(ns, packet.data)
        elif t is PacketType.DISCONNECT:
            self._on_server_disconnect(ns)

    def _on_connected(self, ns: NamespaceState, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            self._on_refused(ns, {"message": "invalid CONNECT packet (a Socket.IO v2 server?)"})
            return
        ns.sid = data["sid"]
        pid = data.get("pid")
        ns.recovered = isinstance(pid, str) and pid == ns.pid
        if not ns.recovered:
            ns.pid = pid if isinstance(pid, str) else None
            ns.offset = None
        ns.connected = True
        self._answer(ns)
        self.delivery.pump(ns)  # what was buffered leaves before the connect handler runs
        self.schedule(self.client.table.trigger, "connect", ns.name, ())

    def _on_refused(self, ns: NamespaceState, data: Any) -> None:
        logger.info("namespace %s refused: %s", ns.name, data)
        ns.active = False
        ns.refusal = data
        self.delivery.fail_all(ns, ConnectionError(
            f"namespace {ns.name} refused: {message_of(data)}", data))
        self._answer(ns)
        self.schedule(self.client.table.trigger, "connect_error", ns.name, (data,))
        self._maybe_finish()

    def _on_server_disconnect(self, ns: NamespaceState) -> None:
        was = ns.connected
        ns.active = ns.connected = False
        ns.sid = None
        self.delivery.fail_all(ns, DisconnectedError("the server disconnected the namespace"))
        if was:
            self.schedule(self.client.table.trigger, "disconnect", ns.name, (), (SERVER_DISCONNECT,))
        self._maybe_finish()

    def _answer(self, ns: NamespaceState) -> None:
        ns.answered = True
        if all(n.answered or not n.active for n in self.namespaces.values()):
            self.answered.set()

    def on_close(self, engine: EngineClient, reason: str) -> None:
        if engine is not self.engine:
            return
        self.delivery.engine = None
        self.answered.set()
        self.delivery.connection_lost(DisconnectedError(f"the connection was lost ({reason})"),
                                      engine.unsent)
        for ns in self.namespaces.values():
            was = ns.connected
            ns.connected = False
            ns.sid = None
            if was:
                self.schedule(self.client.table.trigger, "disconnect", ns.name, (), (reason,))
        wanted = any(ns.active for ns in self.namespaces.values())
        if self.stopping:
            return  # disconnect() or the last namespace leaving: they finish
        if self.client.reconnection and wanted and reason != eio_client.CLIENT_DISCONNECT:
            self.start_reconnecting()
        else:
            self.finish()

    # -- on the dispatcher ----------------------------------------------

    def _handle_event(self, engine: EngineClient, nsp: str, packet: Packet) -> None:
        event, *args = packet.data
        result = self.client.table.trigger(event, nsp, tuple(args))
        # The ack goes back on the connection the event came from, if it is still there.
        if packet.id is not None and result is not NOT_HANDLED and engine.connected:
            engine.send(self.client.parser.to_frames(Packet(PacketType.ACK, nsp, args_of(result), packet.id)))

    def manager_event(self, event: str, *args: Any) -> None:
        if event in MANAGER_EVENTS:
            self.schedule(self.client.table.trigger, event, "/", args)


def take_offset(ns: NamespaceState, packet: Packet) -> None:
    """Connection state recovery: the server appended the event's offset as its last argument.

    It is noted as the last one received and taken off, so that handlers see the
    arguments that were emitted (the JS client leaves it in place).
    """
    data = packet.data
    if len(data) > 1 and isinstance(data[-1], str):
        ns.offset = data.pop()
