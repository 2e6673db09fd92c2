"""geventsio under gunicorn: our worker and gevent-websocket's stock worker."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import websocket

WORKERS = [
    "geventsio.gunicorn_worker.GeventSocketIOWorker",
    "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
]


@pytest.fixture(params=WORKERS)
def gunicorn_port(request):
    tests_dir = os.path.dirname(__file__)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", request.param, "-w", "1", "-b", "127.0.0.1:0",
         "--chdir", tests_dir, "apps.engine_echo:app"],
        stderr=subprocess.PIPE, text=True,
    )
    port = None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "Booting worker" in line:
            break
    assert port is not None, "".join(seen)
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)


def _request(port, method, query, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, "/engine.io/?" + query, body=body)
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def test_polling_and_upgrade_under_gunicorn(gunicorn_port):
    status, body = _request(gunicorn_port, "GET", "EIO=4&transport=polling")
    assert status == 200 and body.startswith("0")
    handshake = json.loads(body[1:])
    assert handshake["upgrades"] == ["websocket"]
    sid = handshake["sid"]

    posted = _request(gunicorn_port, "POST", f"EIO=4&transport=polling&sid={sid}", "4over-polling")
    assert posted == (200, "ok")
    assert _request(gunicorn_port, "GET", f"EIO=4&transport=polling&sid={sid}") == (200, "4over-polling")

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{gunicorn_port}/engine.io/?EIO=4&transport=websocket&sid={sid}", timeout=5)
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        ws.send("5")
        ws.send("4over-websocket")
        assert ws.recv() == "4over-websocket"
        ws.send_binary(b"\x00\x01\x02")
        assert ws.recv() == b"\x00\x01\x02"
    finally:
        ws.close()
    assert _request(gunicorn_port, "GET", f"EIO=4&transport=polling&sid={sid}")[0] == 400


def test_websocket_only_under_gunicorn(gunicorn_port):
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{gunicorn_port}/engine.io/?EIO=4&transport=websocket", timeout=5)
    try:
        opened = ws.recv()
        assert opened.startswith("0") and json.loads(opened[1:])["upgrades"] == []
        ws.send("4hello")
        assert ws.recv() == "4hello"
        assert ws.recv() == "2"  # the server's heartbeat
        ws.send("3")
    finally:
        ws.close()


def test_the_app_beside_sees_gunicorns_environ(gunicorn_port, request):
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_port, timeout=5)
    conn.putrequest("GET", "/environ?q=%20x")
    conn.putheader("X-Multi", "a")
    conn.putheader("X-Multi", "b")
    conn.endheaders()
    seen = json.loads(conn.getresponse().read())
    conn.close()
    assert seen["PATH_INFO"] == "/environ" and seen["QUERY_STRING"] == "q=%20x"
    assert seen["HTTP_X_MULTI"] == "a,b"
    if request.node.callspec.params["gunicorn_port"] == WORKERS[0]:
        # gunicorn's own keys, which its pywsgi handler adds (geventsio's handler builds the rest).
        assert seen["RAW_URI"] == "/environ?q=%20x" and seen["has_gunicorn_sock"]


def test_a_plain_websocket_beside_is_gevent_websockets(gunicorn_port):
    ws = websocket.create_connection(f"ws://127.0.0.1:{gunicorn_port}/ws-echo", timeout=5)
    try:
        ws.send("not engine.io")
        assert ws.recv() == "not engine.io"
    finally:
        ws.close()
