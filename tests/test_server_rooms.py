"""Socket.IO server rooms and broadcasts over real sockets (python-socketio clients).

To show that a client did *not* receive an event, every check emits a
``sentinel`` to everyone afterwards: the server keeps each client's packets in
order, so once a client has the sentinel it has everything sent to it before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import socketio
from gevent.event import AsyncResult

import geventsio

pytest.register_assert_rewrite("sio_support")  # before its import below
from sio_support import TIMEOUT, Inbox, connect_client, serve  # noqa: E402

pytest_plugins = ["sio_support"]  # its fixtures: make_client, transports, raw_client
from sio_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)

NAMES = ("a", "b", "c")


@dataclass
class Trio:
    sio: geventsio.Server
    clients: dict[str, socketio.Client] = field(default_factory=dict)
    inboxes: dict[str, Inbox] = field(default_factory=dict)
    sids: dict[str, str] = field(default_factory=dict)

    def received(self, event: str) -> dict[str, list[tuple]]:
        """What each client got of ``event``, once a sentinel sent after it has arrived everywhere."""
        expected = {name: len(inbox.of("sentinel")) + 1 for name, inbox in self.inboxes.items()}
        self.sio.emit("sentinel")
        for name, inbox in self.inboxes.items():
            inbox.wait_for("sentinel", count=expected[name])
        return {name: inbox.of(event) for name, inbox in self.inboxes.items()}


@pytest.fixture
def trio(serve_app, make_client, request) -> Trio:
    """Three clients a, b, c connected to one server with join/leave handlers."""
    transports = getattr(request, "param", None)
    sio = geventsio.Server()

    @sio.event
    def join(sid, room):
        sio.enter_room(sid, room)
        return sio.rooms(sid)

    @sio.event
    def leave(sid, room):
        sio.leave_room(sid, room)
        return sio.rooms(sid)

    rs = serve(serve_app, sio)
    t = Trio(sio)
    for name in NAMES:
        client = make_client()
        t.inboxes[name] = Inbox(client)
        t.clients[name] = connect_client(client, rs, transports=transports)
        t.sids[name] = client.get_sid("/")
    return t


def test_rooms_enter_leave_close(trio):
    sio, sids = trio.sio, trio.sids
    a, b = sids["a"], sids["b"]
    assert sio.rooms(a) == [a]  # every socket is in its own room
    assert trio.clients["a"].call("join", "r1", timeout=TIMEOUT) == sorted([a, "r1"])
    sio.enter_room(a, "r2")
    sio.enter_room(b, "r1")
    assert sio.rooms(a) == sorted([a, "r1", "r2"])
    assert trio.clients["a"].call("leave", "r2", timeout=TIMEOUT) == sorted([a, "r1"])
    sio.leave_room(a, "never-joined")  # harmless
    sio.close_room("r1")
    assert sio.rooms(a) == [a] and sio.rooms(b) == [b]
    sio.emit("after_close", to="r1")
    assert trio.received("after_close") == {"a": [], "b": [], "c": []}
    sio.enter_room("no-such-sid", "r1")  # ignored: not a connected client
    assert sio.to("r1").sockets() == []


@pytest.mark.parametrize("trio", [["polling"], ["websocket"], None], indirect=True,
                         ids=["polling", "websocket", "default"])
def test_emit_to_room_reaches_only_its_members(trio):
    sio, sids = trio.sio, trio.sids
    sio.enter_room(sids["a"], "room")
    sio.enter_room(sids["b"], "room")
    sio.emit("news", {"n": 1}, to="room")
    sio.emit("news", {"n": 2}, room="room")
    trio.sio.to("room").emit("news", {"n": 3})
    assert trio.received("news") == {
        "a": [({"n": 1},), ({"n": 2},), ({"n": 3},)],
        "b": [({"n": 1},), ({"n": 2},), ({"n": 3},)],
        "c": [],
    }


def test_emit_to_own_sid_room(trio):
    trio.sio.emit("direct", "hi", to=trio.sids["b"])
    assert trio.received("direct") == {"a": [], "b": [("hi",)], "c": []}


def test_emit_to_list_of_rooms_is_a_union_without_duplicates(trio):
    sio, sids = trio.sio, trio.sids
    sio.enter_room(sids["a"], "r1")
    sio.enter_room(sids["a"], "r2")  # a is in both target rooms
    sio.enter_room(sids["b"], "r2")
    sio.emit("multi", 1, to=["r1", "r2"])
    sio.to("r1").to("r2").emit("multi", 2)
    sio.to(["r1", "r2", "empty"]).emit("multi", 3)
    assert trio.received("multi") == {"a": [(1,), (2,), (3,)], "b": [(1,), (2,), (3,)], "c": []}


def test_skip_sid_single_and_list(trio):
    sio, sids = trio.sio, trio.sids
    sio.emit("skip1", skip_sid=sids["a"])
    sio.emit("skip2", skip_sid=[sids["a"], sids["c"]])
    for name in NAMES:
        sio.enter_room(sids[name], "all")
    sio.emit("skip3", "x", to="all", skip_sid=sids["b"])
    got1, got2, got3 = trio.received("skip1"), trio.received("skip2"), trio.received("skip3")
    assert got1 == {"a": [], "b": [()], "c": [()]}
    assert got2 == {"a": [], "b": [()], "c": []}
    assert got3 == {"a": [("x",)], "b": [], "c": [("x",)]}


def test_except_operator(trio):
    sio, sids = trio.sio, trio.sids
    for name in NAMES:
        sio.enter_room(sids[name], "all")
    sio.enter_room(sids["c"], "muted")
    sio.to("all").except_(sids["a"]).emit("e1")
    sio.except_("muted").emit("e2")  # everyone but the room's members
    sio.to("all").except_([sids["a"], "muted"]).emit("e3")
    assert sio.to("all").except_("muted").sockets() == sorted([sids["a"], sids["b"]])
    assert trio.received("e1") == {"a": [], "b": [()], "c": [()]}
    assert trio.received("e2") == {"a": [()], "b": [()], "c": []}
    assert trio.received("e3") == {"a": [], "b": [()], "c": []}


def test_broadcast_to_everyone_and_send(trio):
    sio = trio.sio
    sio.emit("hello", ("several", "args"))
    sio.send({"text": "msg"})
    sio.of("/").emit("again", 1)
    assert trio.received("hello") == {n: [("several", "args")] for n in NAMES}
    assert trio.received("message") == {n: [({"text": "msg"},)] for n in NAMES}
    assert trio.received("again") == {n: [(1,)] for n in NAMES}


def test_rooms_are_per_namespace(serve_app, make_client):
    sio = geventsio.Server()
    sio.on("connect", lambda sid, environ: sio.enter_room(sid, "lobby", namespace="/chat"),
           namespace="/chat")
    rs = serve(serve_app, sio)
    client = make_client()
    root, chat = Inbox(client, "/"), Inbox(client, "/chat")
    connect_client(client, rs, namespaces=["/", "/chat"])
    chat_sid = client.get_sid("/chat")
    assert sio.rooms(chat_sid, namespace="/chat") == sorted([chat_sid, "lobby"])
    sio.emit("news", "root lobby", to="lobby")  # namespace "/": nobody in that room
    sio.emit("news", "chat lobby", to="lobby", namespace="/chat")
    sio.emit("end")
    root.wait_for("end")
    assert chat.wait_for("news") == [("chat lobby",)]
    assert root.of("news") == []


def test_disconnected_client_leaves_its_rooms(trio):
    sio, sids = trio.sio, trio.sids
    gone = AsyncResult()
    sio.on("disconnect", lambda sid, reason: gone.set(sid))
    sio.enter_room(sids["c"], "room")
    sio.enter_room(sids["a"], "room")
    sio.disconnect(sids["c"])
    assert gone.get(timeout=TIMEOUT) == sids["c"]
    assert sio.rooms(sids["c"]) == []
    assert sio.to("room").sockets() == [sids["a"]]
    del trio.inboxes["c"]
    sio.emit("after", to="room")
    assert trio.received("after") == {"a": [()], "b": []}
