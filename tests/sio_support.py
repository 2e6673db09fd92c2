"""Shared helpers of the Socket.IO server tests (tests/test_server*.py).

Every test serves a real ``geventsio.Server`` on a loopback port (conftest's
``serve_app``) and talks to it with the real python-socketio ``Client`` or,
for protocol violations, raw websocket-client / http.client connections.
Synchronisation is by gevent Events / AsyncResults set by handlers and waited
with timeouts, or by blocking calls with timeouts; never by sleeping.

The test modules load this file as a plugin (``pytest_plugins = ["sio_support"]``)
for its fixtures, and import its helpers.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator

import gevent
import pytest
import socketio
import websocket
from gevent.event import Event
from websocket import ABNF

TIMEOUT = 5  # seconds to wait for anything that should happen promptly

TRANSPORTS = [["polling"], ["websocket"], None]
TRANSPORT_IDS = ["polling", "websocket", "default"]


def serve(serve_app: Callable[..., Any], sio: Any) -> Any:
    """Serve a Socket.IO server at /socket.io/ on an ephemeral port."""
    return serve_app(sio, path="socket.io")


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORT_IDS)
def transports(request) -> list[str] | None:
    """The client's transports: polling only, websocket only, or the default (polling + upgrade)."""
    return request.param


@pytest.fixture
def make_client(serve_app) -> Iterator[Callable[..., socketio.Client]]:
    """Factory of python-socketio clients, all disconnected at teardown (before the servers stop)."""
    made: list[socketio.Client] = []

    def make(**options: Any) -> socketio.Client:
        options.setdefault("reconnection", False)
        client = socketio.Client(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        try:
            disconnect_flushed(client)
        except Exception:  # pragma: no cover - best effort cleanup
            pass


def connect_client(client: socketio.Client, rs: Any, transports: list[str] | None = None,
                   namespaces: list[str] | None = None, auth: Any = None) -> socketio.Client:
    """Connect ``client`` and wait (up to TIMEOUT) for every namespace to be accepted."""
    client.connect(rs.url, transports=transports, namespaces=namespaces, auth=auth,
                   wait_timeout=TIMEOUT)
    return client


def disconnect_flushed(client: socketio.Client) -> None:
    """``client.disconnect()``, making sure the server first receives the DISCONNECT packets.

    python-engineio's client loses them in two ways, neither the server's doing:

    - on a WebSocket it queues the DISCONNECT and close packets, then closes the
      WebSocket at once, before its write loop has sent them: the server sees a
      bare transport close ("transport close" instead of "client disconnect");
    - on polling, if a POST is in flight when ``disconnect()`` runs, the write
      loop exits after it without sending them, and ``disconnect()`` then waits
      for the parked GET to return, i.e. up to the server's ping interval.

    So the DISCONNECT packets are queued first and the client's send queue is
    drained (``queue.join``) before the Engine.IO disconnect.
    """
    if client.connected and client.eio.state == "connected":
        for namespace in list(client.namespaces):
            client._send_packet(client.packet_class(socketio.packet.DISCONNECT, namespace=namespace))
        with gevent.Timeout(TIMEOUT, False):
            client.eio.queue.join()
    client.disconnect()


class Inbox:
    """Records, in order, every event a client receives in one namespace (through its ``*`` handler)."""

    def __init__(self, client: socketio.Client, namespace: str = "/"):
        self.events: list[tuple[str, tuple]] = []
        self._changed = Event()
        client.on("*", self._record, namespace=namespace)

    def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args))
        self._changed.set()

    def of(self, event: str) -> list[tuple]:
        """The argument tuples of every ``event`` received so far."""
        return [args for name, args in self.events if name == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = TIMEOUT) -> list[tuple]:
        """Block until ``count`` ``event``s have arrived; fail with what did arrive otherwise."""
        deadline = time.monotonic() + timeout
        while len(self.of(event)) < count:
            self._changed.clear()
            if len(self.of(event)) >= count:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._changed.wait(remaining):
                raise AssertionError(
                    f"expected {count} {event!r} event(s) within {timeout}s; received {self.events!r}")
        return self.of(event)


# -- raw protocol clients ------------------------------------------------------


class RawSocketIO:
    """A hand-driven Socket.IO client over a raw WebSocket, for protocol violations."""

    def __init__(self, rs: Any):
        self.ws = websocket.create_connection(
            f"{rs.ws_url}/socket.io/?EIO=4&transport=websocket", timeout=TIMEOUT)
        opening = self.ws.recv()
        assert opening.startswith("0"), opening
        self.eio_sid = json.loads(opening[1:])["sid"]
        self.sid: str | None = None

    def connect(self, namespace: str = "/") -> str:
        prefix = "" if namespace == "/" else namespace + ","
        self.ws.send("40" + prefix)
        reply = self.ws.recv()
        assert reply.startswith("40" + prefix), reply
        self.sid = json.loads(reply[len("40" + prefix):])["sid"]
        return self.sid

    def send(self, text: str) -> None:
        self.ws.send(text)

    def read_until_closed(self) -> list[bytes]:
        """Every data frame until the server closes the WebSocket; a timeout fails the test."""
        received: list[bytes] = []
        while True:
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketConnectionClosedException:
                return received
            if opcode == ABNF.OPCODE_CLOSE:
                return received
            if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
                received.append(data)

    def close(self) -> None:
        try:
            self.ws.close(timeout=0.2)
        except Exception:  # pragma: no cover - already closed
            pass


@pytest.fixture
def raw_client(serve_app) -> Iterator[Callable[[Any], RawSocketIO]]:
    made: list[RawSocketIO] = []

    def make(rs: Any) -> RawSocketIO:
        raw = RawSocketIO(rs)
        made.append(raw)
        return raw

    yield make
    for raw in made:
        raw.close()
