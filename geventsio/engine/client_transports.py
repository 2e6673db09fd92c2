"""The client's two connections to an Engine.IO server: HTTP requests and a WebSocket.

Both work on gevent's own sockets (``gevent.socket``, ``gevent.ssl``), so the
client cooperates with other greenlets whether or not the program called
``gevent.monkey.patch_all()``.

- HTTP long-polling uses the standard library's ``http.client`` with one
  keep-alive connection per direction (the parked GET and the POSTs must not
  queue behind each other). An idle keep-alive connection the server has
  closed (Node closes them after 5 s) is noticed before it is reused, so a
  request is never sent into a dead connection and never retried blindly.
- WebSocket frames are made and parsed by **wsproto** (python-hyper), a
  maintained sans-I/O RFC 6455 implementation: it masks client frames,
  reassembles fragments and validates UTF-8, while every byte is read and
  written here, on a gevent socket, by the greenlets the engine owns. We chose
  it over websocket-client because the latter does its own blocking I/O behind
  ``threading`` locks (fine only once the whole process is monkey-patched, and
  a lock held across a blocked send would stall the hub), and over extending
  the server's ``engine/websocket.py``, which reads what gevent-websocket
  upgraded and would need a client handshake, masking and a second frame
  parser written from scratch.
"""

from __future__ import annotations

import http.client
import json
import socket as _stdlib_socket
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

import gevent.select
import gevent.socket
import gevent.ssl
from gevent.lock import Semaphore
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..exceptions import GeventSIOError, ProtocolError
from .packet import Frame, Packet, decode_payload, encode_payload

_RECV_SIZE = 65536


class ConnectionError(GeventSIOError):  # noqa: A001 - python-socketio's name for it
    """A connection to the server could not be established (or was refused).

    ``args[0]`` is a message; ``data`` is what the server said, if anything
    (the JSON body of an HTTP error, or a Socket.IO CONNECT_ERROR payload).
    """

    def __init__(self, message: str, data: Any = None):
        super().__init__(message)
        self.message = message
        self.data = data


def make_ssl_context(verify: bool) -> Any:
    context = gevent.ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = gevent.ssl.CERT_NONE
    return context


@dataclass
class Endpoint:
    """Where the Engine.IO endpoint is: scheme, host, port, path and the user's query."""

    secure: bool
    host: str
    port: int
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, url: str, engineio_path: str) -> "Endpoint":
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r} (http, https, ws or wss)")
        if not parts.hostname:
            raise ValueError(f"no host in URL {url!r}")
        secure = scheme in ("https", "wss")
        # As python-engineio does, a path in the URL prefixes the endpoint's path.
        path = parts.path.rstrip("/") + "/" + engineio_path.strip("/") + "/"
        return cls(secure, parts.hostname, parts.port or (443 if secure else 80), path,
                   parse_qsl(parts.query, keep_blank_values=True))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    def target(self, transport: str, sid: str | None = None) -> str:
        params = [p for p in self.query if p[0] not in ("EIO", "transport", "sid")]
        params += [("EIO", "4"), ("transport", transport)]
        if sid is not None:
            params.append(("sid", sid))
        return self.path + "?" + urlencode(params)


def _connect_socket(endpoint: Endpoint, timeout: float | None, ssl_context: Any) -> Any:
    sock = gevent.socket.create_connection((endpoint.host, endpoint.port), timeout)
    try:
        sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
    except OSError:
        pass
    if endpoint.secure:
        sock = ssl_context.wrap_socket(sock, server_hostname=endpoint.host)
    return sock


class CookieJar:
    """The cookies the server set (load balancers' sticky-session cookies), sent back as is."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def update(self, set_cookie_values: Iterable[str]) -> None:
        for value in set_cookie_values:
            pair = value.split(";", 1)[0]
            name, sep, val = pair.partition("=")
            if sep and name.strip():
                self.cookies[name.strip()] = val.strip()

    def header(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the jar's cookies added to any ``Cookie`` the user gave."""
        if not self.cookies:
            return headers
        out = dict(headers)
        own = next((k for k in out if k.lower() == "cookie"), None)
        jar = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if own is None:
            out["Cookie"] = jar
        else:
            out[own] = out[own] + "; " + jar
        return out


# A compressed response larger than this once decoded is refused (a small
# body can expand a thousandfold).
MAX_DECODED_BYTES = 256 * 1024 * 1024
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decoded(data: bytes, encoding: str) -> bytes:
    """A response body with its ``Content-Encoding`` undone.

    http.client asks for ``identity``; a server compresses only when the
    caller's own ``Accept-Encoding`` header asked for gzip or deflate.
    """
    wbits = _WBITS.get(encoding.strip().lower())
    if wbits is None:
        if encoding.strip().lower() == "identity":
            return data
        raise OSError(f"unsupported Content-Encoding {encoding!r}")
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(data, MAX_DECODED_BYTES)
    except zlib.error as exc:
        raise OSError(f"invalid {encoding} body: {exc}") from None
    if decoder.unconsumed_tail:
        raise OSError(f"{encoding} body larger than {MAX_DECODED_BYTES} bytes once decoded")
    return out


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to the endpoint, used by one greenlet at a time."""

    def __init__(self, endpoint: Endpoint, ssl_context: Any, cookies: CookieJar):
        self.endpoint = endpoint
        self.ssl_context = ssl_context
        self.cookies = cookies
        self._conn: http.client.HTTPConnection | None = None

    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        ep = self.endpoint
        if ep.secure:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                ep.host, ep.port, timeout=timeout, context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
        # gevent's sockets even when the socket module is not monkey-patched.
        conn._create_connection = gevent.socket.create_connection  # type: ignore[attr-defined]
        return conn

    def _usable(self) -> bool:
        """False when the idle connection was closed by the server (readable means EOF here)."""
        conn = self._conn
        if conn is None or conn.sock is None:
            return False
        try:
            readable, _, _ = gevent.select.select([conn.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def request(self, method: str, target: str, headers: dict[str, str], body: bytes | None,
                timeout: float | None) -> tuple[int, bytes]:
        """Send one request and read the whole response; raises OSError / HTTPException."""
        if not self._usable():
            self.close()
            self._conn = self._new_connection(timeout)
        conn = self._conn
        assert conn is not None
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request(method, target, body=body, headers=self.cookies.header(headers))
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()
            raise
        self.cookies.update(response.headers.get_all("Set-Cookie") or ())
        if response.will_close:
            self.close()
        encoding = response.headers.get("Content-Encoding")
        if encoding:
            data = _decoded(data, encoding)
        return response.status, data

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            sock = conn.sock
            try:
                conn.close()
            except OSError:
                pass
            except RuntimeError:
                # Another greenlet is inside this response's read (a parked poll cut short
                # by disconnect()): its buffered reader cannot be closed under it, and the
                # socket's descriptor stays open while it reads. Shutting the socket down
                # ends that read (with EOF), and the reader closes the rest.
                if sock is not None:
                    try:
                        sock.shutdown(_stdlib_socket.SHUT_RDWR)
                    except OSError:
                        pass


class Polling:
    """HTTP long-polling: the parked GET and the POSTs, each on its own keep-alive connection."""

    def __init__(self, endpoint: Endpoint, headers: dict[str, str], ssl_context: Any,
                 cookies: CookieJar):
        self.endpoint = endpoint
        self.headers = headers
        self._get = HttpConnection(endpoint, ssl_context, cookies)
        self._post = HttpConnection(endpoint, ssl_context, cookies)

    def handshake(self, timeout: float) -> list[Packet]:
        """The packets of the handshake response (an open packet first, if the server is sane)."""
        status, body = self._get.request("GET", self.endpoint.target("polling"), self.headers, None,
                                         timeout)
        if status != 200:
            data = _json_or_text(body)
            message = data.get("message") if isinstance(data, dict) else None
            raise ConnectionError(f"handshake refused with HTTP {status}"
                                  + (f": {message}" if message else ""), data)
        return _decode(body)

    def poll(self, sid: str, timeout: float) -> list[Packet]:
        """One GET: the packets the server had (or the noop that ends a poll)."""
        status, body = self._get.request("GET", self.endpoint.target("polling", sid), self.headers,
                                         None, timeout)
        if status != 200:
            raise ConnectionError(f"poll answered with HTTP {status}", _json_or_text(body))
        return _decode(body)

    def post(self, sid: str, frames: list[Frame], timeout: float) -> None:
        headers = dict(self.headers)
        headers["Content-Type"] = "text/plain;charset=UTF-8"
        status, body = self._post.request("POST", self.endpoint.target("polling", sid), headers,
                                          encode_payload(frames).encode("utf-8"), timeout)
        if status != 200:
            raise ConnectionError(f"POST answered with HTTP {status}", _json_or_text(body))

    def close(self) -> None:
        self._get.close()
        self._post.close()


def _decode(body: bytes) -> list[Packet]:
    try:
        return decode_payload(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("payload is not UTF-8") from None


class WebSocketConnection:
    """A client WebSocket: wsproto's frames on a gevent socket.

    ``receive()`` belongs to one reading greenlet at a time; ``send_many`` may
    be called from any greenlet (a lock keeps frames whole and in order, as
    the reader answers pings while the writer sends).
    """

    def __init__(self, sock: Any, ws: WSConnection, pending: list):
        self.sock = sock
        self._ws = ws
        self._events: deque = deque(pending)
        self._lock = Semaphore()
        self.closed = False
        self.close_code: int | None = None  # the server's close frame, once it came
        self.close_reason: str | None = None

    @classmethod
    def open(cls, endpoint: Endpoint, target: str, headers: dict[str, str], cookies: CookieJar,
             timeout: float | None, ssl_context: Any) -> "WebSocketConnection":
        """Connect and complete the opening handshake; raises ConnectionError or OSError."""
        sock = _connect_socket(endpoint, timeout, ssl_context)
        try:
            ws = WSConnection(ConnectionType.CLIENT)
            extra = [(k.encode("latin-1"), str(v).encode("latin-1"))
                     for k, v in cookies.header(headers).items()]
            sock.sendall(ws.send(Request(host=endpoint.host_header, target=target,
                                         extra_headers=extra)))
            events: list = []
            while True:
                data = sock.recv(_RECV_SIZE)
                ws.receive_data(data or None)
                events.extend(ws.events())
                for i, event in enumerate(events):
                    if isinstance(event, AcceptConnection):
                        sock.settimeout(None)
                        return cls(sock, ws, events[i + 1:])
                    if isinstance(event, RejectConnection):
                        rest = [e for e in events[i + 1:] if isinstance(e, RejectData)]
                        if not event.has_body or not data or any(e.body_finished for e in rest):
                            said = _json_or_text(b"".join(bytes(e.data) for e in rest))
                            message = said.get("message") if isinstance(said, dict) else None
                            raise ConnectionError(
                                f"WebSocket handshake refused with HTTP {event.status_code}"
                                + (f": {message}" if message else ""), said)
                if not data:
                    raise ConnectionError("the server closed the connection during the WebSocket "
                                          "handshake")
        except RemoteProtocolError as exc:
            sock.close()
            raise ConnectionError(f"invalid WebSocket handshake response: {exc}") from None
        except BaseException:
            sock.close()
            raise

    def receive(self) -> str | bytes | None:
        """The next whole message (``str`` text, ``bytes`` binary); None once the connection ended.

        Raises ``ProtocolError`` when the server breaks RFC 6455.
        """
        parts: list = []
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, (TextMessage, BytesMessage)):
                    parts.append(event.data)
                    if event.message_finished:
                        if isinstance(event, TextMessage):
                            return "".join(parts)
                        return b"".join(parts)
                elif isinstance(event, Ping):
                    self._send_bytes(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.close_code, self.close_reason = int(event.code), event.reason
                    if self._ws.state is ConnectionState.REMOTE_CLOSING:
                        try:
                            self._send_bytes(self._ws.send(event.response()))
                        except OSError:
                            pass
                    self.closed = True
                    return None
            if self.closed:
                return None
            try:
                data = self.sock.recv(_RECV_SIZE)
            except OSError:
                self.closed = True
                return None
            try:
                self._ws.receive_data(data or None)
                self._events.extend(self._ws.events())
            except RemoteProtocolError as exc:
                raise ProtocolError(f"invalid WebSocket data from the server: {exc}") from None

    def _send_bytes(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def send_many(self, frames: Iterable[str | bytes]) -> None:
        """Send messages (text for ``str``, binary for ``bytes``) in one write; raises OSError."""
        if self.closed:
            raise OSError("the WebSocket is closed")
        with self._lock:
            try:
                data = b"".join([self._ws.send(Message(data=f)) for f in frames])
            except LocalProtocolError as exc:
                raise OSError(f"the WebSocket is closing: {exc}") from None
            self.sock.sendall(data)

    def close(self, graceful: bool = False, timeout: float = 1.0) -> None:
        """Close the connection; ``graceful`` first sends a close frame (bounded by ``timeout``)."""
        if graceful and not self.closed and self._ws.state is ConnectionState.OPEN:
            try:
                with gevent.Timeout(timeout, False):
                    self._send_bytes(self._ws.send(CloseConnection(code=1000)))
            except (OSError, LocalProtocolError):
                pass
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def _json_or_text(body: bytes) -> Any:
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text or None
