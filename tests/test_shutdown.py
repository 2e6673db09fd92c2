"""Graceful shutdown: queued packets reach their clients, handlers hear why, stragglers are cut."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time

import gevent
import pytest
import socketio
from gevent.event import Event

import geventsio
from client_support import Log
from sio_support import TIMEOUT, TRANSPORT_IDS, TRANSPORTS, Inbox, connect_client, serve

pytest_plugins = ["sio_support"]
from sio_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)


@pytest.mark.parametrize("transports", TRANSPORTS[:2], ids=TRANSPORT_IDS[:2])
def test_shutdown_delivers_what_was_queued_then_disconnects(serve_app, transports):
    sio = geventsio.Server()
    reasons: list[str] = []
    sio.on("disconnect", lambda sid, reason: reasons.append(reason))
    rs = serve(serve_app, sio)
    # geventsio's client, as socket.io-client does, handles the messages that
    # arrive in the same poll as the close packet (python-socketio drops them).
    client = geventsio.Client(reconnection=False)
    received = Log()
    client.on("n", received)
    gone = Event()
    client.on("disconnect", lambda *a: gone.set())
    client.connect(rs.url, transports=transports, wait_timeout=TIMEOUT)
    try:
        for n in range(200):
            sio.emit("n", n)
        with gevent.Timeout(TIMEOUT):
            sio.shutdown(timeout=TIMEOUT)

        assert received.wait_for(200) == list(range(200))
        assert gone.wait(TIMEOUT), "the client never saw its connection close"
        assert reasons == ["server shutting down"]
        conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)
        conn.request("GET", "/socket.io/?EIO=4&transport=polling")
        answer = conn.getresponse()
        assert answer.status == 503 and b"shutting down" in answer.read()
    finally:
        client.disconnect()


def test_shutdown_waits_for_running_handlers_then_cuts_a_client_that_does_not_read(
        serve_app, make_client, raw_client):
    sio = geventsio.Server(max_queued_bytes=64 * 1024 * 1024)
    handler_running = Event()
    release_handler = Event()
    finished: list[str] = []

    @sio.on("slow")
    def slow(sid):
        handler_running.set()
        release_handler.wait()
        finished.append((sid, "slow"))

    sio.on("disconnect", lambda sid, reason: finished.append((sid, reason)))
    rs = serve(serve_app, sio)
    busy = make_client()
    connect_client(busy, rs, ["websocket"])
    busy_sid = busy.get_sid()
    busy.emit("slow")
    assert handler_running.wait(TIMEOUT)

    stalled = raw_client(rs)  # connects, then never reads again
    stalled_sid = stalled.connect()
    blob = b"x" * (1 << 20)
    for _ in range(32):  # far more than the kernel's socket buffers hold
        sio.emit("blob", blob, to=stalled_sid)

    gevent.spawn_later(0.2, release_handler.set)
    started = time.monotonic()
    with gevent.Timeout(TIMEOUT):
        sio.shutdown(timeout=1)
    # The busy client's handler finished before its disconnect handler ran.
    assert [what for sid, what in finished if sid == busy_sid] == ["slow", "server shutting down"]
    assert (stalled_sid, "server shutting down") in finished
    # The stalled client was cut at the deadline rather than holding the shutdown.
    assert time.monotonic() - started < TIMEOUT
    assert sio.eio.sessions == {}


@pytest.fixture
def gunicorn_sio(tmp_path):
    log = tmp_path / "disconnects.log"
    log.write_text("")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "geventsio.gunicorn_worker.GeventSocketIOWorker",
         "-w", "1", "-b", "127.0.0.1:0", "--graceful-timeout", "20",
         "--chdir", os.path.dirname(__file__), "apps.sio_shutdown:app"],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, SHUTDOWN_LOG=str(log)))
    port = None
    for line in proc.stderr:
        m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "Booting worker" in line:
            break
    assert port is not None
    yield proc, port, log
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_sigterm_under_gunicorn_disconnects_clients_gracefully(gunicorn_sio):
    proc, port, log = gunicorn_sio
    clients = []
    for transports in (["websocket"], ["polling"]):
        client = socketio.Client(reconnection=False)
        inbox = Inbox(client)
        gone = Event()
        client.on("disconnect", lambda *a, gone=gone: gone.set())
        client.connect(f"http://127.0.0.1:{port}", transports=transports, wait_timeout=TIMEOUT)
        inbox.wait_for("welcome")
        clients.append((client, gone))

    proc.send_signal(signal.SIGTERM)
    for client, gone in clients:
        assert gone.wait(TIMEOUT), "a client was not disconnected on SIGTERM"
    _, stderr = proc.communicate(timeout=TIMEOUT)
    # Exited as soon as the clients were gone, not at the 20 s graceful deadline.
    assert "graceful timeout" not in stderr, stderr
    reasons = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    assert reasons == ["server shutting down"] * 2, log.read_text()
