"""The Engine.IO v4 server: validates requests, opens sessions, routes to transports."""

from __future__ import annotations

import json
import logging
import secrets
import time
import weakref
from typing import Any, Callable, Iterable, Protocol

import gevent

from . import http, loop_monitor, transports
from ..metrics import Counters, engine_stats
from .dispatch import WorkerPool
from .packet import Frame, message_frame
from .session import REASON_FORCED_CLOSE, REASON_SHUTDOWN, Session, State
from .session_v3 import SessionV3
from .websocket import WebSocket
from .ws_frames import CLOSE_POLICY_VIOLATION

logger = logging.getLogger("geventsio.engine")

TRANSPORTS = ("polling", "websocket")
EVENTS = ("connect", "message", "disconnect")


class Listener(Protocol):
    """What the layer above the engine hears of its sessions.

    ``on_message`` runs on the greenlet reading the connection and must not
    block (it may hand work to ``session.run_ordered``); ``on_connect`` runs
    before the open packet is sent; ``on_close`` runs once per session on its
    dispatcher, after every call queued before the close.
    """

    def on_connect(self, session: Session) -> None: ...

    def on_message(self, session: Session, data: str | bytes) -> None: ...

    def on_close(self, session: Session, reason: str) -> None: ...


class HandlerListener:
    """The listener behind ``Server.on``: runs the registered handlers in order per session."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[..., Any]] = {}

    def on_connect(self, session: Session) -> None:
        handler = self.handlers.get("connect")
        if handler is not None:
            handler(session.sid, session.environ)

    def on_message(self, session: Session, data: str | bytes) -> None:
        handler = self.handlers.get("message")
        if handler is not None:
            session.run_ordered(handler, session.sid, data)

    def on_close(self, session: Session, reason: str) -> None:
        handler = self.handlers.get("disconnect")
        if handler is not None:
            handler(session.sid, reason)


_live_servers: "weakref.WeakSet[Server]" = weakref.WeakSet()


def shutdown_all(timeout: float = 5) -> None:
    """Shut down every Engine.IO server of this process at once (a worker's SIGTERM)."""
    greenlets = [gevent.spawn(server.shutdown, timeout) for server in list(_live_servers)]
    gevent.joinall(greenlets)


class Server:
    """An Engine.IO v4 server, usable on its own or under the Socket.IO layer.

    Mount it with ``geventsio.WSGIApp(server, socketio_path=...)``. Handlers
    (or, for the layer above, one ``listener``):

    - ``connect(sid, environ)``: a session opened (before its open packet is sent);
    - ``message(sid, data)``: ``data`` is ``str`` or ``bytes``; handlers of one
      session run one at a time, in arrival order, each off the reading greenlet;
    - ``disconnect(sid, reason)``: the session closed, after its last message.

    Times are in seconds; sizes in bytes. Bounds: ``max_http_buffer_size``
    (a POST body or WebSocket message), ``max_queued_bytes`` (unsent data per
    session), ``max_inbox`` (handler calls queued per session),
    ``body_timeout`` (to deliver a POST body), ``close_flush_timeout`` (for a
    closing session's last writes). ``loop_block_warning``: log the handler
    that keeps the event loop from turning for this long (None: don't watch).

    ``allow_eio3`` also accepts Engine.IO v3 clients (socket.io-client 2.x) on
    the same endpoint; their sessions are ``session_v3.SessionV3``.

    ``http_compression``: a long-polling response body (and the handshake's) of
    at least ``compression_threshold`` bytes is sent gzip- or deflate-compressed
    to a client whose ``Accept-Encoding`` asks for it (as Node's engine.io and
    python-engineio do, on by default). WebSocket messages are never compressed.
    """

    def __init__(
        self,
        *,
        ping_interval: float = 25,
        ping_timeout: float = 20,
        max_http_buffer_size: int = 1_000_000,
        upgrade_timeout: float = 10,
        transports: Iterable[str] = TRANSPORTS,
        allow_upgrades: bool = True,
        cors_allowed_origins: str | Iterable[str] | None = None,
        cors_credentials: bool = True,
        allow_request: Callable[[dict], bool] | None = None,
        cookie: str | dict | None = None,
        max_queued_bytes: int = 16 * 1024 * 1024,
        max_inbox: int = 256,
        close_flush_timeout: float = 5,
        body_timeout: float = 30,
        loop_block_warning: float | None = 1.0,
        allow_eio3: bool = False,
        http_compression: bool = True,
        compression_threshold: int = 1024,
        listener: Listener | None = None,
    ):
        unknown = set(transports) - set(TRANSPORTS)
        if unknown:
            raise ValueError(f"unknown transports: {sorted(unknown)}")
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_http_buffer_size = max_http_buffer_size
        self.upgrade_timeout = upgrade_timeout
        self.transports = tuple(transports)
        self.allow_upgrades = allow_upgrades
        self.cors = http.Cors(cors_allowed_origins, cors_credentials)
        self.allow_request = allow_request
        self.cookie = {"name": cookie} if isinstance(cookie, str) else cookie
        self.max_queued_bytes = max_queued_bytes
        self.max_inbox = max_inbox
        self.close_flush_timeout = close_flush_timeout
        self.body_timeout = body_timeout
        self.allow_eio3 = allow_eio3
        if compression_threshold < 0:
            raise ValueError(f"compression_threshold must be >= 0, not {compression_threshold!r}")
        self.http_compression = bool(http_compression)
        self.compression_threshold = compression_threshold
        self.sessions: dict[str, Session] = {}
        self.counters = Counters()  # bumped on the data path; read through stats()
        self.accepting = True  # False once shutdown() began: handshakes are refused
        if loop_block_warning:
            loop_monitor.ensure_started(self, loop_block_warning)
        _live_servers.add(self)
        self.workers = WorkerPool()
        self.listener: Listener = listener if listener is not None else HandlerListener()

    # -- application API ------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register ``handler`` for ``event``; usable as a decorator when ``handler`` is omitted."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; expected one of {EVENTS}")

        if not isinstance(self.listener, HandlerListener):
            raise TypeError("this server reports to a listener; register handlers there")

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.listener.handlers[event] = fn
            return fn

        return register(handler) if handler is not None else register

    def send(self, sid: str, data: str | bytes) -> bool:
        """Queue one message for a client without blocking; False if the session is gone."""
        session = self.sessions.get(sid)
        return session is not None and session.send_frames([message_frame(data)])

    def send_frames(self, sid: str, frames: list[Frame]) -> bool:
        """Queue pre-encoded frames (see ``packet.message_frame``); False if the session is gone."""
        session = self.sessions.get(sid)
        return session is not None and session.send_frames(frames)

    def disconnect(self, sid: str | None = None) -> None:
        """Close one session, or every session when ``sid`` is None."""
        targets = [self.sessions.get(sid)] if sid is not None else list(self.sessions.values())
        for session in targets:
            if session is not None:
                session.close(REASON_FORCED_CLOSE)

    def transport(self, sid: str) -> str | None:
        """The name of the session's current transport, or None if it is gone."""
        session = self.sessions.get(sid)
        if session is None or session.closed:
            return None
        return "websocket" if session.state is State.WEBSOCKET else "polling"

    def stats(self) -> dict[str, Any]:
        """Counters of this server since it started, and its sessions by transport now.

        See ``geventsio.Server.stats`` for the keys (the Engine.IO ones).
        """
        return engine_stats(self)

    def shutdown(self, timeout: float = 5) -> None:
        """Close every session gracefully; return when they are done or ``timeout`` passed.

        From now on handshakes are refused (503). Each client gets what was
        already queued for it, then a close packet; the layer above hears of
        each close (reason ``"server shutting down"``) and its handlers finish.
        Sessions still busy after ``timeout`` seconds (a client not reading, a
        handler still running) are cut and their greenlets killed.
        """
        self.accepting = False
        loop_monitor.release(self)
        sessions = list(self.sessions.values())
        for session in sessions:
            session.close(REASON_SHUTDOWN)
        deadline = time.monotonic() + timeout
        for session in sessions:
            session.wait_finished(max(0.0, deadline - time.monotonic()))
        for session in sessions:
            session.kill()

    # -- WSGI entry -----------------------------------------------------

    def handle_request(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application for the Engine.IO endpoint."""
        request = http.Request(environ)
        ws = WebSocket.from_environ(environ, self.max_http_buffer_size, self.counters)
        try:
            return self._route(request, ws, start_response)
        finally:
            if ws is not None and ws.reader is None:  # else the event loop reads it on
                ws.close()

    def _route(self, request: http.Request, ws: WebSocket | None,
               start_response: Callable[..., Any]) -> Iterable[bytes]:
        def refuse(code: int, status: int = 400, message: str | None = None) -> Iterable[bytes]:
            if ws is not None:
                # gevent-websocket sent the 101 already: the close frame carries the error.
                ws.close(CLOSE_POLICY_VIOLATION, message or http.ERROR_MESSAGES[code])
                return []
            return http.error(start_response, request, code, cors, status, message)

        # geventsio's own handler waits for this engine's word before it answers 101.
        accept = request.environ.get("geventsio.accept_websocket") if ws is None else None
        cors: http.Headers = []
        if not self.cors.check(request):
            return refuse(http.FORBIDDEN, 403)
        cors = self.cors.headers(request)
        if request.method == "OPTIONS" and ws is None:
            return http.respond(start_response, request, 204, b"", self.cors.preflight_headers(request))
        query = request.query
        transport = query.get("transport")
        if transport not in self.transports:
            return refuse(http.UNKNOWN_TRANSPORT)
        if query.get("EIO") != "4" and not (query.get("EIO") == "3" and self.allow_eio3):
            return refuse(http.UNSUPPORTED_PROTOCOL_VERSION)
        upgrade = ws is not None or accept is not None
        if (transport == "websocket") != upgrade:
            return refuse(http.BAD_REQUEST)
        sid = query.get("sid")
        if sid is None:
            if not self.accepting:
                # Clients retry a failed handshake with back-off: by then a
                # restarted server (or another worker) answers.
                return refuse(http.BAD_REQUEST, 503, "Server shutting down")
            if request.method != "GET":
                return refuse(http.BAD_HANDSHAKE_METHOD)
            if self.allow_request is not None and not self.allow_request(request.environ):
                logger.info("allow_request refused a handshake from %s",
                            request.environ.get("REMOTE_ADDR"))
                return refuse(http.FORBIDDEN, 403)
            if upgrade:
                return transports.websocket_open(self, ws, accept, request, start_response, cors)
            return self._polling_handshake(request, start_response, cors)
        session = self.sessions.get(sid)
        if session is None or (session.closed and (upgrade or request.method != "GET")):
            # A closed session lingers only for one GET to collect its close packet.
            logger.info("request for unknown session %r", sid[:40])
            return refuse(http.UNKNOWN_SID)
        if upgrade:
            if not self.allow_upgrades:
                return refuse(http.BAD_REQUEST)
            return transports.websocket_upgrade(self, session, ws, accept, request, start_response, cors)
        if session.state is State.WEBSOCKET:
            return refuse(http.BAD_REQUEST)
        if request.method == "GET":
            return transports.polling_get(self, session, request, start_response, cors)
        if request.method == "POST":
            return transports.polling_post(self, session, request, start_response, cors)
        return refuse(http.BAD_REQUEST)

    @property
    def polling_threshold(self) -> int | None:
        """The size from which polling bodies may be compressed; None when compression is off."""
        return self.compression_threshold if self.http_compression else None

    # -- sessions -------------------------------------------------------

    def _open_session(self, environ: dict, state: State, query: dict) -> Session | None:
        # Under worker routing the sid starts with its worker's tag (geventsio.worker_routing).
        sid = environ.get("geventsio.sid_prefix", "") + secrets.token_urlsafe(15)
        if query.get("EIO") == "3":
            session: Session = SessionV3(self, sid, environ, state, binary=not query.get("b64"))
        else:
            session = Session(self, sid, environ, state)
        self.sessions[sid] = session
        self.counters.handshakes += 1
        try:
            self.listener.on_connect(session)
        except Exception:
            logger.exception("connect handler failed; closing session %s", sid)
            session.close(REASON_FORCED_CLOSE)
            return None
        return session

    def _open_frame(self, session: Session, upgrades: list[str]) -> str:
        handshake = {
            "sid": session.sid,
            "upgrades": upgrades,
            "pingInterval": int(self.ping_interval * 1000),
            "pingTimeout": int(self.ping_timeout * 1000),
        }
        if session.protocol != 3:  # v3 has no maxPayload
            handshake["maxPayload"] = self.max_http_buffer_size
        self.counters.packets_out += 1
        return "0" + json.dumps(handshake, separators=(",", ":"))

    def _polling_handshake(self, request: http.Request, start_response: Callable[..., Any],
                           cors: http.Headers) -> Iterable[bytes]:
        session = self._open_session(request.environ, State.POLLING, request.query)
        if session is None:
            return http.error(start_response, request, http.FORBIDDEN, cors, 403)
        can_upgrade = self.allow_upgrades and "websocket" in self.transports
        upgrades = ["websocket"] if can_upgrade and _can_upgrade(request.environ) else []
        headers = list(cors)
        if self.cookie:
            headers.append(("Set-Cookie", _cookie_header(self.cookie, session.sid)))
        body, content_type = session.encode_polling([self._open_frame(session, upgrades)])
        sent = http.respond_payload(start_response, request, body, headers, content_type,
                                    self.polling_threshold)
        self.counters.bytes_out += len(sent[0])
        return sent

    def _forget(self, session: Session) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
            session.forgotten()


def _can_upgrade(environ: dict) -> bool:
    """Whether this WSGI server can hand over a WebSocket (gevent's, through gevent-websocket)."""
    if "geventsio.socket" in environ:
        return True
    return type(environ.get("wsgi.input")).__module__.startswith("gevent")


def _cookie_header(cookie: dict, sid: str) -> str:
    parts = [f"{cookie.get('name', 'io')}={sid}", f"Path={cookie.get('path', '/')}"]
    if cookie.get("httponly", True):
        parts.append("HttpOnly")
    parts.append(f"SameSite={cookie.get('samesite', 'Lax')}")
    if cookie.get("secure"):
        parts.append("Secure")
    return "; ".join(parts)
