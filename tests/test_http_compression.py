"""Compression of long-polling responses: ``http_compression`` and ``compression_threshold``.

The negotiation is a pure function, tested as one; everything else goes over
real sockets: raw http.client requests that ask for an encoding (or none) and
decode what comes back, python-socketio's client (requests, which asks for
gzip and decodes it) and the official socket.io-client under Node. A WSGI
middleware in front of the server records what each request asked for and
how each response was encoded, so the tests see the wire, not just the result.
"""

from __future__ import annotations

import gzip
import http.client
import json
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import socketio
import websocket
from gevent.event import AsyncResult

import geventsio
from geventsio.engine import http as eio_http
from node_support import require_npm_packages, run_node_report

TIMEOUT = 5
INTEROP_DIR = Path(__file__).parent / "interop"

# A Socket.IO-like JSON payload well above the default threshold of 1024 bytes.
BIG = json.dumps([{"id": i, "user": f"user{i % 37}", "text": "hello compression " * (i % 4 + 1)}
                  for i in range(400)])
SMALL = "hi"


# -- the negotiation, without sockets ----------------------------------------


@pytest.mark.parametrize("accept, expected", [
    (None, None),
    ("", None),
    ("gzip", "gzip"),
    ("deflate", "deflate"),
    ("gzip, deflate", "gzip"),
    ("deflate, gzip", "gzip"),  # equal q: gzip, like Node
    ("deflate;q=1, gzip;q=0.5", "deflate"),
    ("gzip;q=0, deflate", "deflate"),
    ("gzip;q=0", None),
    ("gzip;q=0.0, deflate;q=0.000", None),
    ("*", "gzip"),
    ("*;q=0", None),
    ("*, gzip;q=0", "deflate"),  # a coding refused by name stays refused under *
    ("*;q=0.5, deflate", "deflate"),
    ("identity", None),
    ("br, zstd", None),
    ("br, gzip;q=0.1", "gzip"),
    ("identity, gzip;q=0.5", None),  # the client prefers the body as is
    ("identity;q=0.5, gzip", "gzip"),
    ("GZIP", "gzip"),
    ("x-gzip", "gzip"),
    ("gzip;q=abc", None),
    ("gzip;q=2", None),
    (" gzip ; q=0.8 , deflate;q=0.9 ", "deflate"),
    ("deflate;level=1", "deflate"),
    (",,gzip,", "gzip"),
])
def test_choose_encoding(accept: str | None, expected: str | None) -> None:
    assert eio_http.choose_encoding(accept) == expected


def test_compress_for_encodes_at_the_threshold_and_not_below() -> None:
    body = BIG.encode()
    out, encoding = eio_http.compress_for(body, "gzip", len(body))
    assert encoding == "gzip" and len(out) < len(body) // 3
    assert gzip.decompress(out) == body
    out, encoding = eio_http.compress_for(body, "deflate", len(body))
    # HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2), as Node's createDeflate sends.
    assert encoding == "deflate" and zlib.decompress(out) == body
    assert eio_http.compress_for(body, "gzip", len(body) + 1) == (body, None)
    assert eio_http.compress_for(body, None, 0) == (body, None)
    assert eio_http.compress_for(body, "gzip;q=0", 0) == (body, None)


# -- over the wire -------------------------------------------------------------


class WireLog:
    """WSGI middleware: what each request asked for and how its response was encoded."""

    def __init__(self, app: Callable[..., Any]):
        self.app = app
        self.exchanges: list[dict[str, Any]] = []

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        entry: dict[str, Any] = {
            "method": environ["REQUEST_METHOD"],
            "accept": environ.get("HTTP_ACCEPT_ENCODING"),
        }
        self.exchanges.append(entry)

        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            entry["status"] = status
            entry["headers"] = headers
            return start_response(status, headers, *exc_info)

        body = b"".join(self.app(environ, start))
        encoding = dict(entry.get("headers", [])).get("Content-Encoding")
        entry["encoding"] = encoding
        entry["wire_size"] = len(body)
        entry["plain"] = {None: lambda b: b, "gzip": gzip.decompress,
                          "deflate": zlib.decompress}[encoding](body)
        return [body]

    def gets(self) -> list[dict[str, Any]]:
        return [e for e in self.exchanges if e["method"] == "GET"]


class Served:
    def __init__(self, server: Any, path: str):
        self.server = server
        self.log = WireLog(geventsio.WSGIApp(server, socketio_path=path))
        self.wsgi = geventsio.make_server(self.log, "127.0.0.1", 0)
        self.wsgi.start()
        self.port = self.wsgi.server_port
        self.path = path
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.wsgi.stop(timeout=1)
        self.server.shutdown(timeout=0.5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(server: Any, path: str) -> Served:
        started.append(Served(server, path))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def _request(served: Served, method: str, query: str, accept: str | None = None,
             body: bytes | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    headers = {} if accept is None else {"Accept-Encoding": accept}
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=TIMEOUT)
    try:
        # http.client says "Accept-Encoding: identity" unless told otherwise.
        conn.putrequest(method, f"/{served.path}/?{query}", skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Type", "text/plain;charset=UTF-8")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def _decode(resp: http.client.HTTPResponse, data: bytes) -> bytes:
    assert resp.getheader("Content-Length") == str(len(data))
    encoding = resp.getheader("Content-Encoding")
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    assert encoding is None
    return data


def _echo_engine(**options: Any) -> geventsio.engine.Server:
    eio = geventsio.engine.Server(**options)
    eio.on("message", lambda sid, data: eio.send(sid, data))
    return eio


def _echoed(served: Served, message: str, accept: str | None) -> tuple[http.client.HTTPResponse, bytes]:
    """Open a session, have ``message`` echoed, and poll for it asking for ``accept``."""
    resp, data = _request(served, "GET", "EIO=4&transport=polling", accept)
    sid = json.loads(_decode(resp, data)[1:])["sid"]
    query = f"EIO=4&transport=polling&sid={sid}"
    resp, data = _request(served, "POST", query, accept, ("4" + message).encode())
    assert resp.status == 200 and data == b"ok"
    return _request(served, "GET", query, accept)


@pytest.mark.parametrize("accept, expected", [
    ("gzip", "gzip"),
    ("deflate", "deflate"),
    ("gzip;q=0, deflate", "deflate"),
    ("gzip, deflate, br", "gzip"),
    (None, None),
    ("identity", None),
])
def test_polling_body_is_encoded_as_asked(serve, accept: str | None, expected: str | None) -> None:
    served = serve(_echo_engine(), "engine.io")
    resp, data = _echoed(served, BIG, accept)
    assert resp.status == 200
    assert resp.getheader("Content-Encoding") == expected
    assert "Accept-Encoding" in resp.headers.get_all("Vary")
    if expected is not None:
        assert len(data) < len(BIG) // 3
    assert _decode(resp, data) == ("4" + BIG).encode()


def test_body_below_the_threshold_is_sent_as_is(serve) -> None:
    served = serve(_echo_engine(), "engine.io")
    message = "x" * 1022  # "4" + 1022 bytes: one below the threshold
    resp, data = _echoed(served, message, "gzip")
    assert resp.getheader("Content-Encoding") is None
    assert "Accept-Encoding" not in (resp.headers.get_all("Vary") or [])
    assert data == ("4" + message).encode()
    resp, data = _echoed(served, message + "x", "gzip")  # at the threshold
    assert resp.getheader("Content-Encoding") == "gzip"
    assert _decode(resp, data) == ("4" + message + "x").encode()


def test_threshold_is_configurable_and_covers_the_handshake(serve) -> None:
    served = serve(_echo_engine(compression_threshold=0), "engine.io")
    resp, data = _request(served, "GET", "EIO=4&transport=polling", "gzip")
    assert resp.getheader("Content-Encoding") == "gzip"
    opened = _decode(resp, data)
    assert opened.startswith(b'0{"sid":')
    resp, data = _echoed(served, "tiny", "deflate")
    assert resp.getheader("Content-Encoding") == "deflate"
    assert _decode(resp, data) == b"4tiny"


def test_http_compression_false_turns_it_off(serve) -> None:
    served = serve(_echo_engine(http_compression=False), "engine.io")
    resp, data = _echoed(served, BIG, "gzip, deflate")
    assert resp.getheader("Content-Encoding") is None
    assert "Accept-Encoding" not in (resp.headers.get_all("Vary") or [])
    assert data == ("4" + BIG).encode()


def test_large_body_is_compressed_off_the_event_loop_intact(serve) -> None:
    served = serve(_echo_engine(), "engine.io")
    message = BIG * 8
    assert len(message) > eio_http.COMPRESS_OFF_LOOP_BYTES
    resp, data = _echoed(served, message, "gzip")
    assert resp.getheader("Content-Encoding") == "gzip"
    assert _decode(resp, data) == ("4" + message).encode()


def test_counters_count_the_bytes_on_the_wire(serve) -> None:
    eio = _echo_engine()
    served = serve(eio, "engine.io")
    before = eio.stats()["bytes_out"]
    resp, data = _echoed(served, BIG, "gzip")
    handshake_size = served.log.gets()[0]["wire_size"]
    assert eio.stats()["bytes_out"] - before == handshake_size + len(data)


def test_websocket_messages_are_never_compressed(serve) -> None:
    served = serve(_echo_engine(compression_threshold=0), "engine.io")
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{served.port}/engine.io/?EIO=4&transport=websocket",
        header=["Accept-Encoding: gzip, deflate"], timeout=TIMEOUT)
    try:
        assert ws.recv().startswith('0{"sid":')
        ws.send("4" + BIG)
        assert ws.recv() == "4" + BIG
    finally:
        ws.close()


# -- real Socket.IO clients --------------------------------------------------


def _socketio_server(**options: Any) -> geventsio.Server:
    sio = geventsio.Server(**options)
    payloads = {"big": BIG, "small": SMALL}

    @sio.on("send")
    def send(sid: str, *names: str) -> None:
        for name in names:
            sio.emit(name, payloads[name], to=sid)

    return sio


def _carrying(log: WireLog, text: str) -> list[dict[str, Any]]:
    return [e for e in log.gets() if text.encode() in e["plain"]]


@pytest.fixture
def sio_client() -> Iterator[socketio.Client]:
    """python-socketio's client (not a shared plugin's: its fixture names clash across modules)."""
    client = socketio.Client(reconnection=False)
    yield client
    client.disconnect()


@pytest.mark.parametrize("compression", [True, False])
def test_python_socketio_client_over_polling(serve, sio_client, compression: bool) -> None:
    served = serve(_socketio_server(http_compression=compression), "socket.io")
    got: dict[str, AsyncResult] = {"big": AsyncResult(), "small": AsyncResult()}
    sio_client.on("big", got["big"].set)
    sio_client.on("small", got["small"].set)
    sio_client.connect(served.url, transports=["polling"], wait_timeout=TIMEOUT)
    sio_client.emit("send", "big")
    assert got["big"].get(timeout=TIMEOUT) == BIG
    sio_client.emit("send", "small")  # after the big one, so that no poll carries both
    assert got["small"].get(timeout=TIMEOUT) == SMALL

    (big_get,) = _carrying(served.log, "hello compression")
    assert "gzip" in big_get["accept"]  # requests asks for it...
    if compression:
        assert big_get["encoding"] == "gzip"  # ...and decoded what it got
        assert big_get["wire_size"] < len(big_get["plain"]) // 3
    else:
        assert big_get["encoding"] is None
    (small_get,) = _carrying(served.log, f'"small","{SMALL}"')
    assert small_get["encoding"] is None and len(small_get["plain"]) < 1024


def test_official_node_client_over_polling(serve) -> None:
    require_npm_packages(INTEROP_DIR)
    served = serve(_socketio_server(), "socket.io")
    cmd = ["node", str(INTEROP_DIR / "sio_client.mjs"), served.url, "large", "polling"]
    report = run_node_report(cmd, INTEROP_DIR, {"SIO_CLIENT_TIMEOUT_MS": "10000"}, 30)
    assert report["big"] == [BIG]
    assert report["small"] == [SMALL]
    assert report["transport"] == "polling"
    (big_get,) = _carrying(served.log, "hello compression")
    # socket.io-client's XHR under Node (xmlhttprequest-ssl) sends no Accept-Encoding,
    # and would not decode gzip if it got it: the server must send the body as is.
    assert big_get["accept"] is None
    assert big_get["encoding"] is None


@pytest.mark.parametrize("accept", ["gzip", "deflate"])
def test_geventsio_client_decodes_what_its_own_header_asked_for(serve, accept: str) -> None:
    # Its HTTP layer says "identity" by default; a caller's Accept-Encoding header wins.
    served = serve(_socketio_server(), "socket.io")
    client = geventsio.Client(reconnection=False)
    got = AsyncResult()
    client.on("big", got.set)
    try:
        client.connect(served.url, transports=["polling"], headers={"Accept-Encoding": accept},
                       wait_timeout=TIMEOUT)
        client.emit("send", "big")
        assert got.get(timeout=TIMEOUT) == BIG
    finally:
        client.disconnect()
    (big_get,) = _carrying(served.log, "hello compression")
    assert big_get["encoding"] == accept and big_get["wire_size"] < len(big_get["plain"]) // 3


def test_client_refuses_a_body_that_expands_past_its_limit(monkeypatch) -> None:
    from geventsio.engine import client_transports

    monkeypatch.setattr(client_transports, "MAX_DECODED_BYTES", 1000)
    bomb = gzip.compress(b"\0" * 100_000)
    with pytest.raises(OSError, match="larger than 1000 bytes"):
        client_transports._decoded(bomb, "gzip")
    assert client_transports._decoded(gzip.compress(b"ok"), "GZIP") == b"ok"
    with pytest.raises(OSError, match="unsupported Content-Encoding 'br'"):
        client_transports._decoded(b"x", "br")
