"""Slow, silent and stalled clients: slowloris, half-open connections, clients that never
answer pings, clients that stop reading.

Documented answers:

- request line and headers: ``geventsio.wsgi.Handler.keepalive_timeout`` for
  the request line (then a quiet close), ``request_timeout`` for the headers
  (then 400 and close); the tests shorten both (conftest.QuickHandler);
- a session whose client does not answer a ping is closed ``ping_interval +
  ping_timeout`` after the last pong (reason ``ping timeout``), which is also
  how a half-open connection is found out;
- a client that stops reading: the server keeps queueing without blocking the
  emitter, up to ``max_queued_bytes``; past it the session closes with reason
  ``send buffer full``, and a writer still stuck gets ``close_flush_timeout``
  before the socket is cut.

"The server closed its end" is read from the kernel (/proc/net/tcp): a FIN
cannot reach a client that reads nothing, but the server's socket leaves
ESTABLISHED as soon as the server shuts it down.
"""

from __future__ import annotations

import os
import socket
import time

import gevent
import pytest

from .support import (
    KEEPALIVE_TIMEOUT,
    REQUEST_TIMEOUT,
    PING,
    PING_INTERVAL,
    PING_TIMEOUT,
    TEXT,
    TIMEOUT,
    SIOConn,
    client_frame,
    live_objects,
    poll,
    polling_handshake,
    post,
    server_side_state,
    wait_until,
)

HEARTBEAT = PING_INTERVAL + PING_TIMEOUT
MARGIN = 1.0
needs_proc = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads /proc/net/tcp")


def _read_to_eof(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _released(target, client_port: int, timeout: float) -> None:
    """The server's end of the connection from ``client_port`` leaves ESTABLISHED within ``timeout``."""
    wait_until(lambda: server_side_state(target.port, client_port) != "ESTABLISHED", timeout,
               f"the server closing its end of the connection from port {client_port}")


# -- slowloris --------------------------------------------------------------------------


def test_slowloris_half_request_lines_are_dropped_and_others_served(hostile):
    target = hostile()
    slow = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT)
        sock.sendall(b"GET /socket.io/?EIO=4&tra")
        slow.append(sock)
    started = time.monotonic()
    target.assert_healthy()  # the bystander echoes and a new client connects meanwhile
    assert time.monotonic() - started < KEEPALIVE_TIMEOUT  # ... while all 50 are stalled
    for sock in slow:
        answer = _read_to_eof(sock, KEEPALIVE_TIMEOUT + MARGIN)
        assert answer in (b"",) or answer.startswith(b"HTTP/1.1 400"), answer[:80]
        sock.close()
    elapsed = time.monotonic() - started
    assert KEEPALIVE_TIMEOUT - 0.1 <= elapsed < KEEPALIVE_TIMEOUT + MARGIN, elapsed
    target.finish()


def test_slowloris_trickled_headers_are_cut_at_request_timeout(hostile):
    target = hostile()
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT)
    sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
    stop = gevent.event.Event()

    def trickle() -> None:  # one header byte every 50 ms: each read succeeds, none completes
        try:
            while not stop.wait(0.05):
                sock.sendall(b"X")
        except OSError:
            pass

    trickler = gevent.spawn(trickle)
    started = time.monotonic()
    target.assert_healthy()
    answer = _read_to_eof(sock, REQUEST_TIMEOUT + MARGIN)
    elapsed = time.monotonic() - started
    stop.set()
    trickler.join(TIMEOUT)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert elapsed < REQUEST_TIMEOUT + MARGIN, elapsed
    target.finish()


def test_silent_and_idle_keep_alive_connections_are_closed(hostile):
    target = hostile()
    silent = socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT)
    idle = socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT)
    idle.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    assert _read_to_eof(silent, KEEPALIVE_TIMEOUT + MARGIN) == b""
    assert _read_to_eof(idle, KEEPALIVE_TIMEOUT + MARGIN).startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < KEEPALIVE_TIMEOUT + MARGIN
    silent.close()
    idle.close()
    target.finish()  # the idle client's Engine.IO session ends by ping timeout


@needs_proc
def test_stalled_post_body_is_released(hostile):
    # The body time limit is longer than the heartbeat, so the session ends of
    # its ping timeout first (equal limits made the two race).
    target = hostile(body_timeout=HEARTBEAT + 2)
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    poll(target.rs, eio)
    session = target.session(eio)
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT)
    sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={eio} HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 100\r\n\r\n42".encode())
    assert target.wait_closed(session, HEARTBEAT + MARGIN) == "ping timeout"
    target.assert_healthy()
    _released(target, sock.getsockname()[1], REQUEST_TIMEOUT + MARGIN + 3)
    sock.close()
    target.finish()


# -- clients that never answer pings; half-open connections --------------------------------


def test_websocket_client_that_never_answers_pings(hostile):
    target = hostile()
    raw = SIOConn(target.rs)
    sid = raw.connect("/")
    started = time.monotonic()
    messages, code, _ = raw.ws.read_until_closed(answer_pings=False, timeout=HEARTBEAT + MARGIN + 1)
    elapsed = time.monotonic() - started
    assert messages == ["2", "1"], messages
    assert code == 1000
    assert HEARTBEAT - 0.1 <= elapsed < HEARTBEAT + MARGIN, elapsed
    assert target.recorder.reason(sid) == "ping timeout"
    raw.close()
    target.finish()


def test_polling_client_that_stops_polling(hostile):
    target = hostile()
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    sid = poll(target.rs, eio).text[2:].split('"sid":"')[1].split('"')[0]
    started = time.monotonic()
    assert target.recorder.reason(sid, HEARTBEAT + MARGIN) == "ping timeout"
    assert HEARTBEAT - 0.1 <= time.monotonic() - started < HEARTBEAT + MARGIN
    target.finish()


@needs_proc
def test_half_open_websocket_mid_frame(hostile):
    """A client that vanishes in the middle of a frame (header sent, payload never) is found out."""
    target = hostile()
    raw = SIOConn(target.rs)
    sid = raw.connect("/")
    raw.ws.send_raw(client_frame(TEXT, b'42["echo","' + b"a" * 100 + b'"]')[:30])
    started = time.monotonic()
    assert target.recorder.reason(sid, HEARTBEAT + MARGIN) == "ping timeout"
    assert HEARTBEAT - 0.1 <= time.monotonic() - started < HEARTBEAT + MARGIN
    _released(target, raw.ws.local_port, TIMEOUT)
    raw.close()
    target.finish()


def test_many_silent_websocket_clients_are_all_reaped(hostile):
    target = hostile()
    silent = [SIOConn(target.rs) for _ in range(100)]
    sids = [raw.connect("/") for raw in silent]
    assert target.tables()["sockets"] == target.baseline["sockets"] + 100
    for sid in sids:
        assert target.recorder.reason(sid, HEARTBEAT + MARGIN + 1) == "ping timeout"
    target.finish()
    for raw in silent:
        raw.close()


# -- clients that stop reading ----------------------------------------------------------------


@needs_proc
def test_websocket_client_that_stops_reading(hostile):
    limit = 256 * 1024
    target = hostile(max_queued_bytes=limit, close_flush_timeout=0.5)
    raw = SIOConn(target.rs, rcvbuf=4096)
    sid = raw.connect("/")
    session = target.session(raw.eio_sid)
    blob = "x" * 65536
    worst_emit = 0.0
    peak = 0
    emitted = 0
    while not session.closed:
        assert emitted < 2000, "never closed"
        started = time.monotonic()
        target.sio.emit("blob", blob, to=sid)
        worst_emit = max(worst_emit, time.monotonic() - started)
        peak = max(peak, session._queued_bytes + len(session._pending))
        emitted += 1
        gevent.sleep(0)  # let the loop flush what the socket takes
    closed_at = time.monotonic()
    assert session.close_reason == "send buffer full"
    assert target.recorder.reason(sid) == "send buffer full"
    assert worst_emit < 0.2, worst_emit  # the emitter never waited for the slow client
    assert peak <= limit + len(blob) + 100, peak  # bounded: one message past the limit at most
    # Its writer is stuck: close_flush_timeout later the server cuts the connection.
    _released(target, raw.ws.local_port, 0.5 + MARGIN)
    assert time.monotonic() - closed_at >= 0.4
    target.finish()
    raw.close()


def test_polling_client_that_stops_polling_while_emitted_to(hostile):
    limit = 64 * 1024
    target = hostile(max_queued_bytes=limit)
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    sid = poll(target.rs, eio).text[2:].split('"sid":"')[1].split('"')[0]
    session = target.session(eio)
    emitted = 0
    while not session.closed:
        assert emitted < 100, "never closed"
        target.sio.emit("blob", "y" * 8192, to=sid)
        assert session._queued_bytes <= limit + 8300
        emitted += 1
    assert target.recorder.reason(sid) == "send buffer full"
    assert 7 <= emitted <= 10, emitted
    target.finish()


@needs_proc
def test_websocket_client_that_pings_without_reading(hostile):
    target = hostile(close_flush_timeout=0.5)
    raw = SIOConn(target.rs, rcvbuf=4096)
    sid = raw.connect("/")
    frames = client_frame(PING, b"p" * 125) * 100
    raw.ws.sock.settimeout(0.3)
    sent = 0
    try:
        while sent < 20_000_000:  # until the server stops taking them (a send times out)
            raw.ws.sock.sendall(frames)
            sent += len(frames)
    except socket.timeout:
        pass
    assert target.recorder.reason(sid, HEARTBEAT + MARGIN) == "ping timeout"
    target.assert_healthy()
    _released(target, raw.ws.local_port, 0.5 + MARGIN + 2)
    raw.close()
    target.finish()


@needs_proc
def test_stalled_clients_leave_nothing_behind(hostile, unretained_logs):
    limit = 256 * 1024
    target = hostile(max_queued_bytes=limit, close_flush_timeout=0.3)
    before = live_objects()
    stalled = [SIOConn(target.rs, rcvbuf=4096) for _ in range(20)]
    sids = [raw.connect("/") for raw in stalled]
    sessions = [target.session(raw.eio_sid) for raw in stalled]
    blob = "x" * 65536
    rounds = 0
    while not all(session.closed for session in sessions):
        assert rounds < 200, "never closed"
        for sid in sids:
            target.sio.emit("blob", blob, to=sid)
        rounds += 1
        gevent.sleep(0)
    del sessions
    for sid in sids:
        assert target.recorder.reason(sid) == "send buffer full"
    for raw in stalled:
        _released(target, raw.ws.local_port, 0.3 + MARGIN)
        raw.close()
    target.finish()
    assert live_objects() == before
