"""The request-head reader (geventsio.http_head) and the WebSocket handshake checks, without sockets.

The environ built from a head must be the one pywsgi builds from it, since
applications were written against pywsgi's; the cases below run both on the
same bytes and compare.
"""

import io

import pytest
from gevent import pywsgi

from geventsio import http_head
from geventsio.engine import ws_handshake

BASE = {"wsgi.version": (1, 0), "SERVER_NAME": "test", "SERVER_PORT": "80"}


class _Server:
    def get_environ(self) -> dict:
        return dict(BASE)


def _pywsgi_environ(head: bytes) -> dict:
    handler = pywsgi.WSGIHandler.__new__(pywsgi.WSGIHandler)
    handler.rfile = io.BufferedReader(io.BytesIO(head))
    handler.socket = None
    handler.client_address = ("10.0.0.7", 51000)
    handler.server = _Server()
    handler.read_request(handler.read_requestline())
    environ = handler.get_environ()
    for key in ("wsgi.input", "wsgi.input_terminated"):
        environ.pop(key)
    return environ


def _our_environ(head: bytes) -> dict:
    rfile = io.BufferedReader(io.BytesIO(head))
    method, target, version = rfile.readline().decode("latin-1").split()
    fields = http_head.read_fields(rfile.readline)
    return http_head.fill_environ(dict(BASE), method, target, version, fields, ("10.0.0.7", 51000))


HEADS = [
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: a:5000\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: a\r\n"
    b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 12\r\nOrigin: http://a\r\n\r\n",
    # repeated fields, cookies, a name with "_" (dropped: it would pose as a "-" header)
    b"GET /x HTTP/1.1\r\nAccept: a\r\nAccept: b\r\nCookie: x=1\r\nCookie: y=2\r\n"
    b"X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    # escapes in the path, none in the query; a value with inner and outer spaces
    b"GET /a%20b/%C3%A9?q=%20x HTTP/1.0\r\nUser-Agent:   curl/8  (x)  \r\nConnection: keep-alive\r\n\r\n",
    # bare LF line ends
    b"GET / HTTP/1.1\nHost: lf\n\n",
]


@pytest.mark.parametrize("head", HEADS)
def test_environ_is_the_one_pywsgi_builds(head: bytes) -> None:
    assert _our_environ(head) == _pywsgi_environ(head)


def test_folded_line_is_joined_with_a_space() -> None:
    fields = http_head.read_fields(io.BytesIO(b"X-A: one\r\n  two\r\n\tthree\r\nX-B: b\r\n\r\n").readline)
    assert fields == [("X-A", "one two three"), ("X-B", "b")]


@pytest.mark.parametrize("head, problem", [
    (b"Host : a\r\n\r\n", "malformed header line"),
    (b"no colon here\r\n\r\n", "malformed header line"),
    (b": empty name\r\n\r\n", "malformed header line"),
    (b" folded first\r\n\r\n", "continuation line before"),
    (b"Host: a\r\n", "connection closed inside"),
    (b"X: " + b"y" * http_head.MAX_LINE + b"\r\n\r\n", "header line longer"),
    (b"".join(b"X-%d: v\r\n" % i for i in range(http_head.MAX_FIELDS + 1)) + b"\r\n", "more than 100"),
])
def test_malformed_heads_are_refused(head: bytes, problem: str) -> None:
    with pytest.raises(http_head.HeadError, match=problem):
        http_head.read_fields(io.BytesIO(head).readline)


@pytest.mark.parametrize("fields, length", [
    ([], None),
    ([("Content-Length", "0")], 0),
    ([("content-length", "42"), ("Content-Length", "42")], 42),
])
def test_content_length(fields, length) -> None:
    assert http_head.content_length(fields) == length


@pytest.mark.parametrize("fields", [
    [("Content-Length", "4"), ("Content-Length", "5")],
    [("Content-Length", "-1")],
    [("Content-Length", "1e3")],
    [("Content-Length", "")],
])
def test_ambiguous_content_length_is_refused(fields) -> None:
    with pytest.raises(http_head.HeadError):
        http_head.content_length(fields)


def test_request_headers_lookup() -> None:
    headers = http_head.RequestHeaders([("Content-Type", "a/b"), ("X-Y", "1"), ("x-y", "2")])
    assert headers.get("x-Y") == "1" and headers.get_all("X-Y") == ["1", "2"]
    assert headers.typeheader == "a/b" and "content-type" in headers and "nope" not in headers
    assert headers.get("nope", "d") == "d" and headers.getheader("nope") is None
    assert list(headers.headers) == ["Content-Type: a/b\r\n", "X-Y: 1\r\n", "x-y: 2\r\n"]
    del headers["X-y"]
    assert headers.items() == [("Content-Type", "a/b")] and len(headers) == 1


# -- the WebSocket handshake ------------------------------------------------------

UPGRADE = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_UPGRADE": "websocket",
           "HTTP_CONNECTION": "keep-alive, Upgrade", "HTTP_SEC_WEBSOCKET_VERSION": "13",
           "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_accept_value_is_rfc_6455s_example() -> None:
    assert ws_handshake.accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_switching_protocols_answer() -> None:
    assert ws_handshake.handshake_problem(UPGRADE) is None
    assert ws_handshake.switching_protocols(UPGRADE) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")


@pytest.mark.parametrize("change, problem", [
    ({"REQUEST_METHOD": "POST"}, "must be a GET"),
    ({"SERVER_PROTOCOL": "HTTP/1.0"}, "needs HTTP/1.1"),
    ({"HTTP_CONNECTION": "keep-alive"}, "without upgrade"),
    ({"HTTP_SEC_WEBSOCKET_VERSION": "12"}, "Sec-WebSocket-Version"),
    ({"HTTP_SEC_WEBSOCKET_VERSION": None}, "Sec-WebSocket-Version"),
    ({"HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="}, "not 16 bytes"),
    ({"HTTP_SEC_WEBSOCKET_KEY": "not base64!!"}, "not base64"),
    ({"HTTP_SEC_WEBSOCKET_KEY": None}, "not 16 bytes"),
])
def test_bad_handshakes_are_named(change: dict, problem: str) -> None:
    environ = {k: v for k, v in {**UPGRADE, **change}.items() if v is not None}
    assert problem in ws_handshake.handshake_problem(environ)
