"""The Flask extension (geventsio.flask): construction and handler registration.

Everything goes through ``socketio.test_client``, which really encodes packets
and drives them through the app's WSGI stack, the Engine.IO polling transport
and the Socket.IO server in process. It waits for the session's handlers after
each action, so what a handler emitted is in ``get_received()`` when the call
returns and nothing here sleeps. Flask-SocketIO's documented behaviour is the
reference.

Connect/disconnect handlers and error handlers are in test_flask_connect.py;
the context helpers (emit, send, rooms, ...) in test_flask_helpers.py;
request/session/g/flask_login in test_flask_context.py; emitting from outside
handlers, a real server and binary payloads in test_flask_server.py.
"""

from __future__ import annotations

import flask
import pytest
from flask import request

import geventsio
from geventsio.flask import Namespace, SocketIO, emit, join_room


def make_app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "test secret"
    return app


@pytest.fixture
def app() -> flask.Flask:
    return make_app()


@pytest.fixture
def socketio(app) -> SocketIO:
    return SocketIO(app)


def events(received: list[dict]) -> list[tuple]:
    return [(e["name"], e["args"]) for e in received]


# -- construction -------------------------------------------------------------


def test_socketio_app_registers_the_extension_and_keeps_flask_routes(app, socketio):
    @app.route("/hello")
    def hello():
        return "hello from flask"

    @socketio.on("ping")
    def ping():
        return "pong"

    assert app.extensions["socketio"] is socketio
    assert app.test_client().get("/hello").get_data(as_text=True) == "hello from flask"
    client = socketio.test_client(app)
    assert client.is_connected()
    assert client.emit("ping", callback=True) == "pong"


def test_app_factory_with_every_registration_made_before_init_app():
    socketio = SocketIO()
    seen: dict[str, object] = {}

    @socketio.on("connect")
    def on_connect(auth):
        seen["auth"] = auth

    @socketio.on("decorated")
    def decorated(x):
        return ["on", x]

    @socketio.event
    def named_after_function(x):
        return ["event", x]

    @socketio.event(namespace="/chat")
    def in_chat(x):
        return ["event /chat", x]

    def plain(x):
        return ["on_event", x]

    socketio.on_event("plain", plain)

    @socketio.on("boom")
    def boom():
        raise ValueError("kaboom")

    @socketio.on_error()
    def on_error(exc):
        return "handled " + str(exc)

    class Room(Namespace):
        def on_hi(self, x):
            return ["class", x]

    socketio.on_namespace(Room("/room"))

    app = make_app()
    socketio.init_app(app)
    assert app.extensions["socketio"] is socketio

    client = socketio.test_client(app, auth={"token": "t"})
    assert client.is_connected()
    assert seen["auth"] == {"token": "t"}
    assert client.emit("decorated", 1, callback=True) == ["on", 1]
    assert client.emit("named_after_function", 2, callback=True) == ["event", 2]
    assert client.emit("plain", 3, callback=True) == ["on_event", 3]
    assert client.emit("boom", callback=True) == "handled kaboom"
    client.connect("/chat")
    assert client.emit("in_chat", 4, callback=True, namespace="/chat") == ["event /chat", 4]
    client.connect("/room")
    assert client.emit("hi", 5, callback=True, namespace="/room") == ["class", 5]


def test_app_factory_passes_options_given_to_the_constructor_or_init_app():
    socketio = SocketIO(path="/custom-io/")

    @socketio.on("where")
    def where():
        return request.path

    app = make_app()
    socketio.init_app(app, manage_session=False)
    assert socketio.manage_session is False
    assert socketio.path == "custom-io"
    client = socketio.test_client(app)
    assert client.is_connected()
    assert client.emit("where", callback=True) == "/custom-io/"
    # The default endpoint is no longer Socket.IO's: it falls through to Flask.
    assert app.test_client().get("/socket.io/?EIO=4&transport=polling").status_code == 404


def test_handlers_registered_after_init_app_work_too(app, socketio):
    client = socketio.test_client(app)
    assert client.emit("late", 1, callback=True) is None  # no handler yet, so no ack

    @socketio.on("late")
    def late(x):
        return x + 1

    socketio.on_event("later", lambda x: x * 10, namespace="/ns")
    assert client.emit("late", 1, callback=True) == 2
    client.connect("/ns")
    assert client.emit("later", 2, callback=True, namespace="/ns") == 20


# -- event handlers -----------------------------------------------------------


def test_on_with_namespace_only_handles_that_namespace(app, socketio):
    @socketio.on("where", namespace="/chat")
    def where_chat(data):
        return ["chat", data, request.namespace]

    @socketio.on("where")
    def where_root(data):
        return ["root", data, request.namespace]

    client = socketio.test_client(app, namespace="/chat")
    assert client.is_connected("/chat")
    assert not client.is_connected()
    assert client.emit("where", "x", callback=True, namespace="/chat") == ["chat", "x", "/chat"]
    client.connect()
    assert client.emit("where", "y", callback=True) == ["root", "y", "/"]


def test_event_decorator_bare_and_with_namespace(app, socketio):
    @socketio.event
    def shout(text):
        return text.upper()

    @socketio.event(namespace="/quiet")
    def whisper(text):
        return text.lower()

    client = socketio.test_client(app)
    client.connect("/quiet")
    assert client.emit("shout", "Hi", callback=True) == "HI"
    assert client.emit("whisper", "Hi", callback=True, namespace="/quiet") == "hi"
    assert client.emit("whisper", "Hi", callback=True) is None  # not in "/"


def test_handler_arguments_and_acknowledgement_shapes(app, socketio):
    @socketio.on("count")
    def count(*args):
        return len(args)

    @socketio.on("pair")
    def pair(a, b):
        return b, a

    @socketio.on("nothing")
    def nothing():
        return None

    client = socketio.test_client(app)
    assert client.emit("count", callback=True) == 0
    assert client.emit("count", 1, {"a": [2]}, None, callback=True) == 3
    assert client.emit("pair", 1, "two", callback=True) == ["two", 1]
    assert client.emit("nothing", callback=True) == []
    assert client.emit("pair", 1, 2) is None  # no callback asked: nothing returned


def test_client_send_reaches_message_and_json_handlers(app, socketio):
    @socketio.on("message")
    def on_message(message):
        return ["message", message]

    @socketio.on("json")
    def on_json(data):
        return ["json", data]

    client = socketio.test_client(app)
    assert client.send("hello", callback=True) == ["message", "hello"]
    assert client.send({"k": [1, 2]}, json=True, callback=True) == ["json", {"k": [1, 2]}]


def test_catch_all_event_handler_gets_the_event_name_first(app, socketio):
    @socketio.on("known")
    def known(x):
        return "known " + x

    @socketio.on("*")
    def any_event(event, *args):
        return ["any", event, list(args), request.namespace]

    @socketio.on("*", namespace="/chat")
    def any_chat_event(event, data):
        return ["any chat", event, data]

    client = socketio.test_client(app)
    assert client.emit("known", "x", callback=True) == "known x"
    assert client.emit("unknown", 1, 2, callback=True) == ["any", "unknown", [1, 2], "/"]
    client.connect("/chat")
    assert client.emit("other", "d", callback=True, namespace="/chat") == ["any chat", "other", "d"]


def test_catch_all_namespace_handlers_get_the_namespace(app, socketio):
    @socketio.on("hello", namespace="*")
    def hello_any(namespace, data):
        return ["hello", namespace, data]

    @socketio.on("*", namespace="*")
    def anything(event, namespace, data):
        return ["anything", event, namespace, data]

    client = socketio.test_client(app, namespace="/dyn")
    assert client.is_connected("/dyn")  # a "*" namespace handler accepts any namespace
    assert client.emit("hello", 1, callback=True, namespace="/dyn") == ["hello", "/dyn", 1]
    assert client.emit("bye", 2, callback=True, namespace="/dyn") == ["anything", "bye", "/dyn", 2]


def test_class_based_namespace(app, socketio):
    log: list = []

    class Chat(Namespace):
        def on_connect(self, auth):
            log.append(("connect", request.sid, auth))
            emit("welcome", request.namespace)

        def on_disconnect(self, reason):
            log.append(("disconnect", request.sid, reason))

        def on_echo(self, data):
            return data

        def on_args(self, a, b):
            return [request.event["message"], a, b]

        def on_shout(self, data):
            self.emit("shout", data)  # like Flask-SocketIO: to everyone in the namespace

        def on_murmur(self, data):
            self.emit("murmur", data, include_self=False)

        def on_tell(self, data):
            self.emit("told", data, room=request.sid)

        def on_note(self, data):
            self.send(data, room=request.sid)

        def on_join(self, room):
            join_room(room)

        def on_close(self, room):
            self.close_room(room)
            self.emit("after close", room=room)

    chat = Chat("/chat")
    socketio.on_namespace(chat)
    assert chat.socketio is socketio

    a = socketio.test_client(app, namespace="/chat", auth={"me": "a"})
    b = socketio.test_client(app, namespace="/chat")
    a_sid = log[0][1]
    assert log == [("connect", a_sid, {"me": "a"}), ("connect", log[1][1], None)]
    assert events(a.get_received("/chat")) == [("welcome", ["/chat"])]
    b.get_received("/chat")

    assert a.emit("echo", {"x": 1}, callback=True, namespace="/chat") == {"x": 1}
    assert a.emit("args", 1, 2, callback=True, namespace="/chat") == ["args", 1, 2]

    a.emit("shout", "hey", namespace="/chat")
    assert events(a.get_received("/chat")) == [("shout", ["hey"])]
    assert events(b.get_received("/chat")) == [("shout", ["hey"])]

    b.emit("murmur", "psst", namespace="/chat")
    assert events(a.get_received("/chat")) == [("murmur", ["psst"])]
    assert b.get_received("/chat") == []

    a.emit("tell", "secret", namespace="/chat")
    a.emit("note", "memo", namespace="/chat")
    assert events(a.get_received("/chat")) == [("told", ["secret"]), ("message", "memo")]
    assert b.get_received("/chat") == []

    a.emit("join", "r", namespace="/chat")
    b.emit("join", "r", namespace="/chat")
    a.emit("close", "r", namespace="/chat")
    assert a.get_received("/chat") == [] and b.get_received("/chat") == []

    a.disconnect("/chat")
    assert log[-1] == ("disconnect", a_sid, "client disconnect")


def test_on_namespace_rejects_other_objects(socketio):
    with pytest.raises(ValueError):
        socketio.on_namespace(geventsio.Namespace("/core"))  # the core's class, not the Flask one
    with pytest.raises(ValueError):
        socketio.on_namespace(object())
