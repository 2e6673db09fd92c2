"""Connection state recovery, with the geventsio client against the geventsio server.

A client's WebSocket is cut under it (its TCP socket shut down, no DISCONNECT
packet: the server hears "transport close"), the server emits while it is
away, and the client's reconnection is held at a gate (its ``auth`` callable)
until the test opens it, so that what is "missed" is decided by the test,
not by timing. Checked: same sid, rooms and session, every missed packet once
and in order, what is not recoverable (window passed, log overflowed, client
or server disconnect) starting a new session, and the server's default
(recovery off) wire unchanged. Also: a partition (packets queued to a dead
connection), broadcasts from another member of a Redis cluster, and this
client against Node's server.
"""

from __future__ import annotations

import socket as pysocket
import time
from typing import Any

import gevent
import pytest
from gevent.event import Event

import geventsio

pytest.register_assert_rewrite("client_support")  # before its import below
from client_support import WAIT, FreezingProxy, Log  # noqa: E402

pytest_plugins = ["client_support"]  # its fixture make_client
from client_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)


class App:
    """A server with recovery on, the handlers the tests use, and what they saw."""

    def __init__(self, serve_app: Any, ping_timeout: float = 2, client_manager: Any = None,
                 serializer: str = "default", **recovery: Any):
        self.sio = geventsio.Server(connection_state_recovery=recovery or True, client_manager=client_manager,
                                    ping_interval=0.5, ping_timeout=ping_timeout, serializer=serializer)
        self.connects = Log()  # (sid, recovered, auth) per connect handler call
        self.disconnects = Log()  # (sid, reason), added once the session is kept or dropped
        sio = self.sio

        @sio.on("connect")
        def connect(sid, environ, auth):
            self.connects.add((sid, sio.is_recovered(sid), auth))

        @sio.on("disconnect")
        def disconnect(sid, reason):
            # The session is stored right after this handler: note it once that is done.
            gevent.get_hub().loop.run_callback(self.disconnects.add, (sid, reason))

        @sio.on("join")
        def join(sid, room, nickname):
            sio.enter_room(sid, room)
            with sio.session(sid) as session:
                session["nickname"] = nickname
            return "joined"

        @sio.on("state")
        def state(sid):
            return {"rooms": sio.rooms(sid), "session": sio.get_session(sid),
                    "recovered": sio.is_recovered(sid)}

        self.running = serve_app(self.sio, path="socket.io")

    @property
    def url(self) -> str:
        return self.running.url

    def store(self, namespace: str = "/") -> Any:
        return self.sio.adapters[namespace].recovery


class GatedClient:
    """A geventsio client whose (re)connections wait for ``gate``; it logs ``news`` and ``direct``."""

    def __init__(self, make_client: Any, url: str, auth: dict | None = None,
                 transports: list[str] | None = None, **options: Any):
        self.gate = Event()
        self.gate.set()
        self.received = Log()
        self.connects = Log()
        self.client = client = make_client(**options)
        self.lost = Log()
        client.on("disconnect", self.lost)
        client.on("news", lambda *args: self.received.add(("news", *args)))
        client.on("direct", lambda *args: self.received.add(("direct", *args)))
        client.on("connect", lambda: self.connects.add((client.get_sid(), client.recovered)))

        def gated_auth() -> dict:
            self.gate.wait(WAIT)
            return dict(auth or {"token": "t0k"})

        client.connect(url, transports=transports or ["websocket"], auth=gated_auth, wait_timeout=WAIT)
        self.connects.wait_for(1)

    def cut(self) -> None:
        """Shut the WebSocket's TCP socket down under the client, with the gate closed."""
        self.gate.clear()
        self.client.eio._ws.sock.shutdown(pysocket.SHUT_RDWR)

    def come_back(self, connects: int = 2) -> tuple[str, bool]:
        self.gate.set()
        return self.connects.wait_for(connects)[-1]


def setup(app: App, gated: GatedClient) -> str:
    """Join room "a" with a nickname and receive one event (the client then has an offset)."""
    assert gated.client.call("join", ("a", "ann"), timeout=WAIT) == "joined"
    app.sio.emit("news", 0, to="a")
    gated.received.wait_for(1)
    return gated.client.get_sid()


def lose(app: App, gated: GatedClient, sid: str) -> None:
    """Cut the client's connection and wait until the server has kept its session."""
    before = app.disconnects.items.count((sid, "transport close"))
    gated.cut()
    app.disconnects.wait_for(lambda items: items.count((sid, "transport close")) > before)


def wait_until(predicate: Any, what: str, timeout: float = WAIT) -> None:
    """Poll a condition that has no event to wait on (a timer on the server's loop)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout}s")
        gevent.sleep(0.02)


def test_recovers_sid_rooms_session_and_every_missed_packet_in_order(serve_app, make_client):
    app = App(serve_app, max_disconnection_duration=10)
    other = GatedClient(make_client, app.url)  # stays connected: must not get the replay
    gated = GatedClient(make_client, app.url)
    sid = setup(app, gated)
    lose(app, gated, sid)

    app.sio.emit("news", 1, to="a")
    app.sio.emit("direct", 2, to=sid)
    app.sio.emit("news", 3)  # to everybody
    app.sio.emit("news", "not for a", to="b")
    app.sio.emit("news", "a minus the sid", to="a", skip_sid=sid)
    app.sio.to("a").except_(other.client.get_sid()).emit("news", 4, {"with": ["json"]})
    app.sio.emit("direct", b"\x00binary\xff", to=sid)

    assert gated.come_back() == (sid, True)
    app.sio.emit("news", 5, to="a")  # after the replay
    received = gated.received.wait_for(lambda items: ("news", 5) in items)
    assert received == [("news", 0), ("news", 1), ("direct", 2), ("news", 3),
                        ("news", 4, {"with": ["json"]}), ("direct", b"\x00binary\xff"), ("news", 5)]
    state = gated.client.call("state", timeout=WAIT)
    assert state == {"rooms": sorted([sid, "a"]), "session": {"nickname": "ann"}, "recovered": True}
    assert gated.client.recovered and gated.client.get_sid() == sid
    # skip_middlewares (the default): the connect handler ran for the first connection only.
    assert [c[0] for c in app.connects.items] == [other.client.get_sid(), sid]
    assert ("news", 1) not in other.received.items and ("news", 3) in other.received.items
    assert len(app.store()) == 0  # restored once: the pid is spent


def test_recovery_speaks_the_servers_parser(serve_app, make_client):
    # The packet log holds frames encoded once, by the server's parser (msgpack here).
    app = App(serve_app, serializer="msgpack")
    gated = GatedClient(make_client, app.url, serializer="msgpack")
    sid = setup(app, gated)
    lose(app, gated, sid)
    app.sio.emit("news", 1, to="a")
    app.sio.emit("direct", b"\x00\xff", to=sid)
    assert gated.come_back() == (sid, True)
    assert gated.received.wait_for(3) == [("news", 0), ("news", 1), ("direct", b"\x00\xff")]


def test_a_recovered_client_can_be_lost_and_recovered_again(serve_app, make_client):
    app = App(serve_app)
    gated = GatedClient(make_client, app.url)
    sid = setup(app, gated)
    for n in (1, 2, 3):
        lose(app, gated, sid)
        app.sio.emit("news", n, to="a")
        assert gated.come_back(n + 1) == (sid, True)
        gated.received.wait_for(n + 1)
    app.sio.emit("news", 4, to="a")
    assert gated.received.wait_for(5) == [("news", n) for n in range(5)]


def test_connect_handler_runs_and_knows_when_middlewares_are_not_skipped(serve_app, make_client):
    app = App(serve_app, skip_middlewares=False)
    gated = GatedClient(make_client, app.url)
    sid = setup(app, gated)
    lose(app, gated, sid)
    app.sio.emit("news", 1, to="a")
    assert gated.come_back() == (sid, True)
    gated.received.wait_for(2)
    first, again = app.connects.wait_for(2)
    assert first[:2] == (sid, False) and again[:2] == (sid, True)
    # The client merged its pid and offset into the user's auth, as the JS client does.
    assert first[2] == {"token": "t0k"}
    assert set(again[2]) == {"token", "pid", "offset"}


def test_acknowledged_emits_carry_no_offset_and_handlers_see_their_arguments(serve_app, make_client):
    app = App(serve_app)
    gated = GatedClient(make_client, app.url)
    sid = setup(app, gated)
    gated.client.on("ask", lambda *args: list(args))
    assert app.sio.call("ask", (1, "two"), to=sid, timeout=WAIT) == [1, "two"]
    got = Log()
    app.sio.emit("ask", ("x",), to=sid, callback=got)
    assert got.wait_for(1) == [["x"]]


def test_after_the_window_the_client_gets_a_new_session(serve_app, make_client):
    app = App(serve_app, max_disconnection_duration=0.2)
    gated = GatedClient(make_client, app.url)
    sid = setup(app, gated)
    lose(app, gated, sid)
    app.sio.emit("news", 1, to="a")
    wait_until(lambda: len(app.store()) == 0, "the lost session's expiry")
    new_sid, recovered = gated.come_back()
    assert new_sid != sid and not recovered
    assert gated.client.call("state", timeout=WAIT) == {
        "rooms": [new_sid], "session": {}, "recovered": False}
    assert [c[:2] for c in app.connects.items] == [(sid, False), (new_sid, False)]
    assert gated.received.items == [("news", 0)]


def test_more_missed_packets_than_the_log_holds_start_a_new_session(serve_app, make_client):
    app = App(serve_app, max_buffered_packets=3)
    gated = GatedClient(make_client, app.url)
    sid = setup(app, gated)
    lose(app, gated, sid)
    for n in range(1, 5):  # the 4th pushes packet 1, the first one missed, out of the log
        app.sio.emit("news", n, to="a")
    new_sid, recovered = gated.come_back()
    assert new_sid != sid and not recovered
    app.sio.emit("news", "fresh")  # nothing of the old session came before it
    assert gated.received.wait_for(2) == [("news", 0), ("news", "fresh")]


def test_a_full_log_still_recovers_a_client_that_missed_less(serve_app, make_client):
    app = App(serve_app, max_buffered_packets=3)
    gated = GatedClient(make_client, app.url)
    for n in range(10):  # older packets than the client's offset may leave the log
        app.sio.emit("news", "old")
    sid = setup(app, gated)
    lose(app, gated, sid)
    app.sio.emit("news", 1, to="a")
    app.sio.emit("news", 2, to="a")
    assert gated.come_back() == (sid, True)
    assert gated.received.wait_for(lambda items: ("news", 2) in items)[-2:] == [("news", 1), ("news", 2)]


@pytest.mark.parametrize("who", ["client", "server"])
def test_a_deliberate_disconnect_is_not_recoverable(serve_app, make_client, who):
    app = App(serve_app)
    gated = GatedClient(make_client, app.url)
    sid = setup(app, gated)
    state = gated.client.delivery.namespaces["/"]
    pid, offset = state.pid, state.offset
    assert isinstance(pid, str) and isinstance(offset, str)
    if who == "client":
        gated.client.disconnect()
        reason = "client disconnect"
    else:
        app.sio.disconnect(sid)
        reason = "server disconnect"
    app.disconnects.wait_for(lambda items: (sid, reason) in items)
    assert len(app.store()) == 0
    # Even with the right pid and offset (as a JS client sends them), it is a new session.
    again = GatedClient(make_client, app.url, auth={"pid": pid, "offset": offset})
    assert again.connects.items[0][0] != sid and not again.connects.items[0][1]


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_packets_queued_to_a_dead_connection_are_recovered(serve_app, make_client, transport):
    """A partition: the server queues packets to a connection that is gone before it notices
    (ping timeout); the client's offset says they never arrived, and they are replayed."""
    app = App(serve_app, ping_timeout=1)
    proxy = FreezingProxy(app.running.port)
    try:
        gated = GatedClient(make_client, proxy.url, transports=[transport], request_timeout=1)
        sid = setup(app, gated)
        gated.gate.clear()
        proxy.freeze()
        app.sio.emit("news", 1, to="a")  # queued to the connection that no longer goes anywhere
        app.disconnects.wait_for(lambda items: (sid, "ping timeout") in items)
        app.sio.emit("news", 2, to="a")  # the session is kept: logged for it
        gated.lost.wait_for(1)
        proxy.thaw()
        assert gated.come_back() == (sid, True)
        app.sio.emit("news", 3, to="a")
        assert gated.received.wait_for(4) == [("news", n) for n in range(4)]
    finally:
        proxy.close()


def test_broadcasts_from_another_server_of_a_redis_cluster_are_recovered(serve_app, make_client):
    from redis_support import REDIS_URL, require_redis, unique_key, wait_subscribers

    r = require_redis()
    key = unique_key()
    here = App(serve_app, client_manager=geventsio.RedisManager(REDIS_URL, key=key))
    there = geventsio.Server(client_manager=geventsio.RedisManager(REDIS_URL, key=key))
    try:
        wait_subscribers(r, key, 2)
        gated = GatedClient(make_client, here.url)
        sid = setup(here, gated)
        witness = GatedClient(make_client, here.url)  # in "a" here: shows the broadcasts arrived
        witness.client.call("join", ("a", "wit"), timeout=WAIT)
        gated.client.call("join", ("solo", "ann"), timeout=WAIT)
        lose(here, gated, sid)
        there.emit("news", 1, to="a")
        there.emit("news", 2, to="b")
        there.emit("news", 3, to="solo")  # a room with nobody here now, but a kept session
        there.emit("news", 4, to="a")
        witness.received.wait_for(lambda items: ("news", 4) in items)
        gated.gate.set()
        assert gated.received.wait_for(4) == [("news", 0), ("news", 1), ("news", 3), ("news", 4)]
        assert gated.connects.items[-1] == (sid, True)
    finally:
        there.shutdown()


@pytest.mark.parametrize("offset", ["999999", "-1", "1" * 30, 7, None])
def test_a_bad_offset_does_not_recover_and_spends_the_pid(serve_app, make_client, offset):
    app = App(serve_app)
    gated = GatedClient(make_client, app.url)
    sid = setup(app, gated)
    pid = gated.client.delivery.namespaces["/"].pid
    lose(app, gated, sid)
    stolen = GatedClient(make_client, app.url, auth={"pid": pid, "offset": offset})
    assert stolen.connects.items[0][0] != sid  # not recovered: a new session
    # A string offset spends the pid (one try per lost session); anything else is not a
    # recovery attempt at all (as with Node), and the real client still recovers.
    new_sid, recovered = gated.come_back()
    if isinstance(offset, str):
        assert new_sid != sid and not recovered
    else:
        assert (new_sid, recovered) == (sid, True)


def test_recovery_is_per_namespace(serve_app, make_client):
    app = App(serve_app)
    app.sio.on("connect", lambda sid, environ, auth: None, namespace="/chat")
    app.sio.on("join", lambda sid, room: app.sio.enter_room(sid, room, namespace="/chat") or "ok",
               namespace="/chat")
    chat = Log()
    client = make_client()
    client.on("news", chat, namespace="/chat")
    gate = Event()
    gate.set()
    client.connect(app.url, transports=["websocket"], namespaces=["/", "/chat"],
                   auth=lambda: gate.wait(WAIT) and None, wait_timeout=WAIT)
    client.call("join", "r", namespace="/chat", timeout=WAIT)
    app.sio.emit("news", 0, to="r", namespace="/chat")
    chat.wait_for(1)
    root_sid, chat_sid = client.get_sid("/"), client.get_sid("/chat")
    gate.clear()
    client.eio._ws.sock.shutdown(pysocket.SHUT_RDWR)
    wait_until(lambda: len(app.store("/chat")) == 1 and len(app.store("/")) == 1, "both sessions kept")
    app.sio.emit("news", 1, to="r", namespace="/chat")
    gate.set()
    assert chat.wait_for(2) == [0, 1]
    wait_until(lambda: client.get_sid("/") is not None and client.get_sid("/chat") is not None,
               "both namespaces reconnected")
    assert client.get_sid("/chat") == chat_sid and client.is_recovered("/chat")
    assert app.sio.is_recovered(chat_sid, namespace="/chat") and not app.sio.is_recovered(chat_sid)
    # The client received nothing on "/", so it has no offset to name: a new session there.
    assert client.get_sid("/") != root_sid and not client.is_recovered("/")


def test_the_wire_carries_pid_and_offsets_only_when_on(serve_app):
    import json

    import websocket

    def first_frames(sio: geventsio.Server) -> tuple[dict, str]:
        running = serve_app(sio, path="socket.io")
        ws = websocket.create_connection(f"{running.ws_url}/socket.io/?EIO=4&transport=websocket",
                                         timeout=WAIT)
        try:
            ws.recv()  # the Engine.IO open packet
            ws.send("40")
            connect = ws.recv()
            assert connect.startswith("40")
            sid = json.loads(connect[2:])["sid"]
            sio.emit("news", 1, to=sid)
            return json.loads(connect[2:]), ws.recv()
        finally:
            ws.close()

    payload, event = first_frames(geventsio.Server())
    assert set(payload) == {"sid"} and event == '42["news",1]'
    payload, event = first_frames(geventsio.Server(connection_state_recovery=True))
    assert set(payload) == {"sid", "pid"}
    name, value, offset = json.loads(event[2:])
    assert (name, value) == ("news", 1) and isinstance(offset, str)


def test_a_namespace_admitted_by_pattern_keeps_its_lost_sessions_then_goes(serve_app, make_client):
    sio = geventsio.Server(namespaces="*", connection_state_recovery={"max_disconnection_duration": 0.3})
    running = serve_app(sio, path="socket.io")
    news = Log()
    client = make_client(reconnection=False)
    client.on("news", news, namespace="/dyn")
    client.connect(running.url, transports=["websocket"], namespaces=["/dyn"], wait_timeout=WAIT)
    sio.enter_room(client.get_sid("/dyn"), "r", namespace="/dyn")
    sio.emit("news", 0, to="r", namespace="/dyn")
    news.wait_for(1)
    client.eio._ws.sock.shutdown(pysocket.SHUT_RDWR)
    wait_until(lambda: "/dyn" in sio.adapters and len(sio.adapters["/dyn"].recovery) == 1,
               "the lost session kept (and its namespace with it)")
    wait_until(lambda: "/dyn" not in sio.adapters, "the idle namespace dropped once the session expired")


def test_the_geventsio_client_recovers_from_the_node_server(make_client):
    """The client side against the reference: Node's socket.io 4.x with connectionStateRecovery."""
    from client_support import INTEROP_DIR, NodeServer
    from node_support import require_npm_packages

    require_npm_packages(INTEROP_DIR)
    node = NodeServer({"pingInterval": 500, "pingTimeout": 2000,
                       "connectionStateRecovery": {"maxDisconnectionDuration": 10_000}})
    try:
        gated = GatedClient(make_client, node.url)
        room_msgs = Log()
        gated.client.on("room-msg", room_msgs)
        sid = gated.client.get_sid()
        assert gated.client.call("join", "r", timeout=WAIT) == sorted([sid, "r"])
        helper = GatedClient(make_client, node.url)
        helper.client.call("to-room", ("r", "seen"), timeout=WAIT)
        room_msgs.wait_for(1)
        gated.cut()
        node.log.wait_for(lambda items: {"disconnect": sid, "nsp": "/", "reason": "transport close"} in items)
        helper.client.call("to-room", ("r", "missed"), timeout=WAIT)
        helper.client.call("to-room", ("r", {"also": "missed"}), timeout=WAIT)
        assert gated.come_back() == (sid, True)
        helper.client.call("to-room", ("r", "after"), timeout=WAIT)
        # Each handler got the message alone: the client took the offset off.
        assert room_msgs.wait_for(4) == ["seen", "missed", {"also": "missed"}, "after"]
    finally:
        node.kill()
