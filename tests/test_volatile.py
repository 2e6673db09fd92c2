"""Volatile emits skip clients that lag; a client that still falls behind is disconnected."""

from __future__ import annotations

import http.client
import json

import pytest
from gevent.event import Event

import geventsio
from sio_support import TIMEOUT, Inbox, connect_client, serve

pytest_plugins = ["sio_support"]
from sio_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)

BLOB = b"x" * (1 << 20)


@pytest.fixture
def room_with_a_stalled_client(serve_app, make_client, raw_client):
    """A room of two: a python-socketio client that reads, and a raw one that stopped reading."""
    sio = geventsio.Server(max_queued_bytes=24 * len(BLOB))
    reasons: dict[str, str] = {}
    gone = Event()

    @sio.event
    def connect(sid, environ):
        sio.enter_room(sid, "game")

    @sio.event
    def disconnect(sid, reason):
        reasons[sid] = reason
        gone.set()

    rs = serve(serve_app, sio)
    healthy = connect_client(make_client(), rs, ["websocket"])
    inbox = Inbox(healthy)
    stalled = raw_client(rs)
    stalled_sid = stalled.connect()
    # Far more than the kernel buffers of a loopback connection hold: the
    # server's write to the stalled client blocks and a writer greenlet waits.
    for _ in range(16):
        sio.emit("blob", BLOB, to=stalled_sid)
    sio.emit("marker", to=healthy.get_sid())
    inbox.wait_for("marker")  # the loop turned: every queued flush has run
    return sio, inbox, healthy.get_sid(), stalled_sid, reasons, gone


def test_volatile_packets_skip_the_client_that_lags(room_with_a_stalled_client):
    sio, inbox, healthy_sid, stalled_sid, reasons, _ = room_with_a_stalled_client
    queued_before = sio.eio.sessions[sio.sockets[stalled_sid].connection.session.sid]._queued_bytes

    counts = [sio.to("game").volatile.emit("position", n) for n in range(100)]

    assert counts == [1] * 100  # the healthy client only
    assert [args[0] for args in inbox.wait_for("position", 100)] == list(range(100))
    session = sio.sockets[stalled_sid].connection.session
    assert session._queued_bytes == queued_before  # nothing piled up for the stalled client
    assert not reasons


def test_a_client_that_keeps_lagging_is_disconnected_with_a_reason(room_with_a_stalled_client):
    sio, inbox, healthy_sid, stalled_sid, reasons, gone = room_with_a_stalled_client
    sent = 0
    while not gone.is_set() and sent < 48:  # twice the bound: the stalled client must go first
        sio.to("game").emit("frame", BLOB)
        sent += 1
        inbox.wait_for("frame", sent)  # the healthy client keeps up with each one
    assert reasons == {stalled_sid: "send buffer full"}
    sio.emit("after", 1)
    inbox.wait_for("after")


def test_volatile_on_polling_waits_for_no_one(serve_app):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)

    def request(method: str, query: str, body: str | None = None) -> str:
        conn.request(method, f"/socket.io/?EIO=4&transport=polling&{query}", body=body)
        return conn.getresponse().read().decode()

    eio_sid = json.loads(request("GET", "")[1:])["sid"]
    request("POST", f"sid={eio_sid}", "40")
    sid = json.loads(request("GET", f"sid={eio_sid}")[2:])["sid"]

    # No GET is parked: the first packet waits for the next poll, later ones are dropped.
    assert sio.volatile.emit("tick", 1) == 1
    assert sio.volatile.emit("tick", 2) == 0
    assert sio.emit("state", "kept") is None  # a normal emit always queues
    assert request("GET", f"sid={eio_sid}") == '42["tick",1]\x1e42["state","kept"]'
    assert sid in sio.sockets
