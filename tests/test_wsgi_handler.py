"""geventsio's WSGI handler: limits on how long a client may take to send a request."""

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
