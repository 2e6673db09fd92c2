"""Session routing between worker processes (geventsio.worker_routing), deterministically.

Two "workers" run in this process, each an Engine.IO echo server behind its
own ``make_server(..., worker_dir=d)`` with the same directory; each is reached
on its own port, so a test can send a request for worker A's session to
worker B and watch B hand the connection to A. (Across real processes on one
port: tests/test_gunicorn_workers.py.)
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
import websocket

import geventsio
from geventsio import engine
from geventsio.worker_routing import TAG_LENGTH

WAIT = 5
APPS = Path(__file__).resolve().parent / "apps"


class Worker:
    def __init__(self, directory: str, **options):
        self.server = engine.Server(**options)
        self.server.on("message", lambda sid, data: self.server.send(sid, data))
        self.wsgi = geventsio.make_server(geventsio.WSGIApp(self.server, socketio_path="engine.io"),
                                          "127.0.0.1", 0, worker_dir=directory)
        self.wsgi.start()
        self.port = self.wsgi.server_port
        self.router = self.wsgi.router

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)

    def stop(self) -> None:
        self.wsgi.stop(timeout=1)
        self.server.shutdown()


@pytest.fixture
def workers(tmp_path):
    made = []

    def make(**options) -> Worker:
        made.append(Worker(str(tmp_path / "w"), **options))
        return made[-1]

    yield make
    for w in made:
        w.stop()


def request(conn, method, query, body=None):
    conn.request(method, "/engine.io/?EIO=4&transport=polling" + query, body=body)
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def handshake(worker: Worker) -> str:
    status, body = request(worker.connection(), "GET", "")
    assert status == 200, body
    return json.loads(body[1:])["sid"]


def test_sids_carry_their_worker_tag(workers):
    a, b = workers(), workers()
    assert a.router.tag != b.router.tag and len(a.router.tag) == TAG_LENGTH
    sid = handshake(a)
    assert sid.startswith(a.router.tag) and len(sid) == TAG_LENGTH + 20


def test_polling_requests_for_another_workers_session_reach_it(workers):
    a, b = workers(), workers()
    sid = handshake(a)
    assert request(b.connection(), "POST", f"&sid={sid}", "4hello") == (200, "ok")
    assert request(b.connection(), "GET", f"&sid={sid}") == (200, "4hello")
    assert b.router.stats["handed_off"] == 2 and a.router.stats["received"] == 2
    assert a.router.stats["handed_off"] == 0


def test_a_handed_over_connection_stays_with_the_owner(workers):
    a, b = workers(), workers()
    sid = handshake(a)
    conn = b.connection()  # keep-alive: one TCP connection for all three requests
    assert request(conn, "POST", f"&sid={sid}", "4one") == (200, "ok")
    assert request(conn, "GET", f"&sid={sid}") == (200, "4one")
    assert request(conn, "POST", f"&sid={sid}", "4two") == (200, "ok")
    assert b.router.stats["handed_off"] == 1 and a.router.stats["received"] == 1


def wait_until(predicate, what: str) -> None:
    """Wait for a state change no event announces (checked between greenlet switches)."""
    with gevent.Timeout(WAIT, AssertionError(f"timed out waiting for {what}")):
        while not predicate():
            gevent.sleep(0.01)


def test_a_parked_poll_stays_parked_at_the_owner(workers):
    a, b = workers(), workers()
    sid = handshake(a)
    session = a.server.sessions[sid]
    parked = b.connection()
    parked.request("GET", f"/engine.io/?EIO=4&transport=polling&sid={sid}")
    wait_until(lambda: session.polling_get_active, "the GET to park in the owner")
    assert request(a.connection(), "POST", f"&sid={sid}", "4wake") == (200, "ok")
    resp = parked.getresponse()
    assert (resp.status, resp.read()) == (200, b"4wake")

    # The owner watches the client's own socket: a client leaving its poll is noticed there.
    parked.request("GET", f"/engine.io/?EIO=4&transport=polling&sid={sid}")
    wait_until(lambda: session.polling_get_active, "the second GET to park")
    parked.close()
    wait_until(lambda: session.closed, "the owner to notice the client left")


def test_websocket_upgrade_through_another_worker(workers):
    a, b = workers(), workers()
    sid = handshake(a)
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{b.port}/engine.io/?EIO=4&transport=websocket&sid={sid}", timeout=WAIT)
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        ws.send("5")
        ws.send("4over-websocket")
        assert ws.recv() == "4over-websocket"
        assert a.server.transport(sid) == "websocket"
    finally:
        ws.close()
    assert b.router.stats["handed_off"] == 1 and a.router.stats["received"] == 1


def test_bodies_are_bounded_by_the_owner(workers):
    a = workers(max_http_buffer_size=100)
    b = workers(max_http_buffer_size=10_000_000)
    sid = handshake(a)
    status, _ = request(b.connection(), "POST", f"&sid={sid}", "4" + "x" * 1000)
    assert status == 413


def test_a_session_of_a_stopped_worker_is_unknown(workers):
    a, b = workers(), workers()
    sid = handshake(a)
    a.stop()
    status, body = request(b.connection(), "GET", f"&sid={sid}")
    assert (status, json.loads(body)) == (400, {"code": 1, "message": "Session ID unknown"})
    assert b.router.stats["no_owner"] == 1


@pytest.mark.parametrize("sid", ["../../etc", "%2e%2e/x", "x", "", "zzzzzzzzzzzzzzzzzzzzzzzz"])
def test_sids_naming_no_worker_are_unknown(workers, sid):
    workers()
    b = workers()
    status, body = request(b.connection(), "GET", f"&sid={sid}")
    assert status == 400 and json.loads(body)["code"] == 1
    assert b.router.stats["handed_off"] == 0


def test_bytes_read_past_the_headers_travel_with_the_connection(workers):
    a, b = workers(), workers()
    sid = handshake(a)
    path = f"/engine.io/?EIO=4&transport=polling&sid={sid}"
    # A POST and a pipelined GET in one write: B has read them past the first headers
    # when it hands the connection over, and A must get those bytes too.
    raw = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n4hello"
           f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", b.port), timeout=WAIT) as sock:
        sock.sendall(raw)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and first.endswith(b"\r\n\r\nok")
    assert second.startswith(b"200") and second.endswith(b"\r\n\r\n4hello")
    assert b.router.stats["handed_off"] == 1


def test_processes_of_one_parent_sharing_a_listening_socket(tmp_path):
    """``make_server(listener=..., worker_dir=...)`` in two forked processes (apps/forked_servers.py)."""
    directory = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, str(APPS / "forked_servers.py"), str(directory)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        status, body = request(conn, "GET", "")
        sid = json.loads(body[1:])["sid"]
        for i in range(20):  # each request on a new connection, accepted by either process
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
            assert request(conn, "POST", f"&sid={sid}", f"4m{i}") == (200, "ok")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
            assert request(conn, "GET", f"&sid={sid}") == (200, f"4m{i}")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=WAIT)
    stats = [json.loads(line) for line in out.splitlines()]
    assert len(stats) == 2 and sum(s["received"] for s in stats) > 0, stats
    assert not directory.exists()  # each process removed its socket; the last one the directory
