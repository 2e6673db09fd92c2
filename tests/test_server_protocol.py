"""Socket.IO server against what a well-behaved client never sends: sessions that do
not join a namespace, reserved event names, malformed packets, bare namespace
DISCONNECT packets, and abrupt departures.

Clients are raw http.client (Engine.IO long-polling) and websocket-client
connections, next to a real python-socketio client that must keep working.
"""

from __future__ import annotations

import http.client
import json
import time

import gevent
import pytest
from gevent.event import AsyncResult, Event

import geventsio

pytest.register_assert_rewrite("sio_support")  # before its import below
from sio_support import TIMEOUT, connect_client, serve  # noqa: E402

pytest_plugins = ["sio_support"]  # its fixtures: make_client, raw_client
from sio_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)


def _polling_handshake(rs) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)
    try:
        conn.request("GET", rs.endpoint())
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200 and body.startswith("0"), body
        return json.loads(body[1:])["sid"]
    finally:
        conn.close()


def _polling(rs, method: str, sid: str, body: str | None = None) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=TIMEOUT)
    try:
        conn.request(method, rs.endpoint(f"EIO=4&transport=polling&sid={sid}"), body=body)
        resp = conn.getresponse()
        text = resp.read().decode()
        assert resp.status == 200, (resp.status, text)
        return text
    finally:
        conn.close()


def _recording_server(**options) -> tuple[geventsio.Server, dict, Event]:
    """A server with an ``echo`` handler whose disconnect handler records sid -> reason."""
    sio = geventsio.Server(**options)
    reasons: dict[str, str] = {}
    gone = Event()

    @sio.event
    def disconnect(sid, reason):
        reasons[sid] = reason
        gone.set()

    sio.on("echo", lambda sid, x: x)
    return sio, reasons, gone


# -- connect timeout -----------------------------------------------------------


def test_connect_timeout_closes_session_without_namespace(serve_app):
    sio = geventsio.Server(connect_timeout=0.3, ping_interval=30)
    connected = AsyncResult()
    sio.on("connect", lambda sid, environ: connected.set(sid))
    rs = serve(serve_app, sio)

    idle = _polling_handshake(rs)
    joined = _polling_handshake(rs)
    assert idle in sio.eio.sessions and joined in sio.eio.sessions
    started = time.monotonic()
    assert _polling(rs, "POST", joined, "40") == "ok"
    socket_sid = connected.get(timeout=TIMEOUT)

    # The long poll of the idle session returns when the server closes it.
    assert _polling(rs, "GET", idle) == "1"
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2, elapsed
    assert idle not in sio.eio.sessions
    # The session that joined a namespace in time is still open.
    assert joined in sio.eio.sessions
    assert socket_sid in sio.sockets


def test_connect_timeout_also_closes_session_whose_connect_was_refused(serve_app, raw_client):
    """Node clears its connectTimeout only once a namespace is actually joined."""
    sio = geventsio.Server(connect_timeout=0.3, ping_interval=30)
    sio.on("connect", lambda sid, environ: False)
    rs = serve(serve_app, sio)
    raw = raw_client(rs)
    started = time.monotonic()
    raw.send("40")
    assert raw.ws.recv().startswith("44")  # CONNECT_ERROR
    raw.ws.settimeout(2)  # well past connect_timeout
    raw.read_until_closed()
    assert time.monotonic() - started < 2
    assert raw.eio_sid not in sio.eio.sessions


# -- reserved and invalid packets ------------------------------------------------


def test_reserved_event_from_client_closes_its_connection(serve_app, make_client, raw_client):
    sio, reasons, gone = _recording_server()
    handled = []
    sio.on("*", lambda event, sid, *args: handled.append(event))
    rs = serve(serve_app, sio)
    bystander = connect_client(make_client(), rs)
    raw = raw_client(rs)
    sid = raw.connect()
    raw.send('42["disconnect"]')
    raw.read_until_closed()
    assert gone.wait(TIMEOUT)
    assert reasons == {sid: "parse error"}
    assert raw.eio_sid not in sio.eio.sessions
    assert handled == []  # neither a handler nor the catch-all saw the reserved event
    assert bystander.call("echo", "ok", timeout=TIMEOUT) == "ok"


@pytest.mark.parametrize("frames", [
    ['42{"not": "a list"}'],  # EVENT payload must be an array
    ["42[1, 2"],  # broken JSON
    ["49"],  # unknown packet type
    ["4"],  # no packet type at all
    ['451-["x",{"_placeholder":true,"num":0}]', '42["y"]'],  # text where an attachment is due
    ['451-["x",{"_placeholder":true,"num":3}]'],  # placeholder beyond the attachment count
], ids=["not-a-list", "bad-json", "unknown-type", "empty", "text-for-attachment", "bad-placeholder"])
def test_invalid_packet_closes_only_that_connection(serve_app, make_client, raw_client, frames):
    sio, reasons, gone = _recording_server()
    rs = serve(serve_app, sio)
    good = connect_client(make_client(), rs)
    raw = raw_client(rs)
    sid = raw.connect()
    for frame in frames:
        raw.send(frame)
    raw.read_until_closed()
    assert gone.wait(TIMEOUT)
    assert reasons == {sid: "parse error"}
    assert raw.eio_sid not in sio.eio.sessions
    assert good.call("echo", "still fine", timeout=TIMEOUT) == "still fine"
    assert good.get_sid("/") in sio.sockets


# -- namespace DISCONNECT packets and abrupt departures --------------------------


def test_namespace_disconnect_packet_keeps_the_other_namespaces(serve_app, raw_client):
    sio, reasons, gone = _recording_server()
    chat_gone = AsyncResult()
    sio.on("disconnect", lambda sid, reason: chat_gone.set((sid, reason)), namespace="/chat")
    rs = serve(serve_app, sio)
    raw = raw_client(rs)
    root_sid = raw.connect("/")
    chat_sid = raw.connect("/chat")
    raw.send("41/chat,")
    assert chat_gone.get(timeout=TIMEOUT) == (chat_sid, "client disconnect")
    assert chat_sid not in sio.sockets and root_sid in sio.sockets
    raw.send('420["echo","x"]')
    assert raw.ws.recv() == '430["x"]'
    raw.send("41")
    assert gone.wait(TIMEOUT)
    assert reasons == {root_sid: "client disconnect"}
    assert raw.eio_sid in sio.eio.sessions  # the Engine.IO session outlives its namespaces


def test_transport_close_reason_and_pending_call_fails(serve_app, raw_client):
    sio, reasons, gone = _recording_server()
    rs = serve(serve_app, sio)
    raw = raw_client(rs)
    sid = raw.connect()
    call = gevent.spawn(sio.call, "question", to=sid, timeout=TIMEOUT)
    assert raw.ws.recv().startswith('42')  # the question, which is never answered
    started = time.monotonic()
    raw.ws.close()
    with pytest.raises(geventsio.DisconnectedError):
        call.get(timeout=TIMEOUT)
    assert time.monotonic() - started < 1  # at once, not at the call's time limit
    assert gone.wait(TIMEOUT)
    assert reasons == {sid: "transport close"}


def test_server_disconnect_inside_connect_handler_is_told_to_the_client(serve_app, raw_client):
    """Node answers CONNECT then DISCONNECT; a refusal (CONNECT_ERROR) would do too."""
    sio = geventsio.Server()
    sio.on("connect", lambda sid, environ: sio.disconnect(sid))
    rs = serve(serve_app, sio)
    raw = raw_client(rs)
    raw.send("40")
    first = raw.ws.recv()  # fails with a timeout if the client is told nothing
    assert first.startswith(("40", "44")), first
    if first.startswith("40"):
        assert raw.ws.recv() == "41"
    assert sio.sockets == {}
