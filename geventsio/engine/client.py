"""The Engine.IO v4 client: one session, over HTTP long-polling and/or WebSocket.

It mirrors the server's session (``engine/session.py``): one bounded queue of
outgoing frames drained by one writer greenlet, whichever transport is
current, so an upgrade only changes who the writer hands frames to. The
greenlets of one connection, all owned by the ``EngineClient`` and killed by
``close()``:

- reader: polling, one GET after another; WebSocket, ``receive()`` in a
  loop. It decodes with ``packet.py`` and reports each message to the
  listener, on this greenlet.
- writer: drains the queue, one POST per batch (within the server's
  ``maxPayload``) or one ``sendall`` per batch of WebSocket frames.
- watchdog: no ping within ``pingInterval + pingTimeout`` means the
  connection is lost (``"ping timeout"``).
- upgrader (polling with upgrade, briefly): opens the WebSocket, sends
  ``2probe``, reads ``3probe``, pauses polling (waits for the POST in flight
  and for the parked GET, which the server releases with a noop), sends ``5``
  and hands the queue to the WebSocket.

The layer above hears of the connection through one listener:
``on_message(engine, data)`` on the reader (must not block) and
``on_close(engine, reason)`` exactly once, on whichever greenlet noticed the
end (must not block either).
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from typing import Protocol

import gevent
from gevent.event import Event

from ..exceptions import ProtocolError
from .client_queue import OutgoingQueue
from .client_transports import (
    ConnectionError,
    CookieJar,
    Endpoint,
    Polling,
    WebSocketConnection,
    make_ssl_context,
)
from .packet import (
    CLOSE_FRAME,
    PONG_FRAME,
    PROBE_PING,
    PROBE_PONG,
    Frame,
    Packet,
    PacketType,
    decode_packet,
)

__all__ = ["ConnectionError", "EngineClient", "Listener"]

logger = logging.getLogger("geventsio.client.engine")

TRANSPORTS = ("polling", "websocket")

# Why a connection ended, in the words of Node's engine.io-client.
CLIENT_DISCONNECT = "client disconnect"
TRANSPORT_CLOSE = "transport close"
TRANSPORT_ERROR = "transport error"
PING_TIMEOUT = "ping timeout"
PARSE_ERROR = "parse error"

OPENING, OPEN, CLOSING, CLOSED = "opening", "open", "closing", "closed"

_UPGRADE_FRAME = "5"


class Listener(Protocol):
    def on_message(self, engine: "EngineClient", data: str | bytes) -> None: ...

    def on_close(self, engine: "EngineClient", reason: str) -> None: ...


class EngineClient:
    """One Engine.IO session with a server. ``connect()`` once; ``close()`` ends it for good.

    ``send(frames)`` never blocks: frames wait in the queue for the writer.
    Producers that may outrun the network call ``wait_for_room()`` first,
    which blocks while more than ``max_queued_bytes`` are waiting.
    """

    def __init__(self, listener: Listener, *, request_timeout: float = 5, upgrade_timeout: float = 10,
                 ssl_verify: bool = True, max_queued_bytes: int = 16 * 1024 * 1024,
                 close_flush_timeout: float = 1.0):
        self.listener = listener
        self.request_timeout = request_timeout
        self.upgrade_timeout = upgrade_timeout
        self.max_queued_bytes = max_queued_bytes
        self.close_flush_timeout = close_flush_timeout
        self._ssl_context = make_ssl_context(ssl_verify)
        self.state = OPENING
        self.sid: str | None = None
        self.transport: str | None = None
        self.upgrades: list[str] = []
        self.ping_interval = 25.0
        self.ping_timeout = 20.0
        self.max_payload = 1_000_000
        self.close_reason: str | None = None
        #: Once closed: the tags of what was queued by ``send`` and never handed to a transport.
        self.unsent: list = []
        self._endpoint: Endpoint | None = None
        self._headers: dict[str, str] = {}
        self._cookies = CookieJar()
        self._polling: Polling | None = None
        self._ws: WebSocketConnection | None = None
        self._queue = OutgoingQueue(max_queued_bytes)
        self._gate = Event()  # set while the writer may send (cleared during an upgrade)
        self._gate.set()
        self._sending = False
        self._send_done = Event()  # a send ended (the upgrade waits for the POST in flight)
        self._pause_polling = False
        self._closing_reason: str | None = None
        self._pinged = Event()
        self._last_ping = 0.0
        self._closed = Event()
        #: Set once the upgrade to WebSocket is over (done, failed, or not attempted).
        self.upgrade_done = Event()
        self._reader: gevent.Greenlet | None = None
        self._writer: gevent.Greenlet | None = None
        self._watchdog: gevent.Greenlet | None = None
        self._upgrader: gevent.Greenlet | None = None

    # -- opening --------------------------------------------------------

    def connect(self, url: str, headers: dict[str, str] | None = None,
                transports: list[str] | tuple[str, ...] | str | None = None,
                engineio_path: str = "engine.io") -> None:
        """Open the session (blocking). Raises ``ConnectionError`` if the server cannot be reached
        or refuses; on return the session is open and its greenlets run."""
        if self.state is not OPENING or self._endpoint is not None:
            raise RuntimeError("an EngineClient connects once; make a new one")
        if isinstance(transports, str):
            transports = [transports]
        transports = list(transports or TRANSPORTS)
        unknown = set(transports) - set(TRANSPORTS)
        if unknown or not transports:
            raise ValueError(f"invalid transports {transports!r}: use 'polling' and/or 'websocket'")
        self._endpoint = Endpoint.parse(url, engineio_path)
        self._headers = dict(headers or {})
        try:
            if transports[0] == "polling":
                pending = self._open_polling()
            else:
                pending = self._open_websocket()
        except ConnectionError:
            self._teardown_quietly()
            raise
        except ProtocolError as exc:
            self._teardown_quietly()
            raise ConnectionError(f"invalid handshake from the server: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            self._teardown_quietly()
            raise ConnectionError(f"cannot connect to {url}: {exc or type(exc).__name__}") from None
        except BaseException:
            self._teardown_quietly()
            raise
        self.state = OPEN
        self._last_ping = time.monotonic()
        self._writer = gevent.spawn(self._write_loop)
        self._watchdog = gevent.spawn(self._watch)
        if self.transport == "polling":
            self._reader = gevent.spawn(self._poll_loop, pending)
            if "websocket" in transports and "websocket" in self.upgrades:
                self._upgrader = gevent.spawn(self._upgrade)
            else:
                self.upgrade_done.set()
        else:
            self.upgrade_done.set()
            self._reader = gevent.spawn(self._ws_loop, self._ws, pending)

    def _handshake(self, packet: Packet) -> None:
        if packet.type is not PacketType.OPEN or not isinstance(packet.data, str):
            raise ProtocolError(f"expected an open packet, got {packet.type.name.lower()}")
        try:
            info = json.loads(packet.data)
            self.sid = str(info["sid"])
            self.upgrades = list(info.get("upgrades") or [])
            self.ping_interval = float(info["pingInterval"]) / 1000
            self.ping_timeout = float(info["pingTimeout"]) / 1000
            self.max_payload = int(info.get("maxPayload") or 1_000_000)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"invalid open packet: {exc}") from None

    def _open_polling(self) -> list[Packet]:
        assert self._endpoint is not None
        self._polling = Polling(self._endpoint, self._headers, self._ssl_context, self._cookies)
        packets = self._polling.handshake(self.request_timeout)
        self._handshake(packets[0])
        self.transport = "polling"
        return packets[1:]

    def _open_websocket(self) -> list[Packet]:
        ep = self._endpoint
        assert ep is not None
        ws = WebSocketConnection.open(ep, ep.target("websocket"), self._headers, self._cookies,
                                      self.request_timeout, self._ssl_context)
        self._ws = ws
        with gevent.Timeout(self.request_timeout, ConnectionError("no open packet in time")):
            frame = ws.receive()
        if frame is None:
            why = " ".join(str(x) for x in (ws.close_code, ws.close_reason) if x)
            why = f" ({why})" if why else ""
            raise ConnectionError("the server closed the WebSocket before the handshake" + why,
                                  ws.close_reason)
        self._handshake(decode_packet(frame))
        self.transport = "websocket"
        return []

    # -- outgoing -------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.state is OPEN

    @property
    def expired(self) -> bool:
        """True once no ping came within pingInterval + pingTimeout (the watchdog is about to close)."""
        return time.monotonic() > self._last_ping + self.ping_interval + self.ping_timeout

    def send(self, frames: list[Frame], tag: object = None) -> bool:
        """Queue frames for the server without blocking; False (nothing queued) unless open.

        If the session ends before the writer took them, ``tag`` is in ``unsent``."""
        if self.state is not OPEN:
            return False
        self._queue.put(frames, tag)
        return True

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Block while more than ``max_queued_bytes`` wait to be sent; False if ``timeout`` passed."""
        return self._queue.room.wait(timeout)

    def _write_loop(self) -> None:
        queue = self._queue
        try:
            while True:
                if not queue or not self._gate.is_set():
                    if not queue:
                        queue.drained.set()
                    if self.state is CLOSED:
                        return
                    queue.wake.clear()
                    queue.wake.wait()
                    continue
                polling = self.transport == "polling"
                batch = queue.take(self.max_payload if polling else None)
                self._sending = True
                try:
                    if polling:
                        self._post_batch(batch)
                    else:
                        assert self._ws is not None
                        self._ws.send_many(batch)
                finally:
                    self._sending = False
                    self._send_done.set()
        except (OSError, ConnectionError, http.client.HTTPException) as exc:
            logger.info("engine %s: sending failed (%s)", self.sid, exc)
            self._teardown(TRANSPORT_ERROR)

    def _post_batch(self, batch: list[Frame]) -> None:
        assert self._polling is not None and self.sid is not None
        self._polling.post(self.sid, batch, self.request_timeout)

    # -- incoming -------------------------------------------------------

    def _on_packet(self, packet: Packet) -> None:
        t = packet.type
        if t is PacketType.MESSAGE:
            if self.state is OPEN or self.state is CLOSING:
                self.listener.on_message(self, packet.data)
        elif t is PacketType.PING:
            self._last_ping = time.monotonic()
            self._pinged.set()
            if self.state is OPEN:
                self._queue.put([PONG_FRAME])
        elif t is PacketType.CLOSE:
            self._teardown(TRANSPORT_CLOSE)
        elif t is PacketType.NOOP:
            pass
        else:
            raise ProtocolError(f"unexpected {t.name.lower()} packet from the server")

    def _poll_loop(self, pending: list[Packet]) -> None:
        try:
            for packet in pending:
                self._on_packet(packet)
            while self.state is not CLOSED and not self._pause_polling:
                assert self._polling is not None and self.sid is not None
                # The server answers within pingInterval (with a ping, at least).
                packets = self._polling.poll(
                    self.sid, self.ping_interval + self.ping_timeout + self.request_timeout)
                for packet in packets:
                    if self.state is CLOSED:
                        return
                    self._on_packet(packet)
        except ProtocolError as exc:
            logger.warning("engine %s: invalid payload from the server (%s)", self.sid, exc)
            self._teardown(PARSE_ERROR)
        except (OSError, ConnectionError, http.client.HTTPException) as exc:
            logger.info("engine %s: poll failed (%s)", self.sid, exc or type(exc).__name__)
            self._teardown(TRANSPORT_ERROR)

    def _ws_loop(self, ws: WebSocketConnection, pending: list[Packet]) -> None:
        try:
            for packet in pending:
                self._on_packet(packet)
            while self.state is not CLOSED:
                frame = ws.receive()
                if frame is None:
                    self._teardown(TRANSPORT_CLOSE)
                    return
                self._on_packet(decode_packet(frame))
        except ProtocolError as exc:
            logger.warning("engine %s: invalid data from the server (%s)", self.sid, exc)
            self._teardown(PARSE_ERROR)
        except OSError as exc:
            logger.info("engine %s: WebSocket failed (%s)", self.sid, exc)
            self._teardown(TRANSPORT_ERROR)

    def _watch(self) -> None:
        while self.state is not CLOSED:
            if not self._pinged.wait(self.ping_interval + self.ping_timeout):
                logger.info("engine %s: no ping within %.3gs; the connection is lost", self.sid,
                            self.ping_interval + self.ping_timeout)
                self._teardown(PING_TIMEOUT)
                return
            self._pinged.clear()

    # -- upgrade --------------------------------------------------------

    def _upgrade(self) -> None:
        ep = self._endpoint
        assert ep is not None
        ws: WebSocketConnection | None = None
        switched = False
        try:
            with gevent.Timeout(self.upgrade_timeout, ProtocolError("no upgrade in time")):
                ws = WebSocketConnection.open(ep, ep.target("websocket", self.sid), self._headers,
                                              self._cookies, self.request_timeout, self._ssl_context)
                ws.send_many([PROBE_PING])
                answer = ws.receive()
                if answer != PROBE_PONG:
                    raise ProtocolError(f"unexpected probe answer {answer!r}")
                # Pause polling: no new request; the POST in flight and the
                # parked GET (the server answers it with a noop) come back first.
                self._gate.clear()
                self._pause_polling = True
                while self._sending:
                    self._send_done.clear()
                    self._send_done.wait()
                reader = self._reader
                if reader is not None:
                    reader.join()
                if self.state is not OPEN:
                    return
                ws.send_many([_UPGRADE_FRAME])
                if self.state is not OPEN:
                    return
            self._ws = ws
            self.transport = "websocket"
            switched = True
        except (OSError, ConnectionError, ProtocolError) as exc:
            logger.info("engine %s: upgrade to WebSocket failed (%s); staying on polling",
                        self.sid, exc)
            self._resume_polling()
            return
        finally:
            if not switched and ws is not None:
                ws.close()
            self.upgrade_done.set()
        self._reader = gevent.spawn(self._ws_loop, ws, [])
        if self._polling is not None:
            self._polling.close()
        self._gate.set()
        self._queue.wake.set()
        logger.info("engine %s: upgraded to WebSocket", self.sid)

    def _resume_polling(self) -> None:
        if self.state is CLOSED:
            return
        self._pause_polling = False
        if self._reader is None or self._reader.dead:
            self._reader = gevent.spawn(self._poll_loop, [])
        self._gate.set()
        self._queue.wake.set()

    # -- closing --------------------------------------------------------

    def close(self, reason: str = CLIENT_DISCONNECT) -> None:
        """End the session: flush what is queued (within ``close_flush_timeout``), tell the
        server, stop every greenlet. Idempotent; safe from any greenlet but a hub callback."""
        if self.state is CLOSED:
            return
        if self.state is OPEN:
            self.state = CLOSING
            self._closing_reason = reason
            upgrader = self._upgrader
            if upgrader is not None and not upgrader.dead and upgrader is not gevent.getcurrent():
                # An upgrade half done holds the writer: call it off and flush on polling.
                upgrader.kill()
                self._gate.set()
            if self.transport == "polling":
                # A close packet ends the server's session at once (a WebSocket's
                # close frame does the same on that transport).
                self._queue.put([CLOSE_FRAME])
            self._queue.wake.set()
            if gevent.getcurrent() is not self._writer:
                self._queue.drained.wait(self.close_flush_timeout)
            if self._ws is not None and self.transport == "websocket":
                self._ws.close(graceful=True, timeout=self.close_flush_timeout)
        self._teardown(reason)
        greenlets = self.greenlets()
        if gevent.getcurrent() not in greenlets:
            gevent.joinall(greenlets, timeout=self.close_flush_timeout)  # killed: gone on return

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the session has ended; False if ``timeout`` passed first."""
        return self._closed.wait(timeout)

    def _teardown_quietly(self) -> None:
        """A failed connect: release everything, report nothing."""
        self.state = CLOSED
        self._close_connections()
        self._closed.set()

    def _close_connections(self) -> None:
        if self._polling is not None:
            self._polling.close()
        if self._ws is not None:
            self._ws.close()

    def _teardown(self, reason: str) -> None:
        if self.state is CLOSED:
            return
        reason = self._closing_reason or reason
        self.state = CLOSED
        self.close_reason = reason
        logger.info("engine %s: closed (%s)", self.sid, reason)
        current = gevent.getcurrent()
        for g in (self._reader, self._writer, self._watchdog, self._upgrader):
            if g is not None and g is not current:
                g.kill(block=False)
        self._close_connections()
        self.unsent = self._queue.release()
        for event in (self._pinged, self._closed, self.upgrade_done):
            event.set()
        try:
            self.listener.on_close(self, reason)
        except Exception:
            logger.exception("engine %s: close listener failed", self.sid)

    def greenlets(self) -> list[gevent.Greenlet]:
        """The greenlets this session started (for tests and diagnostics)."""
        return [g for g in (self._reader, self._writer, self._watchdog, self._upgrader) if g is not None]
