"""Socket.IO v5 conformance: the official v5 test suite, ported to pytest, against a live server.

Source of the cases: socketio/socket.io, docs/socket.io-protocol/v5-test-suite/
test-suite.js, with the expected server described at the end of
docs/socket.io-protocol/v5-current.md. That suite targets a Socket.IO server
mounted on /socket.io/ and configured with:

- pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1 000 000 bytes,
  connectTimeout 1000 ms;
- two namespaces, "/" and "/custom"; any other one is refused;
- on every namespace connection, the server emits ``auth`` carrying the auth
  payload of the CONNECT packet (``{}`` when there was none);
- in "/", a ``message`` event is echoed back as ``message-back`` with the same
  arguments, and ``message-with-ack`` is acknowledged with its own arguments.

The ``reference`` fixture builds that server with geventsio's python-socketio
style API. Every case of the suite appears below, in the suite's order: first
its Engine.IO section (played against this Socket.IO server on /socket.io/),
then its Socket.IO section. The clients work at the wire level: raw HTTP
long-polling with http.client, raw WebSocket frames with websocket-client
(conftest monkey-patched both for gevent). Frames are compared exactly.

Two deliberate differences from the JavaScript suite:

- The suite's clients never answer pings, and its reference server closes a
  session that joins no namespace within 1 s. Here, helpers that skip pings
  answer them, so a slow run cannot turn into a ping timeout. The Engine.IO
  cases never join a namespace, so they run against the same server with a
  long connect timeout (its three-round heartbeat case alone lasts ~0.9 s);
  the Socket.IO cases use a short one, CONNECT_TIMEOUT, to test it quickly.
- Where the suite leans on timing, these tests wait for the server state
  itself (a parked poll, a closed session) within a bounded deadline.

After the suite's cases come a few marked "beyond the suite": the same cases
over HTTP long-polling, and the exchanges that the protocol document shows but
the suite does not exercise (server-to-client acknowledgements, refusals by a
connect handler, disconnection by the server).
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import re
import time
from typing import Any, Callable
from urllib.parse import quote

import gevent
import pytest
import websocket

import geventsio

PING_INTERVAL = 0.3  # seconds: the handshake must announce 300
PING_TIMEOUT = 0.2  # seconds: the handshake must announce 200
MAX_PAYLOAD = 1_000_000
CONNECT_TIMEOUT = 0.5  # seconds, for the Socket.IO cases
ENGINE_CASES_CONNECT_TIMEOUT = 30.0  # never reached by the Engine.IO cases

IO_TIMEOUT = 2.0  # how long to wait for something the server should do at once
SLACK = 0.1  # scheduling margin on deadlines derived from the options

POLLING = "EIO=4&transport=polling"
WEBSOCKET = "EIO=4&transport=websocket"
RECORD_SEPARATOR = "\x1e"

HANDSHAKE_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}

PLACEHOLDERS_0_1 = '{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}'


# -- the reference server ------------------------------------------------------


@dataclasses.dataclass
class Reference:
    """The suite's reference server, running, plus what its handlers observed."""

    sio: geventsio.Server
    running: Any  # conftest's RunningServer
    # ("connect", namespace, sid, auth) and ("disconnect", namespace, sid, reason)
    log: list[tuple[str, str, str, Any]]

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def sessions(self) -> dict:
        """The open Engine.IO sessions, by Engine.IO sid."""
        return self.sio.eio.sessions

    def endpoint(self, query: str) -> str:
        return self.running.endpoint(query)

    def ws_url(self, query: str) -> str:
        return self.running.ws_url + self.running.endpoint(query)

    def logged(self, kind: str, namespace: str) -> list[tuple[str, Any]]:
        """(sid, auth-or-reason) of each connect or disconnect seen in ``namespace``."""
        return [(sid, extra) for k, nsp, sid, extra in self.log if k == kind and nsp == namespace]


def build_reference_server(connect_timeout: float) -> tuple[geventsio.Server, list]:
    """The server the suite expects, plus handlers used only by the cases beyond the suite."""
    sio = geventsio.Server(
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        max_http_buffer_size=MAX_PAYLOAD,
        connect_timeout=connect_timeout,
        namespaces=["/", "/custom"],
    )
    log: list[tuple[str, str, str, Any]] = []

    def greet(namespace: str) -> Callable[..., Any]:
        def connect(sid: str, environ: dict, auth: Any) -> None:
            log.append(("connect", namespace, sid, auth))
            # The JavaScript server's handshake.auth is {} when CONNECT had no payload.
            sio.emit("auth", {} if auth is None else auth, to=sid, namespace=namespace)

        return connect

    def record_disconnect(namespace: str) -> Callable[..., Any]:
        def disconnect(sid: str, reason: str) -> None:
            log.append(("disconnect", namespace, sid, reason))

        return disconnect

    # What the suite relies on.
    for namespace in ("/", "/custom"):
        sio.on("connect", greet(namespace), namespace=namespace)
        sio.on("disconnect", record_disconnect(namespace), namespace=namespace)

    @sio.on("message")
    def message(sid: str, *args: Any) -> None:
        sio.emit("message-back", args, to=sid)

    @sio.on("message-with-ack")
    def message_with_ack(sid: str, *args: Any) -> tuple:
        return args

    # Beyond the suite: the protocol document's other exchanges.
    for namespace in ("/", "/custom"):
        register_server_initiated_handlers(sio, namespace)

    @sio.on("connect", namespace="/private")
    def private_connect(sid: str, environ: dict, auth: Any) -> None:
        if isinstance(auth, dict) and auth.get("with_data"):
            raise geventsio.ConnectionRefusedError("Not authorized", {"retry": False})
        raise geventsio.ConnectionRefusedError("Not authorized")

    return sio, log


def register_server_initiated_handlers(sio: geventsio.Server, namespace: str) -> None:
    """Events that make the server ask for acknowledgements, or disconnect the client."""

    def call_me(sid: str, *args: Any) -> None:
        # Blocks this handler until the client acknowledges "question".
        value = sio.call("question", args, to=sid, namespace=namespace, timeout=IO_TIMEOUT)
        sio.emit("answer", value, to=sid, namespace=namespace)

    def ask_with_callback(sid: str, *args: Any) -> None:
        def on_ack(*ack_args: Any) -> None:
            sio.emit("answer", ack_args, to=sid, namespace=namespace)

        sio.emit("question", args, to=sid, namespace=namespace, callback=on_ack)

    def ack_nothing(sid: str, *args: Any) -> None:
        return None

    def disconnect_me(sid: str) -> None:
        sio.disconnect(sid, namespace=namespace)

    sio.on("call-me", call_me, namespace=namespace)
    sio.on("ask-with-callback", ask_with_callback, namespace=namespace)
    sio.on("ack-nothing", ack_nothing, namespace=namespace)
    sio.on("disconnect-me", disconnect_me, namespace=namespace)


@pytest.fixture
def start_reference(serve_app) -> Callable[[float], Reference]:
    def start(connect_timeout: float) -> Reference:
        sio, log = build_reference_server(connect_timeout)
        return Reference(sio, serve_app(sio, path="socket.io"), log)

    return start


@pytest.fixture
def ref(start_reference) -> Reference:
    """The reference server, for the Socket.IO cases."""
    return start_reference(CONNECT_TIMEOUT)


@pytest.fixture
def eref(start_reference) -> Reference:
    """The reference server, for the Engine.IO cases (which never join a namespace)."""
    return start_reference(ENGINE_CASES_CONNECT_TIMEOUT)


@pytest.fixture
def clients():
    """Factory: clients(url) -> a connected WebSocket, closed at teardown."""
    opened: list[websocket.WebSocket] = []

    def connect(url: str) -> websocket.WebSocket:
        ws = websocket.create_connection(url, timeout=IO_TIMEOUT)
        opened.append(ws)
        return ws

    yield connect
    for ws in opened:
        try:
            ws.close(timeout=0.1)
        except Exception:
            pass


# -- waiting -------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], deadline: float = IO_TIMEOUT) -> bool:
    """Poll server state every 10 ms until ``predicate()`` holds or ``deadline`` passes."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() >= end:
            return bool(predicate())
        gevent.sleep(0.01)
    return True


def assert_session_closed(ref: Reference, eio_sid: str, deadline: float = IO_TIMEOUT) -> None:
    assert wait_until(lambda: eio_sid not in ref.sessions, deadline), \
        f"Engine.IO session {eio_sid} is still open"


# -- HTTP long-polling client ---------------------------------------------------


def http_request(ref: Reference, method: str, query: str, body: str | None = None,
                 timeout: float = IO_TIMEOUT) -> tuple[int, bytes]:
    """One request on a fresh connection; (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", ref.port, timeout=timeout)
    try:
        headers = {}
        data = None
        if body is not None:
            data = body.encode("utf-8")
            headers["Content-Type"] = "text/plain;charset=UTF-8"
        conn.request(method, ref.endpoint(query), body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def sid_query(transport_query: str, eio_sid: str) -> str:
    return f"{transport_query}&sid={quote(eio_sid)}"


def parse_open(text: str) -> dict:
    assert text.startswith("0"), f"not an Engine.IO open packet: {text!r}"
    value = json.loads(text[1:])
    assert isinstance(value, dict), value
    return value


def assert_handshake(value: dict, upgrades: list[str]) -> None:
    assert set(value) == HANDSHAKE_KEYS, value
    assert isinstance(value["sid"], str) and value["sid"]
    assert value["upgrades"] == upgrades
    assert value["pingInterval"] == 300
    assert value["pingTimeout"] == 200
    assert value["maxPayload"] == MAX_PAYLOAD


def polling_open(ref: Reference) -> str:
    status, body = http_request(ref, "GET", POLLING)
    assert status == 200, body
    return parse_open(body.decode("utf-8"))["sid"]


def polling_send(ref: Reference, eio_sid: str, payload: str) -> None:
    assert http_request(ref, "POST", sid_query(POLLING, eio_sid), payload) == (200, b"ok")


def polling_receive(ref: Reference, eio_sid: str, count: int) -> list[str]:
    """Poll until ``count`` packets other than pings have arrived; pings get a pong.

    Packets are returned as they travel in a polling payload (binary ones as
    ``b`` + base64).
    """
    packets: list[str] = []
    end = time.monotonic() + IO_TIMEOUT + PING_INTERVAL
    while len(packets) < count:
        assert time.monotonic() < end, f"only {packets!r} arrived"
        status, body = http_request(ref, "GET", sid_query(POLLING, eio_sid),
                                    timeout=IO_TIMEOUT + PING_INTERVAL)
        assert status == 200, (status, body, packets)
        for packet in body.decode("utf-8").split(RECORD_SEPARATOR):
            if packet == "2":
                polling_send(ref, eio_sid, "3")
            else:
                packets.append(packet)
    assert len(packets) == count, f"more packets than expected: {packets!r}"
    return packets


def b64_record(data: bytes) -> str:
    return "b" + base64.b64encode(data).decode("ascii")


# -- WebSocket client -----------------------------------------------------------


def ws_recv(ws: websocket.WebSocket) -> str | bytes:
    """The next data frame exactly as sent: str (text frame) or bytes (binary frame)."""
    opcode, frame = ws.recv_data_frame()
    assert opcode != websocket.ABNF.OPCODE_CLOSE, "the server closed the WebSocket"
    if opcode == websocket.ABNF.OPCODE_TEXT:
        return frame.data.decode("utf-8")
    assert opcode == websocket.ABNF.OPCODE_BINARY, opcode
    return bytes(frame.data)


def ws_recv_packets(ws: websocket.WebSocket, count: int) -> list[str | bytes]:
    """The next ``count`` frames that are not pings (each ping is answered)."""
    packets: list[str | bytes] = []
    while len(packets) < count:
        frame = ws_recv(ws)
        if frame == "2":
            ws.send("3")
        else:
            packets.append(frame)
    return packets


def ws_until_closed(ws: websocket.WebSocket, timeout: float = IO_TIMEOUT,
                    answer_pings: bool = False) -> list[str | bytes]:
    """Read until the server closes the connection; the data frames received meanwhile."""
    ws.settimeout(timeout)
    end = time.monotonic() + timeout
    frames: list[str | bytes] = []
    while True:
        if time.monotonic() >= end:
            pytest.fail(f"the WebSocket is still open after {timeout}s; received {frames!r}")
        try:
            opcode, frame = ws.recv_data_frame()
        except websocket.WebSocketTimeoutException:
            pytest.fail(f"the WebSocket is still open after {timeout}s; received {frames!r}")
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return frames
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return frames
        data: str | bytes = (frame.data.decode("utf-8") if opcode == websocket.ABNF.OPCODE_TEXT
                             else bytes(frame.data))
        frames.append(data)
        if answer_pings and data == "2":
            try:
                ws.send("3")
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                return frames


def assert_no_socketio_frames(frames: list[str | bytes]) -> None:
    """Before a close, only Engine.IO pings and the close packet may arrive."""
    assert all(f in ("1", "2") for f in frames), frames


def ws_open(ref: Reference, clients: Callable[..., websocket.WebSocket],
            query: str = WEBSOCKET) -> tuple[websocket.WebSocket, str]:
    """A WebSocket session: the connection and its Engine.IO sid."""
    ws = clients(ref.ws_url(query))
    value = parse_open(ws_recv(ws))
    return ws, value["sid"]


def parse_connect(frame: str | bytes, namespace_prefix: str) -> str:
    """The Socket.IO sid in a CONNECT answer ``4 0 <namespace,> {"sid": ...}``."""
    head = "40" + namespace_prefix
    assert isinstance(frame, str) and frame.startswith(head), frame
    payload = json.loads(frame[len(head):])
    assert isinstance(payload, dict) and set(payload) == {"sid"}, payload
    assert isinstance(payload["sid"], str) and payload["sid"]
    return payload["sid"]


def socketio_connect(ref: Reference, clients: Callable[..., websocket.WebSocket]
                     ) -> tuple[websocket.WebSocket, str]:
    """Join "/" over WebSocket, taking the CONNECT answer and the "auth" event."""
    ws, eio_sid = ws_open(ref, clients)
    ws.send("40")
    parse_connect(ws_recv(ws), "")
    assert ws_recv(ws) == '42["auth",{}]'
    return ws, eio_sid


def assert_refused_websocket(ref: Reference, clients: Callable[..., websocket.WebSocket],
                             query: str) -> None:
    """The server must close a WebSocket opened with ``query``, with no session opened."""
    try:
        ws = clients(ref.ws_url(query))
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code >= 400  # refused before the upgrade: closed as well
    else:
        frames = ws_until_closed(ws)
        assert not any(isinstance(f, str) and f.startswith("0") for f in frames), frames
    assert ref.sessions == {}


# == The suite, part 1: Engine.IO protocol ===========================================


class TestEngineHandshakePolling:
    def test_opens_a_session(self, eref):
        status, body = http_request(eref, "GET", POLLING)
        assert status == 200
        value = parse_open(body.decode("utf-8"))
        assert_handshake(value, upgrades=["websocket"])
        assert value["sid"] in eref.sessions

    @pytest.mark.parametrize("query", ["transport=polling", "EIO=abc&transport=polling"])
    def test_rejects_an_invalid_eio_parameter(self, eref, query):
        assert http_request(eref, "GET", query)[0] == 400
        assert eref.sessions == {}

    @pytest.mark.parametrize("query", ["EIO=4", "EIO=4&transport=abc"])
    def test_rejects_an_invalid_transport_parameter(self, eref, query):
        assert http_request(eref, "GET", query)[0] == 400
        assert eref.sessions == {}

    @pytest.mark.parametrize("method", ["POST", "PUT"])
    def test_rejects_an_invalid_method(self, eref, method):
        assert http_request(eref, method, POLLING, body="")[0] == 400
        assert eref.sessions == {}


class TestEngineHandshakeWebSocket:
    def test_opens_a_session(self, eref, clients):
        ws = clients(eref.ws_url(WEBSOCKET))
        frame = ws_recv(ws)
        assert isinstance(frame, str)
        value = parse_open(frame)
        assert_handshake(value, upgrades=[])
        assert value["sid"] in eref.sessions

    @pytest.mark.parametrize("query", ["transport=websocket", "EIO=abc&transport=websocket"])
    def test_rejects_an_invalid_eio_parameter(self, eref, clients, query):
        assert_refused_websocket(eref, clients, query)

    @pytest.mark.parametrize("query", ["EIO=4", "EIO=4&transport=abc"])
    def test_rejects_an_invalid_transport_parameter(self, eref, clients, query):
        assert_refused_websocket(eref, clients, query)


class TestEngineHeartbeatPolling:
    def test_exchanges_ping_and_pong(self, eref):
        eio_sid = polling_open(eref)
        for _ in range(3):
            # The poll returns with the next ping, at most pingInterval away.
            assert http_request(eref, "GET", sid_query(POLLING, eio_sid),
                                timeout=PING_INTERVAL + IO_TIMEOUT) == (200, b"2")
            polling_send(eref, eio_sid, "3")
        assert eio_sid in eref.sessions

    def test_closes_the_session_upon_ping_timeout(self, eref):
        started = time.monotonic()
        eio_sid = polling_open(eref)
        # Nobody polls: the ping sent after pingInterval stays unanswered for pingTimeout.
        assert_session_closed(eref, eio_sid, PING_INTERVAL + PING_TIMEOUT + IO_TIMEOUT)
        assert time.monotonic() - started >= PING_INTERVAL + PING_TIMEOUT - SLACK
        assert http_request(eref, "GET", sid_query(POLLING, eio_sid))[0] == 400


class TestEngineHeartbeatWebSocket:
    def test_exchanges_ping_and_pong(self, eref, clients):
        ws, eio_sid = ws_open(eref, clients)
        ws.settimeout(PING_INTERVAL + IO_TIMEOUT)
        for _ in range(3):
            assert ws_recv(ws) == "2"
            ws.send("3")
        assert eio_sid in eref.sessions

    def test_closes_the_session_upon_ping_timeout(self, eref, clients):
        started = time.monotonic()
        ws, eio_sid = ws_open(eref, clients)
        frames = ws_until_closed(ws, PING_INTERVAL + PING_TIMEOUT + IO_TIMEOUT)
        assert time.monotonic() - started >= PING_INTERVAL + PING_TIMEOUT - SLACK
        assert frames[:1] == ["2"], frames
        assert_no_socketio_frames(frames)
        assert_session_closed(eref, eio_sid)


class TestEngineClose:
    def test_polling_client_closes_the_session(self, eref):
        eio_sid = polling_open(eref)
        query = sid_query(POLLING, eio_sid)
        poll = gevent.spawn(http_request, eref, "GET", query)
        assert wait_until(lambda: eref.sessions[eio_sid].polling_get_active), "the poll never parked"
        polling_send(eref, eio_sid, "1")
        assert poll.get(timeout=IO_TIMEOUT) == (200, b"6")
        assert eio_sid not in eref.sessions
        assert http_request(eref, "GET", query)[0] == 400

    def test_websocket_client_closes_the_session(self, eref, clients):
        ws, eio_sid = ws_open(eref, clients)
        ws.send("1")
        ws_until_closed(ws)
        assert_session_closed(eref, eio_sid)


class TestEngineUpgrade:
    def upgrade(self, eref: Reference, clients: Callable[..., websocket.WebSocket],
                eio_sid: str) -> websocket.WebSocket:
        ws = clients(eref.ws_url(sid_query(WEBSOCKET, eio_sid)))
        ws.send("2probe")
        assert ws_recv(ws) == "3probe"
        ws.send("5")
        assert wait_until(lambda: eref.sio.eio.transport(eio_sid) == "websocket"), \
            eref.sio.eio.transport(eio_sid)
        return ws

    def test_upgrades_from_polling_to_websocket(self, eref, clients):
        eio_sid = polling_open(eref)
        ws = self.upgrade(eref, clients, eio_sid)
        ws.settimeout(PING_INTERVAL + IO_TIMEOUT)
        assert ws_recv(ws) == "2"  # the heartbeat moved to the WebSocket
        ws.send("3")
        assert eio_sid in eref.sessions

    def test_refuses_polling_requests_after_the_upgrade(self, eref, clients):
        eio_sid = polling_open(eref)
        self.upgrade(eref, clients, eio_sid)
        assert http_request(eref, "GET", sid_query(POLLING, eio_sid))[0] == 400
        assert eref.sio.eio.transport(eio_sid) == "websocket"

    def test_refuses_a_second_websocket_after_the_upgrade(self, eref, clients):
        eio_sid = polling_open(eref)
        self.upgrade(eref, clients, eio_sid)
        try:
            ws2 = clients(eref.ws_url(sid_query(WEBSOCKET, eio_sid)))
        except websocket.WebSocketBadStatusException as exc:
            assert exc.status_code >= 400
        else:
            ws2.send("2probe")  # must not be answered
            frames = ws_until_closed(ws2)
            assert "3probe" not in frames, frames
        assert eref.sio.eio.transport(eio_sid) == "websocket"


# == The suite, part 2: Socket.IO protocol ===========================================


class TestConnect:
    def test_connects_to_the_main_namespace(self, ref, clients):
        ws, eio_sid = ws_open(ref, clients)
        ws.send("40")
        sid = parse_connect(ws_recv(ws), "")
        assert ws_recv(ws) == '42["auth",{}]'
        # v5: the Socket.IO sid is the namespace socket's own, not the Engine.IO one.
        assert sid != eio_sid
        assert ref.logged("connect", "/") == [(sid, None)]

    def test_connects_to_the_main_namespace_with_a_payload(self, ref, clients):
        ws, _ = ws_open(ref, clients)
        ws.send('40{"token":"123"}')
        sid = parse_connect(ws_recv(ws), "")
        assert ws_recv(ws) == '42["auth",{"token":"123"}]'
        assert ref.logged("connect", "/") == [(sid, {"token": "123"})]

    def test_connects_to_a_custom_namespace(self, ref, clients):
        ws, eio_sid = ws_open(ref, clients)
        ws.send("40/custom,")
        sid = parse_connect(ws_recv(ws), "/custom,")
        assert ws_recv(ws) == '42/custom,["auth",{}]'
        assert sid != eio_sid
        assert ref.logged("connect", "/custom") == [(sid, None)]
        assert ref.logged("connect", "/") == []  # no implicit main namespace in v5

    def test_connects_to_a_custom_namespace_with_a_payload(self, ref, clients):
        ws, _ = ws_open(ref, clients)
        ws.send('40/custom,{"token":"abc"}')
        sid = parse_connect(ws_recv(ws), "/custom,")
        assert ws_recv(ws) == '42/custom,["auth",{"token":"abc"}]'
        assert ref.logged("connect", "/custom") == [(sid, {"token": "abc"})]

    def test_refuses_an_unknown_namespace(self, ref, clients):
        ws, eio_sid = ws_open(ref, clients)
        ws.send("40/random")
        assert ws_recv(ws) == '44/random,{"message":"Invalid namespace"}'
        assert eio_sid in ref.sessions

    def test_closes_upon_an_invalid_handshake(self, ref, clients):
        ws, eio_sid = ws_open(ref, clients)
        ws.send("4abc")
        assert_no_socketio_frames(ws_until_closed(ws))
        assert_session_closed(ref, eio_sid)

    def test_closes_when_no_handshake_arrives(self, ref, clients):
        started = time.monotonic()
        ws, eio_sid = ws_open(ref, clients)
        # Pings are answered, so only the connect timeout can end the session.
        frames = ws_until_closed(ws, CONNECT_TIMEOUT + IO_TIMEOUT, answer_pings=True)
        assert time.monotonic() - started >= CONNECT_TIMEOUT - SLACK
        assert_no_socketio_frames(frames)
        assert_session_closed(ref, eio_sid)


class TestDisconnect:
    def test_disconnects_from_the_main_namespace(self, ref, clients):
        ws, eio_sid = socketio_connect(ref, clients)
        (sid, _), = ref.logged("connect", "/")
        ws.send("41")
        ws.settimeout(PING_INTERVAL + IO_TIMEOUT)
        # Nothing answers a DISCONNECT; the Engine.IO session lives on.
        assert ws_recv(ws) == "2"
        assert eio_sid in ref.sessions
        assert wait_until(lambda: ref.logged("disconnect", "/") != [])
        assert ref.logged("disconnect", "/") == [(sid, ref.sio.reason.CLIENT_DISCONNECT)]

    def test_connects_then_disconnects_from_a_custom_namespace(self, ref, clients):
        ws, _ = socketio_connect(ref, clients)
        ws.settimeout(PING_INTERVAL + IO_TIMEOUT)
        assert ws_recv(ws) == "2"  # the suite waits for one ping first
        ws.send("3")
        ws.send("40/custom")
        custom_sid = parse_connect(ws_recv(ws), "/custom,")
        assert ws_recv(ws) == '42/custom,["auth",{}]'
        ws.send("41/custom")
        ws.send('42["message","message to main namespace"]')
        assert ws_recv_packets(ws, 1) == ['42["message-back","message to main namespace"]']
        assert wait_until(lambda: ref.logged("disconnect", "/custom") != [])
        assert ref.logged("disconnect", "/custom") == [(custom_sid, ref.sio.reason.CLIENT_DISCONNECT)]
        assert ref.logged("disconnect", "/") == []


class TestMessage:
    def test_plain_text_event(self, ref, clients):
        ws, _ = socketio_connect(ref, clients)
        ws.send('42["message",1,"2",{"3":[true]}]')
        assert ws_recv_packets(ws, 1) == ['42["message-back",1,"2",{"3":[true]}]']

    def test_event_with_binary_attachments(self, ref, clients):
        ws, _ = socketio_connect(ref, clients)
        ws.send(f'452-["message",{PLACEHOLDERS_0_1}]')
        ws.send_binary(bytes([1, 2, 3]))
        ws.send_binary(bytes([4, 5, 6]))
        assert ws_recv_packets(ws, 3) == [
            f'452-["message-back",{PLACEHOLDERS_0_1}]',
            b"\x01\x02\x03",
            b"\x04\x05\x06",
        ]

    def test_plain_text_event_with_an_ack(self, ref, clients):
        ws, _ = socketio_connect(ref, clients)
        ws.send('42456["message-with-ack",1,"2",{"3":[false]}]')
        assert ws_recv_packets(ws, 1) == ['43456[1,"2",{"3":[false]}]']

    def test_event_with_binary_attachments_and_an_ack(self, ref, clients):
        ws, _ = socketio_connect(ref, clients)
        ws.send(f'452-789["message-with-ack",{PLACEHOLDERS_0_1}]')
        ws.send_binary(bytes([1, 2, 3]))
        ws.send_binary(bytes([4, 5, 6]))
        assert ws_recv_packets(ws, 3) == [
            f"462-789[{PLACEHOLDERS_0_1}]",
            b"\x01\x02\x03",
            b"\x04\x05\x06",
        ]

    @pytest.mark.parametrize(
        "frame",
        [
            pytest.param("4abc", id="unknown-packet-type"),
            pytest.param("42{}", id="invalid-payload-format"),
            pytest.param('42abc["message-with-ack",1,"2",{"3":[false]}]', id="invalid-ack-id"),
        ],
    )
    def test_closes_upon_an_invalid_packet(self, ref, clients, frame):
        ws, eio_sid = socketio_connect(ref, clients)
        (sid, _), = ref.logged("connect", "/")
        ws.send(frame)
        assert_no_socketio_frames(ws_until_closed(ws))
        assert_session_closed(ref, eio_sid)
        # The socket is cleaned up (the reason given is the server's own business).
        assert wait_until(lambda: ref.logged("disconnect", "/") != [])
        assert [s for s, _ in ref.logged("disconnect", "/")] == [sid]


# == Beyond the suite ==================================================================


class TestOverPolling:
    """The suite's main-namespace cases, over HTTP long-polling instead of WebSocket."""

    def connect(self, ref: Reference, payload: str = "40", auth_frame: str = '42["auth",{}]') -> str:
        eio_sid = polling_open(ref)
        polling_send(ref, eio_sid, payload)
        connect_answer, auth = polling_receive(ref, eio_sid, 2)
        parse_connect(connect_answer, "")
        assert auth == auth_frame
        return eio_sid

    def test_connects_to_the_main_namespace(self, ref):
        self.connect(ref)

    def test_connects_to_the_main_namespace_with_a_payload(self, ref):
        self.connect(ref, '40{"token":"123"}', '42["auth",{"token":"123"}]')

    def test_connects_to_a_custom_namespace(self, ref):
        eio_sid = polling_open(ref)
        polling_send(ref, eio_sid, "40/custom,")
        connect_answer, auth = polling_receive(ref, eio_sid, 2)
        parse_connect(connect_answer, "/custom,")
        assert auth == '42/custom,["auth",{}]'

    def test_refuses_an_unknown_namespace(self, ref):
        eio_sid = polling_open(ref)
        polling_send(ref, eio_sid, "40/random")
        assert polling_receive(ref, eio_sid, 1) == ['44/random,{"message":"Invalid namespace"}']

    def test_plain_text_event_and_ack(self, ref):
        eio_sid = self.connect(ref)
        polling_send(ref, eio_sid, RECORD_SEPARATOR.join([
            '42["message",1,"2",{"3":[true]}]',
            '42456["message-with-ack",1,"2",{"3":[false]}]',
        ]))
        assert polling_receive(ref, eio_sid, 2) == [
            '42["message-back",1,"2",{"3":[true]}]',
            '43456[1,"2",{"3":[false]}]',
        ]

    def test_binary_event_and_ack(self, ref):
        eio_sid = self.connect(ref)
        one, two = b64_record(bytes([1, 2, 3])), b64_record(bytes([4, 5, 6]))
        polling_send(ref, eio_sid, RECORD_SEPARATOR.join([
            f'452-["message",{PLACEHOLDERS_0_1}]', one, two,
            f'452-789["message-with-ack",{PLACEHOLDERS_0_1}]', one, two,
        ]))
        assert polling_receive(ref, eio_sid, 6) == [
            f'452-["message-back",{PLACEHOLDERS_0_1}]', "bAQID", "bBAUG",
            f"462-789[{PLACEHOLDERS_0_1}]", "bAQID", "bBAUG",
        ]

    def test_disconnects_from_the_main_namespace(self, ref):
        eio_sid = self.connect(ref)
        polling_send(ref, eio_sid, "41")
        assert wait_until(lambda: ref.logged("disconnect", "/") != [])
        assert [r for _, r in ref.logged("disconnect", "/")] == [ref.sio.reason.CLIENT_DISCONNECT]
        assert eio_sid in ref.sessions

    @pytest.mark.parametrize("frame", ["4abc", "42{}", '42abc["message-with-ack",1]'])
    def test_closes_upon_an_invalid_packet(self, ref, frame):
        eio_sid = self.connect(ref)
        query = sid_query(POLLING, eio_sid)
        status, _ = http_request(ref, "POST", query, frame)
        assert status in (200, 400), status
        assert_session_closed(ref, eio_sid)
        assert http_request(ref, "GET", query)[0] == 400

    def test_closes_when_no_handshake_arrives(self, ref):
        started = time.monotonic()
        eio_sid = polling_open(ref)
        query = sid_query(POLLING, eio_sid)
        received: list[str] = []
        while True:
            assert time.monotonic() - started < CONNECT_TIMEOUT + IO_TIMEOUT, received
            status, body = http_request(ref, "GET", query, timeout=IO_TIMEOUT + PING_INTERVAL)
            if status == 400:
                break
            assert status == 200, (status, body)
            packets = body.decode("utf-8").split(RECORD_SEPARATOR)
            received += packets
            if "1" in packets:  # the server's close packet
                break
            if "2" in packets:
                # The connect timeout may close the session between the ping
                # and this pong: then the pong is refused as for any closed sid.
                status, _ = http_request(ref, "POST", query, "3")
                assert status in (200, 400)
        assert time.monotonic() - started >= CONNECT_TIMEOUT - SLACK
        assert set(received) <= {"1", "2"}, received
        assert_session_closed(ref, eio_sid)
        assert http_request(ref, "GET", query)[0] == 400


class TestServerInitiated:
    """Exchanges from the protocol document that the suite leaves out."""

    def join(self, ref: Reference, clients: Callable[..., websocket.WebSocket],
             namespace: str) -> tuple[websocket.WebSocket, str]:
        """Join ``namespace`` over WebSocket; the connection and the wire prefix of its packets."""
        if namespace == "/":
            ws, _ = socketio_connect(ref, clients)
            return ws, ""
        ws, _ = ws_open(ref, clients)
        prefix = namespace + ","
        ws.send("40" + prefix)
        parse_connect(ws_recv(ws), prefix)
        assert ws_recv(ws) == f'42{prefix}["auth",{{}}]'
        return ws, prefix

    @staticmethod
    def question_id(frame: str | bytes, prefix: str, args: str) -> str:
        m = re.fullmatch(rf'42{re.escape(prefix)}([0-9]+)\["question"{re.escape(args)}\]', frame)
        assert m is not None, f"not an EVENT with an ack id: {frame!r}"
        return m.group(1)

    @pytest.mark.parametrize("namespace", ["/", "/custom"])
    def test_call_gets_the_client_ack(self, ref, clients, namespace):
        ws, p = self.join(ref, clients, namespace)
        ws.send(f'42{p}["call-me","foo"]')
        ack_id = self.question_id(ws_recv_packets(ws, 1)[0], p, ',"foo"')
        ws.send(f'43{p}{ack_id}["bar",2]')
        assert ws_recv_packets(ws, 1) == [f'42{p}["answer","bar",2]']

    def test_call_gets_an_empty_client_ack(self, ref, clients):
        ws, p = self.join(ref, clients, "/")
        ws.send('42["call-me"]')
        ack_id = self.question_id(ws_recv_packets(ws, 1)[0], p, "")
        ws.send(f"43{ack_id}[]")
        assert ws_recv_packets(ws, 1) == ['42["answer"]']

    @pytest.mark.parametrize("namespace", ["/", "/custom"])
    def test_call_gets_a_binary_client_ack(self, ref, clients, namespace):
        ws, p = self.join(ref, clients, namespace)
        ws.send(f'42{p}["call-me","foo"]')
        ack_id = self.question_id(ws_recv_packets(ws, 1)[0], p, ',"foo"')
        ws.send(f'461-{p}{ack_id}[{{"_placeholder":true,"num":0}}]')
        ws.send_binary(bytes([1, 2, 3, 4]))
        assert ws_recv_packets(ws, 2) == [
            f'451-{p}["answer",{{"_placeholder":true,"num":0}}]',
            b"\x01\x02\x03\x04",
        ]

    def test_emit_callback_gets_the_client_ack(self, ref, clients):
        ws, p = self.join(ref, clients, "/custom")
        ws.send(f'42{p}["ask-with-callback","foo"]')
        ack_id = self.question_id(ws_recv_packets(ws, 1)[0], p, ',"foo"')
        ws.send(f'43{p}{ack_id}["bar"]')
        assert ws_recv_packets(ws, 1) == [f'42{p}["answer","bar"]']

    @pytest.mark.parametrize("namespace", ["/", "/custom"])
    def test_handler_returning_none_sends_an_empty_ack(self, ref, clients, namespace):
        ws, p = self.join(ref, clients, namespace)
        ws.send(f'42{p}12["ack-nothing","foo"]')
        assert ws_recv_packets(ws, 1) == [f"43{p}12[]"]

    def test_connect_handler_refuses(self, ref, clients):
        ws, eio_sid = ws_open(ref, clients)
        ws.send("40/private,")
        assert ws_recv(ws) == '44/private,{"message":"Not authorized"}'
        ws.send('40/private,{"with_data":true}')
        assert ws_recv(ws) == '44/private,{"message":"Not authorized","data":{"retry":false}}'
        # A refusal ends no session: the client may still join another namespace.
        ws.send("40")
        parse_connect(ws_recv(ws), "")
        assert ws_recv(ws) == '42["auth",{}]'
        assert eio_sid in ref.sessions

    @pytest.mark.parametrize("namespace", ["/", "/custom"])
    def test_server_disconnects_the_client(self, ref, clients, namespace):
        ws, p = self.join(ref, clients, namespace)
        (sid, _), = ref.logged("connect", namespace)
        ws.send(f'42{p}["disconnect-me"]')
        assert ws_recv_packets(ws, 1) == [f"41{p}"]
        assert wait_until(lambda: ref.logged("disconnect", namespace) != [])
        assert ref.logged("disconnect", namespace) == [(sid, ref.sio.reason.SERVER_DISCONNECT)]
