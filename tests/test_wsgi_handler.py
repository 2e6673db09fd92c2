"""geventsio's WSGI handler: limits on how long a client may take to send a request."""

import re
import socket

import pytest

import geventsio
from geventsio import engine
from geventsio.wsgi import Handler


class QuickHandler(Handler):
    request_timeout = 0.3
    keepalive_timeout = 0.3


@pytest.fixture
def quick_server():
    app = geventsio.WSGIApp(engine.Server(), socketio_path="engine.io")
    server = geventsio.make_server(app, "127.0.0.1", 0, handler_class=QuickHandler)
    server.start()
    yield server
    server.stop(timeout=1)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(4096)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_headers_trickled_too_slowly_get_400_and_a_close(quick_server):
    slow = socket.create_connection(("127.0.0.1", quick_server.server_port), timeout=5)
    try:
        slow.sendall(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        # Another client is served while the slow one holds its connection.
        fast = socket.create_connection(("127.0.0.1", quick_server.server_port), timeout=5)
        fast.sendall(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        assert _read_all(fast).startswith(b"HTTP/1.1 200")
        fast.close()
        # The slow client never finishes its headers: refused, then disconnected.
        assert _read_all(slow).startswith(b"HTTP/1.1 400")
    finally:
        slow.close()


def test_idle_keep_alive_connection_is_closed(quick_server):
    conn = socket.create_connection(("127.0.0.1", quick_server.server_port), timeout=5)
    try:
        conn.sendall(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        # A keep-alive response, then nothing more from the client: the server
        # closes the idle connection, so reading reaches EOF (a socket timeout
        # after 5 s would fail the test instead).
        assert _read_all(conn).startswith(b"HTTP/1.1 200")
    finally:
        conn.close()


# -- request heads and the WebSocket handshake, over a real socket -----------------


@pytest.fixture
def served():
    def beside(environ, start_response):
        ws = environ.get("wsgi.websocket")
        if ws is not None:  # gevent-websocket's, for any upgrade that is not Engine.IO's
            ws.send("beside: " + ws.receive())
            return []
        if environ["PATH_INFO"] == "/chunks":  # no length: the body goes out chunked
            start_response("200 OK", [])
            return (part for part in (b"ab", b"", b"cde"))
        body = repr(sorted((k, v) for k, v in environ.items() if k.startswith("HTTP_"))).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    app = geventsio.WSGIApp(engine.Server(), beside, socketio_path="engine.io")
    server = geventsio.make_server(app, "127.0.0.1", 0)
    server.start()
    yield server
    server.stop(timeout=1)


UPGRADE = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


def _exchange(server, data: bytes) -> bytes:
    conn = socket.create_connection(("127.0.0.1", server.server_port), timeout=5)
    try:
        conn.sendall(data)
        return _read_all(conn)
    finally:
        conn.close()


def test_engineio_websocket_gets_the_101_and_the_open_packet(served):
    conn = socket.create_connection(("127.0.0.1", served.server_port), timeout=5)
    try:
        conn.sendall(f"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n"
                     .encode())
        data = b""
        while b'"maxPayload"' not in data:
            chunk = conn.recv(4096)
            assert chunk, data
            data += chunk
        head, frames = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        assert frames[0] == 0x81 and frames[2:3] == b"0"  # a text frame: the open packet
    finally:
        conn.close()


def test_bad_engineio_handshake_gets_400_saying_why(served):
    request = (b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
               b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    answer = _exchange(served, request)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"Sec-WebSocket-Key is not 16 bytes")


def test_other_websockets_are_gevent_websockets(served):
    conn = socket.create_connection(("127.0.0.1", served.server_port), timeout=5)
    try:
        conn.sendall(f"GET /chat HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n".encode()
                     + bytes([0x81, 0x82, 0, 0, 0, 0]) + b"hi")  # a masked text frame, zero key
        data = b""
        while b"beside: hi" not in data:
            chunk = conn.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 101 ")
    finally:
        conn.close()


def test_header_fields_reach_the_app_as_pywsgi_gave_them(served):
    answer = _exchange(served, b"GET /x HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nX_B: spoof\r\n"
                               b"X-Folded: one\r\n two\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    body = answer.split(b"\r\n\r\n", 1)[1].decode()
    assert "('HTTP_X_A', '1,2')" in body and "('HTTP_X_FOLDED', 'one two')" in body
    assert "spoof" not in body


@pytest.mark.parametrize("head", [
    b"POST /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Content-Length: 4\r\n\r\nabcd",
    b"GET /x HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET /x HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n",
])
def test_ambiguous_heads_get_400_and_a_close(served, head):
    assert _exchange(served, head).startswith(b"HTTP/1.1 400 ")


def test_a_body_without_length_is_chunked_and_dated(served):
    answer = _exchange(served, b"GET /chunks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", head)
    assert body == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
