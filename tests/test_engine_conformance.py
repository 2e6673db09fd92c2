"""Engine.IO v4 conformance: every case of the official v4 test suite, against a live server.

The official suite (socketio/socket.io, docs/engine.io-protocol/v4-test-suite)
drives a server on /engine.io/ with pingInterval=300 ms and pingTimeout=200 ms
and an application that echoes each message back. The ``engine_server``
fixture provides exactly that, on an ephemeral port. The clients are plain
blocking ones (http.client, websocket-client, raw sockets); conftest patched
them for gevent, so they run beside the server greenlets.

Where the official suite relies on a few milliseconds of delay to order two
requests, these tests instead wait until the server has actually taken the
first request (see ``RequestWatch``), so the order is certain.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any, Callable
from urllib.parse import quote

import gevent
import gevent.event
import pytest
import websocket

PING_INTERVAL = 0.3  # seconds; the handshake must announce 300 ms
PING_TIMEOUT = 0.2  # seconds; the handshake must announce 200 ms
MAX_PAYLOAD = 1_000_000

# How long a client waits for something the server should do right away.
IO_TIMEOUT = 2.0
# Scheduling margin added to a deadline computed from the heartbeat options.
HEARTBEAT_SLACK = 0.1

HANDSHAKE_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}

POLLING = "EIO=4&transport=polling"
WEBSOCKET = "EIO=4&transport=websocket"


# -- helpers ----------------------------------------------------------------


def polling_query(sid: str) -> str:
    return f"{POLLING}&sid={quote(sid)}"


def http_request(srv: Any, method: str, query: str, body: bytes | str | None = None,
                 timeout: float = IO_TIMEOUT) -> tuple[int, bytes]:
    """One request on its own connection; returns (status, body)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {}
    if body is not None:
        headers["Content-Type"] = "text/plain;charset=UTF-8"
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request(method, srv.endpoint(query), body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def parse_open_packet(content: str) -> dict:
    assert content.startswith("0"), f"expected an open packet, got {content!r}"
    value = json.loads(content[1:])
    assert isinstance(value, dict)
    return value


def check_handshake(value: dict, upgrades: list[str]) -> None:
    assert set(value) == HANDSHAKE_KEYS
    assert isinstance(value["sid"], str) and value["sid"]
    assert value["upgrades"] == upgrades
    assert value["pingInterval"] == round(PING_INTERVAL * 1000)
    assert value["pingTimeout"] == round(PING_TIMEOUT * 1000)
    assert value["maxPayload"] == MAX_PAYLOAD


def open_polling_session(srv: Any) -> str:
    status, body = http_request(srv, "GET", POLLING)
    assert status == 200, body
    return parse_open_packet(body.decode("utf-8"))["sid"]


def wait_until(predicate: Callable[[], bool], deadline: float = IO_TIMEOUT) -> bool:
    """Await a server state change, checking every 10 ms up to ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() >= end:
            return predicate()
        gevent.sleep(0.01)
    return True


def ws_recv(ws: websocket.WebSocket) -> str | bytes:
    """The next data frame: ``str`` for a text frame, ``bytes`` for a binary one."""
    opcode, frame = ws.recv_data_frame()
    assert opcode != websocket.ABNF.OPCODE_CLOSE, "the server closed the WebSocket"
    if opcode == websocket.ABNF.OPCODE_TEXT:
        return frame.data.decode("utf-8")
    assert opcode == websocket.ABNF.OPCODE_BINARY, opcode
    return bytes(frame.data)


def ws_recv_until_close(ws: websocket.WebSocket, timeout: float = IO_TIMEOUT) -> list[str | bytes]:
    """Read until the server ends the connection; returns the data frames received before.

    The connection counts as closed on a close frame or when the server drops
    the TCP connection; a server that keeps it open past ``timeout`` fails the test.
    """
    ws.settimeout(timeout)
    frames: list[str | bytes] = []
    while True:
        try:
            opcode, frame = ws.recv_data_frame()
        except websocket.WebSocketTimeoutException:
            pytest.fail(f"the server did not close the WebSocket within {timeout}s "
                        f"(frames received: {frames!r})")
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return frames
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return frames
        if opcode == websocket.ABNF.OPCODE_TEXT:
            frames.append(frame.data.decode("utf-8"))
        else:
            frames.append(bytes(frame.data))


class RequestWatch:
    """Records each request the Engine.IO server starts handling.

    A greenlet serving a request runs without yielding until it blocks, so once
    ``wait_for`` returns, a matching long-poll GET is parked on the server.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, server: Any):
        self.seen: list[tuple[str, str]] = []
        self._changed = gevent.event.Event()
        original = server.handle_request

        def handle_request(environ: dict, start_response: Callable[..., Any]) -> Any:
            self.seen.append((environ.get("REQUEST_METHOD", ""), environ.get("QUERY_STRING", "")))
            self._changed.set()
            return original(environ, start_response)

        monkeypatch.setattr(server, "handle_request", handle_request)

    def count(self, method: str, query: str) -> int:
        return sum(1 for m, q in self.seen if m == method and q == query)

    def wait_for(self, method: str, query: str, count: int = 1) -> None:
        end = time.monotonic() + IO_TIMEOUT
        while self.count(method, query) < count:
            remaining = end - time.monotonic()
            assert remaining > 0, f"the server never received {method} ?{query}"
            self._changed.clear()
            self._changed.wait(remaining)


# -- fixtures ---------------------------------------------------------------


@pytest.fixture
def srv(engine_server):
    return engine_server(ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT)


@pytest.fixture
def ws_connect(srv):
    """Factory: ws_connect(query) -> a connected websocket-client WebSocket, closed at teardown."""
    opened: list[websocket.WebSocket] = []

    def connect(query: str = WEBSOCKET, timeout: float = IO_TIMEOUT) -> websocket.WebSocket:
        ws = websocket.create_connection(srv.ws_url + srv.endpoint(query), timeout=timeout)
        opened.append(ws)
        return ws

    yield connect
    for ws in opened:
        try:
            ws.close(timeout=0.1)
        except Exception:
            pass


@pytest.fixture
def watch(srv, monkeypatch):
    return RequestWatch(monkeypatch, srv.server)


def ws_open_session(ws_connect: Callable[..., websocket.WebSocket]) -> tuple[websocket.WebSocket, str]:
    ws = ws_connect()
    value = parse_open_packet(ws_recv(ws))
    return ws, value["sid"]


def ws_upgrade(srv: Any, ws_connect: Callable[..., websocket.WebSocket], sid: str,
               complete: bool = True) -> websocket.WebSocket:
    """Open a WebSocket on polling session ``sid`` and probe it (and send the upgrade packet)."""
    ws = ws_connect(f"{WEBSOCKET}&sid={quote(sid)}")
    ws.send("2probe")
    assert ws_recv(ws) == "3probe"
    if complete:
        ws.send("5")
    return ws


def assert_ws_refused(srv: Any, ws_connect: Callable[..., websocket.WebSocket], query: str) -> None:
    """The server must close a WebSocket opened with ``query`` without opening a session."""
    try:
        ws = ws_connect(query)
    except websocket.WebSocketBadStatusException as exc:
        # Refusing the upgrade itself is a close too, as far as a client can tell.
        assert exc.status_code >= 400
    else:
        frames = ws_recv_until_close(ws)
        assert not any(isinstance(f, str) and f.startswith("0") for f in frames), frames
    assert srv.server.sessions == {}


# -- handshake --------------------------------------------------------------


class TestHandshakePolling:
    def test_successfully_opens_a_session(self, srv):
        status, body = http_request(srv, "GET", POLLING)
        assert status == 200
        value = parse_open_packet(body.decode("utf-8"))
        check_handshake(value, upgrades=["websocket"])
        assert value["sid"] in srv.server.sessions

    @pytest.mark.parametrize("query", ["transport=polling", "EIO=abc&transport=polling"])
    def test_fails_with_an_invalid_eio_query_parameter(self, srv, query):
        status, _ = http_request(srv, "GET", query)
        assert status == 400
        assert srv.server.sessions == {}

    @pytest.mark.parametrize("query", ["EIO=4", "EIO=4&transport=abc"])
    def test_fails_with_an_invalid_transport_query_parameter(self, srv, query):
        status, _ = http_request(srv, "GET", query)
        assert status == 400
        assert srv.server.sessions == {}

    @pytest.mark.parametrize("method", ["POST", "PUT"])
    def test_fails_with_an_invalid_request_method(self, srv, method):
        status, _ = http_request(srv, method, POLLING, body=b"")
        assert status == 400
        assert srv.server.sessions == {}


class TestHandshakeWebSocket:
    def test_successfully_opens_a_session(self, srv, ws_connect):
        ws = ws_connect()
        data = ws_recv(ws)
        assert isinstance(data, str)
        value = parse_open_packet(data)
        check_handshake(value, upgrades=[])
        assert value["sid"] in srv.server.sessions

    @pytest.mark.parametrize("query", ["transport=websocket", "EIO=abc&transport=websocket"])
    def test_fails_with_an_invalid_eio_query_parameter(self, srv, ws_connect, query):
        assert_ws_refused(srv, ws_connect, query)

    @pytest.mark.parametrize("query", ["EIO=4", "EIO=4&transport=abc"])
    def test_fails_with_an_invalid_transport_query_parameter(self, srv, ws_connect, query):
        assert_ws_refused(srv, ws_connect, query)


# -- message ----------------------------------------------------------------


class TestMessagePolling:
    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param("4hello", id="one-plain-text-packet"),
            pytest.param("4test1\x1e4test2\x1e4test3", id="several-plain-text-packets"),
            pytest.param("4hello\x1ebAQIDBA==", id="plain-text-and-binary-packets"),
        ],
    )
    def test_sends_and_receives_a_payload(self, srv, payload):
        sid = open_polling_session(srv)
        assert http_request(srv, "POST", polling_query(sid), body=payload) == (200, b"ok")
        assert http_request(srv, "GET", polling_query(sid)) == (200, payload.encode("utf-8"))

    def test_closes_the_session_upon_invalid_packet_format(self, srv):
        sid = open_polling_session(srv)
        try:
            status, _ = http_request(srv, "POST", polling_query(sid), body="abc")
        except (ConnectionError, http.client.HTTPException):
            pass  # dropping the request is an acceptable way to refuse it
        else:
            assert status == 400
        assert sid not in srv.server.sessions
        status, _ = http_request(srv, "GET", polling_query(sid))
        assert status == 400

    def test_closes_the_session_upon_duplicate_poll_requests(self, srv, watch):
        sid = open_polling_session(srv)
        query = polling_query(sid)
        first = gevent.spawn(http_request, srv, "GET", query)
        watch.wait_for("GET", query)  # the first poll is now parked
        status, _ = http_request(srv, "GET", query + "&t=burst")
        assert status in (400, 500)
        assert first.get(timeout=IO_TIMEOUT) == (200, b"1")
        assert sid not in srv.server.sessions
        status, _ = http_request(srv, "GET", query)
        assert status == 400

    def test_closes_the_session_upon_cancelled_polling_request(self, srv, watch):
        sid = open_polling_session(srv)
        query = polling_query(sid)
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
        try:
            sock.sendall(
                f"GET {srv.endpoint(query)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{srv.port}\r\n"
                "\r\n".encode("ascii")
            )
            watch.wait_for("GET", query)  # parked on the server
        finally:
            sock.close()  # the client gives up on the poll
        assert wait_until(lambda: sid not in srv.server.sessions), "the session is still open"
        status, _ = http_request(srv, "GET", query)
        assert status == 400


class TestMessageWebSocket:
    def test_sends_and_receives_a_plain_text_packet(self, srv, ws_connect):
        ws, _ = ws_open_session(ws_connect)
        ws.send("4hello")
        assert ws_recv(ws) == "4hello"

    def test_sends_and_receives_a_binary_packet(self, srv, ws_connect):
        ws, _ = ws_open_session(ws_connect)
        ws.send_binary(bytes([1, 2, 3, 4]))
        assert ws_recv(ws) == b"\x01\x02\x03\x04"

    def test_closes_the_session_upon_invalid_packet_format(self, srv, ws_connect):
        ws, sid = ws_open_session(ws_connect)
        ws.send("abc")
        frames = ws_recv_until_close(ws)
        assert not any(isinstance(f, str) and f.startswith("4") for f in frames), frames
        assert wait_until(lambda: sid not in srv.server.sessions), "the session is still open"


# -- heartbeat --------------------------------------------------------------


class TestHeartbeatPolling:
    def test_sends_ping_pong_packets(self, srv):
        sid = open_polling_session(srv)
        for _ in range(3):
            # Each poll waits for the next ping, at most pingInterval away.
            status, body = http_request(srv, "GET", polling_query(sid),
                                        timeout=PING_INTERVAL + IO_TIMEOUT)
            assert (status, body) == (200, b"2")
            status, body = http_request(srv, "POST", polling_query(sid), body="3")
            assert (status, body) == (200, b"ok")
        assert sid in srv.server.sessions

    def test_closes_the_session_upon_ping_timeout(self, srv):
        sid = open_polling_session(srv)
        assert sid in srv.server.sessions
        # Nobody polls, so the ping of pingInterval goes unanswered for pingTimeout.
        gevent.sleep(PING_INTERVAL + PING_TIMEOUT + HEARTBEAT_SLACK)
        assert sid not in srv.server.sessions
        status, _ = http_request(srv, "GET", polling_query(sid))
        assert status == 400


class TestHeartbeatWebSocket:
    def test_sends_ping_pong_packets(self, srv, ws_connect):
        ws, sid = ws_open_session(ws_connect)
        ws.settimeout(PING_INTERVAL + IO_TIMEOUT)
        for _ in range(3):
            assert ws_recv(ws) == "2"
            ws.send("3")
        assert sid in srv.server.sessions

    def test_closes_the_session_upon_ping_timeout(self, srv, ws_connect):
        ws, sid = ws_open_session(ws_connect)
        started = time.monotonic()
        frames = ws_recv_until_close(ws, timeout=PING_INTERVAL + PING_TIMEOUT + IO_TIMEOUT)
        elapsed = time.monotonic() - started
        # The unanswered ping, then (optionally) a close packet.
        assert frames[:1] == ["2"], frames
        assert set(frames) <= {"2", "1"}, frames
        assert elapsed >= PING_INTERVAL + PING_TIMEOUT - HEARTBEAT_SLACK, elapsed
        assert wait_until(lambda: sid not in srv.server.sessions), "the session is still open"


# -- close ------------------------------------------------------------------


class TestClosePolling:
    def test_forcefully_closes_the_session(self, srv, watch):
        sid = open_polling_session(srv)
        query = polling_query(sid)
        poll = gevent.spawn(http_request, srv, "GET", query)
        watch.wait_for("GET", query)  # the poll is parked
        assert http_request(srv, "POST", query, body="1") == (200, b"ok")
        assert poll.get(timeout=IO_TIMEOUT) == (200, b"6")
        assert sid not in srv.server.sessions
        status, _ = http_request(srv, "GET", query)
        assert status == 400


class TestCloseWebSocket:
    def test_forcefully_closes_the_session(self, srv, ws_connect):
        ws, sid = ws_open_session(ws_connect)
        ws.send("1")
        ws_recv_until_close(ws)
        assert wait_until(lambda: sid not in srv.server.sessions), "the session is still open"


# -- upgrade ----------------------------------------------------------------


class TestUpgrade:
    def test_successfully_upgrades_from_polling_to_websocket(self, srv, ws_connect):
        sid = open_polling_session(srv)
        ws = ws_upgrade(srv, ws_connect, sid, complete=False)
        # After the probe, a poll is answered with a noop packet at once.
        assert http_request(srv, "GET", polling_query(sid)) == (200, b"6")
        ws.send("5")
        ws.send("4hello")
        assert ws_recv(ws) == "4hello"
        assert srv.server.transport(sid) == "websocket"

    def test_ignores_http_requests_with_same_sid_after_upgrade(self, srv, ws_connect):
        sid = open_polling_session(srv)
        ws = ws_upgrade(srv, ws_connect, sid)
        assert wait_until(lambda: srv.server.transport(sid) == "websocket"), \
            srv.server.transport(sid)
        status, _ = http_request(srv, "GET", polling_query(sid))
        assert status == 400
        ws.send("4hello")
        assert ws_recv(ws) == "4hello"

    def test_ignores_websocket_connection_with_same_sid_after_upgrade(self, srv, ws_connect):
        sid = open_polling_session(srv)
        ws = ws_upgrade(srv, ws_connect, sid)
        assert wait_until(lambda: srv.server.transport(sid) == "websocket"), \
            srv.server.transport(sid)
        try:
            ws2 = ws_connect(f"{WEBSOCKET}&sid={quote(sid)}")
        except websocket.WebSocketBadStatusException as exc:
            assert exc.status_code >= 400
        else:
            ws2.send("2probe")  # must not be answered: the session has its WebSocket
            frames = ws_recv_until_close(ws2)
            assert "3probe" not in frames, frames
        ws.send("4hello")
        assert ws_recv(ws) == "4hello"
        assert srv.server.transport(sid) == "websocket"
