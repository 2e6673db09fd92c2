"""The Engine.IO client on its own (geventsio.engine.client.EngineClient) against the engine server.

Echo in both directions on every transport, payloads split at the server's
maxPayload, refusals, the server closing, and the outgoing queue's
bookkeeping of what never left.
"""

from __future__ import annotations

import pytest
from gevent.event import AsyncResult

from geventsio.engine.client import ConnectionError, EngineClient
from geventsio.engine.client_queue import OutgoingQueue, payload_size

pytest.register_assert_rewrite("client_support")  # before its import below
from client_support import TRANSPORT_IDS, TRANSPORTS, Log, wait_event  # noqa: E402


class Listener:
    def __init__(self) -> None:
        self.messages = Log()
        self.closed = AsyncResult()

    def on_message(self, engine, data):
        self.messages.add(data)

    def on_close(self, engine, reason):
        self.closed.set(reason)


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORT_IDS)
def transports(request):
    return request.param


def open_engine(running, transports, **options) -> tuple[EngineClient, Listener]:
    listener = Listener()
    engine = EngineClient(listener, **options)
    engine.connect(running.url, transports=transports, engineio_path="engine.io")
    if transports is None:
        wait_event(engine.upgrade_done, "the upgrade")
    return engine, listener


def test_echo_text_and_binary(engine_server, transports):
    running = engine_server(ping_interval=0.2, ping_timeout=2)
    engine, listener = open_engine(running, transports)
    sent = ["4héllo", b"\x00\xff" * 700, "4" + "x" * 5000, b""]
    for i in range(3):
        engine.send(sent)
    expected = ["héllo", b"\x00\xff" * 700, "x" * 5000, b""] * 3
    assert listener.messages.wait_for(12) == expected
    assert engine.transport == ("websocket" if transports != ["polling"] else "polling")
    engine.close()
    assert listener.closed.get(timeout=1) == "client disconnect"
    assert all(g.dead for g in engine.greenlets())
    assert not engine.send(["4late"])


def test_polling_posts_stay_within_max_payload(engine_server):
    running = engine_server(max_http_buffer_size=1000)  # announced as maxPayload
    engine, listener = open_engine(running, ["polling"])
    assert engine.max_payload == 1000
    frames = [f"4{i:03d}" + "y" * 296 for i in range(20)]  # 6000 bytes: at least 6 POSTs
    engine.send(frames)
    assert listener.messages.wait_for(20) == [f[1:] for f in frames]
    assert engine.connected  # no POST was refused as too large
    engine.close()


def test_refused_handshake_raises_with_the_servers_answer(engine_server, transports):
    running = engine_server(allow_request=lambda environ: False)
    with pytest.raises(ConnectionError) as info:
        open_engine(running, transports)
    # Over WebSocket too: the server refuses before it answers 101.
    assert info.value.data == {"code": 4, "message": "Forbidden"}
    assert "HTTP 403: Forbidden" in str(info.value)


def test_the_server_closing_is_reported_once(engine_server, transports):
    running = engine_server()
    engine, listener = open_engine(running, transports)
    running.server.disconnect(engine.sid)
    assert listener.closed.get(timeout=5) == "transport close"
    assert not engine.connected


def test_queue_returns_the_tags_of_what_never_left():
    queue = OutgoingQueue(max_bytes=10)
    queue.put(["4a", b"bin"], tag="first")
    queue.put(["4b"], tag="second")
    queue.put(["3"])
    assert not queue.room.is_set() is False  # 2 + 3 + 2 + 1 bytes: within the bound
    assert queue.take(max_payload=payload_size("4a")) == ["4a"]  # one frame fits
    # "first" started to leave: it counts as sent even though its attachment did not.
    queue.put(["4" + "z" * 20], tag="third")
    assert not queue.room.is_set()
    assert queue.release() == ["second", "third"]
    assert queue.room.is_set() and queue.drained.is_set() and not queue
