"""Interop: the official Node ``socket.io-client`` 4.x against geventsio's Socket.IO server.

Each test serves a ``geventsio.Server`` on a loopback port (conftest's
``serve_app``), runs one scenario of ``tests/interop/sio_client.mjs`` under Node
in a subprocess (cooperative, since conftest monkey-patches the standard
library) with polling only, WebSocket only, or the client's default transports
(polling, then the upgrade), and checks exactly both what the client printed
(one JSON line) and what the server's handlers saw. Server-side observations
are awaited with gevent Events / AsyncResults, never with sleeps.

The JavaScript dependencies come from ``tests/interop/package-lock.json``,
installed on first use by ``node_support.require_npm_packages``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gevent
import pytest
from node_support import require_npm_packages, run_node_report
from gevent.event import AsyncResult, Event

import geventsio

INTEROP_DIR = Path(__file__).resolve().parent / "interop"
CLIENT_SCRIPT = INTEROP_DIR / "sio_client.mjs"
CLIENT_PACKAGE = INTEROP_DIR / "node_modules" / "socket.io-client" / "package.json"

TRANSPORTS = ("polling", "websocket", "default")
PING_INTERVAL = 0.5  # seconds: short, so that pings go on during the scenarios
PING_TIMEOUT = 5
CLIENT_TIMEOUT_MS = 10_000  # the script gives up (with a JSON error) after this
WAIT = 5  # seconds to wait for a server-side observation


def _pattern(n: int, mul: int, add: int) -> bytes:
    return bytes((i * mul + add) & 0xFF for i in range(n))


# What sio_client.mjs sends in the binary scenario (keep in step with the script).
CLIENT_NESTED = {
    "label": "client blob ✓",
    "small": bytes([0, 1, 2, 253, 254, 255]),
    "empty": b"",
    "list": [b"abc", 7, None, {"deep": _pattern(300, 7, 3)}, [bytes([42])]],
    "flag": True,
}
CLIENT_TAIL = _pattern(5000, 13, 1)

# What the server sends in the binary scenario.
SERVER_NESTED = {
    "name": "server blob ü",
    "parts": [b"\x00", {"inner": [b"", _pattern(1024, 31, 7)]}, "text", 1.5],
    "raw": bytes(range(256)),
    "none": None,
}
SERVER_TAIL = bytes(range(255, -1, -1))


require_npm_packages(INTEROP_DIR)


@pytest.fixture(autouse=True)
def _require_node_client() -> None:
    version = json.loads(CLIENT_PACKAGE.read_text())["version"]
    assert version.split(".")[0] == "4", f"expected socket.io-client 4.x, found {version}"


@pytest.fixture(params=TRANSPORTS)
def transports(request) -> str:
    return request.param


# -- helpers ------------------------------------------------------------------


def new_server(**options: Any) -> geventsio.Server:
    options.setdefault("ping_interval", PING_INTERVAL)
    options.setdefault("ping_timeout", PING_TIMEOUT)
    return geventsio.Server(**options)


def from_js(value: Any) -> Any:
    """The client's report with ``{"$bin": hex}`` (a Node Buffer) turned back into bytes.

    Other markers ({"$undefined": true}, {"$error": ...}, {"$arraybuffer": ...})
    stay as they are, so they compare unequal to bytes.
    """
    if isinstance(value, list):
        return [from_js(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {k: from_js(v) for k, v in value.items()}
    return value


def run_client(running: Any, scenario: str, transports: str) -> dict:
    """Run one scenario of sio_client.mjs and return its report (checked to be ok)."""
    cmd = ["node", str(CLIENT_SCRIPT), running.url, scenario, transports]
    report = run_node_report(cmd, INTEROP_DIR, {"SIO_CLIENT_TIMEOUT_MS": str(CLIENT_TIMEOUT_MS)},
                             CLIENT_TIMEOUT_MS / 1000 + 20)
    return from_js(report)


def check_engine(info: dict, transports: str) -> None:
    """The client's final transport: the one it was limited to, or WebSocket after one upgrade."""
    if transports == "polling":
        assert info["transport"] == "polling"
        assert info["upgrades"] == []
    elif transports == "websocket":
        assert info["transport"] == "websocket"
        assert info["upgrades"] == []
    else:
        assert info["transport"] == "websocket"
        assert info["upgrades"] == ["websocket"]
    assert info["upgrade_errors"] == []


class Disconnects:
    """Records ``disconnect(sid, reason)`` per namespace; waits for a given number of them."""

    def __init__(self, sio: geventsio.Server, *namespaces: str):
        self.seen: list[tuple[str, str, str]] = []  # (namespace, sid, reason)
        self._changed = Event()
        for nsp in namespaces:
            sio.on("disconnect", self._handler(nsp), namespace=nsp)

    def _handler(self, nsp: str):
        def on_disconnect(sid: str, reason: str) -> None:
            self.seen.append((nsp, sid, reason))
            self._changed.set()
        return on_disconnect

    def wait(self, count: int) -> list[tuple[str, str, str]]:
        deadline = time.monotonic() + WAIT
        while len(self.seen) < count:
            self._changed.clear()
            if len(self.seen) >= count:
                break
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self._changed.wait(remaining), (
                f"expected {count} server-side disconnects within {WAIT}s, saw {self.seen}")
        return list(self.seen)


def get(result: AsyncResult) -> Any:
    """The value of a server-side AsyncResult (re-raising what the handler failed with)."""
    try:
        return result.get(timeout=WAIT)
    except gevent.Timeout:
        pytest.fail(f"no server-side result within {WAIT}s")


# -- tests --------------------------------------------------------------------


def test_multiplexed_namespaces_share_one_engine_and_pass_auth(serve_app, transports):
    """A Manager's sockets for "/" and "/chat" ride one Engine.IO session, each with its auth."""
    sio = new_server()
    connects: list[tuple] = []
    sessions_at_connect: list[set] = []
    disconnects = Disconnects(sio, "/", "/chat")

    def on_connect(nsp: str):
        def connect(sid, environ, auth):
            connects.append((nsp, sid, auth, id(environ)))
            sessions_at_connect.append(set(sio.eio.sessions))
        return connect

    sio.on("connect", on_connect("/"))
    sio.on("connect", on_connect("/chat"), namespace="/chat")
    sio.on("whoami", lambda sid, text: ("/", sid, text))
    sio.on("whoami", lambda sid, text: ("/chat", sid, text), namespace="/chat")
    running = serve_app(sio, path="socket.io")

    report = run_client(running, "multiplex", transports)

    # The client's side: two sockets, one Manager, one engine id throughout.
    check_engine(report, transports)
    root_id, chat_id = report["root_id"], report["chat_id"]
    assert root_id != chat_id
    assert report["same_manager"] is True and report["managers"] == 1
    engine_id = report["root_engine_id"]
    assert isinstance(engine_id, str) and engine_id
    assert report["chat_engine_id"] == engine_id
    assert report["engine_id_at_end"] == engine_id
    assert report["root_whoami"] == ["/", root_id, "from root"]
    assert report["chat_whoami"] == ["/chat", chat_id, "from chat"]

    # The server's side: each connect handler got its namespace's auth, on the same session.
    by_nsp = {c[0]: c for c in connects}
    assert len(connects) == 2 and set(by_nsp) == {"/", "/chat"}
    assert by_nsp["/"][1:3] == (root_id, {"token": "root-token", "n": 1})
    assert by_nsp["/chat"][1:3] == (chat_id, {"token": "chat-token", "list": [1, "two", None]})
    assert by_nsp["/"][3] == by_nsp["/chat"][3]  # one environ: one Engine.IO session
    assert sessions_at_connect == [{engine_id}, {engine_id}]
    assert disconnects.wait(2) == [("/chat", chat_id, "client disconnect"),
                                   ("/", root_id, "client disconnect")]


def test_refused_connections_get_connect_error(serve_app, transports):
    """ConnectionRefusedError, a False return and an unknown namespace reach the client as
    connect_error with the message and data; other namespaces of the connection still work."""
    sio = new_server()
    connects: list[tuple] = []
    disconnects = Disconnects(sio, "/", "/false", "/ok")

    @sio.event
    def connect(sid, environ, auth):
        connects.append(("/", auth))
        if auth.get("token") != "good":
            raise geventsio.ConnectionRefusedError(
                "not authorized", {"code": 401, "reason": ["bad", "token"], "ünï": "✓"})

    @sio.on("connect", namespace="/false")
    def connect_false(sid, environ, auth):
        connects.append(("/false", auth))
        return False

    @sio.on("connect", namespace="/ok")
    def connect_ok(sid, environ, auth):
        connects.append(("/ok", auth))

    sio.on("ping", lambda sid, text: ("pong", text), namespace="/ok")
    running = serve_app(sio, path="socket.io")

    report = run_client(running, "refused", transports)

    check_engine(report, transports)
    outcomes = report["outcomes"]
    assert outcomes["/"] == {"connected": False, "error": {
        "$error": "not authorized",
        "data": {"code": 401, "reason": ["bad", "token"], "ünï": "✓"}}}
    assert outcomes["/false"] == {"connected": False, "error": {
        "$error": "Connection rejected by server", "data": {"$undefined": True}}}
    assert outcomes["/nope"] == {"connected": False, "error": {
        "$error": "Invalid namespace", "data": {"$undefined": True}}}
    assert outcomes["/ok"]["connected"] is True
    assert report["ok_ping"] == ["pong", "still there?"]
    assert report["active"] == {"/": False, "/false": False, "/nope": False, "/ok": True}

    assert sorted(connects, key=lambda c: c[0]) == [
        ("/", {"token": "bad"}), ("/false", {"token": "whatever"}), ("/ok", {"token": "good"})]
    assert disconnects.wait(1) == [("/ok", outcomes["/ok"]["id"], "client disconnect")]
    assert sio.sockets == {}


def test_client_emits_get_the_server_handlers_acks(serve_app, transports):
    """Return values become acks (one, several, none); a late ack is a client timeout."""
    sio = new_server()
    seen: list[tuple] = []
    slow_returned = Event()
    last = Event()

    @sio.on("add")
    def add(sid, a, b):
        seen.append(("add", a, b))
        if (a, b) == (4, 4):
            last.set()
        return a + b

    @sio.on("multi")
    def multi(sid, x):
        seen.append(("multi", x))
        return (x, 1, {"k": [True, None]})

    @sio.on("noret")
    def noret(sid):
        seen.append(("noret",))

    @sio.on("slow")
    def slow(sid, ms):
        seen.append(("slow", ms))
        gevent.sleep(ms / 1000)  # longer than the client's 500 ms ack timeout
        slow_returned.set()
        return "late"

    disconnects = Disconnects(sio, "/")
    running = serve_app(sio, path="socket.io")

    report = run_client(running, "acks", transports)

    check_engine(report, transports)
    assert report["add"] == [5]
    assert report["multi"] == ["x", 1, {"k": [True, None]}]
    assert report["noret"] == []
    assert report["with_ack"] == 30
    assert report["timeout_ok"] == [None, 2]
    # Exactly one call of the slow callback: the timeout error, after 500 ms
    # (the late "late" ack, sent at 750 ms, was dropped by the client).
    assert len(report["slow_calls"]) == 1, report["slow_calls"]
    assert report["slow_calls"][0]["args"] == [
        {"$error": "operation has timed out", "data": {"$undefined": True}}]
    assert report["slow_calls"][0]["ms"] >= 450, report["slow_calls"]
    assert report["after_slow"] == [8]
    assert report["after_slow_ms"] >= 700

    assert slow_returned.wait(WAIT) and last.wait(WAIT)
    assert seen == [("add", 2, 3), ("multi", "x"), ("noret",), ("add", 10, 20),
                    ("add", 1, 1), ("slow", 750), ("add", 4, 4)]
    assert disconnects.wait(1) == [("/", report["sid"], "client disconnect")]


def test_server_calls_get_the_client_acks(serve_app, transports):
    """sio.call, a broadcast call and emit(callback=) get the client's ack; no ack is a timeout."""
    sio = new_server()
    outcome: AsyncResult = AsyncResult()
    disconnects = Disconnects(sio, "/")

    @sio.on("ready")
    def ready(sid):
        try:
            out: dict[str, Any] = {}
            out["call"] = sio.call("question", (1, 2), to=sid, timeout=5)
            out["noargs"] = sio.call("noargs", to=sid, timeout=5)
            started = time.monotonic()
            try:
                sio.call("ignored", "are you there?", to=sid, timeout=0.3)
            except geventsio.TimeoutError:
                out["ignored"] = ("TimeoutError", time.monotonic() - started)
            else:
                out["ignored"] = "answered"
            out["broadcast_call"] = sio.to(sid).timeout(2).call("question", 7, 8)

            def on_ack(*args):
                out["emit_callback"] = args
                sio.emit("finish", {"done": True}, to=sid)
                outcome.set(out)

            sio.emit("question", (5, 6), to=sid, callback=on_ack)
        except BaseException as exc:  # reported by the test, not only logged
            outcome.set_exception(exc)
            raise

    running = serve_app(sio, path="socket.io")

    report = run_client(running, "server-acks", transports)

    check_engine(report, transports)
    assert report["received"] == [
        ["question", 1, 2], ["noargs"], ["ignored", "are you there?", {"$function": True}],
        ["question", 7, 8], ["question", 5, 6]]
    assert report["finish"] == {"done": True}

    out = get(outcome)
    assert out["ignored"][0] == "TimeoutError" and 0.3 <= out["ignored"][1] < 1, out["ignored"]
    out["ignored"] = "TimeoutError"
    assert out == {
        "call": ({"sum": 3, "got": [1, 2]}, "second"),
        "noargs": None,
        "ignored": "TimeoutError",
        "broadcast_call": [({"sum": 15, "got": [7, 8]}, "second")],
        "emit_callback": ({"sum": 11, "got": [5, 6]}, "second"),
    }
    assert disconnects.wait(1) == [("/", report["sid"], "client disconnect")]


def test_nested_binary_is_preserved_both_ways(serve_app, transports):
    """Buffers inside objects and arrays (empty ones too) arrive as bytes, and back as Buffers."""
    sio = new_server()
    received: AsyncResult = AsyncResult()
    answered: AsyncResult = AsyncResult()
    disconnects = Disconnects(sio, "/")

    @sio.on("bin")
    def on_bin(sid, *args):
        received.set(args)
        sio.emit("bin_back", (SERVER_NESTED, SERVER_TAIL), to=sid)
        try:
            answered.set(sio.call("bin_q", SERVER_NESTED, to=sid, timeout=5))
        except BaseException as exc:
            answered.set_exception(exc)
            raise
        return ({"echo": args[0], "extra": b"\x09\x08\x07"}, b"\x00\xff")

    running = serve_app(sio, path="socket.io")

    report = run_client(running, "binary", transports)

    check_engine(report, transports)
    # The client got Node Buffers (from_js turns {"$bin": hex} only into bytes), exactly.
    assert report["bin_back"] == [SERVER_NESTED, SERVER_TAIL]
    assert report["bin_q"] == [SERVER_NESTED]
    assert report["bin_ack"] == [{"echo": CLIENT_NESTED, "extra": b"\x09\x08\x07"}, b"\x00\xff"]

    # The server got bytes, exactly.
    args = get(received)
    assert args == (CLIENT_NESTED, CLIENT_TAIL, "plain")
    assert type(args[0]["small"]) is bytes and type(args[0]["empty"]) is bytes
    assert type(args[0]["list"][3]["deep"]) is bytes and type(args[1]) is bytes
    assert get(answered) == (SERVER_NESTED, b"ok")
    assert disconnects.wait(1) == [("/", report["sid"], "client disconnect")]


def test_room_broadcasts_reach_members_only(serve_app, transports):
    """A room emit with skip_sid misses the sender; non-members get nothing; a room call collects."""
    sio = new_server()
    votes: AsyncResult = AsyncResult()
    disconnects = Disconnects(sio, "/")

    @sio.on("join")
    def join(sid, room):
        if room is not None:
            sio.enter_room(sid, room)
        return sorted(sio.rooms(sid))  # a list: one argument

    @sio.on("shout")
    def shout(sid, msg):
        try:
            sio.emit("shouted", {"from": sid, "msg": msg}, to="red", skip_sid=sid)
            sio.emit("room_all", "everyone in red", room="red")
            answers = sio.to("red").timeout(2).call("vote", "yes?")
            votes.set(answers)
        except BaseException as exc:
            votes.set_exception(exc)
            raise
        sio.emit("finish", len(answers))  # to every client of "/"
        return sorted(answers, key=lambda a: a["voter"])

    running = serve_app(sio, path="socket.io")

    report = run_client(running, "rooms", transports)

    for info in report["engines"].values():
        check_engine(info, transports)
    ids = report["ids"]
    a, b, c = ids["A"], ids["B"], ids["C"]
    assert len({a, b, c}) == 3
    assert report["joins"] == {"A": [sorted([a, "red"])], "B": [sorted([b, "red"])], "C": [[c]]}
    vote_a = {"voter": "A", "q": "yes?"}
    vote_b = {"voter": "B", "q": "yes?"}
    assert report["shout_ack"] == [[vote_a, vote_b]]
    assert report["received"] == {
        "A": [["room_all", "everyone in red"], ["vote", "yes?"], ["finish", 2]],
        "B": [["shouted", {"from": a, "msg": "hello red"}], ["room_all", "everyone in red"],
              ["vote", "yes?"], ["finish", 2]],
        "C": [["finish", 2]],
    }

    assert sorted(get(votes), key=lambda v: v["voter"]) == [vote_a, vote_b]
    seen = disconnects.wait(3)
    assert sorted(seen) == sorted(("/", sid, "client disconnect") for sid in (a, b, c))
    assert sio.rooms(a) == [] and sio.sockets == {}


def test_server_initiated_disconnect(serve_app, transports):
    """sio.disconnect: the client sees "io server disconnect"; other namespaces stay up."""
    sio = new_server()
    disconnects = Disconnects(sio, "/", "/chat")
    kicked: list[str] = []

    @sio.on("kick", namespace="/chat")
    def kick_chat(sid):
        kicked.append(sid)
        sio.disconnect(sid, namespace="/chat")

    @sio.on("kick")
    def kick_root(sid):
        kicked.append(sid)
        sio.disconnect(sid)

    sio.on("ping", lambda sid, text: ["pong", text])
    running = serve_app(sio, path="socket.io")

    report = run_client(running, "server-disconnect", transports)

    check_engine(report, transports)
    root_id, chat_id = report["root_id"], report["chat_id"]
    assert report["chat_reason"] == "io server disconnect"
    assert report["chat_connected"] is False and report["chat_active"] is False
    assert report["root_ping"] == [["pong", "after kick"]]
    assert report["engine_id_after_chat"] == report["engine_id"]
    assert report["root_reason"] == "io server disconnect"
    assert report["root_connected"] is False and report["root_active"] is False
    assert report["engine_state"] in ("closing", "closed")

    assert kicked == [chat_id, root_id]
    assert disconnects.wait(2) == [("/chat", chat_id, "server disconnect"),
                                   ("/", root_id, "server disconnect")]
    assert sio.sockets == {}


def test_emits_arrive_in_order_and_volatile_emits_are_kept_or_dropped(serve_app, transports):
    """50 numbered emits arrive in order; the volatile ones the client kept arrive, in place."""
    sio = new_server()
    log: list[list] = []
    disconnects = Disconnects(sio, "/")

    sio.on("seq", lambda sid, n: log.append(["seq", n]))
    sio.on("vol", lambda sid, n: log.append(["vol", n]))
    sio.on("count", lambda sid: len(log))
    sio.on("log", lambda sid: list(log))
    running = serve_app(sio, path="socket.io")

    report = run_client(running, "order", transports)

    check_engine(report, transports)
    sent = report["sent"]
    assert [s["n"] for s in sent if s["event"] == "seq"] == list(range(50))
    assert sent[-1] == {"event": "vol", "n": 100, "kept": True}
    expected = [[s["event"], s["n"]] for s in sent if s["kept"]]
    dropped_vol = [s["n"] for s in sent if not s["kept"]]
    assert report["count"] == [len(expected) - 1], f"dropped volatile emits: {dropped_vol}"
    assert report["log"] == [expected]
    assert log == expected
    assert disconnects.wait(1) == [("/", report["sid"], "client disconnect")]
