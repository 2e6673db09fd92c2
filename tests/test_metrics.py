"""Server.stats() and the Prometheus page count exactly what real clients did.

python-socketio clients connect, emit and disconnect; hand-driven polling and
WebSocket clients make the packet and byte counts exact (every byte they send
and receive is known to the test).
"""

from __future__ import annotations

import http.client
import json
import re

import pytest
import websocket
from gevent.event import Event

import geventsio

pytest.register_assert_rewrite("sio_support")  # before its import below
from sio_support import TIMEOUT, connect_client, disconnect_flushed, serve  # noqa: E402

pytest_plugins = ["sio_support"]  # its fixtures: make_client, raw_client
from sio_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)


def _request(port: int, method: str, path: str, body: str | bytes | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _frame_size(payload: bytes, masked: bool) -> int:
    """The bytes of one WebSocket frame carrying ``payload``."""
    n = len(payload)
    header = 2 if n < 126 else 4 if n < 0x10000 else 10
    return header + (4 if masked else 0) + n


def test_clients_handshakes_refusals_and_disconnect_reasons(serve_app, make_client) -> None:
    sio = geventsio.Server()
    gone: list[str] = []
    all_gone = Event()
    sio.on("connect", lambda sid, environ, auth: auth != {"refuse": True}, namespace="/chat")

    def on_disconnect(sid: str, reason: str) -> None:
        gone.append(reason)
        if len(gone) == 3:
            all_gone.set()

    sio.on("disconnect", on_disconnect)
    sio.on("disconnect", on_disconnect, namespace="/chat")

    rs = serve(serve_app, sio)
    a = connect_client(make_client(), rs, ["websocket"], namespaces=["/", "/chat"])
    b = connect_client(make_client(), rs, ["polling"])
    refused = make_client()
    with pytest.raises(Exception):
        refused.connect(rs.url, transports=["websocket"], namespaces=["/chat"], auth={"refuse": True},
                        wait_timeout=TIMEOUT)

    stats = sio.stats()
    assert stats["clients_by_namespace"] == {"/": 2, "/chat": 1}
    assert stats["handshakes"] == 3
    assert stats["sessions_by_transport"]["polling"] == 1
    assert stats["connects_by_namespace"] == {"/": 2, "/chat": 1}
    assert stats["connect_refusals_by_namespace"] == {"/chat": 1}

    disconnect_flushed(a)
    sio.disconnect(b.get_sid("/"))
    assert all_gone.wait(TIMEOUT)
    stats = sio.stats()
    assert sorted(gone) == ["client disconnect", "client disconnect", "server disconnect"]
    # a left "/" and "/chat"; b was disconnected from "/" by the server.
    assert stats["disconnects_by_reason"] == {"client disconnect": 2, "server disconnect": 1}
    assert stats["clients_by_namespace"] == {"/": 0, "/chat": 0}


def test_packets_and_bytes_over_polling_are_exact(serve_app) -> None:
    sio = geventsio.Server(ping_interval=60)
    sio.on("echo", lambda sid, data: sio.emit("echo", data, to=sid))
    rs = serve(serve_app, sio)
    sent = received = 0

    def get(path: str) -> str:
        nonlocal received
        status, _, body = _request(rs.port, "GET", path)
        assert status == 200
        received += len(body)
        return body.decode()

    def post(path: str, body: str) -> None:
        nonlocal sent
        data = body.encode()
        status, _, _ = _request(rs.port, "POST", path, data)
        assert status == 200
        sent += len(data)

    opening = get(rs.endpoint())
    sid = json.loads(opening[1:])["sid"]
    session = rs.endpoint(f"EIO=4&transport=polling&sid={sid}")
    post(session, "40")
    assert get(session).startswith("40")
    post(session, '42["echo","h\u00e9llo"]\x1e42["echo",2]')  # two packets in one body
    echoed = get(session)
    while echoed.count("\x1e") < 1:  # the second echo may come in the next poll
        echoed += "\x1e" + get(session)
    assert echoed == '42["echo","h\u00e9llo"]\x1e42["echo",2]'

    stats = sio.stats()
    assert stats["packets_in"] == 3  # 40, and two events
    assert stats["packets_out"] == 4  # the open packet, 40, two echoes
    assert stats["bytes_in"] == sent
    assert stats["bytes_out"] == received


def test_packets_and_bytes_over_websocket_are_exact(serve_app) -> None:
    sio = geventsio.Server(ping_interval=60)
    sio.on("echo", lambda sid, data: sio.emit("echo", data, to=sid))
    rs = serve(serve_app, sio)
    ws = websocket.create_connection(f"{rs.ws_url}/socket.io/?EIO=4&transport=websocket", timeout=TIMEOUT)
    try:
        sent = ["40", '42["echo","\u00fc"]']
        received = [ws.recv()]
        for text in sent:
            ws.send(text)
            received.append(ws.recv())
    finally:
        ws.close()
    assert received[0].startswith("0") and received[1].startswith("40{")
    assert received[2] == sent[1]
    stats = sio.stats()
    assert stats["packets_in"] == 2
    assert stats["packets_out"] == 3
    assert stats["bytes_in"] == sum(_frame_size(t.encode(), masked=True) for t in sent)
    assert stats["bytes_out"] == sum(_frame_size(t.encode(), masked=False) for t in received)


def test_ack_timeouts_and_queue_high_water(serve_app, raw_client) -> None:
    sio = geventsio.Server(ping_interval=60)
    rs = serve(serve_app, sio)
    raw = raw_client(rs)
    sid = raw.connect()
    with pytest.raises(geventsio.TimeoutError):
        sio.call("are you there", to=sid, timeout=0.05)
    assert sio.stats()["ack_timeouts"] == 1

    # A polling session with no GET parked queues what is emitted to it.
    status, _, body = _request(rs.port, "GET", rs.endpoint())
    eio_sid = json.loads(body[1:])["sid"]
    session = rs.endpoint(f"EIO=4&transport=polling&sid={eio_sid}")
    _request(rs.port, "POST", session, "40")
    connected = _request(rs.port, "GET", session)[2].decode()
    polling_sid = json.loads(connected[2:])["sid"]
    frames = []
    for n in range(3):
        sio.emit("fill", "x" * 1000, to=polling_sid)
        frames.append(f'42["fill","{"x" * 1000}"]')
    _request(rs.port, "GET", session)
    assert sio.stats()["queued_bytes_high_water"] == sum(len(f) for f in frames)


def test_prometheus_page(serve_app, make_client) -> None:
    sio = geventsio.Server()
    rs = serve_app(sio, path="socket.io", metrics_path="/metrics")
    connect_client(make_client(), rs, ["websocket"])
    connect_client(make_client(), rs, ["websocket"], namespaces=["/"])
    status, headers, body = _request(rs.port, "GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"# (HELP|TYPE) geventsio_\w+ .+", line), line
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    assert samples['geventsio_socketio_clients{namespace="/"}'] == 2
    assert samples['geventsio_engineio_sessions{transport="websocket"}'] == 2
    assert samples["geventsio_engineio_handshakes_total"] == 2
    assert samples['geventsio_socketio_connects_total{namespace="/"}'] == 2
    assert samples['geventsio_engineio_packets_total{direction="in"}'] == sio.stats()["packets_in"]
    assert "# TYPE geventsio_engineio_bytes_total counter" in text


def test_metrics_page_is_off_by_default(serve_app) -> None:
    rs = serve(serve_app, geventsio.Server())
    assert _request(rs.port, "GET", "/metrics")[0] == 404


def test_engine_only_server_has_a_metrics_page_too(serve_app) -> None:
    eio = geventsio.engine.Server()
    rs = serve_app(eio, path="engine.io", metrics_path="/metrics")
    status, _, body = _request(rs.port, "GET", rs.endpoint())
    assert status == 200
    assert eio.stats()["handshakes"] == 1 and eio.stats()["bytes_out"] == len(body)
    text = _request(rs.port, "GET", "/metrics")[2].decode()
    assert 'geventsio_engineio_sessions{transport="polling"} 1' in text.splitlines()
    assert "socketio" not in text
