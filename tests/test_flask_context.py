"""What Flask gives a Socket.IO handler: request.*, session, current_app, g, flask_login.

Each handler runs in a request context built from the connection's handshake
request, so ``request.args``/``request.headers`` are the handshake's and the
session starts from the cookie the client sent with it. A view that sets the
session is called first through a Flask test client, which is then handed to
``socketio.test_client(flask_test_client=...)`` so that its cookie goes along.
"""

from __future__ import annotations

import flask
import pytest
from flask import current_app, g, request, session

from geventsio.flask import SocketIO, emit


def make_app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "test secret"

    @app.route("/login/<name>")
    def login(name):
        session["user"] = name
        return "ok"

    @app.route("/whoami")
    def whoami():
        return session.get("user", "<nobody>")

    return app


@pytest.fixture
def app() -> flask.Flask:
    return make_app()


def logged_in(app, name: str):
    http = app.test_client()
    assert http.get(f"/login/{name}").status_code == 200
    return http


# -- request ------------------------------------------------------------------


def test_request_sid_namespace_and_event(app):
    socketio = SocketIO(app)
    seen: dict[str, list] = {"connect": [], "disconnect": []}

    @socketio.on("connect")
    def on_connect():
        seen["connect"].append((request.sid, request.namespace))

    @socketio.on("connect", namespace="/chat")
    def on_connect_chat():
        seen["connect"].append((request.sid, request.namespace))

    @socketio.on("probe")
    def probe(*args):
        return {"sid": request.sid, "namespace": request.namespace,
                "message": request.event["message"], "args": list(request.event["args"])}

    @socketio.on("probe", namespace="/chat")
    def probe_chat(data):
        return {"sid": request.sid, "namespace": request.namespace}

    client = socketio.test_client(app)
    client.connect("/chat")
    other = socketio.test_client(app)
    (root_sid, root_ns), (chat_sid, chat_ns), (other_sid, _) = seen["connect"]
    assert (root_ns, chat_ns) == ("/", "/chat")
    assert len({root_sid, chat_sid, other_sid}) == 3  # one sid per connection and namespace

    assert client.emit("probe", 1, {"two": 2}, callback=True) == {
        "sid": root_sid, "namespace": "/", "message": "probe", "args": [1, {"two": 2}]}
    assert client.emit("probe", "x", callback=True, namespace="/chat") == {
        "sid": chat_sid, "namespace": "/chat"}
    assert other.emit("probe", callback=True)["sid"] == other_sid


def test_request_args_and_headers_come_from_the_handshake(app):
    socketio = SocketIO(app)
    seen: list = []

    @socketio.on("connect")
    def on_connect(auth):
        seen.append((request.args.get("room"), request.args.getlist("tag"),
                     request.headers.get("X-Token"), request.headers.get("Authorization")))

    @socketio.on("connect", namespace="/chat")
    def on_connect_chat():
        seen.append((request.args.get("room"), request.headers.get("X-Token")))

    @socketio.on("details")
    def details():
        return [request.args.get("room"), request.headers.get("X-Token")]

    client = socketio.test_client(app, query_string="room=blue&tag=a&tag=b",
                                  headers={"X-Token": "secret", "Authorization": "Bearer t"})
    assert client.is_connected()
    client.connect("/chat")
    assert seen == [("blue", ["a", "b"], "secret", "Bearer t"), ("blue", "secret")]
    assert client.emit("details", callback=True) == ["blue", "secret"]

    plain = socketio.test_client(app, query_string="?room=green")  # a leading "?" is allowed
    assert plain.emit("details", callback=True) == ["green", None]


# -- Flask session ------------------------------------------------------------


def session_handlers(socketio: SocketIO, seen: list) -> None:
    @socketio.on("connect")
    def on_connect():
        seen.append(session.get("user"))

    @socketio.on("get")
    def get(key):
        return session.get(key, "<missing>")

    @socketio.on("set")
    def set_(key, value):
        session[key] = value


def test_managed_session_starts_from_the_cookie_and_stays_per_connection(app):
    socketio = SocketIO(app)
    assert socketio.manage_session is True
    seen: list = []
    session_handlers(socketio, seen)

    http = logged_in(app, "alice")
    first = socketio.test_client(app, flask_test_client=http)
    assert seen == ["alice"]
    assert first.emit("get", "user", callback=True) == "alice"

    first.emit("set", "user", "bob")
    first.emit("set", "extra", [1, 2])
    assert first.emit("get", "user", callback=True) == "bob"
    assert first.emit("get", "extra", callback=True) == [1, 2]

    # Another connection with the same cookie starts again from the cookie.
    second = socketio.test_client(app, flask_test_client=http)
    assert seen == ["alice", "alice"]
    assert second.emit("get", "user", callback=True) == "alice"
    assert second.emit("get", "extra", callback=True) == "<missing>"
    assert first.emit("get", "user", callback=True) == "bob"

    # Nor does the cookie, and so the HTTP side, see what handlers changed.
    assert http.get("/whoami").get_data(as_text=True) == "alice"

    anonymous = socketio.test_client(app)
    assert seen == ["alice", "alice", None]
    assert anonymous.emit("get", "user", callback=True) == "<missing>"


def test_managed_session_is_shared_by_the_namespaces_of_one_connection_only(app):
    socketio = SocketIO(app)
    seen: list = []
    session_handlers(socketio, seen)

    @socketio.on("get", namespace="/chat")
    def get_chat(key):
        return session.get(key, "<missing>")

    client = socketio.test_client(app, flask_test_client=logged_in(app, "carol"))
    client.emit("set", "user", "dave")
    client.connect("/chat")
    assert client.emit("get", "user", callback=True, namespace="/chat") == "dave"


def test_unmanaged_session_is_the_cookie_session(app):
    socketio = SocketIO(app, manage_session=False)
    assert socketio.manage_session is False
    seen: list = []
    session_handlers(socketio, seen)

    client = socketio.test_client(app, flask_test_client=logged_in(app, "erin"))
    assert seen == ["erin"]
    assert client.emit("get", "user", callback=True) == "erin"
    assert client.emit("get", "extra", callback=True) == "<missing>"
    anonymous = socketio.test_client(app)
    assert anonymous.emit("get", "user", callback=True) == "<missing>"


def test_unmanaged_session_in_the_app_factory_form():
    socketio = SocketIO(manage_session=False)
    seen: list = []
    session_handlers(socketio, seen)
    app = make_app()
    socketio.init_app(app)
    assert socketio.manage_session is False
    client = socketio.test_client(app, flask_test_client=logged_in(app, "frank"))
    assert seen == ["frank"]
    assert client.emit("get", "user", callback=True) == "frank"


# -- current_app and g --------------------------------------------------------


def test_current_app_and_g_in_handlers(app):
    app.config["GREETING"] = "hello"
    socketio = SocketIO(app)

    def remember(value):
        g.value = value

    @socketio.on("connect")
    def on_connect():
        remember("from connect")
        emit("greeting", [current_app.config["GREETING"], g.value])

    @socketio.on("use_g")
    def use_g(value):
        had = g.get("value")  # each handler has its own application context
        remember(value)
        return [current_app.name, current_app._get_current_object() is app, had, g.value]

    client = socketio.test_client(app)
    assert client.get_received()[0]["args"] == [["hello", "from connect"]]
    assert client.emit("use_g", 1, callback=True) == [app.name, True, None, 1]
    assert client.emit("use_g", 2, callback=True) == [app.name, True, None, 2]


# -- flask_login --------------------------------------------------------------


def test_flask_login_current_user(app):
    flask_login = pytest.importorskip("flask_login")

    class User(flask_login.UserMixin):
        def __init__(self, user_id):
            self.id = user_id

    login_manager = flask_login.LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id):
        return User(user_id)

    @app.route("/signin/<user_id>")
    def signin(user_id):
        flask_login.login_user(User(user_id))
        return "signed in"

    socketio = SocketIO(app)

    @socketio.on("connect")
    def on_connect():
        if not flask_login.current_user.is_authenticated:
            return False
        emit("hello", flask_login.current_user.id)

    @socketio.on("me")
    def me():
        return [flask_login.current_user.is_authenticated, flask_login.current_user.get_id()]

    http = app.test_client()
    assert http.get("/signin/u42").status_code == 200
    client = socketio.test_client(app, flask_test_client=http)
    assert client.is_connected()
    assert client.get_received()[0]["args"] == ["u42"]
    assert client.emit("me", callback=True) == [True, "u42"]

    anonymous = socketio.test_client(app)
    assert not anonymous.is_connected()
