"""Raw clients and server probes of the hostile-client suite.

Everything goes over real loopback sockets to a real ``geventsio.Server``:

- ``WSConn``: a WebSocket client written frame by frame (RFC 6455), so that a
  test can send what no library would (unmasked frames, invalid UTF-8, lying
  lengths), stop reading, or stall in the middle of a frame;
- ``EIO``/``SIO`` helpers on top of it, and ``http_request`` for long-polling;
- ``Bystander``: a well-behaved Socket.IO client that echoes continuously
  (acknowledged events, pings answered) while the hostile one misbehaves;
- ``Target``: the server under attack, its tables and the waits on them.

Synchronisation is by blocking reads with timeouts, gevent Events/AsyncResults
set by server handlers, and bounded waits on server state; never by sleeping.
"""

from __future__ import annotations

import base64
import gc
import http.client
import itertools
import json
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

import gevent
from gevent.event import AsyncResult, Event
from gevent.lock import Semaphore

import geventsio
from geventsio.engine.session import Session
from geventsio.engine.websocket import WebSocket as ServerWebSocket
from geventsio.socket import Connection, Socket

TIMEOUT = 5  # seconds to wait for anything that should happen promptly
PING_INTERVAL = 0.5
PING_TIMEOUT = 0.5
REQUEST_TIMEOUT = 1.0  # the WSGI handler's limit on request headers, short for the tests
KEEPALIVE_TIMEOUT = 2.0  # ... and on an idle connection's next request line
LATENCY_BOUND = 1.0  # the bystander's echo round trip must stay below this, attack or not

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Closed(Exception):
    """The peer closed the connection (close frame or EOF)."""

    def __init__(self, code: int | None, reason: str = ""):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition",
               interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds. Returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        gevent.sleep(interval)


@dataclass
class Served:
    """Where a server under test listens (the fields tests/conftest.py's RunningServer has)."""

    server: Any
    wsgi_server: Any
    port: int
    path: str = "socket.io"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, query: str = "EIO=4&transport=polling") -> str:
        return f"/{self.path}/?{query}"


# -- WebSocket frames ----------------------------------------------------------


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0, length: int | None = None, mask: bytes | None = None) -> bytes:
    """One client frame; ``length`` overrides the announced payload length."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if masked else 0
    if n <= 125:
        head = bytes([first, bit | n])
    elif n <= 0xFFFF:
        head = bytes([first, bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = mask if mask is not None else os.urandom(4)
    if payload:
        key = (mask * (len(payload) // 4 + 1))[:len(payload)]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")
    return head + mask + payload


class WSConn:
    """A raw WebSocket client connection (masks its frames; reads the server's)."""

    def __init__(self, port: int, target: str, *, headers: dict | None = None,
                 rcvbuf: int | None = None, timeout: float | None = TIMEOUT, pipelined: bytes = b""):
        """``pipelined``: bytes sent in the same write as the upgrade request, right behind it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect(), so that the window the client advertises stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        self.sock = sock
        self.local_port = sock.getsockname()[1]
        self._buf = b""
        self._write_lock = Semaphore()
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + pipelined)
        while b"\r\n\r\n" not in self._buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"no handshake answer: {self._buf!r}")
            self._buf += chunk
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101 " not in self.status_line + " ":
            raise ConnectionError(f"no upgrade: {head!r}")

    # raw I/O

    def send_raw(self, data: bytes) -> None:
        with self._write_lock:
            self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes, **kwargs: Any) -> None:
        self.send_raw(client_frame(opcode, payload, **kwargs))

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.send_frame(TEXT, message.encode("utf-8"))
        else:
            self.send_frame(BINARY, message)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed(None, "EOF")
        self._buf += chunk

    def recv_frame(self) -> tuple[bool, int, bytes]:
        """One server frame: (fin, opcode, payload). A timeout loses nothing already read."""
        while True:
            buf = self._buf
            if len(buf) >= 2:
                b0, b1 = buf[0], buf[1]
                assert b1 & 0x80 == 0, "the server masked a frame"
                n, start = b1 & 0x7F, 2
                if n == 126 and len(buf) >= 4:
                    n, start = struct.unpack("!H", buf[2:4])[0], 4
                elif n == 127 and len(buf) >= 10:
                    n, start = struct.unpack("!Q", buf[2:10])[0], 10
                if (b1 & 0x7F) < 126 or start > 2:
                    if len(buf) >= start + n:
                        self._buf = buf[start + n:]
                        return bool(b0 & 0x80), b0 & 0x0F, buf[start:start + n]
            self._fill()

    def recv(self) -> str | bytes:
        """The next data message; answers WebSocket pings; raises ``Closed`` at a close frame or EOF."""
        parts: list[bytes] = []
        opcode = None
        while True:
            fin, op, payload = self.recv_frame()
            if op == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                try:
                    self.send_frame(CLOSE, payload[:2])
                except OSError:
                    pass
                raise Closed(code, payload[2:].decode("utf-8", "replace"))
            if op == PING:
                self.send_frame(PONG, payload)
                continue
            if op == PONG:
                continue
            if op != CONT:
                opcode = op
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                return data.decode("utf-8") if opcode == TEXT else data

    def read_until_closed(self, answer_pings: bool = False,
                          timeout: float = TIMEOUT) -> tuple[list, int | None, str]:
        """Every message until the server closes: (messages, close code or None for EOF, reason).

        Fails if the server has not closed the connection within ``timeout`` seconds.
        """
        messages: list = []
        deadline = time.monotonic() + timeout
        previous = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the server did not close the connection within {timeout}s; "
                                         f"received {messages[:10]!r}")
                self.sock.settimeout(left)
                try:
                    message = self.recv()
                except Closed as closed:
                    return messages, closed.code, closed.reason
                except ConnectionResetError:
                    return messages, None, "reset"
                except socket.timeout:
                    continue
                if answer_pings and message == "2":
                    self.send("3")
                    continue
                messages.append(message)
        finally:
            try:
                self.sock.settimeout(previous)
            except OSError:  # pragma: no cover
                pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


def eio_websocket(rs: Any, *, query: str = "", **kwargs: Any) -> tuple[WSConn, str]:
    """A WebSocket-only Engine.IO session on /socket.io/: the connection and its sid."""
    conn = WSConn(rs.port, f"/{rs.path}/?EIO=4&transport=websocket{query}", **kwargs)
    opening = conn.recv()
    assert isinstance(opening, str) and opening.startswith("0"), opening
    return conn, json.loads(opening[1:])["sid"]


class SIOConn:
    """A hand-driven Socket.IO client over a raw WebSocket; answers Engine.IO pings while reading."""

    def __init__(self, rs: Any, **kwargs: Any):
        self.ws, self.eio_sid = eio_websocket(rs, **kwargs)

    def send(self, message: str | bytes) -> None:
        self.ws.send(message)

    def recv(self, timeout: float = TIMEOUT) -> str | bytes:
        """The next message other than a ping (answered); ``socket.timeout`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        previous = self.ws.sock.gettimeout()
        try:
            while True:
                self.ws.sock.settimeout(max(0.001, deadline - time.monotonic()))
                message = self.ws.recv()
                if message == "2":
                    self.ws.send("3")
                    continue
                return message
        finally:
            self.ws.sock.settimeout(previous)

    def connect(self, namespace: str = "/") -> str:
        prefix = "" if namespace == "/" else namespace + ","
        self.send("40" + prefix)
        reply = self.recv()
        assert isinstance(reply, str) and reply.startswith("40" + prefix), reply
        return json.loads(reply[len("40" + prefix):])["sid"]

    def read_until_closed(self) -> tuple[list, int | None, str]:
        return self.ws.read_until_closed(answer_pings=True)

    def close(self) -> None:
        self.ws.close()


# -- HTTP long-polling -----------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(rs: Any, method: str = "GET", query: str = "EIO=4&transport=polling",
                 body: Any = None, headers: dict | None = None,
                 timeout: float = TIMEOUT) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=timeout)
    try:
        conn.request(method, rs.endpoint(query), body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def websocket_request(rs: Any, query: str, headers: dict | None = None) -> Reply:
    """An Engine.IO WebSocket upgrade request, for the HTTP answer to one the server refuses."""
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    return http_request(rs, "GET", query, headers={**upgrade, **(headers or {})})


def polling_handshake(rs: Any, headers: dict | None = None) -> str:
    reply = http_request(rs, headers=headers)
    assert reply.status == 200 and reply.text.startswith("0"), (reply.status, reply.body)
    return json.loads(reply.text[1:])["sid"]


def poll(rs: Any, sid: str, **kwargs: Any) -> Reply:
    return http_request(rs, "GET", f"EIO=4&transport=polling&sid={sid}", **kwargs)


def post(rs: Any, sid: str, body: Any, **kwargs: Any) -> Reply:
    return http_request(rs, "POST", f"EIO=4&transport=polling&sid={sid}", body=body, **kwargs)


def raw_http(port: int, data: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send ``data`` on a fresh TCP connection and read until the server closes it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


# -- kernel view of the server's connections --------------------------------------

_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
               "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
               "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def server_side_state(server_port: int, client_port: int) -> str | None:
    """The TCP state of the server's end of the connection from ``client_port`` (None: gone).

    Read from /proc/net/tcp, so it shows what the server did to its socket even
    while the client reads nothing (a FIN cannot reach a client whose window is 0).
    """
    want_local = f"{server_port:04X}"
    want_remote = f"{client_port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if local.endswith(":" + want_local) and remote.endswith(":" + want_remote):
                return _TCP_STATES.get(state, state)
    return None


# -- the well-behaved client -------------------------------------------------------


class Bystander:
    """A well-behaved Socket.IO client that keeps echoing while a hostile one attacks.

    A reader greenlet answers Engine.IO pings and resolves acknowledgements; an
    echo greenlet emits ``echo`` events with an ack id, back to back (a bounded
    wait on its stop event paces them), and records every round trip.
    """

    def __init__(self, rs: Any):
        self.conn = SIOConn(rs, timeout=None)
        self.sid = self.conn.connect("/")
        self.errors: list[str] = []
        self.echoes = 0
        self.latencies: list[float] = []
        self.broadcasts = 0
        self._acks: dict[int, AsyncResult] = {}
        self._ids = itertools.count(1)
        self._stop = Event()
        self._progress = Event()
        self._reader = gevent.spawn(self._read)
        self._looper = gevent.spawn(self._loop)

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.ws.recv()
            except (Closed, OSError) as exc:
                if not self._stop.is_set():
                    self.errors.append(f"connection ended: {exc!r}")
                for pending in self._acks.values():
                    pending.set_exception(ConnectionError("closed"))
                return
            if message == "2":
                self.conn.ws.send("3")
            elif isinstance(message, str) and message.startswith("43"):
                head, _, body = message[2:].partition("[")
                pending = self._acks.pop(int(head), None)
                if pending is None:
                    self.errors.append(f"unexpected ack {message[:80]!r}")
                else:
                    pending.set(json.loads("[" + body))
            elif isinstance(message, str) and message.startswith("42"):
                self.broadcasts += 1
            else:
                self.errors.append(f"unexpected message {message[:80]!r}")

    def echo(self, value: Any, timeout: float = TIMEOUT) -> Any:
        ack_id = next(self._ids)
        result = self._acks[ack_id] = AsyncResult()
        self.conn.send(f"42{ack_id}" + json.dumps(["echo", value]))
        return result.get(timeout=timeout)

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            value = {"n": n, "text": "h\u00e9llo", "list": [1, 2.5, None, True]}
            started = time.monotonic()
            try:
                got = self.echo(value)
            except Exception as exc:  # noqa: BLE001 - recorded, checked by check()
                if not self._stop.is_set():
                    self.errors.append(f"echo {n} failed: {exc!r}")
                return
            self.latencies.append(time.monotonic() - started)
            if got != [value]:
                self.errors.append(f"echo {n} returned {got!r}")
                return
            self.echoes += 1
            self._progress.set()
            self._stop.wait(0.01)

    def check(self) -> None:
        """Still connected, never failed, echoing right now, and never slow."""
        assert not self.errors, f"the well-behaved client was disturbed: {self.errors}"
        seen = self.echoes
        deadline = time.monotonic() + TIMEOUT
        while self.echoes <= seen + 2 and not self.errors and time.monotonic() < deadline:
            self._progress.clear()
            self._progress.wait(max(0.0, deadline - time.monotonic()))
        assert not self.errors, f"the well-behaved client was disturbed: {self.errors}"
        assert self.echoes > seen + 2, f"the well-behaved client stopped echoing (at {self.echoes})"
        worst = max(self.latencies)
        assert worst < LATENCY_BOUND, f"an echo of the well-behaved client took {worst:.3f}s"

    def stop(self) -> None:
        self._stop.set()
        self._looper.join(TIMEOUT)
        self.conn.close()
        self._reader.join(TIMEOUT)


# -- the server under attack -------------------------------------------------------


class Recorder:
    """Handlers that record the server's view: connects and disconnect reasons, by socket sid."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        self._gone: dict[str, AsyncResult] = {}

    def _result(self, sid: str) -> AsyncResult:
        return self._gone.setdefault(sid, AsyncResult())

    def disconnect(self, sid: str, reason: str) -> None:
        self.reasons[sid] = reason
        self._result(sid).set(reason)

    def reason(self, sid: str, timeout: float = TIMEOUT) -> str:
        """The disconnect reason of socket ``sid``, waiting for it."""
        return self._result(sid).get(timeout=timeout)


def live_objects() -> dict[str, int]:
    """How many sessions, connections, sockets and server WebSockets are alive (after a collection)."""
    gc.collect()
    counts = {"Session": 0, "Connection": 0, "Socket": 0, "WebSocket": 0}
    for obj in gc.get_objects():
        t = type(obj)
        if t is Session:
            counts["Session"] += 1
        elif t is Connection:
            counts["Connection"] += 1
        elif t is Socket:
            counts["Socket"] += 1
        elif t is ServerWebSocket:
            counts["WebSocket"] += 1
    return counts


class Target:
    """A geventsio.Server on a loopback port, with a bystander and the baseline of its tables."""

    def __init__(self, sio: geventsio.Server, rs: Any, recorder: Recorder):
        self.sio = sio
        self.rs = rs
        self.recorder = recorder
        self.bystander: Bystander | None = None
        self.baseline: dict[str, int] = {}

    @property
    def port(self) -> int:
        return self.rs.port

    def tables(self) -> dict[str, int]:
        sio = self.sio
        adapters = list(sio.adapters.values())
        return {
            "eio.sessions": len(sio.eio.sessions),
            "connections": len(sio.connections),
            "sockets": len(sio.sockets),
            "adapters": len(adapters),
            "adapter.sockets": sum(len(getattr(a, "sockets", ())) for a in adapters),
            "adapter.rooms": sum(len(getattr(a, "rooms", ())) for a in adapters),
            "adapter.sids": sum(len(getattr(a, "sids", ())) for a in adapters),
            "acks": sum(len(s.acks) for s in list(sio.sockets.values())),
        }

    def wait_baseline(self, timeout: float = TIMEOUT) -> None:
        """The server's tables return to what they were before the hostile client came."""
        try:
            wait_until(lambda: self.tables() == self.baseline, timeout, "tables back to baseline")
        except AssertionError:
            raise AssertionError(f"tables {self.tables()} did not return to {self.baseline}") from None

    def session(self, eio_sid: str) -> Session:
        return self.sio.eio.sessions[eio_sid]

    def wait_closed(self, session: Session, timeout: float = TIMEOUT) -> str:
        """Wait until ``session`` is closed; its close reason."""
        wait_until(lambda: session.closed, timeout, f"session {session.sid} closed")
        return session.close_reason

    def assert_alive(self) -> None:
        """A brand-new client can connect and get an echo."""
        fresh = SIOConn(self.rs)
        try:
            fresh.connect("/")
            fresh.send('42999["echo","fresh"]')
            assert fresh.recv() == '43999["fresh"]'
        finally:
            fresh.close()

    def assert_healthy(self) -> None:
        """The server is alive and the well-behaved client was not disturbed."""
        if self.bystander is not None:
            self.bystander.check()
        self.assert_alive()

    def finish(self) -> None:
        """The common end of a hostile test: healthy, and the tables back to the baseline."""
        self.assert_healthy()
        self.wait_baseline()

    def stop(self) -> None:
        if self.bystander is not None:
            self.bystander.stop()
