"""SocketIO's methods outside handlers, binary payloads, and a real server.

``socketio.emit``/``send``/``close_room``/``call``/``start_background_task``/
``sleep`` work from the test's own code and from background greenlets. The
test client cannot acknowledge server calls, so ``socketio.call`` is checked
against a real python-socketio client connected to the Flask app served by
``geventsio.make_server``; the same server keeps serving Flask routes.
Background greenlets are awaited with gevent Events, never with sleeps.
"""

from __future__ import annotations

import http.client
from typing import Iterator

import flask
import gevent
import pytest
import socketio as python_socketio
from flask import request
from gevent.event import AsyncResult, Event

import geventsio
from geventsio.exceptions import DisconnectedError
from geventsio.flask import SocketIO, emit, join_room, send

TIMEOUT = 5


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

    @socketio.on("connect", namespace="/chat")
    def on_connect_chat():
        pass

    @socketio.event
    def whoami():
        return request.sid

    @socketio.event
    def join(room):
        join_room(room)

    return socketio


def events(received: list[dict]) -> list[tuple]:
    return [(e["name"], e["args"]) for e in received]


# -- from the test's own code ---------------------------------------------------


def test_socketio_emit_outside_handlers(app, socketio):
    a, b = socketio.test_client(app), socketio.test_client(app)
    chat = socketio.test_client(app, namespace="/chat")
    b_sid = b.emit("whoami", callback=True)

    socketio.emit("to all", {"n": 1})
    assert events(a.get_received()) == [("to all", [{"n": 1}])]
    assert events(b.get_received()) == [("to all", [{"n": 1}])]
    assert chat.get_received("/chat") == []

    socketio.emit("several", 1, [2], "three")
    assert events(a.get_received()) == [("several", [1, [2], "three"])]
    b.get_received()

    socketio.emit("just b", to=b_sid)
    socketio.emit("skip b", skip_sid=b_sid)
    assert events(a.get_received()) == [("skip b", [])]
    assert events(b.get_received()) == [("just b", [])]

    socketio.emit("chat only", "c", namespace="/chat")
    assert events(chat.get_received("/chat")) == [("chat only", ["c"])]
    assert a.get_received() == [] and b.get_received() == []


def test_socketio_send_outside_handlers(app, socketio):
    a, b = socketio.test_client(app), socketio.test_client(app)
    a_sid = a.emit("whoami", callback=True)
    socketio.send("hello all")
    socketio.send({"only": "a"}, to=a_sid)
    assert events(a.get_received()) == [("message", "hello all"), ("message", {"only": "a"})]
    assert events(b.get_received()) == [("message", "hello all")]


def test_socketio_close_room_outside_handlers(app, socketio):
    a, b = socketio.test_client(app), socketio.test_client(app)
    a.emit("join", "r")
    b.emit("join", "r")
    socketio.emit("before", to="r")
    assert len(a.get_received()) == 1 and len(b.get_received()) == 1
    socketio.close_room("r")
    socketio.emit("after", to="r")
    assert a.get_received() == [] and b.get_received() == []
    socketio.emit("still connected")
    assert events(a.get_received()) == [("still connected", [])]


def test_emit_and_send_from_a_background_task(app, socketio):
    done = Event()
    ran_in: list = []

    def task(room, text):
        ran_in.append(gevent.getcurrent())
        socketio.sleep(0)
        socketio.emit("bg", text, to=room)
        socketio.send("bg message")
        done.set()

    a, b = socketio.test_client(app), socketio.test_client(app)
    a.emit("join", "r")
    greenlet = socketio.start_background_task(task, "r", text="from the background")
    assert done.wait(TIMEOUT)
    assert ran_in == [greenlet] and greenlet is not gevent.getcurrent()
    greenlet.join(TIMEOUT)
    assert events(a.get_received()) == [("bg", ["from the background"]), ("message", "bg message")]
    assert events(b.get_received()) == [("message", "bg message")]


def test_background_task_started_from_a_handler(app, socketio):
    done = Event()

    def later(sid):
        socketio.emit("later", "done", to=sid)
        done.set()

    @socketio.on("start")
    def start():
        socketio.start_background_task(later, request.sid)
        emit("started")

    client = socketio.test_client(app)
    client.emit("start")
    assert done.wait(TIMEOUT)
    assert events(client.get_received()) == [("started", []), ("later", ["done"])]


def test_sleep_yields_to_other_greenlets(socketio):
    ran = Event()
    gevent.spawn(ran.set)
    socketio.sleep(0)
    assert ran.is_set()


def test_socketio_call_to_a_client_that_does_not_answer_times_out(app, socketio):
    client = socketio.test_client(app)
    sid = client.emit("whoami", callback=True)
    with pytest.raises(geventsio.TimeoutError):
        socketio.call("question", 1, to=sid, timeout=0.05)
    assert events(client.get_received()) == [("question", [1])]
    with pytest.raises(DisconnectedError):
        socketio.call("question", to="no such sid", timeout=1)


def test_methods_before_init_app_raise():
    socketio = SocketIO()
    with pytest.raises(RuntimeError):
        socketio.emit("x")
    with pytest.raises(RuntimeError):
        socketio.close_room("r")


# -- binary payloads ------------------------------------------------------------


def test_binary_payloads_both_ways(app, socketio):
    received: list = []

    @socketio.on("upload")
    def upload(data):
        received.append(data)
        emit("download", {"echo": data, "extra": b"\xff\x00"})
        send(b"raw bytes")
        return {"size": len(data["blob"]), "head": data["blob"][:2]}

    client = socketio.test_client(app)
    payload = {"name": "file", "blob": bytes(range(256)), "nested": {"list": [b"", b"\x01\x02", 3]}}
    ack = client.emit("upload", payload, callback=True)
    assert received == [payload]
    assert type(received[0]["blob"]) is bytes
    assert ack == {"size": 256, "head": b"\x00\x01"}
    assert events(client.get_received()) == [
        ("download", [{"echo": payload, "extra": b"\xff\x00"}]),
        ("message", b"raw bytes"),
    ]

    socketio.emit("server bytes", [b"a", {"b": b"b"}])
    assert events(client.get_received()) == [("server bytes", [[b"a", {"b": b"b"}]])]


# -- a real server ------------------------------------------------------------------


@pytest.fixture
def served(app, socketio) -> Iterator[str]:
    @app.route("/page")
    def page():
        return "plain flask page"

    wsgi_server = geventsio.make_server(app, "127.0.0.1", 0)
    wsgi_server.start()
    yield f"http://127.0.0.1:{wsgi_server.server_port}"
    wsgi_server.stop(timeout=1)
    socketio.stop()


@pytest.fixture
def real_client() -> Iterator[python_socketio.Client]:
    client = python_socketio.Client(reconnection=False)
    yield client
    client.disconnect()


def test_call_and_emit_with_a_real_client_and_flask_routes_on_the_same_server(
        app, socketio, served, real_client):
    connected = AsyncResult()
    got = AsyncResult()
    acked_in_handler = AsyncResult()

    @socketio.on("connect", namespace="/live")
    def on_connect(auth):
        connected.set((request.sid, auth, request.args.get("who")))

    @socketio.on("ask me", namespace="/live")
    def ask_me(n):
        emit("question", n, callback=lambda *a: acked_in_handler.set(a))
        return "asked"

    @socketio.on("echo", namespace="/live")
    def echo(data):
        return {"echo": data, "sid": request.sid}

    real_client.on("question", lambda n: n * 2, namespace="/live")
    real_client.on("news", got.set, namespace="/live")
    real_client.connect(served + "?who=py", namespaces=["/live"], auth={"k": "v"},
                        wait_timeout=TIMEOUT)
    sid, auth, who = connected.get(timeout=TIMEOUT)
    assert sid == real_client.get_sid("/live")
    assert (auth, who) == ({"k": "v"}, "py")

    assert socketio.call("question", 21, to=sid, namespace="/live", timeout=TIMEOUT) == 42
    assert real_client.call("echo", b"\x00bin", namespace="/live", timeout=TIMEOUT) == {
        "echo": b"\x00bin", "sid": sid}
    socketio.emit("news", {"headline": "hi"}, namespace="/live")
    assert got.get(timeout=TIMEOUT) == {"headline": "hi"}

    # emit with a callback, from the test and from a handler: the client's ack reaches it.
    acked = AsyncResult()
    socketio.emit("question", 5, to=sid, namespace="/live", callback=lambda *a: acked.set(a))
    assert acked.get(timeout=TIMEOUT) == (10,)
    assert real_client.call("ask me", 7, namespace="/live", timeout=TIMEOUT) == "asked"
    assert acked_in_handler.get(timeout=TIMEOUT) == (14,)

    conn = http.client.HTTPConnection("127.0.0.1", int(served.rsplit(":", 1)[1]), timeout=TIMEOUT)
    conn.request("GET", "/page")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"plain flask page")
    conn.close()


def test_disconnect_handler_runs_when_a_real_client_leaves(app, socketio, served, real_client):
    left = AsyncResult()
    connected = AsyncResult()

    @socketio.on("connect", namespace="/live")
    def on_connect():
        connected.set(request.sid)

    @socketio.on("disconnect", namespace="/live")
    def on_disconnect(reason):
        left.set((request.sid, reason))

    real_client.connect(served, namespaces=["/live"], wait_timeout=TIMEOUT)
    sid = connected.get(timeout=TIMEOUT)
    real_client.disconnect()
    # python-socketio's client queues its DISCONNECT packet and then closes the
    # transport at once, so which of the two the server sees first is the client's race.
    left_sid, reason = left.get(timeout=TIMEOUT)
    assert left_sid == sid
    assert reason in (geventsio.Server.reason.CLIENT_DISCONNECT, geventsio.Server.reason.TRANSPORT_CLOSE)


def test_run_serves_the_app_and_stop_ends_it() -> None:
    import http.client
    import socket as pysocket

    app = flask.Flask(__name__)
    socketio = SocketIO(app)
    probe = pysocket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    runner = gevent.spawn(socketio.run, app, "127.0.0.1", port)
    deadline = gevent.get_hub().loop.now() + TIMEOUT
    while True:  # until run() listens (bounded)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            conn.request("GET", "/socket.io/?EIO=4&transport=polling")
            break
        except ConnectionRefusedError:
            assert gevent.get_hub().loop.now() < deadline, "run() never listened"
            gevent.sleep(0.01)
    assert conn.getresponse().status == 200
    socketio.stop()
    runner.join(timeout=TIMEOUT)
    assert runner.dead and runner.successful()
