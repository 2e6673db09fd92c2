"""Interop over the msgpack parser: ``Server(serializer="msgpack")`` with the official Node
``socket.io-client`` 4.x configured with ``socket.io-msgpack-parser`` 3.x, and with
``geventsio.Client(serializer="msgpack")``.

Each Node test serves a ``geventsio.Server`` on a loopback port and runs a
scenario of ``tests/msgpack/sio_msgpack_client.mjs`` (polling only, WebSocket
only, or polling then the upgrade), then checks both what the client printed
and what the server's handlers saw. A client whose parser differs from the
server's gets its connection closed as a parse error, both ways round.
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.event import AsyncResult
import redis_support
from node_support import require_npm_packages, run_node_report

import geventsio

pytest.register_assert_rewrite("client_support")  # before its import below
from client_support import TRANSPORT_IDS, TRANSPORTS, WAIT, Log, expected_transport, wait_event  # noqa: E402

pytest_plugins = ["client_support"]  # its fixture make_client

MSGPACK_DIR = Path(__file__).resolve().parent / "msgpack"
CLIENT_SCRIPT = MSGPACK_DIR / "sio_msgpack_client.mjs"
CLIENT_TIMEOUT_MS = 10_000
UTC = datetime.timezone.utc

require_npm_packages(MSGPACK_DIR)


def test_node_packages_are_the_versions_this_parser_speaks():
    def version(name: str) -> str:
        return json.loads((MSGPACK_DIR / "node_modules" / name / "package.json").read_text())["version"]

    assert version("socket.io-client").split(".")[0] == "4"
    assert version("socket.io-msgpack-parser").split(".")[0] == "3"


def new_server(**options: Any) -> geventsio.Server:
    options.setdefault("ping_interval", 0.5)
    options.setdefault("ping_timeout", 5)
    return geventsio.Server(serializer="msgpack", **options)


def run_client(running: Any, scenario: str, transports: str, *extra: str) -> dict:
    cmd = ["node", str(CLIENT_SCRIPT), running.url, scenario, transports, *extra]
    return run_node_report(cmd, MSGPACK_DIR, {"SIO_CLIENT_TIMEOUT_MS": str(CLIENT_TIMEOUT_MS)},
                           CLIENT_TIMEOUT_MS / 1000 + 20)


def b(data: bytes) -> dict:
    return {"$bin": data.hex()}


def get(result: AsyncResult) -> Any:
    try:
        return result.get(timeout=WAIT)
    except gevent.Timeout:
        pytest.fail(f"no server-side result within {WAIT}s")


ECHO_ARGS_JS = ["hello ✓", 42, -7, 1.5, None, True,
                {"nested": [b(b"abc"), {"deep": b(b"")}]}, b(b"\x00\xff")]
ECHO_ARGS_PY = ("hello ✓", 42, -7, 1.5, None, True, {"nested": [b"abc", {"deep": b""}]}, b"\x00\xff")


@pytest.mark.parametrize("transports", ["polling", "websocket", "default"])
def test_node_msgpack_client(serve_app, transports):
    sio = new_server()
    seen: dict[str, Any] = {}
    auth_seen: AsyncResult = AsyncResult()
    shouted: AsyncResult = AsyncResult()
    disconnects = Log()

    @sio.event
    def connect(sid, environ, auth):
        auth_seen.set(auth)
        sio.emit("welcome", ("hi", b"\x00\x01", {"n": 1}), to=sid)

    @sio.event
    def disconnect(sid, reason):
        disconnects.add(("/", reason))

    @sio.on("echo")
    def echo(sid, *args):
        seen["echo"] = args
        return args

    @sio.on("kinds")
    def kinds(sid, *args):
        seen["kinds"] = args
        return ([type(a).__name__ for a in args], *args)

    @sio.on("ask-me")
    def ask_me(sid):
        return sio.call("question", (2, 3), to=sid, timeout=WAIT)

    @sio.on("join", namespace="/chat")
    def join(sid, room):
        sio.enter_room(sid, room, namespace="/chat")
        return "joined " + room

    @sio.on("shout", namespace="/chat")
    def shout(sid, text, data):
        shouted.set((text, data))
        sio.emit("news", (text, data, {"from": sid}), to="room1", namespace="/chat")
        sio.emit("done", namespace="/chat")

    @sio.on("connect", namespace="/private")
    def private(sid, environ, auth):
        raise geventsio.ConnectionRefusedError("nope", {"code": 403, "blob": b"\x01\x02", "auth": auth})

    running = serve_app(sio, path="socket.io")

    report = run_client(running, "main", transports)

    assert get(auth_seen) == {"token": "t0k", "key": b"\x01\x02\x03"}
    assert report["welcome"] == ["hi", b(b"\x00\x01"), {"n": 1}]
    assert report["echo"] == ECHO_ARGS_JS and seen["echo"] == ECHO_ARGS_PY
    when = datetime.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    # ArrayBuffer and typed arrays arrive as bytes, undefined as None, a Date as a datetime;
    # bytes go back as Buffers, the datetime as a Date.
    assert seen["kinds"] == (b"\x01\x02\x03", b"\x09" * 8, None, when)
    assert report["kinds"] == [["bytes", "bytes", "NoneType", "datetime"],
                               b(b"\x01\x02\x03"), b(b"\x09" * 8), None, {"$date": 1700000000123}]
    assert report["server_call"] == [{"sum": 5}, b(b"\x02\x03")]
    assert report["same_engine"] is True
    assert report["join"] == ["joined room1"]
    assert get(shouted) == ("to the room", b"bin")
    # Only the member of room1 got the news (both got "done", sent after it).
    assert report["news"] == {"A": [["to the room", b(b"bin"), {"from": report["chat_a_id"]}]], "B": []}
    assert report["refused"] == {"connected": False, "error": {
        "$error": "nope", "data": {"code": 403, "blob": b(b"\x01\x02"), "auth": {"pass": "wrong"}}}}
    want_transport = "websocket" if transports == "default" else transports
    assert report["transports"] == [want_transport, want_transport]
    assert report["upgrades"] == ([["websocket"]] * 2 if transports == "default" else [[], []])
    assert disconnects.wait_for(1) == [("/", "client disconnect")]


@pytest.mark.parametrize("server_serializer,client_parser", [("msgpack", "json"), ("default", "msgpack")])
def test_node_client_with_the_other_parser_is_closed_as_a_parse_error(
        serve_app, caplog, server_serializer, client_parser):
    sio = geventsio.Server(serializer=server_serializer)
    connects = Log()
    sio.on("connect", lambda sid, environ, auth: connects.add(sid))
    running = serve_app(sio, path="socket.io")

    with caplog.at_level(logging.WARNING, logger="geventsio"):
        report = run_client(running, "mismatch", "websocket", client_parser)

    # The server closes the connection at the first packet; the client is never connected
    # and hears only that its transport closed.
    assert report["connected"] is False
    assert report["result"] == {"closed": "transport close"}, report
    assert connects.items == []
    assert sio.eio.sessions == {} or all(s.closed for s in sio.eio.sessions.values())
    warnings = [r.getMessage() for r in caplog.records if "invalid Socket.IO packet" in r.getMessage()]
    assert len(warnings) == 1, warnings
    want = "text message on a msgpack connection" if server_serializer == "msgpack" \
        else "binary message without a pending binary packet"
    assert want in warnings[0]


# -- geventsio.Client(serializer="msgpack") ------------------------------------------


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORT_IDS)
def transports(request):
    return request.param


NESTED = {"label": "blob ✓", "raw": bytes(range(256)), "list": [b"", 7, None, {"deep": b"\x00" * 3000}],
          "when": datetime.datetime(2001, 2, 3, 4, 5, 6, 7000, tzinfo=UTC)}


def test_python_client_with_msgpack(serve_app, make_client, transports):
    sio = new_server()
    server_seen = Log()
    auth_seen: AsyncResult = AsyncResult()

    @sio.event
    def connect(sid, environ, auth):
        auth_seen.set(auth)

    @sio.on("echo")
    def echo(sid, *args):
        server_seen.add(args)
        return args

    @sio.on("ask")
    def ask(sid, value):
        return sio.call("double", value, to=sid, timeout=WAIT)

    @sio.on("join", namespace="/chat")
    def join(sid):
        sio.enter_room(sid, "room", namespace="/chat")
        sio.emit("news", ("to the room", b"\x07"), to="room", namespace="/chat")

    @sio.on("connect", namespace="/private")
    def private(sid, environ, auth):
        raise geventsio.ConnectionRefusedError("nope", {"code": 403, "blob": b"\x01"})

    running = serve_app(sio, path="socket.io")
    client = make_client(serializer="msgpack")
    client.on("double", lambda v: v * 2)
    news = Log()
    client.on("news", news, namespace="/chat")

    client.connect(running.url, transports=transports, namespaces=["/", "/chat"],
                   auth={"token": b"\x00t"})
    if transports is None:
        wait_event(client.eio.upgrade_done, "the upgrade")
    assert client.transport() == expected_transport(transports)
    assert get(auth_seen) == {"token": b"\x00t"}

    assert client.call("echo", (1, NESTED, "ü")) == (1, NESTED, "ü")
    assert server_seen.items == [(1, NESTED, "ü")]
    assert client.call("ask", 21) == 42
    client.emit("join", namespace="/chat")
    assert news.wait_for(1) == [("to the room", b"\x07")]

    refused = geventsio.Client(serializer="msgpack", reconnection=False)
    errors = Log()
    refused.on("connect_error", errors, namespace="/private")
    with pytest.raises(geventsio.client.ConnectionError):
        refused.connect(running.url, transports=["websocket"], namespaces=["/private"], wait_timeout=WAIT)
    assert errors.wait_for(1) == [{"message": "nope", "data": {"code": 403, "blob": b"\x01"}}]
    refused.disconnect()


def test_flask_test_client_speaks_the_servers_parser():
    flask = pytest.importorskip("flask")
    from geventsio.flask import SocketIO, emit

    app = flask.Flask(__name__)
    socketio = SocketIO(app, serializer="msgpack")

    @socketio.on("echo")
    def echo(*args):
        emit("echoed", args)
        return args

    client = socketio.test_client(app)
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert client.emit("echo", b"\x00\xff", when, callback=True) == [b"\x00\xff", when]
    assert client.get_received() == [{"name": "echoed", "args": [b"\x00\xff", when], "namespace": "/"}]
    client.disconnect()


def test_redis_cluster_of_json_and_msgpack_servers(serve_app, make_client):
    """The cluster's wire does not depend on the parser: each server re-encodes what the others
    broadcast with its own parser."""
    r = redis_support.require_redis()
    key = redis_support.unique_key()
    servers = {}
    for serializer in ("default", "msgpack"):
        manager = geventsio.RedisManager(redis_support.REDIS_URL, key=key, requests_timeout=5)
        sio = geventsio.Server(client_manager=manager, serializer=serializer)
        sio.on("connect", lambda sid, environ, auth, s=sio: s.enter_room(sid, "r"))
        servers[serializer] = (sio, serve_app(sio, path="socket.io"))
    redis_support.wait_subscribers(r, key, 2)

    inboxes = {}
    for serializer, (sio, running) in servers.items():
        client = make_client(serializer=serializer, reconnection=False)
        inboxes[serializer] = Log()
        client.on("room-msg", inboxes[serializer])
        client.connect(running.url, transports=["websocket"], wait_timeout=WAIT)

    json_sio, msgpack_sio = servers["default"][0], servers["msgpack"][0]
    json_sio.emit("room-msg", ("from json", b"\x00\xff"), to="r")
    msgpack_sio.emit("room-msg", ("from msgpack", {"b": b"\x01"}), to="r")
    for inbox in inboxes.values():
        assert sorted(inbox.wait_for(2)) == [("from json", b"\x00\xff"), ("from msgpack", {"b": b"\x01"})]


def test_python_socketio_client_with_msgpack(serve_app):
    """python-socketio's serializer="msgpack" speaks the same parser."""
    socketio = pytest.importorskip("socketio")
    sio = new_server()
    sio.on("echo", lambda sid, *args: args)
    sio.on("push", lambda sid: sio.emit("pushed", ("x", b"\x00\x01"), to=sid))
    running = serve_app(sio, path="socket.io")

    client = socketio.Client(serializer="msgpack", reconnection=False)
    pushed: AsyncResult = AsyncResult()
    client.on("pushed", lambda *args: pushed.set(args))
    client.connect(running.url, transports=["websocket"], wait_timeout=WAIT, namespaces=["/"])
    try:
        assert client.call("echo", (1, {"b": b"\xff"}, "ü"), timeout=WAIT) == (1, {"b": b"\xff"}, "ü")
        client.emit("push")
        assert get(pushed) == ("x", b"\x00\x01")
    finally:
        client.disconnect()
