"""Helpers of the ``geventsio.Client`` tests (tests/test_client*.py).

Everything is real: geventsio servers on loopback ports that a test can stop
and start again on the same port, the reference Node ``socket.io`` server in a
subprocess (tests/interop/node_server.mjs), and a TCP proxy that can freeze a
connection (a network partition). Tests synchronise on gevent Events set by
handlers and waited with timeouts, never on sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import gevent
import gevent.server
import gevent.socket
import pytest
from gevent.event import Event

import geventsio

WAIT = 5  # seconds to wait for anything that should happen promptly
TRANSPORTS = [["polling"], ["websocket"], None]
TRANSPORT_IDS = ["polling", "websocket", "default"]
INTEROP_DIR = Path(__file__).resolve().parent / "interop"
NODE_SERVER = INTEROP_DIR / "node_server.mjs"

# Reconnection settings that keep the tests fast (delays of 0.05 s to 0.4 s).
FAST_RECONNECT = dict(reconnection_delay=0.1, reconnection_delay_max=0.4, randomization_factor=0.5)


def expected_transport(transports: list[str] | None) -> str:
    return "websocket" if transports is None else transports[0]


class Log:
    """An append-only list that can be waited on: ``log.wait_for(lambda items: ...)``."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.times: list[float] = []
        self._changed = Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self.times.append(time.monotonic())
        self._changed.set()

    def __call__(self, *args: Any) -> None:
        """Use as a handler: records its arguments (one argument as is, several as a tuple)."""
        self.add(args[0] if len(args) == 1 else args)

    def __len__(self) -> int:
        return len(self.items)

    def wait_for(self, predicate: Callable[[list], bool] | int, timeout: float = WAIT) -> list:
        """Wait until ``predicate(items)`` holds (an int n means: at least n items)."""
        if isinstance(predicate, int):
            count = predicate
            predicate = lambda items: len(items) >= count  # noqa: E731
        deadline = time.monotonic() + timeout
        while not predicate(self.items):
            self._changed.clear()
            if predicate(self.items):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._changed.wait(remaining):
                pytest.fail(f"condition not met within {timeout}s; log: {self.items!r}")
        return list(self.items)


def wait_event(event: Event, what: str, timeout: float = WAIT) -> None:
    if not event.wait(timeout):
        pytest.fail(f"{what} did not happen within {timeout}s")


class Lifecycle:
    """A client's lifecycle events as ``(name, *args)``, timestamped when its handlers ran."""

    NAMES = ("connect", "reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed")

    def __init__(self, client: geventsio.Client):
        self.client = client
        self.log = Log()
        for name in self.NAMES:
            client.on(name, self._recorder(name))
        client.on("disconnect", lambda reason: self.log.add(("disconnect", reason)))

    def _recorder(self, name: str) -> Callable[..., None]:
        return lambda *args: self.log.add((name, *args))

    def names(self) -> list[str]:
        return [item[0] for item in self.log.items]

    def wait(self, name: str, count: int = 1) -> None:
        self.log.wait_for(lambda items: sum(1 for i in items if i[0] == name) >= count)

    def times(self, name: str) -> list[float]:
        return [t for item, t in zip(self.log.items, self.log.times) if item[0] == name]

    def check_backoff(self, slack: float = 1.0) -> int:
        """Each reconnection attempt started within its back-off bounds, counted from the
        previous failure (or the disconnect); returns the number of attempts."""
        starts = self.times("reconnect_attempt")
        failures = self.times("disconnect")[:1] + self.times("reconnect_error")
        assert starts and len(failures) >= len(starts)
        for n, (failed, started) in enumerate(zip(failures, starts)):
            lo, hi = self.client.backoff.bounds(n)
            waited = started - failed
            # The lower bound is strict (a timer never fires early, within the loop's clock
            # granularity); the upper one allows for scheduling and the handlers' latency,
            # which on a loaded 2-core CI machine reached 0.3 s (the delays themselves are
            # checked exactly in test_client_backoff.py).
            assert lo - 0.02 <= waited <= hi + slack, (n, waited, (lo, hi))
        attempts = [item[1] for item in self.log.items if item[0] == "reconnect_attempt"]
        assert attempts == list(range(1, len(starts) + 1))
        return len(starts)


class Emitter:
    """Emits ``record`` 0, 1, 2... from its own greenlet at a steady pace (an application
    that keeps emitting), noting which emits were made while the client was disconnected:
    those are buffered, and must arrive exactly once, in order."""

    def __init__(self, client: geventsio.Client, event: str = "record", pace: float = 0.005,
                 namespace: str | None = None):
        self.client = client
        self.event = event
        self.pace = pace
        self.namespace = namespace
        self.count = 0
        self.buffered = Log()
        self._stopped = False
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while not self._stopped:
            was_connected = self.client.connected
            self.client.emit(self.event, self.count, namespace=self.namespace)
            if not was_connected:
                self.buffered.add(self.count)
            self.count += 1
            gevent.sleep(self.pace)  # the application's own rate, not a wait for an event

    def stop(self) -> int:
        self._stopped = True
        self._greenlet.join(WAIT)
        return self.count


def check_emitter_delivery(emitter: Emitter, received: list, first_server_count: int) -> None:
    """What a server restart while emitting may do: lose only emits written to the dying
    connection, never reorder nor duplicate, deliver every buffered emit and everything after."""
    assert received == sorted(set(received)), "reordered or duplicated"
    lost = sorted(set(range(emitter.count)) - set(received))
    buffered = emitter.buffered.items
    assert buffered and set(buffered) <= set(received)
    first_life = received[:first_server_count]
    low = max(first_life) if first_life else -1
    assert all(low < i < buffered[0] for i in lost), (lost, low, buffered[0])
    assert received[-1] == emitter.count - 1


class RestartableServer:
    """A geventsio Socket.IO app on a loopback port that can be stopped and started on that port.

    ``make_sio()`` builds a fresh ``geventsio.Server`` for every start (as a
    restarted process would); ``stop()`` kills every open request at once, so
    clients lose their connections as they would when the process dies.
    """

    def __init__(self, make_sio: Callable[[], geventsio.Server]):
        self.make_sio = make_sio
        self.port = 0
        self.sio: geventsio.Server | None = None
        self.wsgi: Any = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.sio = self.make_sio()
        self.wsgi = geventsio.make_server(geventsio.WSGIApp(self.sio), "127.0.0.1", self.port)
        self.wsgi.start()
        self.port = self.wsgi.server_port

    def stop(self) -> None:
        if self.wsgi is not None:
            self.wsgi.stop(timeout=0)
            self.wsgi = None
        if self.sio is not None:
            self.sio.shutdown()
            self.sio = None


class NodeServer:
    """tests/interop/node_server.mjs in a subprocess; its JSON lines collected in ``log``."""

    def __init__(self, options: dict | None = None):
        self.options = options or {}
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = Log()
        self._reader: gevent.Greenlet | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(NODE_SERVER), str(self.port), json.dumps(self.options)],
            cwd=INTEROP_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with gevent.Timeout(20, False):
            first = self.proc.stdout.readline()
        if not first:
            self.kill()
            pytest.fail(f"the Node server did not start: {self.proc.stderr.read()[-2000:]}")
        self.port = json.loads(first)["port"]
        self._reader = gevent.spawn(self._read, self.proc)

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.strip():
                self.log.add(json.loads(line))

    def kill(self) -> None:
        """SIGKILL: the process dies with its connections, as in a crash."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        if proc is not None:
            proc.stdout.close()
            proc.stderr.close()

    def entries(self, key: str) -> list:
        return [e[key] for e in self.log.items if key in e]


class FreezingProxy:
    """A TCP proxy to ``port`` that can stop forwarding (keeping connections open): a partition."""

    def __init__(self, port: int):
        self.target = port
        self._flowing = Event()
        self._flowing.set()
        self._server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self._server.start()
        self.port = self._server.server_port
        self._pipes: list[gevent.Greenlet] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def _handle(self, client: Any, address: Any) -> None:
        try:
            upstream = gevent.socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return
        a = gevent.spawn(self._pipe, client, upstream)
        b = gevent.spawn(self._pipe, upstream, client)
        self._pipes += [a, b]
        gevent.joinall([a, b])

    def _pipe(self, src: Any, dst: Any) -> None:
        try:
            while True:
                data = src.recv(65536)
                self._flowing.wait()
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(2)
                except OSError:
                    pass

    def close(self) -> None:
        self._server.stop(timeout=0)
        gevent.killall(self._pipes)


@pytest.fixture
def make_client() -> Any:
    """Factory of geventsio.Client with fast reconnection; every client is disconnected at teardown."""
    made: list[geventsio.Client] = []

    def make(**options: Any) -> geventsio.Client:
        client = geventsio.Client(**{**FAST_RECONNECT, **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()
        assert client.greenlets() == [], "a greenlet of the client outlived disconnect()"


@pytest.fixture
def restartable() -> Any:
    """Factory: restartable(make_sio) -> RestartableServer, stopped at teardown."""
    servers: list[RestartableServer] = []

    def make(make_sio: Callable[[], geventsio.Server]) -> RestartableServer:
        server = RestartableServer(make_sio)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
