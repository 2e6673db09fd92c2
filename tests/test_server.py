"""Socket.IO server over real sockets: connecting, namespaces, disconnecting, sessions,
background tasks and protocol violations.

The client is python-socketio's ``Client``. Rooms and broadcasts are in
test_server_rooms.py; acknowledgements, binary payloads and concurrency in
test_server_acks.py; what a well-behaved client never sends (raw Engine.IO and
Socket.IO packets) in test_server_protocol.py.
"""

from __future__ import annotations

import re

import pytest
import socketio
from gevent.event import AsyncResult, Event

import geventsio

pytest.register_assert_rewrite("sio_support")  # before its import below
from sio_support import TIMEOUT, Inbox, connect_client, disconnect_flushed, serve  # noqa: E402

pytest_plugins = ["sio_support"]  # its fixtures: make_client, transports, raw_client
from sio_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)

# -- connecting ----------------------------------------------------------------


def test_connect_handler_with_auth_parameter_receives_auth(serve_app, make_client, transports):
    sio = geventsio.Server()
    seen = AsyncResult()

    @sio.event
    def connect(sid, environ, auth):
        seen.set((sid, environ, auth))

    rs = serve(serve_app, sio)
    client = connect_client(make_client(), rs, transports=transports, auth={"token": "s3cret"})
    sid, environ, auth = seen.get(timeout=TIMEOUT)
    assert auth == {"token": "s3cret"}
    assert sid == client.get_sid("/")
    assert "EIO=4" in environ["QUERY_STRING"]
    assert sio.get_environ(sid) is environ
    expected = transports[0] if transports else ("polling", "websocket")
    assert sio.transport(sid) in expected


def test_connect_handler_without_auth_parameter_still_called(serve_app, make_client, transports):
    sio = geventsio.Server()
    seen = AsyncResult()

    @sio.event
    def connect(sid, environ):  # no auth parameter: called with two arguments
        seen.set((sid, environ))

    rs = serve(serve_app, sio)
    client = connect_client(make_client(), rs, transports=transports, auth={"token": "ignored"})
    sid, environ = seen.get(timeout=TIMEOUT)
    assert sid == client.get_sid("/")
    assert isinstance(environ, dict)
    assert client.connected


def test_connect_refused_by_returning_false(serve_app, make_client, transports):
    sio = geventsio.Server()
    disconnects = []

    @sio.event
    def connect(sid, environ, auth):
        return False

    @sio.event
    def disconnect(sid, reason):
        disconnects.append(reason)

    rs = serve(serve_app, sio)
    client = make_client()
    error = AsyncResult()
    client.on("connect_error", lambda data: error.set(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect_client(client, rs, transports=transports)
    assert error.get(timeout=TIMEOUT) == {"message": "Connection rejected by server"}
    assert not client.connected
    assert sio.sockets == {}
    assert sio.adapters["/"].sockets == {}
    assert disconnects == []  # a refused client never connected, so it never disconnects


def test_connect_refused_by_connection_refused_error_with_data(serve_app, make_client, transports):
    sio = geventsio.Server()

    @sio.event
    def connect(sid, environ, auth):
        if auth != {"token": "good"}:
            raise geventsio.ConnectionRefusedError("msg", {"x": 1})

    rs = serve(serve_app, sio)
    refused = make_client()
    error = AsyncResult()
    refused.on("connect_error", lambda data: error.set(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect_client(refused, rs, transports=transports, auth={"token": "bad"})
    assert error.get(timeout=TIMEOUT) == {"message": "msg", "data": {"x": 1}}
    assert not refused.connected

    accepted = connect_client(make_client(), rs, transports=transports, auth={"token": "good"})
    assert accepted.connected
    assert list(sio.sockets) == [accepted.get_sid("/")]


def test_connect_handler_raising_refuses_without_breaking_the_server(serve_app, make_client):
    sio = geventsio.Server()

    @sio.event
    def connect(sid, environ, auth):
        if auth.get("boom"):
            raise RuntimeError("bug in the app")

    rs = serve(serve_app, sio)
    error = AsyncResult()
    client = make_client()
    client.on("connect_error", lambda data: error.set(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect_client(client, rs, auth={"boom": True})
    assert error.get(timeout=TIMEOUT)["message"] == "Connection rejected by server"
    assert connect_client(make_client(), rs, auth={}).connected


def test_connect_handler_emits_reach_the_client_after_connect(serve_app, make_client, transports):
    sio = geventsio.Server()

    @sio.event
    def connect(sid, environ):
        sio.emit("welcome", {"sid": sid}, to=sid)

    rs = serve(serve_app, sio)
    client = make_client()
    inbox = Inbox(client)
    connect_client(client, rs, transports=transports)
    assert inbox.wait_for("welcome") == [({"sid": client.get_sid("/")},)]


# -- namespaces ----------------------------------------------------------------


def test_namespaces_multiplexed_on_one_connection(serve_app, make_client, transports):
    sio = geventsio.Server()
    connected = {}

    @sio.on("connect")
    def root_connect(sid, environ):
        connected["/"] = sid

    @sio.on("connect", namespace="/chat")
    def chat_connect(sid, environ, auth):
        connected["/chat"] = (sid, auth)

    sio.on("where", lambda sid: ("root", sid))
    sio.on("where", lambda sid: ("chat", sid), namespace="/chat")

    rs = serve(serve_app, sio)
    client = make_client()
    chat_inbox = Inbox(client, "/chat")
    root_inbox = Inbox(client, "/")
    connect_client(client, rs, transports=transports, namespaces=["/", "/chat"], auth={"u": 1})
    root_sid, chat_sid = client.get_sid("/"), client.get_sid("/chat")
    assert root_sid != chat_sid
    assert connected == {"/": root_sid, "/chat": (chat_sid, {"u": 1})}
    assert len(sio.eio.sessions) == 1  # both namespaces share one Engine.IO session

    assert client.call("where", timeout=TIMEOUT) == ("root", root_sid)  # tuple: two ack args
    assert client.call("where", namespace="/chat", timeout=TIMEOUT) == ("chat", chat_sid)

    sio.emit("only_chat", "c", namespace="/chat")
    sio.emit("only_root", "r")
    assert chat_inbox.wait_for("only_chat") == [("c",)]
    assert root_inbox.wait_for("only_root") == [("r",)]
    assert chat_inbox.of("only_root") == [] and root_inbox.of("only_chat") == []
    assert sio.rooms(chat_sid, namespace="/chat") == [chat_sid]
    assert sio.rooms(chat_sid) == []  # not a socket of "/"


def test_unknown_namespace_refused(serve_app, make_client, transports):
    sio = geventsio.Server()
    sio.on("connect", lambda sid, environ: None)
    rs = serve(serve_app, sio)
    client = make_client()
    error = AsyncResult()
    client.on("connect_error", lambda data: error.set(data), namespace="/nope")
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect_client(client, rs, transports=transports, namespaces=["/nope"])
    assert error.get(timeout=TIMEOUT) == {"message": "Invalid namespace"}
    assert sio.sockets == {}


def test_catch_all_event_handler(serve_app, make_client, transports):
    sio = geventsio.Server()
    seen = []

    @sio.on("*")
    def any_event(event, sid, *args):
        seen.append((event, sid, args))
        return f"caught {event}"

    @sio.event
    def specific(sid, x):
        return f"specific {x}"

    rs = serve(serve_app, sio)
    client = connect_client(make_client(), rs, transports=transports)
    assert client.call("whatever", (1, {"a": 2}), timeout=TIMEOUT) == "caught whatever"
    assert client.call("specific", 7, timeout=TIMEOUT) == "specific 7"
    assert seen == [("whatever", client.get_sid("/"), (1, {"a": 2}))]


def test_catch_all_namespace_handlers(serve_app, make_client):
    sio = geventsio.Server()
    log = []
    disconnected = Event()

    @sio.on("connect", namespace="*")
    def any_connect(namespace, sid, environ, auth):
        log.append(("connect", namespace, sid, auth))

    @sio.on("hello", namespace="*")
    def any_hello(namespace, sid, data):
        return f"{namespace} says {data}"

    @sio.on("*", namespace="*")
    def any_event_anywhere(event, namespace, sid, *args):
        return [event, namespace, list(args)]

    @sio.on("disconnect", namespace="*")
    def any_disconnect(namespace, sid, reason):
        log.append(("disconnect", namespace, sid, reason))
        if namespace == "/b":
            disconnected.set()

    rs = serve(serve_app, sio)
    client = connect_client(make_client(), rs, namespaces=["/a", "/b"], auth={"k": "v"})
    sid_a, sid_b = client.get_sid("/a"), client.get_sid("/b")
    assert sorted(log) == sorted([("connect", "/a", sid_a, {"k": "v"}),
                                  ("connect", "/b", sid_b, {"k": "v"})])
    assert client.call("hello", "hi", namespace="/a", timeout=TIMEOUT) == "/a says hi"
    assert client.call("other", (1, 2), namespace="/b", timeout=TIMEOUT) == ["other", "/b", [1, 2]]
    log.clear()
    disconnect_flushed(client)
    assert disconnected.wait(TIMEOUT)
    assert ("disconnect", "/b", sid_b, "client disconnect") in log


def test_dynamic_namespaces_by_regex_and_callable(serve_app, make_client):
    sio = geventsio.Server(namespaces=[re.compile(r"^/dyn-\d+$"),
                                       lambda name: name.startswith("/team-")])
    rs = serve(serve_app, sio)

    client = make_client()
    inbox = Inbox(client, "/dyn-42")
    client.on("ping", lambda n: n + 1, namespace="/team-red")
    connect_client(client, rs, namespaces=["/dyn-42", "/team-red"])
    sio.emit("hi", "there", namespace="/dyn-42")
    assert inbox.wait_for("hi") == [("there",)]
    assert sio.call("ping", 41, to=client.get_sid("/team-red"), namespace="/team-red",
                    timeout=TIMEOUT) == 42

    for bad in ("/dyn-x", "/dyn-42/more", "/other", "/"):
        refused = make_client()
        error = AsyncResult()
        refused.on("connect_error", lambda data, e=error: e.set(data), namespace=bad)
        with pytest.raises(socketio.exceptions.ConnectionError):
            connect_client(refused, rs, namespaces=[bad])
        assert error.get(timeout=TIMEOUT) == {"message": "Invalid namespace"}, bad


def test_class_based_namespace(serve_app, make_client, transports):
    sio = geventsio.Server()
    log = []
    gone = AsyncResult()

    class Chat(geventsio.Namespace):
        def on_connect(self, sid, environ, auth):
            log.append(("connect", sid, auth))
            with self.session(sid) as s:
                s["name"] = auth["name"]

        def on_disconnect(self, sid, reason):
            gone.set((sid, reason))

        def on_join(self, sid, room):
            self.enter_room(sid, room)
            self.emit("joined", self.get_session(sid)["name"], to=room)
            return self.rooms(sid)

        def on_echo(self, sid, *args):
            return args

    class Plain(geventsio.Namespace):
        def on_connect(self, sid, environ):  # without auth
            log.append(("plain", sid))

    sio.register_namespace(Chat("/chat"))
    sio.register_namespace(Plain("/plain"))
    with pytest.raises(ValueError):
        sio.register_namespace(object())

    rs = serve(serve_app, sio)
    client = make_client()
    inbox = Inbox(client, "/chat")
    connect_client(client, rs, transports=transports, namespaces=["/chat", "/plain"], auth={"name": "ann"})
    sid = client.get_sid("/chat")
    assert ("connect", sid, {"name": "ann"}) in log
    assert ("plain", client.get_sid("/plain")) in log
    assert client.call("echo", (1, "two"), namespace="/chat", timeout=TIMEOUT) == (1, "two")
    assert client.call("join", "lobby", namespace="/chat", timeout=TIMEOUT) == sorted([sid, "lobby"])
    assert inbox.wait_for("joined") == [("ann",)]
    disconnect_flushed(client)
    assert gone.get(timeout=TIMEOUT) == (sid, "client disconnect")


# -- disconnecting -------------------------------------------------------------


def test_client_disconnect_reason(serve_app, make_client, transports):
    sio = geventsio.Server()
    reasons = AsyncResult()
    plain = AsyncResult()

    @sio.event
    def disconnect(sid, reason):
        reasons.set((sid, reason))

    sio.on("disconnect", lambda sid: plain.set(sid), namespace="/chat")  # without reason

    rs = serve(serve_app, sio)
    client = connect_client(make_client(), rs, transports=transports, namespaces=["/", "/chat"])
    sid, chat_sid = client.get_sid("/"), client.get_sid("/chat")
    disconnect_flushed(client)
    assert reasons.get(timeout=TIMEOUT) == (sid, "client disconnect")
    assert plain.get(timeout=TIMEOUT) == chat_sid
    assert sid not in sio.sockets and chat_sid not in sio.sockets
    assert sio.rooms(sid) == []


def test_server_disconnect_reason_and_client_notified(serve_app, make_client, transports):
    sio = geventsio.Server()
    reasons = AsyncResult()
    rooms_during_handler = []

    @sio.event
    def disconnect(sid, reason):
        rooms_during_handler.extend(sio.rooms(sid))
        reasons.set((sid, reason))

    rs = serve(serve_app, sio)
    client = make_client()
    client_saw = AsyncResult()
    client.on("disconnect", lambda reason=None: client_saw.set(reason))
    connect_client(client, rs, transports=transports)
    sid = client.get_sid("/")
    sio.enter_room(sid, "room")
    sio.disconnect(sid)
    assert reasons.get(timeout=TIMEOUT) == (sid, "server disconnect")
    assert client_saw.get(timeout=TIMEOUT) == client.reason.SERVER_DISCONNECT
    assert sorted(rooms_during_handler) == sorted([sid, "room"])  # still in its rooms then
    assert sio.rooms(sid) == []
    with pytest.raises(KeyError):
        sio.get_session(sid)


def test_server_disconnect_of_one_namespace_keeps_the_others(serve_app, make_client):
    sio = geventsio.Server()
    sio.on("echo", lambda sid, x: x)
    chat_gone = AsyncResult()
    sio.on("disconnect", lambda sid, reason: chat_gone.set(reason), namespace="/chat")
    rs = serve(serve_app, sio)
    client = make_client()
    client_chat_gone = AsyncResult()
    client.on("disconnect", lambda reason=None: client_chat_gone.set(reason), namespace="/chat")
    connect_client(client, rs, namespaces=["/", "/chat"])
    sio.disconnect(client.get_sid("/chat"), namespace="/chat")
    assert chat_gone.get(timeout=TIMEOUT) == "server disconnect"
    assert client_chat_gone.get(timeout=TIMEOUT) == client.reason.SERVER_DISCONNECT
    assert client.call("echo", "still here", timeout=TIMEOUT) == "still here"


# -- sessions and background tasks ---------------------------------------------


def test_user_sessions(serve_app, make_client, transports):
    sio = geventsio.Server()

    @sio.event
    def connect(sid, environ, auth):
        sio.save_session(sid, {"user": auth["user"], "count": 0})

    @sio.event
    def bump(sid):
        with sio.session(sid) as s:
            s["count"] += 1
        return sio.get_session(sid)

    @sio.on("connect", namespace="/other")
    def other_connect(sid, environ):
        sio.save_session(sid, {"ns": "other"}, namespace="/other")

    sio.on("whoami", lambda sid: sio.get_session(sid, namespace="/other"), namespace="/other")

    rs = serve(serve_app, sio)
    ann = connect_client(make_client(), rs, transports=transports, auth={"user": "ann"},
                         namespaces=["/", "/other"])
    bob = connect_client(make_client(), rs, transports=transports, auth={"user": "bob"})
    assert ann.call("bump", timeout=TIMEOUT) == {"user": "ann", "count": 1}
    assert ann.call("bump", timeout=TIMEOUT) == {"user": "ann", "count": 2}
    assert bob.call("bump", timeout=TIMEOUT) == {"user": "bob", "count": 1}
    assert ann.call("whoami", namespace="/other", timeout=TIMEOUT) == {"ns": "other"}
    assert sio.get_session(ann.get_sid("/")) == {"user": "ann", "count": 2}
    with pytest.raises(KeyError):  # a sid of "/other" is not a client of "/"
        sio.get_session(ann.get_sid("/other"))


def test_background_task_emits_periodically(serve_app, make_client):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    client = make_client()
    inbox = Inbox(client)
    connect_client(client, rs)

    def ticker(count, interval):
        for n in range(count):
            sio.emit("tick", n)
            sio.sleep(interval)
        return "done"

    task = sio.start_background_task(ticker, 5, interval=0.01)
    assert inbox.wait_for("tick", count=5) == [(n,) for n in range(5)]
    assert task.get(timeout=TIMEOUT) == "done"
