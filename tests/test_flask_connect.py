"""geventsio.flask: connect and disconnect handlers, and error handlers.

Through ``socketio.test_client``, which waits for the handlers after each
action (see test_flask.py). A refused connection shows as ``is_connected()``
being False; the test client also keeps the CONNECT_ERROR payload.
"""

from __future__ import annotations

import flask
import pytest
from flask import request

from geventsio.flask import ConnectionRefusedError, Namespace, SocketIO, emit, send


@pytest.fixture
def app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "test secret"
    return app


@pytest.fixture
def socketio(app) -> SocketIO:
    return SocketIO(app)


def events(received: list[dict]) -> list[tuple]:
    return [(e["name"], e["args"]) for e in received]


# -- connect and disconnect ---------------------------------------------------


def test_connect_handler_with_and_without_auth_parameter(app, socketio):
    seen: list = []

    @socketio.on("connect")
    def with_auth(auth):
        seen.append(("/", auth))

    @socketio.on("connect", namespace="/plain")
    def without_auth():
        seen.append(("/plain", request.namespace))

    client = socketio.test_client(app, auth={"user": "u", "n": 1})
    client.connect("/plain", auth={"ignored": True})
    other = socketio.test_client(app)
    assert client.is_connected() and client.is_connected("/plain") and other.is_connected()
    assert seen == [("/", {"user": "u", "n": 1}), ("/plain", "/plain"), ("/", None)]


def test_connect_handler_emits_reach_the_new_client_only(app, socketio):
    @socketio.on("connect")
    def on_connect():
        emit("welcome", request.sid)
        send("hello")

    first = socketio.test_client(app)
    first_events = events(first.get_received())
    assert first_events[1] == ("message", "hello")
    assert first_events[0][0] == "welcome" and isinstance(first_events[0][1][0], str)
    second = socketio.test_client(app)
    assert first.get_received() == []
    second_sid = second.get_received()[0]["args"][0]
    assert second_sid != first_events[0][1][0]


def test_connect_returning_false_refuses(app, socketio):
    disconnects: list = []

    @socketio.on("connect")
    def on_connect(auth):
        return bool(auth and auth.get("ok"))

    @socketio.on("disconnect")
    def on_disconnect():
        disconnects.append(request.sid)

    @socketio.on("echo")
    def echo(x):
        return x

    refused = socketio.test_client(app)
    assert not refused.is_connected()
    with pytest.raises(RuntimeError):
        refused.emit("echo", 1, callback=True)
    accepted = socketio.test_client(app, auth={"ok": True})
    assert accepted.is_connected()
    assert accepted.emit("echo", 1, callback=True) == 1
    assert disconnects == []  # a refused client was never connected


def test_connect_raising_connection_refused_error(app, socketio):
    @socketio.on("connect", namespace="/vip")
    def vip(auth):
        if auth != {"key": "letmein"}:
            raise ConnectionRefusedError("go away", {"code": 403})

    client = socketio.test_client(app, namespace="/vip", auth={"key": "nope"})
    assert not client.is_connected("/vip")
    assert client.connect_errors["/vip"] == {"message": "go away", "data": {"code": 403}}
    client.connect("/vip", auth={"key": "letmein"})
    assert client.is_connected("/vip")


def test_unknown_namespace_is_refused(app, socketio):
    @socketio.on("x", namespace="/known")
    def x():
        pass

    client = socketio.test_client(app, namespace="/unknown")
    assert not client.is_connected("/unknown")
    client.connect("/known")
    assert client.is_connected("/known")


def test_disconnect_handler_with_reason(app, socketio):
    seen: list = []

    @socketio.on("connect")
    def on_connect():
        seen.append(("connect", request.sid))

    @socketio.on("disconnect")
    def on_disconnect(reason):
        seen.append(("disconnect", request.sid, request.namespace, reason))

    client = socketio.test_client(app)
    sid = seen[0][1]
    client.disconnect()
    assert not client.is_connected()
    assert seen[1:] == [("disconnect", sid, "/", "client disconnect")]
    with pytest.raises(RuntimeError):
        client.emit("anything")


def test_disconnect_handler_without_reason_and_per_namespace(app, socketio):
    seen: list = []

    @socketio.on("disconnect", namespace="/chat")
    def on_disconnect_chat():
        seen.append(request.namespace)

    @socketio.on("echo")
    def echo(x):
        return x

    client = socketio.test_client(app)
    client.connect("/chat")
    assert client.is_connected("/chat")
    client.disconnect("/chat")
    assert seen == ["/chat"]
    assert not client.is_connected("/chat")
    assert client.is_connected()  # the other namespace is untouched
    assert client.emit("echo", "still here", callback=True) == "still here"


# -- error handlers -----------------------------------------------------------


def test_on_error_for_a_namespace_gets_the_exception_and_answers_the_ack(app, socketio):
    caught: list = []

    @socketio.on("fail", namespace="/chat")
    def fail(x):
        raise KeyError(x)

    @socketio.on_error("/chat")
    def chat_error(exc):
        caught.append((type(exc), exc.args, request.event["message"], request.namespace))
        return "sorry", 500

    client = socketio.test_client(app, namespace="/chat")
    assert client.emit("fail", "k", callback=True, namespace="/chat") == ["sorry", 500]
    assert caught == [(KeyError, ("k",), "fail", "/chat")]
    assert client.is_connected("/chat")


def test_on_error_default_covers_namespaces_without_their_own(app, socketio):
    caught: list = []

    @socketio.on("fail")
    def fail_root():
        raise RuntimeError("root")

    @socketio.on("fail", namespace="/own")
    def fail_own():
        raise RuntimeError("own")

    @socketio.on_error("/own")
    def own_error(exc):
        caught.append(("own", str(exc)))
        return "own handler"

    @socketio.on_error_default
    def default_error(exc):
        caught.append(("default", str(exc)))
        return {"error": str(exc)}

    client = socketio.test_client(app)
    client.connect("/own")
    assert client.emit("fail", callback=True) == {"error": "root"}
    assert client.emit("fail", callback=True, namespace="/own") == "own handler"
    assert caught == [("default", "root"), ("own", "own")]


def test_unhandled_exception_sends_no_ack_and_keeps_the_connection(app, socketio):
    @socketio.on("fail")
    def fail():
        raise ValueError("nobody catches this")

    @socketio.on("echo")
    def echo(x):
        return x

    client = socketio.test_client(app)
    assert client.emit("fail", callback=True) is None
    assert client.is_connected()
    assert client.emit("echo", "ok", callback=True) == "ok"


def test_class_based_namespace_refusals_and_error_handler(app, socketio):
    class Guarded(Namespace):
        def on_connect(self, auth):
            if auth == {"mode": "false"}:
                return False
            if auth == {"mode": "raise"}:
                raise ConnectionRefusedError("not you")

        def on_boom(self, what):
            raise LookupError(what)

    socketio.on_namespace(Guarded("/guarded"))

    @socketio.on_error("/guarded")
    def guarded_error(exc):
        return ["caught", type(exc).__name__, exc.args[0]]

    refused = socketio.test_client(app, namespace="/guarded", auth={"mode": "false"})
    assert not refused.is_connected("/guarded")
    raised = socketio.test_client(app, namespace="/guarded", auth={"mode": "raise"})
    assert not raised.is_connected("/guarded")
    assert raised.connect_errors["/guarded"]["message"] == "not you"
    client = socketio.test_client(app, namespace="/guarded")
    assert client.is_connected("/guarded")
    assert client.emit("boom", "w", callback=True, namespace="/guarded") == ["caught", "LookupError", "w"]
