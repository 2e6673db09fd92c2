"""Interop: geventsio.Client against the reference Node ``socket.io`` 4.x server.

Each test starts tests/interop/node_server.mjs in a subprocess on an ephemeral
port (it prints {"port": N}, then one JSON line per observation, collected by
``NodeServer.log``). "Killing the server" is SIGKILL; it comes back on the
same port. The npm packages come from tests/interop/package-lock.json,
installed on first use.
"""

from __future__ import annotations

import json

import gevent
import pytest
from node_support import require_npm_packages

import geventsio
from geventsio.client import ConnectionError

pytest.register_assert_rewrite("client_support")  # before its import below
from client_support import (  # noqa: E402
    INTEROP_DIR,
    TRANSPORT_IDS,
    TRANSPORTS,
    WAIT,
    Emitter,
    Lifecycle,
    Log,
    NodeServer,
    check_emitter_delivery,
    expected_transport,
    wait_event,
)

pytest_plugins = ["client_support"]  # its fixtures: make_client
from client_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)

require_npm_packages(INTEROP_DIR)

FAST_PINGS = {"pingInterval": 500, "pingTimeout": 2000}


def _pattern(n: int, mul: int, add: int) -> bytes:
    return bytes((i * mul + add) & 0xFF for i in range(n))


# What node_server.mjs sends in the binary scenario (keep in step with the script).
SERVER_NESTED = {
    "name": "server blob ü",
    "parts": [b"\x00", {"inner": [b"", _pattern(1024, 31, 7)]}, "text", 1.5],
    "raw": _pattern(256, 1, 0),
}
SERVER_TAIL = _pattern(3000, 13, 5)
CLIENT_NESTED = {"label": "client ✓", "blobs": [b"", b"\xff" * 5000, {"deep": [b"\x00\x01"]}], "n": 7}


@pytest.fixture(autouse=True)
def _require_node_server() -> None:
    package = INTEROP_DIR / "node_modules" / "socket.io" / "package.json"
    version = json.loads(package.read_text())["version"]
    assert version.split(".")[0] == "4", f"expected socket.io 4.x, found {version}"


@pytest.fixture
def node():
    servers: list[NodeServer] = []

    def start(**options) -> NodeServer:
        server = NodeServer({**FAST_PINGS, **options})
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORT_IDS)
def transports(request):
    return request.param


def open_client(client, server, transports, **kwargs):
    client.connect(server.url, transports=transports, **kwargs)
    if transports is None:
        wait_event(client.eio.upgrade_done, "the upgrade")
    assert client.transport() == expected_transport(transports)


def test_events_acks_binary_and_namespaces(node, make_client, transports):
    server = node()
    client = make_client()
    welcomes = Log()
    binaries = Log()
    client.on("welcome", welcomes)
    client.on("welcome", welcomes, namespace="/chat")
    client.on("binary", binaries)
    open_client(client, server, transports, namespaces=["/", "/chat"], auth={"user": "ana"})

    welcomes.wait_for(2)
    by_nsp = {w["nsp"]: w for w in welcomes.items}
    assert by_nsp["/"] == {"sid": client.get_sid("/"), "nsp": "/", "auth": {"user": "ana"}}
    assert by_nsp["/chat"]["sid"] == client.get_sid("/chat") != client.get_sid("/")

    assert client.call("echo", (1, CLIENT_NESTED, "ü")) == (1, CLIENT_NESTED, "ü")
    assert client.call("echo", "in chat", namespace="/chat") == "in chat"
    assert client.call("echo") is None
    assert client.call("binary") == b"\x01\x02\x03"
    assert binaries.wait_for(1) == [(SERVER_NESTED, SERVER_TAIL)]
    acked = Log()
    client.emit("record", {"x": b"\x00"}, callback=acked)
    assert acked.wait_for(1) == [{"x": b"\x00"}]
    record = server.log.wait_for(lambda items: any("record" in e for e in items))
    assert [e["sid"] for e in record if "record" in e] == [client.get_sid("/")]


def test_rooms(node, make_client, transports):
    server = node()
    a, b = make_client(), make_client()
    got = {"a": Log(), "b": Log()}
    a.on("room-msg", got["a"])
    b.on("room-msg", got["b"])
    open_client(a, server, transports)
    open_client(b, server, transports)
    assert a.call("join", "lobby") == sorted([a.sid, "lobby"])
    assert a.call("to-room", ("lobby", "only a")) is True
    assert b.call("join", "lobby") == sorted([b.sid, "lobby"])
    assert b.call("to-room", ("lobby", "both")) is True
    assert got["a"].wait_for(2) == ["only a", "both"]
    assert got["b"].wait_for(1) == ["both"]


def test_server_calls_the_client_with_ack_and_timeout(node, make_client, transports):
    server = node()
    client = make_client()
    release = gevent.event.Event()

    @client.on("question")
    def question(value):
        if value == "slow":
            release.wait(WAIT)
            return "too late"
        return {"doubled": value * 2}

    open_client(client, server, transports)
    assert client.call("ask-client", (21, 2000)) == {"answer": {"doubled": 42}}
    assert client.call("ask-client", ("slow", 200)) == {"error": "operation has timed out"}
    release.set()
    # The client's own ack timeout against a slow server.
    outcome = Log()
    client.emit("slow-ack", 1000, callback=outcome, timeout=0.1)
    assert isinstance(outcome.wait_for(1)[0], geventsio.TimeoutError)
    assert client.call("slow-ack", 10) == 10


def test_refusal_by_middleware_reports_connect_error(node, make_client, transports):
    server = node()
    client = make_client()
    errors = Log()
    client.on("connect_error", errors, namespace="/private")
    with pytest.raises(ConnectionError) as info:
        client.connect(server.url, namespaces=["/private"], transports=transports,
                       auth={"token": "wrong"})
    refusal = {"message": "not authorized", "data": {"reason": "bad token"}}
    assert info.value.data == refusal
    assert errors.items == [refusal]
    client.connect(server.url, namespaces=["/private"], transports=transports,
                   auth={"token": "secret"})
    assert client.call("echo", "in", namespace="/private") == "in"


def test_server_disconnect_is_final(node, make_client, transports):
    server = node()
    client = make_client()
    reasons = Log()
    client.on("disconnect", reasons)
    open_client(client, server, transports)
    client.emit("disconnect-me")
    with gevent.Timeout(WAIT):
        client.wait()
    assert reasons.items == ["server disconnect"]


def test_killed_server_restarted_buffered_emits_arrive_once_in_order(node, make_client, transports):
    server = node()
    client = make_client()
    life = Lifecycle(client)
    open_client(client, server, transports, namespaces=["/", "/chat"])
    for i in range(3):
        assert client.call("record", i) == i
    first_sid = client.sid

    server.kill()
    life.wait("disconnect")
    for i in range(3, 13):
        client.emit("record", i)
        client.emit("record", f"chat {i}", namespace="/chat")
        client.emit("record", "volatile", volatile=True)
    life.wait("reconnect_error")
    server.start()  # same port

    server.log.wait_for(lambda items: len([e for e in items if "record" in e]) >= 23)
    life.wait("reconnect")
    assert client.call("record", "sync") == "sync"
    got = [(e["nsp"], e["record"]) for e in server.log.items if "record" in e]
    assert [r for n, r in got if n == "/"] == list(range(13)) + ["sync"]  # the log spans both
    assert [r for n, r in got if n == "/chat"] == [f"chat {i}" for i in range(3, 13)]
    assert client.sid != first_sid and set(client.namespaces) == {"/", "/chat"}
    attempts = life.check_backoff()
    assert ("reconnect", attempts) in life.log.items


def test_killed_server_restarted_while_the_client_keeps_emitting(node, make_client, transports):
    server = node()
    client = make_client()
    reasons = Log()
    reconnects = Log()
    client.on("disconnect", reasons)
    client.on("reconnect", reconnects)
    open_client(client, server, transports)
    emitter = Emitter(client)
    server.log.wait_for(lambda items: len([e for e in items if "record" in e]) >= 20)
    server.kill()
    reasons.wait_for(1)
    emitter.buffered.wait_for(20)
    first_server_count = len(server.entries("record"))
    server.start()
    reconnects.wait_for(1)
    count = emitter.count
    server.log.wait_for(lambda items: any(e.get("record") == count + 10 for e in items))
    emitter.stop()
    assert client.call("record", "sync") == "sync"
    check_emitter_delivery(emitter, server.entries("record")[:-1], first_server_count)


def test_retries_redeliver_a_dropped_ack_and_complete_once(node, make_client, transports):
    """drop-first never acknowledges the first copy of a value: the retry is acknowledged."""
    server = node()
    client = make_client(retries=2, ack_timeout=0.15)
    open_client(client, server, transports)
    outcomes = Log()
    for i in range(4):
        client.emit("drop-first", i, callback=outcomes)
    assert outcomes.wait_for(4) == [0, 1, 2, 3]
    assert client.call("record", "sync") == "sync"
    assert server.entries("dropped") == [0, 1, 2, 3]
    assert server.entries("record") == [0, 1, 2, 3, "sync"]
    assert outcomes.items == [0, 1, 2, 3]


def test_retries_exhausted_fail_with_timeout(node, make_client):
    server = node()
    client = make_client(retries=2, ack_timeout=0.1)
    client.connect(server.url)
    with pytest.raises(geventsio.TimeoutError):
        client.call("never-ack", "x", timeout=WAIT)
    assert client.call("record", "sync") == "sync"
    assert server.entries("never") == ["x", "x", "x"]


def test_retries_across_a_killed_server(node, make_client):
    server = node()
    client = make_client(retries=3, ack_timeout=1)
    reasons = Log()
    client.on("disconnect", reasons)
    client.connect(server.url)
    assert client.call("record", 0) == 0
    server.kill()
    reasons.wait_for(1)
    outcomes = Log()
    for i in range(1, 8):
        client.emit("record", i, callback=outcomes)
    server.start()
    assert outcomes.wait_for(7) == list(range(1, 8))
    assert server.entries("record") == list(range(8))
