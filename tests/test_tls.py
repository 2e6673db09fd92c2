"""Both transports over TLS (make_server with a certificate): the TLS socket carries every byte."""

from __future__ import annotations

import ssl

import pytest
import websocket
from gevent.event import Event

import geventsio
from sio_support import TIMEOUT

BIG = b"\xa5" * (3 << 20)  # more than the socket buffers take at once: the writer greenlet runs


@pytest.fixture
def tls_server(certificate):
    cert, key = certificate
    sio = geventsio.Server(max_http_buffer_size=len(BIG) * 2)
    sio.on("echo", lambda sid, data: data)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = geventsio.make_server(geventsio.WSGIApp(sio), "127.0.0.1", 0, ssl_context=context)
    server.start()
    yield sio, f"https://127.0.0.1:{server.server_port}"
    server.stop(timeout=1)
    sio.shutdown(timeout=0.5)


@pytest.mark.parametrize("transports", [["polling"], ["websocket"], None],
                         ids=["polling", "websocket", "upgrade"])
def test_events_and_a_large_binary_over_tls(tls_server, transports):
    sio, url = tls_server
    client = geventsio.Client(reconnection=False, ssl_verify=False)
    client.connect(url, transports=transports, wait_timeout=TIMEOUT)
    try:
        assert client.call("echo", {"n": 1}, timeout=TIMEOUT) == {"n": 1}
        assert client.call("echo", BIG, timeout=TIMEOUT) == BIG
        pushed = Event()
        client.on("pushed", lambda data: pushed.set() if data == BIG else None)
        sio.emit("pushed", BIG)
        assert pushed.wait(TIMEOUT)
    finally:
        client.disconnect()


def test_a_raw_websocket_over_tls_gets_server_frames_intact(tls_server):
    sio, url = tls_server
    ws = websocket.create_connection(url.replace("https", "wss") + "/socket.io/?EIO=4&transport=websocket",
                                     sslopt={"cert_reqs": ssl.CERT_NONE}, timeout=TIMEOUT)
    try:
        assert ws.recv().startswith("0{")
        ws.send("40")
        assert ws.recv().startswith("40{")
        ws.send('421["echo","over tls"]')
        assert ws.recv() == '431["over tls"]'
    finally:
        ws.close()
