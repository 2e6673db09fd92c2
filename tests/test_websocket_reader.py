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
import socket
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
    assert live(Handler) <= handlers  # (earlier tests' connections may end meanwhile)
    for i, ws in enumerate(clients):
        echo(ws, i)
    for ws in clients:
        ws.close()


def server_side_sockets(port: int) -> int:
    """This process's descriptors of connections accepted on ``port``."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] != "0A":  # not the listener
                inodes.add(fields[9])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own descriptor, closed since
            continue
        count += link.startswith("socket:[") and link[8:-1] in inodes
    return count


def test_client_closing_closes_the_servers_descriptor(served):
    srv = served()
    port = srv.wsgi.server_port
    clients = [srv.client() for _ in range(10)]
    for ws in clients:
        echo(ws, "before close")
    assert server_side_sockets(port) == 10
    for ws in clients[:5]:
        ws.close()  # a close frame
    for ws in clients[5:]:
        ws.sock.close()  # no close frame: the connection just ends
    wait_until(lambda: not srv.sio.eio.sessions, "every session ended")
    wait_until(lambda: server_side_sockets(port) == 0, "the server closed its sockets")


def test_server_closing_the_session_closes_the_connection(served):
    srv = served()
    ws = srv.client()
    session, = srv.sio.eio.sessions.values()
    session.close()
    assert ws.recv() == "1"  # the Engine.IO close packet, then the close frame
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:
            ws.recv()
    assert srv.gone.wait(TIMEOUT)
    ws.close()
    wait_until(lambda: server_side_sockets(srv.wsgi.server_port) == 0, "the server's end closed")


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


def _tcp_state(server_port: int, client_port: int) -> str | None:
    """The state of the server's end of a loopback connection, from /proc/net/tcp (None: gone)."""
    states = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
              "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0B": "CLOSING"}
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            local, remote, state = line.split()[1:4]
            if local.endswith(f":{server_port:04X}") and remote.endswith(f":{client_port:04X}"):
                return states.get(state, state)
    return None


def _server_frames(sock: socket.socket, buf: bytes, until_opcode: int) -> tuple[list, bytes]:
    """Unmasked server frames read from ``sock`` up to one with ``until_opcode``: [(opcode, payload)]."""
    frames = []
    while True:
        while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):
            n = buf[1] & 0x7F  # the frames of this test are all short
            frames.append((buf[0] & 0x0F, buf[2:2 + n]))
            buf = buf[2 + n:]
            if frames[-1][0] == until_opcode:
                return frames, buf
        chunk = sock.recv(4096)
        assert chunk, f"connection ended before opcode {until_opcode}: {frames}"
        buf += chunk


def test_server_closing_waits_for_the_clients_close_frame(served):
    """RFC 6455's closing handshake from the server's side: close frame, the client's, then TCP.

    A server that closed its socket right after its close frame would meet the
    client's close frame with a reset (the kernel's answer to data for a closed
    socket), which leaves no TIME_WAIT on the server's side.
    """
    srv = served()
    sock = socket.create_connection(("127.0.0.1", srv.wsgi.server_port), timeout=TIMEOUT)
    client_port = sock.getsockname()[1]
    try:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(4096)
        frames, buf = _server_frames(sock, buf.split(b"\r\n\r\n", 1)[1], 0x1)
        sid = json.loads(frames[0][1][1:])["sid"]
        srv.sio.eio.sessions[sid].close()
        frames, buf = _server_frames(sock, buf, 0x8)
        assert frames == [(0x1, b"1"), (0x8, b"\x03\xe8")]  # Engine.IO's close packet, then the frame
        sock.sendall(bytes([0x88, 0x82, 0, 0, 0, 0]) + b"\x03\xe8")  # the client's close frame
        assert sock.recv(4096) == b""  # the server's end of stream, not a reset
    finally:
        sock.close()
    # The server closed first and cleanly: its end waits in TIME_WAIT.
    wait_until(lambda: _tcp_state(srv.wsgi.server_port, client_port) == "TIME_WAIT",
               "the server's end in TIME_WAIT")
