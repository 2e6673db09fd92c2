"""WSGI integration: route Socket.IO beside an existing app, and serve with gevent."""

from __future__ import annotations

import logging
import mimetypes
import os
import socket
import time
import weakref
from typing import Any, Callable, Iterable, Union

import gevent
import gevent.socket
from gevent.pywsgi import Input, WSGIServer, format_date_time
from geventwebsocket.handler import WebSocketHandler

from . import http_head
from .engine import ws_handshake
from .worker_routing import RoutedWSGIServer

logger = logging.getLogger("geventsio")

WSGIAppType = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


StaticTarget = Union[str, dict]


class WSGIApp:
    """Serve ``server`` under ``/<socketio_path>/`` and hand every other request to ``wsgi_app``.

    ``server`` is a ``geventsio.Server`` or a ``geventsio.engine.Server``.
    ``static_files`` is python-socketio's mapping of URL paths to files or
    folders: ``{"/": "index.html", "/static": "./public",
    "/logo": {"filename": "logo.svg", "content_type": "image/svg+xml"}}``.
    ``metrics_path`` (off by default), for example ``"/metrics"``, serves
    ``server.stats()`` there in Prometheus' text format 0.0.4.
    """

    def __init__(
        self,
        server: Any,
        wsgi_app: WSGIAppType | None = None,
        static_files: dict[str, StaticTarget] | None = None,
        socketio_path: str = "socket.io",
        metrics_path: str | None = None,
    ):
        self.server = server
        self.metrics_path = metrics_path
        self.wsgi_app = wsgi_app
        self.static_files = dict(static_files or {})
        # Longest URL prefix first, so "/static/img" wins over "/static".
        self._static_prefixes = sorted(self.static_files, key=len, reverse=True)
        path = "/" + socketio_path.strip("/")
        self._exact = path
        self._prefix = path + "/"

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(self._prefix) or path == self._exact:
            return self.server.handle_request(environ, start_response)
        if path == self.metrics_path:
            return _send_metrics(self.server, start_response)
        if self.static_files:
            found = self._static_file(path)
            if found is not None:
                return _send_file(found[0], found[1], start_response)
        if self.wsgi_app is not None:
            return self.wsgi_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return [b"Not Found"]

    def _static_file(self, path: str) -> tuple[str, str | None] | None:
        """The file (and content type, if configured) that serves ``path``, if any."""
        for url in self._static_prefixes:
            target = self.static_files[url]
            filename, ctype = (target["filename"], target.get("content_type")) \
                if isinstance(target, dict) else (target, None)
            if path == url and not os.path.isdir(filename):
                return filename, ctype
            base = url.rstrip("/") + "/"
            if path == url or path.startswith(base):
                root = os.path.realpath(filename)
                rest = path[len(base):] if path.startswith(base) else ""
                candidate = os.path.realpath(os.path.join(root, rest or "index.html"))
                # Never serve a file outside the configured folder.
                if candidate.startswith(root + os.sep) and os.path.isfile(candidate):
                    return candidate, None
        return None


def _send_file(filename: str, content_type: str | None,
               start_response: Callable[..., Any]) -> Iterable[bytes]:
    try:
        with open(filename, "rb") as f:
            body = f.read()
    except OSError:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return [b"Not Found"]
    ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _send_metrics(server: Any, start_response: Callable[..., Any]) -> Iterable[bytes]:
    from . import metrics  # only for apps that serve metrics

    body = metrics.prometheus_text(metrics.stats_of(server)).encode("utf-8")
    start_response("200 OK", [("Content-Type", metrics.PROMETHEUS_CONTENT_TYPE),
                              ("Content-Length", str(len(body)))])
    return [body]


class Handler(WebSocketHandler):
    """gevent's WSGI handler, leaner where geventsio's own requests pass, and what geventsio needs.

    - Request heads are read by ``geventsio.http_head`` (pywsgi's email-based
      parser was a tenth of a WebSocket handshake's CPU); the environ is the same.
    - An Engine.IO WebSocket request (``EIO=`` and ``transport=websocket`` in
      its query) is checked here and answered 101 only once the engine accepts
      it: a refused one gets an HTTP error, as from Node's server, and the 101
      leaves in one write with the open packet. Every other upgrade is
      gevent-websocket's (``environ["wsgi.websocket"]``), as before.
    - TCP_NODELAY: a polling response leaves in two writes (headers, body), and
      with Nagle's algorithm the second one waits for the client's delayed ACK
      (~40 ms per poll).
    - ``environ["geventsio.socket"]``: lets a parked poll notice a client that left.
    - Time limits on reading a request: a client gets ``request_timeout``
      seconds to send its request line and headers (a slowloris client that
      trickles them holds a greenlet and a socket no longer than that), and an
      idle keep-alive connection is closed after ``keepalive_timeout``.
    """

    request_timeout = 30.0
    keepalive_timeout = 60.0

    # One loop timer per connection for each wait, started again for each
    # request of a keep-alive connection (a new Timeout per request was ~3%
    # of a polling request).
    _keepalive_timer: gevent.Timeout | None = None
    _request_timer: gevent.Timeout | None = None

    def read_requestline(self) -> str:
        if _draining:
            return ""  # the process is exiting: no new request on this connection
        timer = self._keepalive_timer
        if timer is None:
            timer = self._keepalive_timer = gevent.Timeout(self.keepalive_timeout)
        _idle_handlers.add(self)
        timer.start()
        try:
            return super().read_requestline()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            return ""  # the client sent nothing in time: close the connection quietly
        finally:
            timer.cancel()
            _idle_handlers.discard(self)

    def read_request(self, raw_requestline: str) -> Any:
        timer = self._request_timer
        if timer is None:
            timer = self._request_timer = gevent.Timeout(self.request_timeout)
        timer.start()
        try:
            return self._read_head(raw_requestline)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise ValueError(f"request headers not complete within {self.request_timeout} s") from None
        finally:
            timer.cancel()

    def _read_head(self, raw_requestline: str) -> bool:
        """pywsgi's ``read_request``, with ``http_head`` reading the header fields."""
        self.requestline = raw_requestline.rstrip()
        words = self.requestline.split()
        if len(words) != 3:
            return super().read_request(raw_requestline)  # HTTP/0.9, or garbage: pywsgi's answer
        self.command, self.path, self.request_version = words
        if self.request_version not in ("HTTP/1.1", "HTTP/1.0") and not self._check_http_version():
            raise ValueError(f"invalid HTTP version in {self.requestline[:100]!r}")
        fields = http_head.read_fields(self.rfile.readline)
        headers = http_head.RequestHeaders(fields)
        if (headers.get("transfer-encoding") or "").lower() == "chunked":
            del headers["content-length"]  # the chunks say where the body ends
        self.content_length = http_head.content_length(headers._fields)
        if self.content_length and self.command == "HEAD":
            raise ValueError("a HEAD request with a body")
        self.headers = headers
        connection = (headers.get("connection") or "").lower()
        if self.request_version == "HTTP/1.1":
            self.close_connection = connection == "close"
        else:
            self.close_connection = self.request_version != "HTTP/1.0" or connection != "keep-alive"
        return True

    def upgrade_websocket(self) -> Any:
        # gevent-websocket answers a bad handshake with str bodies, which
        # pywsgi cannot write (a TypeError per request reaches the hub).
        result = super().upgrade_websocket()
        if result:
            result = [part.encode("latin-1") if isinstance(part, str) else part for part in result]
            if self.code == 402:  # its answer to an HTTP/1.0 upgrade; it means 400
                self.start_response("400 Bad Request", [], exc_info=True)
        return result

    def handle(self) -> None:
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        super().handle()

    def detach_websocket(self) -> tuple[Any, Any] | None:
        """Hand the upgraded connection to the caller: ``(socket, rfile)``, or None if it cannot be.

        Called by the application while it serves the WebSocket. Once the
        application returns, this handler neither reads another request from
        the socket nor closes it, and the server's own ``close()`` of it only
        marks it closed: the descriptor stays open until the caller closes
        ``rfile`` (a ``makefile`` of the socket), which then closes it. So an
        idle WebSocket needs no greenlet parked in this handler.
        """
        sock, rfile = self.socket, self.rfile
        # TLS sockets are read through their SSL object: not detachable this way.
        # Only the socket's own makefile keeps the descriptor open once the
        # server closes the socket (a reader over other bytes first would not).
        raw = getattr(rfile, "raw", None)
        if (type(sock) is not gevent.socket.socket or type(raw) is not socket.SocketIO
                or getattr(raw, "_sock", None) is not sock):
            return None
        self.close_connection = True
        self.socket = None  # pywsgi's handle() would drain and close what it finds here
        return sock, rfile

    def get_environ(self) -> dict:
        headers = self.headers
        if type(headers) is not http_head.RequestHeaders:  # an odd request line pywsgi parsed
            environ = super().get_environ()
        else:
            environ = http_head.fill_environ(self.server.get_environ(), self.command, self.path,
                                             self.request_version, headers._fields, self.client_address)
            # Like pywsgi: an upgrade request's input is the connection itself.
            upgrade = (ws_handshake.is_upgrade_request(environ)
                       or environ.get("HTTP_CONNECTION", "").lower() == "upgrade")
            expect = environ.get("HTTP_EXPECT") == "100-continue"
            chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
            self.wsgi_input = Input(self.rfile, self.content_length, socket=self.socket if expect else None,
                                    chunked_input=chunked)
            environ["wsgi.input"] = self.rfile if upgrade else self.wsgi_input
            environ["wsgi.input_terminated"] = not upgrade
        environ["geventsio.socket"] = self.socket
        router = getattr(self.server, "router", None)
        if router is not None:
            environ.update(router.environ_extras())
        return environ

    def run_application(self) -> None:
        environ = self.environ
        query = environ.get("QUERY_STRING", "")
        if not (ws_handshake.is_upgrade_request(environ)
                and "transport=websocket" in query and "EIO=" in query):
            super().run_application()  # gevent-websocket's upgrade, or plain HTTP
            return
        problem = ws_handshake.handshake_problem(environ)
        if problem is not None:
            body = problem.encode("latin-1")
            self.close_connection = True
            self.start_response("400 Bad Request", [("Content-Type", "text/plain"),
                                                    ("Content-Length", str(len(body)))])
            self.write(body)
            return
        environ["geventsio.accept_websocket"] = self._accept_websocket
        try:
            self.result = self.application(environ, self.start_response)
            if not self.connection_upgraded:  # refused: the application's HTTP answer
                self.close_connection = True  # what follows an upgrade request may be frames
                self.process_result()
        finally:
            # The environ may outlive the request (a session keeps it): not this handler.
            del environ["geventsio.accept_websocket"]
            close = getattr(self.result, "close", None)
            self.result = None
            if close is not None:
                close()

    def _accept_websocket(self) -> tuple["Handler", bytes]:
        """Make this connection a WebSocket: returns this handler and the 101 to send first.

        The caller owns the connection from here on (``detach_websocket``
        lets go of it), and must send the 101 before any frame.
        """
        head = ws_handshake.switching_protocols(self.environ)
        self._orig_status = "101 Switching Protocols"
        self.status = b"101 Switching Protocols"
        self.code = 101
        self.headers_sent = True  # pywsgi writes nothing more on this connection
        self.connection_upgraded = True
        self.close_connection = True
        self.response_length = len(head)
        return self, head

    def handle_one_response(self) -> None:
        # Under worker routing, a request for another worker's session hands
        # the whole connection to that worker before anything is answered.
        router = getattr(self.server, "router", None)
        if router is not None and router.hand_off(self):
            return
        super().handle_one_response()

    def finalize_headers(self) -> None:
        if self.provided_date is None:
            self.response_headers.append((b"Date", _http_date()))
            self.provided_date = True
        super().finalize_headers()

    def _write_with_headers(self, data: bytes) -> None:
        # pywsgi sends the head and the body in two writes: two syscalls for
        # every polling response. A body this small costs less to copy.
        if len(data) > _ONE_WRITE_LIMIT:
            super()._write_with_headers(data)
            return
        self.headers_sent = True
        self.finalize_headers()
        out = bytearray(b"HTTP/1.1 ")
        out += self.status
        out += b"\r\n"
        for name, value in self.response_headers:
            out += name
            out += b": "
            out += value
            out += b"\r\n"
        out += b"\r\n"
        if data:
            if self.response_use_chunked:
                out += b"%x\r\n" % len(data)
                out += data
                out += b"\r\n"
            else:
                out += data
        self._sendall(out)

    def log_request(self) -> None:
        # Parked polls and WebSockets make per-request access lines noise;
        # pass log=... to make_server to get them anyway. (gevent replaces
        # log=None with a no-op logger, so the line would be formatted for nothing.)
        if getattr(self.server, "access_log", True) and "101" not in str(self.status):
            super(WebSocketHandler, self).log_request()


_ONE_WRITE_LIMIT = 65536
_date_cache: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    """The Date header's value, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, format_date_time(now))
    return _date_cache[1]


# Connections waiting for their next request, and whether the process stopped
# taking requests: a graceful exit must not wait keepalive_timeout for them.
_idle_handlers: "weakref.WeakSet[Handler]" = weakref.WeakSet()
_draining = False


def close_idle_connections() -> None:
    """Close idle keep-alive connections now and busy ones after their response.

    For a process that is exiting (the gunicorn worker's SIGTERM): HTTP clients
    retry a request on a kept-alive connection the server closed.
    """
    global _draining
    _draining = True
    for handler in list(_idle_handlers):
        try:
            handler.socket.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def make_server(app: WSGIAppType, host: str = "127.0.0.1", port: int = 5000,
                log: Any = None, worker_dir: str | None = None, **kwargs: Any) -> WSGIServer:
    """A gevent WSGI server with WebSocket support for ``app``; call ``start()`` or ``serve_forever()``.

    ``listener``: a listening socket to serve instead of binding ``(host, port)``.
    ``worker_dir``: this server is one of several processes serving one port
    (a listening socket they inherited, or one bound with ``SO_REUSEPORT``);
    a request for a session another of them owns is handed to it
    (``geventsio.worker_routing``). All of them must name the same directory.
    """
    kwargs.setdefault("handler_class", Handler)
    listener = kwargs.pop("listener", None) or (host, port)
    if worker_dir is not None:
        server: WSGIServer = RoutedWSGIServer(worker_dir, listener, app, log=log, **kwargs)
    else:
        server = WSGIServer(listener, app, log=log, **kwargs)
    server.access_log = log is not None
    return server


def serve(app: WSGIAppType, host: str = "127.0.0.1", port: int = 5000, **kwargs: Any) -> None:
    """Serve ``app`` until interrupted: both Engine.IO transports, upgrade included."""
    server = make_server(app, host, port, **kwargs)
    logger.info("geventsio serving on http://%s:%d", host, server.server_port)
    server.serve_forever()
