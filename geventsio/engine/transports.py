"""The two ways a session talks to its client: HTTP long-polling and WebSocket.

Both only move frames between the wire and the session: polling drains the
session's queue into one GET response and feeds a POST body to it; the
WebSocket reader feeds frames to it while a writer greenlet drains it.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any, Callable

import gevent

from . import http
from .packet import (
    NOOP_FRAME,
    PROBE_PING,
    PROBE_PONG,
    PacketType,
    decode_packet,
)
from .session import (
    REASON_PARSE_ERROR,
    REASON_TRANSPORT_CLOSE,
    REASON_TRANSPORT_ERROR,
    Session,
    State,
)
from .ws_reader import EventReader
from .websocket import WebSocket
from .ws_frames import CLOSE_POLICY_VIOLATION, MessageTooBig, encode_frame
from ..exceptions import ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server

logger = logging.getLogger("geventsio.engine")

_OK = b"ok"


# -- long-polling -----------------------------------------------------------


def _client_socket(environ: dict) -> Any:
    """The request's TCP socket, to notice a client that gives up on a parked GET."""
    sock = environ.get("geventsio.socket")
    if sock is not None:
        return sock
    # gevent.pywsgi (as used by gunicorn's gevent workers too) keeps it here.
    raw = getattr(getattr(environ.get("wsgi.input"), "rfile", None), "raw", None)
    return getattr(raw, "_sock", None)


class _AbortWatch:
    """Wakes a parked GET when its client's socket becomes readable (usually: closed)."""

    def __init__(self, sock: Any, session: Session):
        self.sock = sock
        self.readable = False
        self._session = session
        self._watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
        self._watcher.start(self._on_readable)

    def _on_readable(self) -> None:
        self.readable = True
        self._watcher.stop()
        self._session.wake()

    def client_gone(self) -> bool:
        if not self.readable:
            return False
        self.readable = False
        # The plain socket under gevent's wrapper: gevent's recv would wait.
        raw = getattr(self.sock, "_sock", self.sock)
        try:
            peek = raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            peek = b"?"
        except OSError:
            return True
        # Bytes mean the client pipelined a request; only EOF means it left.
        return not peek

    def stop(self) -> None:
        self._watcher.stop()
        self._watcher.close()


def polling_get(server: "Server", session: Session, request: http.Request, start_response: Any,
                headers: http.Headers) -> list[bytes]:
    """Answer a long-polling GET with every frame queued, waiting until there is one."""
    if session.polling_get_active:
        logger.warning("session %s: a second concurrent poll; closing the session", session.sid)
        session.close(REASON_TRANSPORT_ERROR)
        return http.error(start_response, request, http.BAD_REQUEST, headers)
    if session.state is State.UPGRADING:
        body, content_type = session.encode_polling([NOOP_FRAME])
        return http.respond_payload(start_response, request, body, headers, content_type,
                                    server.polling_threshold)
    session.polling_get_active = True
    watch = None
    try:
        sock = _client_socket(request.environ)
        if sock is not None and session.state is State.POLLING and not session.has_frames:
            try:
                watch = _AbortWatch(sock, session)
            except (OSError, ValueError):
                watch = None
        while True:
            session.wait_for_frames()
            if watch is not None and watch.client_gone():
                logger.info("session %s: client closed a pending poll", session.sid)
                session.close(REASON_TRANSPORT_ERROR)
                return http.error(start_response, request, http.BAD_REQUEST, headers)
            if session.state is State.UPGRADING:
                frames = [NOOP_FRAME]
                break
            frames = session.drain()
            if frames or session.state is not State.POLLING:
                break
    finally:
        session.polling_get_active = False
        if watch is not None:
            watch.stop()
        if session.closed:
            server._forget(session)
    body, content_type = session.encode_polling(frames or [NOOP_FRAME])
    sent = http.respond_payload(start_response, request, body, headers, content_type,
                                server.polling_threshold)
    server.counters.bytes_out += len(sent[0])  # what the wire carries: compressed, if it was
    return sent


def polling_post(server: "Server", session: Session, request: http.Request, start_response: Any,
                 headers: http.Headers) -> list[bytes]:
    """Feed the packets of a POST body to the session."""
    if session.polling_post_active:
        logger.warning("session %s: a second concurrent POST; closing the session", session.sid)
        session.close(REASON_TRANSPORT_ERROR)
        return http.error(start_response, request, http.BAD_REQUEST, headers)
    session.polling_post_active = True
    try:
        try:
            with gevent.Timeout(server.body_timeout):
                body = http.read_body(request.environ, server.max_http_buffer_size)
        except gevent.Timeout:
            logger.warning("session %s: POST body not received within body_timeout=%ss; closing",
                           session.sid, server.body_timeout)
            session.close(REASON_TRANSPORT_ERROR)
            return http.respond(start_response, request, 400, b"", headers + http.skip_request_body(
                request.environ))
        except http.BodyTooLarge:
            logger.warning(
                "session %s: refused a POST larger than max_http_buffer_size=%d bytes",
                session.sid, server.max_http_buffer_size)
            extra = http.skip_request_body(request.environ)
            return http.respond(start_response, request, 413, b"Payload Too Large",
                                headers + extra)
        except OSError:
            session.close(REASON_TRANSPORT_ERROR)
            return http.error(start_response, request, http.BAD_REQUEST, headers)
        server.counters.bytes_in += len(body)
        try:
            packets = session.decode_polling(body, request.environ.get("CONTENT_TYPE"))
            server.counters.packets_in += len(packets)
            for packet in packets:
                session.receive(packet)
        except (ProtocolError, UnicodeDecodeError) as exc:
            logger.warning("session %s: invalid POST body (%s); closing the session",
                           session.sid, exc)
            session.close(REASON_PARSE_ERROR)
            return http.error(start_response, request, http.BAD_REQUEST, headers)
    finally:
        session.polling_post_active = False
    return http.respond(start_response, request, 200, _OK, headers)


# -- WebSocket --------------------------------------------------------------


def _read_one(session: Session, ws: WebSocket) -> bool:
    """Read one message and hand it to the session; True when the connection is done reading."""
    try:
        frame = ws.receive()
    except MessageTooBig:
        logger.warning(
            "session %s: refused a WebSocket message larger than max_http_buffer_size=%d "
            "bytes", session.sid, ws.max_message_size)
        session.close(REASON_PARSE_ERROR)
        return True
    except ProtocolError as exc:
        logger.warning("session %s: WebSocket protocol error (%s)", session.sid, exc)
        session.close(REASON_PARSE_ERROR)
        return True
    if frame is None:
        session.close(REASON_TRANSPORT_CLOSE)
        return True
    # Once the session is closed the reader keeps going (ignoring input)
    # until the writer has flushed and closed the connection.
    try:
        session.receive_frame(frame)
    except ProtocolError as exc:
        logger.warning("session %s: invalid packet (%s); closing the session",
                       session.sid, exc)
        session.close(REASON_PARSE_ERROR)
        return True
    return False


def _read_loop(session: Session, ws: WebSocket) -> None:
    """The request greenlet becomes the session's reader until the connection ends."""
    while not _read_one(session, ws):
        pass


def _serve(server: "Server", session: Session, ws: WebSocket) -> None:
    """Read the session's messages: from the event loop if the WSGI handler lets go, else here."""
    detach = ws.detach
    ws.detach = None
    held = detach() if detach is not None else None
    if held is None:
        try:
            _read_loop(session, ws)
        finally:
            ws.close()  # a close frame, once; then what the client still sends is dropped
            ws.drain()
        return
    sock, rfile = held
    ws.reader = EventReader(session, ws, sock, rfile, _read_one, server.workers)
    ws.reader.run()  # what arrived already, then the watcher; the request returns


# A WebSocket request reaches the engine in one of two states: answered 101
# already (a ``WebSocket``, from gevent-websocket's handler), or waiting for the
# engine's decision (``accept``, from geventsio's handler: see wsgi.Handler). A
# refusal is then a close frame, or an HTTP error before anything was answered.
Accept = Callable[[], tuple[Any, bytes]]


def _accepted(server: "Server", accept: Accept) -> tuple[WebSocket, bytes]:
    """Switch the connection to WebSocket: the connection, and the 101 to send first."""
    handler, head = accept()
    return WebSocket.from_handler(handler, server.max_http_buffer_size, server.counters), head


def websocket_open(server: "Server", ws: WebSocket | None, accept: Accept | None,
                   request: http.Request, start_response: Any, headers: http.Headers) -> list[bytes]:
    """A session that starts on WebSocket: send the open packet, then read."""
    session = server._open_session(request.environ, State.WEBSOCKET, request.query)
    if session is None:
        if ws is None:
            return http.error(start_response, request, http.FORBIDDEN, headers, 403)
        ws.close(CLOSE_POLICY_VIOLATION, "refused")
        return []
    head = b""
    if ws is None:
        ws, head = _accepted(server, accept)
    try:
        data = encode_frame(server._open_frame(session, upgrades=[]))
        server.counters.bytes_out += len(data)
        ws.write_all(head + data)  # one write: the 101 and the open packet
    except OSError:
        session.close(REASON_TRANSPORT_CLOSE)
        ws.close()
        return []
    session.attach_websocket(ws)
    _serve(server, session, ws)
    return []


def websocket_upgrade(server: "Server", session: Session, ws: WebSocket | None, accept: Accept | None,
                      request: http.Request, start_response: Any, headers: http.Headers) -> list[bytes]:
    """Move a polling session onto a WebSocket: probe, upgrade, then read."""
    if session.state is not State.POLLING:
        logger.info("session %s: refused a second WebSocket", session.sid)
        message = "session already has a websocket"
        if ws is None:
            return http.error(start_response, request, http.BAD_REQUEST, headers, 400, message)
        ws.close(CLOSE_POLICY_VIOLATION, message)
        return []
    if ws is None:
        ws, head = _accepted(server, accept)
        try:
            ws.write_all(head)  # the client probes once it has the 101
        except OSError:
            ws.close()
            return []
    upgraded = False
    try:
        with gevent.Timeout(server.upgrade_timeout, False):
            while not upgraded:
                frame = ws.receive()
                if frame is None or session.state is State.CLOSED:
                    break
                if frame == PROBE_PING:
                    if not session.start_upgrade():
                        break
                    ws.send(PROBE_PONG)
                    continue
                packet = decode_packet(frame)
                if packet.type is PacketType.UPGRADE and session.state is State.UPGRADING:
                    upgraded = True
                elif packet.type is not PacketType.NOOP:
                    raise ProtocolError(f"unexpected {packet.type.name.lower()} during upgrade")
    except (ProtocolError, OSError) as exc:
        logger.info("session %s: upgrade failed (%s)", session.sid, exc)
    if not upgraded:
        session.cancel_upgrade()
        ws.close()
        return []
    session.attach_websocket(ws, request.query)
    _serve(server, session, ws)
    return []
