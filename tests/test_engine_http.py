"""Engine.IO server over real sockets: HTTP errors, limits, CORS, keep-alive, the server API,
upgrade edge cases and WSGIApp routing.

Clients are http.client and websocket-client (both cooperative under gevent's
monkey patching done in conftest). Synchronisation is by blocking reads with
timeouts, gevent Events set by handlers, or bounded waits on server state.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import struct
from dataclasses import dataclass
from typing import Any, Callable

import gevent
import pytest
import websocket
from gevent.event import Event
from websocket import ABNF

TIMEOUT = 5


# -- helpers --------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def request(rs, method: str = "GET", query: str = "EIO=4&transport=polling", body: Any = None,
            headers: dict | None = None, path: str | None = None,
            conn: http.client.HTTPConnection | None = None) -> Reply:
    """One HTTP request; on a fresh connection unless ``conn`` is given."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)
    try:
        conn.request(method, path if path is not None else rs.endpoint(query), body=body,
                     headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, resp.headers, data)
    finally:
        if own:
            conn.close()


def handshake(rs, **kwargs: Any) -> tuple[str, dict, Reply]:
    reply = request(rs, **kwargs)
    assert reply.status == 200, reply.body
    assert reply.text.startswith("0")
    info = json.loads(reply.text[1:])
    return info["sid"], info, reply


def poll(rs, sid: str, **kwargs: Any) -> Reply:
    return request(rs, "GET", f"EIO=4&transport=polling&sid={sid}", **kwargs)


def post(rs, sid: str, body: Any, **kwargs: Any) -> Reply:
    return request(rs, "POST", f"EIO=4&transport=polling&sid={sid}", body=body, **kwargs)


def ws_connect(rs, query: str = "EIO=4&transport=websocket", **options: Any) -> websocket.WebSocket:
    return websocket.create_connection(rs.ws_url + rs.endpoint(query), timeout=TIMEOUT, **options)


def ws_refused(rs, query: str = "EIO=4&transport=websocket", **options: Any) -> tuple[int, Any]:
    """The HTTP status and JSON body the server refuses a WebSocket request with (no 101)."""
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(rs, query, **options)
    return info.value.status_code, json.loads(info.value.resp_body)


def ws_open(rs, **options: Any) -> tuple[websocket.WebSocket, str]:
    """A WebSocket-only session: returns the connection and its sid."""
    ws = ws_connect(rs, **options)
    first = ws.recv()
    assert isinstance(first, str) and first.startswith("0"), first
    info = json.loads(first[1:])
    assert info["upgrades"] == []
    return ws, info["sid"]


def ws_upgrade(rs, sid: str) -> websocket.WebSocket:
    """Upgrade a polling session; returns once the server drains the session over the WebSocket."""
    ws = ws_connect(rs, f"EIO=4&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    ws.send("5")
    # Only the WebSocket writer, started by the upgrade, can deliver this echo.
    ws.send("4synced")
    assert ws.recv() == "4synced"
    return ws


def recv_until_close(ws: websocket.WebSocket) -> tuple[list, int | None, bytes]:
    """Data frames received before the close frame, then the close code and reason."""
    before = []
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == ABNF.OPCODE_CLOSE:
            data = frame.data
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            return before, code, data[2:]
        if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
            before.append(frame.data.decode("utf-8") if opcode == ABNF.OPCODE_TEXT else frame.data)


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = gevent.get_hub().loop.now() + timeout
    while not predicate():
        if gevent.get_hub().loop.now() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(0.01)


def error_body(reply: Reply) -> dict:
    assert reply.header("Content-Type") == "application/json"
    return json.loads(reply.body)


class Recorder:
    """Records message and disconnect events of an engine.Server, with events to wait on."""

    def __init__(self, server, echo: bool = True):
        self.server = server
        self.messages: list[tuple[str, Any]] = []
        self.disconnects: list[tuple[str, str]] = []
        self.disconnected = Event()
        self.message_event = Event()
        self.echo = echo
        server.on("message", self._on_message)
        server.on("disconnect", self._on_disconnect)

    def _on_message(self, sid: str, data: Any) -> None:
        self.messages.append((sid, data))
        self.message_event.set()
        if self.echo:
            self.server.send(sid, data)

    def _on_disconnect(self, sid: str, reason: str) -> None:
        self.disconnects.append((sid, reason))
        self.disconnected.set()

    def wait_disconnect(self) -> tuple[str, str]:
        assert self.disconnected.wait(TIMEOUT), "no disconnect event"
        assert len(self.disconnects) == 1, self.disconnects
        return self.disconnects[0]


# -- error codes ----------------------------------------------------------


@pytest.mark.parametrize(
    "method, query, status, code, message",
    [
        ("GET", "EIO=4&transport=carrier-pigeon", 400, 0, "Transport unknown"),
        ("GET", "EIO=4", 400, 0, "Transport unknown"),
        ("GET", "EIO=4&transport=polling&sid=no-such-session", 400, 1, "Session ID unknown"),
        ("POST", "EIO=4&transport=polling&sid=no-such-session", 400, 1, "Session ID unknown"),
        ("GET", "EIO=4&transport=websocket", 400, 3, "Bad request"),
        ("GET", "EIO=3&transport=polling", 400, 5, "Unsupported protocol version"),
        ("GET", "transport=polling", 400, 5, "Unsupported protocol version"),
    ],
)
def test_error_codes(engine_server, method: str, query: str, status: int, code: int,
                     message: str) -> None:
    rs = engine_server()
    reply = request(rs, method, query, body="4x" if method == "POST" else None)
    assert reply.status == status
    assert error_body(reply) == {"code": code, "message": message}
    assert rs.server.sessions == {}


def test_post_handshake_is_a_bad_handshake_method(engine_server) -> None:
    rs = engine_server()
    reply = request(rs, "POST", "EIO=4&transport=polling", body="4hello")
    assert reply.status == 400
    assert error_body(reply) == {"code": 2, "message": "Bad handshake method"}
    assert rs.server.sessions == {}


def test_put_with_a_sid_is_a_bad_request(engine_server) -> None:
    rs = engine_server()
    sid, _, _ = handshake(rs)
    reply = request(rs, "PUT", f"EIO=4&transport=polling&sid={sid}", body="4x")
    assert reply.status == 400
    assert error_body(reply) == {"code": 3, "message": "Bad request"}


def test_polling_on_an_upgraded_session_is_a_bad_request(engine_server) -> None:
    rs = engine_server()
    sid, info, _ = handshake(rs)
    assert info["upgrades"] == ["websocket"]
    ws = ws_upgrade(rs, sid)
    try:
        for method in ("GET", "POST"):
            reply = request(rs, method, f"EIO=4&transport=polling&sid={sid}",
                            body="4x" if method == "POST" else None)
            assert reply.status == 400
            assert error_body(reply) == {"code": 3, "message": "Bad request"}
        # The WebSocket session is unharmed.
        ws.send("4still here")
        assert ws.recv() == "4still here"
    finally:
        ws.close()


def test_allow_request_refusal_is_forbidden(engine_server) -> None:
    seen = []

    def allow_request(environ: dict) -> bool:
        seen.append(environ["QUERY_STRING"])
        return False

    rs = engine_server(allow_request=allow_request)
    reply = request(rs)
    assert reply.status == 403
    assert error_body(reply) == {"code": 4, "message": "Forbidden"}
    assert seen == ["EIO=4&transport=polling"]
    assert rs.server.sessions == {}


def test_allow_request_refuses_a_websocket_before_the_upgrade(engine_server) -> None:
    rs = engine_server(allow_request=lambda environ: False)
    assert ws_refused(rs) == (403, {"code": 4, "message": "Forbidden"})
    assert rs.server.sessions == {}


# -- max_http_buffer_size --------------------------------------------------


def test_handshake_advertises_the_limits(engine_server) -> None:
    rs = engine_server(max_http_buffer_size=1000, ping_interval=0.5, ping_timeout=0.25)
    _, info, reply = handshake(rs)
    assert info["maxPayload"] == 1000
    assert info["pingInterval"] == 500
    assert info["pingTimeout"] == 250
    assert reply.header("Content-Type") == "text/plain; charset=UTF-8"


def _assert_post_refused_and_ignored(rs, recorder: Recorder, sid: str, reply: Reply) -> None:
    assert reply.status == 413
    assert reply.header("Connection") == "close"
    assert recorder.messages == []
    # The session lives on and nothing was echoed: the next poll carries the heartbeat ping.
    follow = poll(rs, sid)
    assert follow.status == 200
    assert follow.text == "2"
    assert recorder.messages == []


def test_post_above_max_http_buffer_size_is_refused_unread(engine_server) -> None:
    rs = engine_server(echo=False, max_http_buffer_size=1000, ping_interval=0.2, ping_timeout=5)
    recorder = Recorder(rs.server)
    sid, _, _ = handshake(rs)
    reply = post(rs, sid, "4" + "x" * 1500)
    _assert_post_refused_and_ignored(rs, recorder, sid, reply)


def test_chunked_post_above_max_http_buffer_size_is_refused_unread(engine_server) -> None:
    rs = engine_server(echo=False, max_http_buffer_size=1000, ping_interval=0.2, ping_timeout=5)
    recorder = Recorder(rs.server)
    sid, _, _ = handshake(rs)

    def chunks():
        yield b"4"
        for _ in range(6):
            yield b"x" * 250

    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)
    try:
        conn.request("POST", rs.endpoint(f"EIO=4&transport=polling&sid={sid}"), body=chunks(),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        reply = Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()
    _assert_post_refused_and_ignored(rs, recorder, sid, reply)


def test_post_at_max_http_buffer_size_is_processed(engine_server) -> None:
    rs = engine_server(max_http_buffer_size=1000)
    sid, _, _ = handshake(rs)
    body = "4" + "x" * 999
    reply = post(rs, sid, body)
    assert reply.status == 200 and reply.body == b"ok"
    assert poll(rs, sid).text == body


def test_chunked_post_within_the_limit_is_processed(engine_server) -> None:
    rs = engine_server(max_http_buffer_size=1000)
    sid, _, _ = handshake(rs)
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)
    try:
        conn.request("POST", rs.endpoint(f"EIO=4&transport=polling&sid={sid}"),
                     body=iter([b"4hel", b"lo\x1e4", b"world"]), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"ok"
    finally:
        conn.close()
    assert poll(rs, sid).text == "4hello\x1e4world"


def test_websocket_message_above_the_limit_closes_with_1009(engine_server) -> None:
    rs = engine_server(max_http_buffer_size=1000)
    recorder = Recorder(rs.server)
    ws, sid = ws_open(rs)
    try:
        at_limit = "4" + "y" * 999
        ws.send(at_limit)
        assert ws.recv() == at_limit
        ws.send("4" + "z" * 1000)
        before, code, _ = recv_until_close(ws)
        assert before == []
        assert code == 1009
    finally:
        ws.close()
    wait_until(lambda: sid not in rs.server.sessions, what="the session to end")
    assert recorder.wait_disconnect()[0] == sid
    assert [data for _, data in recorder.messages] == [at_limit[1:]]


# -- CORS -----------------------------------------------------------------


def test_same_origin_is_allowed_by_default(engine_server) -> None:
    rs = engine_server()
    origin = f"http://127.0.0.1:{rs.port}"
    _, _, reply = handshake(rs, headers={"Origin": origin})
    assert reply.header("Access-Control-Allow-Origin") == origin
    assert reply.header("Access-Control-Allow-Credentials") == "true"


def test_no_origin_header_is_allowed_without_cors_headers(engine_server) -> None:
    rs = engine_server()
    _, _, reply = handshake(rs)
    assert reply.header("Access-Control-Allow-Origin") is None


def test_other_origin_is_refused_by_default_and_logged(engine_server, caplog) -> None:
    rs = engine_server()
    caplog.set_level(logging.WARNING, logger="geventsio.engine")
    reply = request(rs, headers={"Origin": "http://evil.example"})
    assert reply.status == 403
    assert error_body(reply) == {"code": 4, "message": "Forbidden"}
    assert reply.header("Access-Control-Allow-Origin") is None
    assert rs.server.sessions == {}
    records = [r for r in caplog.records
               if r.levelno == logging.WARNING and "http://evil.example" in r.getMessage()]
    assert records, caplog.text
    assert "cors_allowed_origins" in records[0].getMessage()


def test_the_same_origin_sent_twice_is_that_origin(engine_server) -> None:
    # python-engineio's WebSocket client adds its own Origin beside the caller's;
    # the WSGI server joins the two headers with a comma.
    rs = engine_server(cors_allowed_origins=["http://a.example"])

    def with_origins(*origins: str) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)
        try:
            conn.putrequest("GET", rs.endpoint())
            for origin in origins:
                conn.putheader("Origin", origin)
            conn.endheaders()
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    assert with_origins("http://a.example", "http://a.example").status == 200
    assert with_origins("http://a.example", "http://evil.example").status == 403
    assert with_origins("http://evil.example", "http://evil.example").status == 403


def test_cors_any_origin(engine_server) -> None:
    rs = engine_server(cors_allowed_origins="*")
    for origin in ("http://evil.example", "https://another.example:8443"):
        _, _, reply = handshake(rs, headers={"Origin": origin})
        assert reply.header("Access-Control-Allow-Origin") == origin
        assert reply.header("Access-Control-Allow-Credentials") == "true"


def test_cors_list_of_origins(engine_server, caplog) -> None:
    rs = engine_server(cors_allowed_origins=["http://a.example", "https://b.example"])
    caplog.set_level(logging.WARNING, logger="geventsio.engine")
    for origin in ("http://a.example", "https://b.example"):
        _, _, reply = handshake(rs, headers={"Origin": origin})
        assert reply.header("Access-Control-Allow-Origin") == origin
    for origin in ("http://c.example", "https://a.example", f"http://127.0.0.1:{rs.port}"):
        reply = request(rs, headers={"Origin": origin})
        assert reply.status == 403, origin
        assert error_body(reply) == {"code": 4, "message": "Forbidden"}
    assert "http://c.example" in caplog.text


def test_cors_applies_to_session_requests_too(engine_server) -> None:
    rs = engine_server(cors_allowed_origins="http://a.example")
    sid, _, _ = handshake(rs, headers={"Origin": "http://a.example"})
    reply = post(rs, sid, "4hi", headers={"Origin": "http://a.example"})
    assert reply.status == 200
    assert reply.header("Access-Control-Allow-Origin") == "http://a.example"
    reply = poll(rs, sid, headers={"Origin": "http://evil.example"})
    assert reply.status == 403
    assert error_body(reply) == {"code": 4, "message": "Forbidden"}
    reply = poll(rs, sid, headers={"Origin": "http://a.example"})
    assert reply.text == "4hi"
    assert reply.header("Access-Control-Allow-Origin") == "http://a.example"


def test_preflight(engine_server) -> None:
    rs = engine_server(cors_allowed_origins="http://a.example")
    reply = request(rs, "OPTIONS", headers={
        "Origin": "http://a.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-custom-header",
    })
    assert reply.status == 204
    assert reply.body == b""
    methods = {m.strip() for m in reply.header("Access-Control-Allow-Methods").split(",")}
    assert {"GET", "POST"} <= methods
    assert reply.header("Access-Control-Allow-Headers") == "content-type, x-custom-header"
    assert reply.header("Access-Control-Allow-Origin") == "http://a.example"
    assert reply.header("Access-Control-Allow-Credentials") == "true"
    assert rs.server.sessions == {}


def test_preflight_from_a_refused_origin(engine_server) -> None:
    rs = engine_server(cors_allowed_origins="http://a.example")
    reply = request(rs, "OPTIONS", headers={"Origin": "http://evil.example",
                                            "Access-Control-Request-Method": "POST"})
    assert reply.status == 403
    assert reply.header("Access-Control-Allow-Origin") is None


def test_websocket_from_a_refused_origin_gets_403(engine_server, caplog) -> None:
    rs = engine_server()
    caplog.set_level(logging.WARNING, logger="geventsio.engine")
    assert ws_refused(rs, origin="http://evil.example") == (403, {"code": 4, "message": "Forbidden"})
    assert rs.server.sessions == {}
    assert "http://evil.example" in caplog.text


def test_websocket_from_an_allowed_origin_opens(engine_server) -> None:
    rs = engine_server(cors_allowed_origins=["http://a.example"])
    ws, sid = ws_open(rs, origin="http://a.example")
    try:
        assert sid in rs.server.sessions
    finally:
        ws.close()


# -- cookie ---------------------------------------------------------------


def test_cookie_option(engine_server) -> None:
    rs = engine_server(cookie="io")
    sid, _, reply = handshake(rs)
    assert reply.header("Set-Cookie") == f"io={sid}; Path=/; HttpOnly; SameSite=Lax"
    # Only the handshake sets it.
    assert post(rs, sid, "4x").header("Set-Cookie") is None


def test_no_cookie_by_default(engine_server) -> None:
    rs = engine_server()
    _, _, reply = handshake(rs)
    assert reply.header("Set-Cookie") is None


# -- keep-alive -----------------------------------------------------------


def test_connection_close_request_gets_connection_close(engine_server) -> None:
    rs = engine_server()
    sid, _, reply = handshake(rs, headers={"Connection": "close"})
    assert reply.header("Connection") == "close"
    reply = post(rs, sid, "4x", headers={"Connection": "close"})
    assert reply.status == 200
    assert reply.header("Connection") == "close"
    reply = poll(rs, sid, headers={"Connection": "close"})
    assert reply.text == "4x"
    assert reply.header("Connection") == "close"


def test_requests_share_one_keep_alive_connection(engine_server) -> None:
    rs = engine_server()
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)
    try:
        sid, _, reply = handshake(rs, conn=conn)
        sock = conn.sock
        assert sock is not None, "the server closed the connection after the handshake"
        assert reply.header("Connection") != "close"
        reply = post(rs, sid, "4over one connection", conn=conn)
        assert reply.status == 200 and reply.body == b"ok"
        assert conn.sock is sock, "the server closed the connection after the POST"
        reply = poll(rs, sid, conn=conn)
        assert reply.text == "4over one connection"
        assert conn.sock is sock
        # An error response on a keep-alive connection does not break it either.
        reply = request(rs, "GET", "EIO=4&transport=polling&sid=unknown", conn=conn)
        assert reply.status == 400
        reply = post(rs, sid, "4again", conn=conn)
        assert reply.status == 200
        assert poll(rs, sid, conn=conn).text == "4again"
        assert conn.sock is sock
    finally:
        conn.close()


# -- the server-side API --------------------------------------------------


def test_server_send_reaches_a_polling_client(engine_server) -> None:
    rs = engine_server()
    sid, _, _ = handshake(rs)
    assert rs.server.send(sid, "hello")
    assert rs.server.send(sid, b"\x01\x02\x03\x04")
    assert rs.server.send(sid, "\u20ac")
    reply = poll(rs, sid)
    assert reply.status == 200
    assert reply.text == "4hello\x1ebAQIDBA==\x1e4\u20ac"


def test_server_send_to_a_parked_poll(engine_server) -> None:
    rs = engine_server()
    sid, _, _ = handshake(rs)
    pending = gevent.spawn(poll, rs, sid)
    wait_until(lambda: rs.server.sessions[sid].polling_get_active, what="the poll to park")
    assert rs.server.send(sid, bytes(range(5)))
    reply = pending.get(timeout=TIMEOUT)
    assert reply.text == "b" + base64.b64encode(bytes(range(5))).decode()


def test_server_send_reaches_a_websocket_client(engine_server) -> None:
    rs = engine_server()
    ws, sid = ws_open(rs)
    try:
        assert rs.server.transport(sid) == "websocket"
        assert rs.server.send(sid, "hello \U0001f600")
        assert rs.server.send(sid, b"\x00\x01\xff")
        assert ws.recv() == "4hello \U0001f600"
        opcode, data = ws.recv_data()
        assert opcode == ABNF.OPCODE_BINARY and data == b"\x00\x01\xff"
    finally:
        ws.close()


def test_server_send_to_an_unknown_session(engine_server) -> None:
    rs = engine_server()
    assert rs.server.send("nope", "hello") is False


def test_binary_message_from_a_polling_client(engine_server) -> None:
    rs = engine_server(echo=False)
    recorder = Recorder(rs.server)
    sid, _, _ = handshake(rs)
    assert post(rs, sid, "bAQIDBA==\x1e4text").status == 200
    assert poll(rs, sid).text == "bAQIDBA==\x1e4text"
    assert [d for _, d in recorder.messages] == [b"\x01\x02\x03\x04", "text"]


def test_empty_message_reaches_the_handler_as_an_empty_string(engine_server) -> None:
    rs = engine_server(echo=False)
    recorder = Recorder(rs.server)
    sid, _, _ = handshake(rs)
    assert post(rs, sid, "4").status == 200
    assert recorder.message_event.wait(TIMEOUT)
    assert recorder.messages == [(sid, "")]
    assert poll(rs, sid).text == "4"


def test_disconnect_delivers_a_close_packet_to_a_parked_poll(engine_server) -> None:
    rs = engine_server()
    recorder = Recorder(rs.server)
    sid, _, _ = handshake(rs)
    pending = gevent.spawn(poll, rs, sid)
    wait_until(lambda: rs.server.sessions[sid].polling_get_active, what="the poll to park")
    rs.server.disconnect(sid)
    reply = pending.get(timeout=TIMEOUT)
    assert reply.status == 200
    assert reply.text == "1"
    assert recorder.wait_disconnect() == (sid, "forced close")
    reply = poll(rs, sid)
    assert reply.status == 400
    assert error_body(reply) == {"code": 1, "message": "Session ID unknown"}


def test_disconnect_sends_queued_messages_then_close_to_a_websocket(engine_server) -> None:
    rs = engine_server()
    recorder = Recorder(rs.server)
    ws, sid = ws_open(rs)
    try:
        rs.server.send(sid, "last words")
        rs.server.disconnect(sid)
        before, code, _ = recv_until_close(ws)
        assert before == ["4last words", "1"]
        assert code == 1000
    finally:
        ws.close()
    assert recorder.wait_disconnect() == (sid, "forced close")
    assert sid not in rs.server.sessions


def test_disconnect_every_session(engine_server) -> None:
    rs = engine_server()
    sid1, _, _ = handshake(rs)
    sid2, _, _ = handshake(rs)
    rs.server.disconnect()
    for sid in (sid1, sid2):
        # As in Node's engine.io, the next poll collects the close packet; then the sid is gone.
        first = poll(rs, sid)
        assert (first.status, first.text) == (200, "1")
        assert poll(rs, sid).status == 400
    assert rs.server.sessions == {}


def test_client_close_packet_over_polling(engine_server) -> None:
    rs = engine_server()
    recorder = Recorder(rs.server)
    sid, _, _ = handshake(rs)
    assert post(rs, sid, "4bye\x1e1").status == 200
    assert recorder.wait_disconnect() == (sid, "transport close")
    # The message sent before the close packet was handled first.
    assert recorder.messages == [(sid, "bye")]
    assert sid not in rs.server.sessions


def test_client_close_packet_over_websocket(engine_server) -> None:
    rs = engine_server()
    recorder = Recorder(rs.server)
    ws, sid = ws_open(rs)
    try:
        ws.send("1")
        assert recorder.wait_disconnect() == (sid, "transport close")
    finally:
        ws.close()
    assert sid not in rs.server.sessions


def test_ping_timeout(engine_server) -> None:
    rs = engine_server(ping_interval=0.1, ping_timeout=0.2)
    recorder = Recorder(rs.server)
    sid, _, _ = handshake(rs)
    assert recorder.wait_disconnect() == (sid, "ping timeout")
    assert sid not in rs.server.sessions


def test_pong_keeps_the_session_alive(engine_server) -> None:
    rs = engine_server(ping_interval=0.1, ping_timeout=0.5)
    recorder = Recorder(rs.server)
    ws, sid = ws_open(rs)
    try:
        for _ in range(3):
            assert ws.recv() == "2"
            ws.send("3")
        assert recorder.disconnects == []
        assert sid in rs.server.sessions
    finally:
        ws.close()


def test_websocket_client_that_drops_is_a_transport_close(engine_server) -> None:
    rs = engine_server()
    recorder = Recorder(rs.server)
    ws, sid = ws_open(rs)
    ws.shutdown()  # the TCP connection ends without a close frame
    assert recorder.wait_disconnect() == (sid, "transport close")
    assert sid not in rs.server.sessions


def test_handlers_of_one_session_run_in_order(engine_server) -> None:
    rs = engine_server(echo=False)
    srv = rs.server
    order: list[str] = []
    running = []
    done = Event()

    def on_message(sid: str, data: str) -> None:
        running.append(data)
        assert len(running) == 1, "handlers of one session overlapped"
        n = int(data[1:])
        if n % 3 == 0:
            gevent.sleep(0)  # yield to anything else that might run
        order.append(data)
        running.pop()
        if len(order) == 50:
            done.set()

    srv.on("message", on_message)
    sid, _, _ = handshake(rs)
    expected = [f"m{i}" for i in range(50)]
    assert post(rs, sid, "\x1e".join("4" + m for m in expected)).status == 200
    assert done.wait(TIMEOUT), order
    assert order == expected


# -- upgrade edge cases ---------------------------------------------------


def test_upgrade_timeout_falls_back_to_polling(engine_server) -> None:
    rs = engine_server(upgrade_timeout=0.3)
    sid, _, _ = handshake(rs)
    ws = ws_connect(rs, f"EIO=4&transport=websocket&sid={sid}")
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        # No "5": the server gives up on this WebSocket.
        before, _, _ = recv_until_close(ws)
        assert before == []
    finally:
        ws.close()
    assert sid in rs.server.sessions
    assert rs.server.transport(sid) == "polling"
    assert post(rs, sid, "4still polling").status == 200
    reply = poll(rs, sid)
    assert reply.status == 200
    assert reply.text == "4still polling"


def test_probe_releases_a_parked_poll_with_a_noop(engine_server) -> None:
    rs = engine_server()
    sid, _, _ = handshake(rs)
    pending = gevent.spawn(poll, rs, sid)
    wait_until(lambda: rs.server.sessions[sid].polling_get_active, what="the poll to park")
    ws = ws_connect(rs, f"EIO=4&transport=websocket&sid={sid}")
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        assert pending.get(timeout=TIMEOUT).text == "6"
        ws.send("5")
        ws.send("4done")
        assert ws.recv() == "4done"
    finally:
        ws.close()


def test_messages_queued_during_the_upgrade_arrive_over_websocket_in_order(engine_server) -> None:
    rs = engine_server()
    srv = rs.server
    sid, _, _ = handshake(rs)
    assert srv.send(sid, "before probe")
    ws = ws_connect(rs, f"EIO=4&transport=websocket&sid={sid}")
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        for i in range(5):
            assert srv.send(sid, f"during {i}")
        assert srv.send(sid, b"\x00binary")
        # A poll during the upgrade gets a noop and takes nothing from the queue.
        assert poll(rs, sid).text == "6"
        ws.send("5")
        got = [ws.recv() for _ in range(7)]
        assert got == ["4before probe"] + [f"4during {i}" for i in range(5)] + [b"\x00binary"]
        assert srv.transport(sid) == "websocket"
    finally:
        ws.close()


def test_second_websocket_for_a_session_is_refused(engine_server) -> None:
    rs = engine_server()
    sid, _, _ = handshake(rs)
    ws = ws_upgrade(rs, sid)
    try:
        assert ws_refused(rs, f"EIO=4&transport=websocket&sid={sid}") == (
            400, {"code": 3, "message": "session already has a websocket"})
        ws.send("4first still works")
        assert ws.recv() == "4first still works"
    finally:
        ws.close()


# -- slow consumer --------------------------------------------------------


def test_slow_polling_consumer_is_closed_when_its_queue_is_full(engine_server) -> None:
    rs = engine_server(max_queued_bytes=10000)
    recorder = Recorder(rs.server)
    sid, _, _ = handshake(rs)
    results = [rs.server.send(sid, "x" * 1000) for _ in range(100)]
    assert recorder.wait_disconnect() == (sid, "send buffer full")
    assert sid not in rs.server.sessions
    assert results[:9] == [True] * 9
    assert results[-1] is False
    assert poll(rs, sid).status == 400


# -- WSGIApp --------------------------------------------------------------


def _tiny_app(environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    out = json.dumps({
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "body": body.decode("latin-1"),
        "x-test": environ.get("HTTP_X_TEST"),
    }).encode()
    start_response("202 Accepted", [("Content-Type", "application/x-tiny"), ("X-Tiny", "yes"),
                                    ("Content-Length", str(len(out)))])
    return [out]


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/hello?x=1&y=%20", None),
        ("POST", "/api/items", "payload"),
        ("GET", "/engine.iox/?EIO=4&transport=polling", None),
        ("GET", "/", None),
    ],
)
def test_other_paths_go_to_the_wrapped_app(serve_app, method: str, path: str, body) -> None:
    from geventsio import engine

    rs = serve_app(engine.Server(), wsgi_app=_tiny_app)
    reply = request(rs, method, path=path, body=body, headers={"X-Test": "t"})
    assert reply.status == 202
    assert reply.header("X-Tiny") == "yes"
    assert reply.header("Content-Type") == "application/x-tiny"
    seen = json.loads(reply.body)
    p, _, q = path.partition("?")
    assert seen == {"method": method, "path": p, "query": q, "body": body or "", "x-test": "t"}
    assert rs.server.sessions == {}


def test_engine_path_still_reaches_the_server_with_a_wrapped_app(serve_app) -> None:
    from geventsio import engine

    rs = serve_app(engine.Server(), wsgi_app=_tiny_app)
    sid, _, _ = handshake(rs)
    assert sid in rs.server.sessions


def test_other_paths_are_404_without_a_wrapped_app(serve_app) -> None:
    from geventsio import engine

    rs = serve_app(engine.Server())
    reply = request(rs, path="/hello")
    assert reply.status == 404


def test_static_files(serve_app, tmp_path) -> None:
    from geventsio import engine

    static = tmp_path / "static"
    static.mkdir()
    (static / "hello.txt").write_text("hello static")
    (static / "index.html").write_text("<p>index</p>")
    (tmp_path / "setup.py").write_text("SECRET = 1")
    (tmp_path / "static-other").mkdir()
    (tmp_path / "static-other" / "secret.txt").write_text("SECRET")
    rs = serve_app(engine.Server(), static_files={"/static/": str(static),
                                                  "/": str(static / "index.html")})
    reply = request(rs, path="/static/hello.txt")
    assert reply.status == 200
    assert reply.body == b"hello static"
    assert reply.header("Content-Type").startswith("text/plain")
    reply = request(rs, path="/")
    assert reply.status == 200 and reply.body == b"<p>index</p>"
    for path in ("/static/../setup.py", "/static/%2e%2e/setup.py", "/static/..%2fsetup.py",
                 "/static/../static-other/secret.txt", "/static/missing.txt"):
        reply = request(rs, path=path)
        assert reply.status == 404, path
        assert b"SECRET" not in reply.body


def test_static_files_in_python_socketio_forms(serve_app, tmp_path) -> None:
    from geventsio import engine

    public = tmp_path / "public"
    (public / "img").mkdir(parents=True)
    (public / "app.js").write_text("console.log(1)")
    (public / "img" / "logo.svg").write_text("<svg/>")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    rs = serve_app(engine.Server(), static_files={
        "/assets": str(public),  # a folder, named without a trailing slash
        "/assets/img": str(public / "img"),  # the longer prefix wins
        "/data": {"filename": str(tmp_path / "data.bin"), "content_type": "application/x-demo"},
    })
    reply = request(rs, path="/assets/app.js")
    assert (reply.status, reply.body) == (200, b"console.log(1)")
    reply = request(rs, path="/assets/img/logo.svg")
    assert (reply.status, reply.body) == (200, b"<svg/>")
    reply = request(rs, path="/data")
    assert (reply.status, reply.body) == (200, b"\x00\x01")
    assert reply.header("Content-Type") == "application/x-demo"
    assert request(rs, path="/assetsX/app.js").status == 404


def test_pings_keep_their_interval_after_pongs(engine_server) -> None:
    # Each ping is due ping_interval after the last pong: answering at once must
    # not make the server ping faster (a restarted timer that fires at once would).
    interval = 0.2
    rs = engine_server(ping_interval=interval, ping_timeout=5)
    ws, _ = ws_open(rs)
    try:
        started = gevent.get_hub().loop.now()
        pings = 0
        while pings < 4:
            assert ws.recv() == "2"
            pings += 1
            ws.send("3")
        assert gevent.get_hub().loop.now() - started >= 3 * interval
    finally:
        ws.close()
