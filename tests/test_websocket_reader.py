"""WebSocket reading without a greenlet per connection (engine/ws_reader.py).

Behind ``geventsio.make_server`` the WSGI handler lets go of an upgraded
connection and the event loop watches its socket: idle clients hold no
greenlet and no handler, their descriptors are closed when they end (from
either side), and a handler that cannot let go (gevent-websocket's own) still
gets a working greenlet reader. Real servers on loopback ports, real
websocket-client connections.
"""

from __future__ import annotations

import gc
import json
import os
import time
from typing import Any, Callable

import gevent
import greenlet
import pytest
import websocket
from gevent.event import Event
from geventwebsocket.handler import WebSocketHandler

import geventsio
from geventsio.wsgi import Handler

TIMEOUT = 5


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        gevent.sleep(0.01)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Served:
    """A Socket.IO server with an ``echo`` handler (its ack is the argument), served on a loopback port."""

    def __init__(self, handler_class: type = Handler):
        self.sio = geventsio.Server(ping_interval=30)
        self.connected: list[str] = []
        self.gone = Event()
        self.sio.on("connect", lambda sid, environ: self.connected.append(sid))
        self.sio.on("disconnect", lambda sid, *reason: self.gone.set())
        self.sio.on("echo", lambda sid, data: data)
        self.wsgi = geventsio.make_server(geventsio.WSGIApp(self.sio), "127.0.0.1", 0,
                                          handler_class=handler_class)
        self.wsgi.start()

    def client(self) -> websocket.WebSocket:
        """A client joined to "/", its CONNECT answered."""
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.wsgi.server_port}/socket.io/?EIO=4&transport=websocket",
            timeout=TIMEOUT)
        assert ws.recv().startswith("0{")
        ws.send("40")
        assert ws.recv().startswith("40{")
        return ws

    def stop(self) -> None:
        self.wsgi.stop(timeout=1)
        self.sio.shutdown(timeout=0.5)


@pytest.fixture
def served():
    made: list[Served] = []

    def make(**kwargs: Any) -> Served:
        made.append(Served(**kwargs))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def echo(ws: websocket.WebSocket, value: Any, ack_id: int = 1) -> None:
    ws.send(f'42{ack_id}["echo",{json.dumps(value)}]')
    while True:
        reply = ws.recv()
        if reply == "2":
            ws.send("3")
            continue
        assert reply == f"43{ack_id}[{json.dumps(value)}]", reply
        return


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


def test_idle_connections_hold_no_greenlet_and_no_handler(served):
    srv = served()
    srv.client().close()  # the first connection starts the worker pool
    greenlets, handlers = live(greenlet.greenlet), live(Handler)
    clients = [srv.client() for _ in range(30)]
    wait_until(lambda: len(srv.connected) == 31, "30 clients joined")
    # A greenlet reader would add one greenlet and one handler per client.
    assert live(greenlet.greenlet) - greenlets < 10
    assert live(Handler) == handlers
    for i, ws in enumerate(clients):
        echo(ws, i)
    for ws in clients:
        ws.close()


def test_client_closing_closes_the_servers_descriptor(served):
    srv = served()
    srv.client().close()
    wait_until(lambda: not srv.sio.eio.sessions, "the first session ended")
    baseline = open_fds()
    clients = [srv.client() for _ in range(10)]
    for ws in clients:
        echo(ws, "before close")
    assert open_fds() >= baseline + 20  # both ends of each connection are in this process
    for ws in clients[:5]:
        ws.close()  # a close frame
    for ws in clients[5:]:
        ws.sock.close()  # no close frame: the connection just ends
    wait_until(lambda: not srv.sio.eio.sessions, "every session ended")
    wait_until(lambda: open_fds() == baseline, "the server closed its sockets")


def test_server_closing_the_session_closes_the_connection(served):
    srv = served()
    ws = srv.client()
    baseline = open_fds()
    session, = srv.sio.eio.sessions.values()
    session.close()
    assert ws.recv() == "1"  # the Engine.IO close packet, then the close frame
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:
            ws.recv()
    assert srv.gone.wait(TIMEOUT)
    ws.close()
    wait_until(lambda: open_fds() <= baseline - 2, "both ends closed")


def test_messages_keep_flowing_through_many_wake_ups(served):
    srv = served()
    clients = [srv.client() for _ in range(5)]
    for round_no in range(20):
        for ws in clients:
            ws.send(f'42{round_no}["echo",{round_no}]')
        for ws in clients:
            echo_reply = ws.recv()
            while echo_reply == "2":
                ws.send("3")
                echo_reply = ws.recv()
            assert echo_reply == f"43{round_no}[{round_no}]"
    big = "x" * 300_000  # arrives in many reads, finished on the worker
    echo(clients[0], big, ack_id=99)
    for ws in clients:
        ws.close()


def test_a_handler_that_cannot_let_go_keeps_a_greenlet_reader(served):
    srv = served(handler_class=WebSocketHandler)
    greenlets = live(greenlet.greenlet)
    clients = [srv.client() for _ in range(5)]
    assert live(greenlet.greenlet) - greenlets >= 5
    for i, ws in enumerate(clients):
        echo(ws, i)
    srv.sio.disconnect(srv.connected[0])
    assert srv.gone.wait(TIMEOUT)
    for ws in clients:
        ws.close()
    wait_until(lambda: not srv.sio.eio.sessions, "every session ended")


def masked_frame(text: str) -> bytes:
    """One masked client text frame, as a client puts it on the wire."""
    return websocket.ABNF.create_frame(text, websocket.ABNF.OPCODE_TEXT).format()


def test_queued_handlers_do_not_wait_for_the_rest_of_a_frame(served):
    # The reader runs the handlers it queued once it stops reading; a frame
    # that arrives in pieces makes it wait, and they must not wait with it.
    srv = served()
    noted = Event()
    srv.sio.on("note", lambda sid, value: noted.set())
    ws = srv.client()
    second = masked_frame('421["echo","second"]')
    ws.sock.sendall(masked_frame('42["note",1]') + second[:10])
    assert noted.wait(TIMEOUT), "the handler of a complete message waited for the next frame"
    ws.sock.sendall(second[10:])
    assert ws.recv() == '431["second"]'
    ws.close()


def test_a_burst_larger_than_the_inbox_is_handled(served):
    # The reader waits for room in the inbox: the calls it queued must then
    # run on a worker of their own, or it would wait for itself.
    srv = served()
    srv.sio.eio.max_inbox = 2
    ws = srv.client()
    ws.sock.sendall(b"".join(masked_frame(f'42{i}["echo",{i}]') for i in range(20)))
    assert [ws.recv() for _ in range(20)] == [f"43{i}[{i}]" for i in range(20)]
    ws.close()
