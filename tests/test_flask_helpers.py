"""geventsio.flask's context helpers inside handlers: emit, send, rooms, disconnect.

Several test clients share one app; each ``get_received()`` first lets the
client's own handlers finish and drains its session, so an empty list means
the event was not sent to that client (packets are queued synchronously by the
handler that emits them).
"""

from __future__ import annotations

import flask
import pytest
from flask import request

from geventsio.flask import (
    SocketIO,
    close_room,
    disconnect,
    emit,
    join_room,
    leave_room,
    rooms,
    send,
)


@pytest.fixture
def app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "test secret"
    return app


@pytest.fixture
def socketio(app) -> SocketIO:
    socketio = SocketIO(app)

    @socketio.on("connect")
    def on_connect():
        pass

    @socketio.on("connect", namespace="/other")
    def on_connect_other():
        pass

    @socketio.event
    def whoami():
        return request.sid

    @socketio.event
    def join(room):
        join_room(room)
        return rooms()

    @socketio.event
    def leave(room):
        leave_room(room)
        return rooms()

    return socketio


def events(received: list[dict]) -> list[tuple]:
    return [(e["name"], e["args"]) for e in received]


def clients(app, socketio, n: int) -> list:
    made = [socketio.test_client(app) for _ in range(n)]
    assert all(c.is_connected() for c in made)
    return made


def test_emit_goes_to_the_sender_by_default(app, socketio):
    @socketio.on("talk")
    def talk(data):
        emit("reply", {"got": data})
        emit("pair", 1, "two")
        emit("tuple", (1, "two"))  # Flask-SocketIO: a tuple is several arguments
        emit("list", [1, "two"])
        emit("bare")

    a, b = clients(app, socketio, 2)
    a.emit("talk", "hi")
    assert events(a.get_received()) == [
        ("reply", [{"got": "hi"}]), ("pair", [1, "two"]), ("tuple", [1, "two"]),
        ("list", [[1, "two"]]), ("bare", [])]
    assert b.get_received() == []


def test_emit_broadcast_reaches_every_client_and_include_self_false_skips_the_sender(app, socketio):
    @socketio.on("news")
    def news(data, skip_me):
        emit("news", data, broadcast=True, include_self=not skip_me)

    a, b, c = clients(app, socketio, 3)
    other_ns = socketio.test_client(app, namespace="/other")
    a.emit("news", "everyone", False)
    for client in (a, b, c):
        assert events(client.get_received()) == [("news", ["everyone"])]
    assert other_ns.get_received("/other") == []  # a broadcast stays in its namespace

    a.emit("news", "others", True)
    assert a.get_received() == []
    assert events(b.get_received()) == [("news", ["others"])]
    assert events(c.get_received()) == [("news", ["others"])]


def test_socketio_emit_inside_a_handler_can_skip_the_sender(app, socketio):
    @socketio.on("relay")
    def relay(data):
        socketio.emit("relayed", data, include_self=False)
        socketio.send(data, include_self=False)

    a, b = clients(app, socketio, 2)
    a.emit("relay", "x")
    assert a.get_received() == []
    assert events(b.get_received()) == [("relayed", ["x"]), ("message", "x")]


def test_emit_to_a_room_with_and_without_the_sender(app, socketio):
    @socketio.on("to_room")
    def to_room(room, data, include_self):
        emit("room msg", data, to=room, include_self=include_self)

    @socketio.on("room_kwarg")
    def room_kwarg(room, data):
        emit("room msg", data, room=room)

    a, b, c = clients(app, socketio, 3)
    a.emit("join", "r")
    b.emit("join", "r")

    c.emit("to_room", "r", "from outside", True)  # the sender need not be in the room
    assert events(a.get_received()) == [("room msg", ["from outside"])]
    assert events(b.get_received()) == [("room msg", ["from outside"])]
    assert c.get_received() == []

    a.emit("to_room", "r", "not to me", False)
    assert a.get_received() == []
    assert events(b.get_received()) == [("room msg", ["not to me"])]

    b.emit("room_kwarg", "r", "room=")
    assert events(a.get_received()) == [("room msg", ["room="])]
    assert events(b.get_received()) == [("room msg", ["room="])]
    assert c.get_received() == []

    # A sid is a room too.
    b_sid = b.emit("whoami", callback=True)
    c.emit("to_room", b_sid, "direct", True)
    assert events(b.get_received()) == [("room msg", ["direct"])]
    assert a.get_received() == [] and c.get_received() == []


def test_emit_to_another_namespace(app, socketio):
    # As in Flask-SocketIO, sids are per namespace: reaching another namespace takes a
    # broadcast or that namespace's sid.
    @socketio.on("cross")
    def cross(data):
        emit("crossed", data, namespace="/other", broadcast=True)

    client = socketio.test_client(app)
    client.connect("/other")
    elsewhere = socketio.test_client(app, namespace="/other")
    client.emit("cross", "x")
    assert client.get_received() == []
    assert events(client.get_received("/other")) == [("crossed", ["x"])]
    assert events(elsewhere.get_received("/other")) == [("crossed", ["x"])]


def test_send_to_the_sender_broadcast_and_room(app, socketio):
    @socketio.on("message")
    def on_message(message):
        send(message)

    @socketio.on("json")
    def on_json(data):
        send(data, json=True)

    @socketio.on("send_all")
    def send_all(data):
        send(data, broadcast=True, include_self=False)

    @socketio.on("send_room")
    def send_room(room, data):
        send(data, to=room)

    a, b = clients(app, socketio, 2)
    a.send("plain text")
    a.send({"structured": [1, 2]}, json=True)
    assert events(a.get_received()) == [("message", "plain text"), ("message", {"structured": [1, 2]})]
    assert b.get_received() == []

    a.emit("send_all", "psst")
    assert a.get_received() == []
    assert events(b.get_received()) == [("message", "psst")]

    b.emit("join", "r")
    a.emit("send_room", "r", {"room": "r"})
    assert a.get_received() == []
    assert events(b.get_received()) == [("message", {"room": "r"})]


def test_join_leave_and_rooms(app, socketio):
    @socketio.on("rooms_of")
    def rooms_of(sid):
        return rooms(sid=sid)

    @socketio.on("join_other")
    def join_other(sid, room):
        join_room(room, sid=sid)

    @socketio.on("shout")
    def shout(room):
        emit("shout", room, to=room)

    a, b = clients(app, socketio, 2)
    a_sid = a.emit("whoami", callback=True)
    b_sid = b.emit("whoami", callback=True)
    assert a_sid != b_sid

    assert sorted(a.emit("join", "red", callback=True)) == sorted([a_sid, "red"])
    assert sorted(a.emit("join", "blue", callback=True)) == sorted([a_sid, "red", "blue"])
    assert sorted(b.emit("rooms_of", a_sid, callback=True)) == sorted([a_sid, "red", "blue"])

    b.emit("shout", "red")
    assert events(a.get_received()) == [("shout", ["red"])]

    assert sorted(a.emit("leave", "red", callback=True)) == sorted([a_sid, "blue"])
    b.emit("shout", "red")
    assert a.get_received() == []

    b.emit("join_other", a_sid, "green")
    assert "green" in b.emit("rooms_of", a_sid, callback=True)
    assert "green" not in b.emit("rooms_of", b_sid, callback=True)
    b.emit("shout", "green")
    assert events(a.get_received()) == [("shout", ["green"])]


def test_rooms_are_per_namespace(app, socketio):
    @socketio.on("join", namespace="/other")
    def join_other(room):
        join_room(room)
        return rooms()

    client = socketio.test_client(app)
    client.connect("/other")
    root_sid = client.emit("whoami", callback=True)
    other_rooms = client.emit("join", "lobby", callback=True, namespace="/other")
    assert "lobby" in other_rooms and root_sid not in other_rooms
    assert client.emit("join", "hall", callback=True) == sorted([root_sid, "hall"])


def test_close_room_helper_empties_the_room(app, socketio):
    @socketio.on("close")
    def close(room):
        close_room(room)
        emit("after close", to=room)
        return rooms()

    @socketio.on("shout")
    def shout(room):
        emit("shout", room, to=room)

    a, b = clients(app, socketio, 2)
    a_sid = a.emit("whoami", callback=True)
    a.emit("join", "doomed")
    b.emit("join", "doomed")
    b.emit("shout", "doomed")
    assert len(a.get_received()) == 1 and len(b.get_received()) == 1

    assert a.emit("close", "doomed", callback=True) == [a_sid]
    b.emit("shout", "doomed")
    assert a.get_received() == [] and b.get_received() == []
    assert "doomed" not in b.emit("join", "elsewhere", callback=True)


def test_disconnect_helper_disconnects_the_sender(app, socketio):
    reasons: list = []

    @socketio.on("disconnect")
    def on_disconnect(reason):
        reasons.append((request.sid, reason))

    @socketio.on("kick_me")
    def kick_me():
        disconnect()

    @socketio.on("kick")
    def kick(sid):
        disconnect(sid=sid)

    a, b, c = clients(app, socketio, 3)
    a_sid = a.emit("whoami", callback=True)
    c_sid = c.emit("whoami", callback=True)

    a.emit("kick_me")
    assert not a.is_connected()
    assert b.is_connected()

    b.emit("kick", c_sid)
    assert not c.is_connected()
    assert b.is_connected()
    assert reasons == [(a_sid, "server disconnect"), (c_sid, "server disconnect")]


def test_helpers_need_a_socketio_handler(app, socketio):
    with pytest.raises(RuntimeError):
        emit("x")
    with pytest.raises(RuntimeError):
        send("x")
    with pytest.raises(RuntimeError):
        join_room("r")
    with app.test_request_context("/"):  # a plain Flask request is not a Socket.IO one
        with pytest.raises(RuntimeError):
            emit("x")
        with pytest.raises(RuntimeError):
            rooms()


def test_multiple_test_clients_in_a_room_receive_its_broadcast(app, socketio):
    @socketio.on("announce")
    def announce(room, text):
        emit("announcement", {"room": room, "text": text}, to=room)

    members = clients(app, socketio, 3)
    outsider = socketio.test_client(app)
    for m in members:
        m.emit("join", "club")
    outsider.emit("announce", "club", "hello members")
    for m in members:
        assert events(m.get_received()) == [("announcement", [{"room": "club", "text": "hello members"}])]
    assert outsider.get_received() == []

    socketio.emit("from server", "to the club", to="club")
    for m in members:
        assert events(m.get_received()) == [("from server", ["to the club"])]
    assert outsider.get_received() == []
