"""python-socketio's Server options that geventsio honours or accepts."""

import http.client
import json

import gevent.event
import pytest
import socketio
import websocket

import geventsio


def _handshake(rs):
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=5)
    conn.request("GET", "/socket.io/?EIO=4&transport=polling")
    return json.loads(conn.getresponse().read()[1:])


def test_always_connect_accepts_first_then_disconnects_a_refusal(serve_app):
    sio = geventsio.Server(always_connect=True)
    disconnected = gevent.event.Event()

    @sio.event
    def connect(sid, environ, auth):
        sio.emit("early", "from the connect handler", to=sid)
        return auth == {"token": "ok"}

    @sio.event
    def disconnect(sid, reason):
        disconnected.set()

    rs = serve_app(sio, path="socket.io")
    for auth, stays in (({"token": "ok"}, True), ({"token": "no"}, False)):
        client = socketio.Client(reconnection=False)
        early = gevent.event.AsyncResult()
        gone = gevent.event.Event()
        client.on("early", early.set)
        client.on("disconnect", lambda *reason: gone.set())
        client.connect(rs.url, auth=auth, transports=["websocket"], wait_timeout=5)
        try:
            # Accepted up front: the handler's emit arrives either way.
            assert early.get(timeout=5) == "from the connect handler"
            if stays:
                assert client.connected
            else:
                assert gone.wait(5), "a refused client is disconnected after connecting"
        finally:
            client.disconnect()
    assert disconnected.wait(5)


def test_allow_upgrades_false_keeps_polling(serve_app):
    sio = geventsio.Server(allow_upgrades=False)
    rs = serve_app(sio, path="socket.io")
    opened = _handshake(rs)
    assert opened["upgrades"] == []
    # The upgrade is refused with an HTTP 400, before any 101.
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            f"{rs.ws_url}/socket.io/?EIO=4&transport=websocket&sid={opened['sid']}", timeout=5)
    assert refused.value.status_code == 400
    assert opened["sid"] in sio.eio.sessions  # the polling session is untouched


@pytest.mark.parametrize("option", ["async_handlers", "monitor_clients", "http_compression"])
def test_python_socketio_options_are_accepted(option):
    geventsio.Server(**{option: True})


def test_unsupported_options_say_so():
    with pytest.raises(ValueError, match="gevent only"):
        geventsio.Server(async_mode="asyncio")
    with pytest.raises(ValueError, match="unsupported serializer 'pickle'"):
        geventsio.Server(serializer="pickle")
    with pytest.raises(ValueError, match="unsupported serializer"):
        geventsio.Client(serializer=dict)
    with pytest.raises(NotImplementedError, match="json"):
        geventsio.Server(json=object())
