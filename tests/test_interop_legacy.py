"""Interop: the real npm ``socket.io-client`` 2.x (Engine.IO v3, Socket.IO protocol v4).

Each test serves a ``geventsio.Server(allow_eio3=True)`` on a loopback port,
runs one scenario of ``tests/legacy/legacy_client.js`` under Node with polling
only, WebSocket only, or the client's default transports (polling, then the
upgrade), and checks both what the client printed (one JSON line) and what
the server's handlers saw (awaited with gevent events, never with sleeps).

socket.io-client 2.x in Node has no XHR2 (its XMLHttpRequest has no
``responseType``), so it polls with ``b64=1``: binary travels over polling as
``b4``-base64 records, and over WebSocket as binary frames with their type
byte. The mixed-room test adds socket.io-client 4.x (the npm alias
``socket.io-client-v4``) to the same room. Two tests cover the XHR2 path that
browsers take (binary polling payloads): the reference v3 parser
(engine.io-parser 2.x) on raw requests, and socket.io-client 2.x itself in
headless Chromium (skipped without /usr/bin/chromium, failed under CI).

The JavaScript dependencies come from ``tests/legacy/package-lock.json``,
installed on first use by ``node_support.require_npm_packages``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from gevent.event import AsyncResult, Event
from node_support import require_npm_packages, run_node_report, skip_or_fail

import geventsio

LEGACY_DIR = Path(__file__).resolve().parent / "legacy"
CLIENT_SCRIPT = LEGACY_DIR / "legacy_client.js"

TRANSPORTS = ("polling", "websocket", "default")
PING_INTERVAL = 0.3  # seconds: the client pings this often, so the idle step spans several
PING_TIMEOUT = 0.3
CLIENT_TIMEOUT_MS = 10_000
WAIT = 5  # seconds to wait for a server-side observation

# What legacy_client.js sends (keep in step with the script).
TEXT = "héllo wörld 😀 ✓"
CLIENT_BLOB = {"label": "client ✓", "small": bytes([0, 1, 2, 253, 254, 255]),
               "list": [b"abc", 7, None, {"deep": b"\x5a" * 3000}]}
SERVER_BLOB = {"raw": bytes(range(256)), "nested": [b"", {"x": b"\x00\xff"}], "text": "sérver 😀"}

require_npm_packages(LEGACY_DIR)


@pytest.fixture(autouse=True)
def _require_node_clients() -> None:
    modules = LEGACY_DIR / "node_modules"
    v2 = json.loads((modules / "socket.io-client" / "package.json").read_text())["version"]
    v4 = json.loads((modules / "socket.io-client-v4" / "package.json").read_text())["version"]
    assert v2.split(".")[0] == "2", f"expected socket.io-client 2.x, found {v2}"
    assert v4.split(".")[0] == "4", f"expected socket.io-client 4.x under the alias, found {v4}"


@pytest.fixture(params=TRANSPORTS)
def transports(request) -> str:
    return request.param


def new_server(**options: Any) -> geventsio.Server:
    options.setdefault("ping_interval", PING_INTERVAL)
    options.setdefault("ping_timeout", PING_TIMEOUT)
    options.setdefault("allow_eio3", True)
    return geventsio.Server(**options)


def from_js(value: Any) -> Any:
    """The client's report with ``{"$bin": hex}`` turned back into bytes."""
    if isinstance(value, list):
        return [from_js(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {k: from_js(v) for k, v in value.items()}
    return value


def run_client(running: Any, scenario: str, transports: str, force_base64: bool = False) -> dict:
    cmd = ["node", str(CLIENT_SCRIPT), running.url, scenario, transports]
    env = {"SIO_CLIENT_TIMEOUT_MS": str(CLIENT_TIMEOUT_MS),
           "LEGACY_FORCE_BASE64": "1" if force_base64 else "0"}
    report = run_node_report(cmd, LEGACY_DIR, env, CLIENT_TIMEOUT_MS / 1000 + 20)
    return from_js(report)


def check_transport(report: dict, transports: str) -> None:
    assert report["transport"] == ("polling" if transports == "polling" else "websocket")


class Recorder:
    """Server-side observations, awaited by count."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []
        self._changed = Event()

    def add(self, *item: Any) -> None:
        self.seen.append(item)
        self._changed.set()

    def wait(self, count: int) -> list[tuple]:
        deadline = time.monotonic() + WAIT
        while len(self.seen) < count:
            self._changed.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self._changed.wait(remaining), (
                f"expected {count} observations within {WAIT}s, saw {self.seen}")
        return list(self.seen)


# -- tests ----------------------------------------------------------------------


@pytest.mark.parametrize("force_base64", [False, True], ids=["binary", "base64"])
def test_roundtrip_acks_binary_heartbeat_and_server_disconnect(serve_app, transports, force_base64):
    """With force_base64 the client sends b64=1 on every transport: binary goes as base64 text."""
    sio = new_server()
    sessions = []
    connects = Recorder()
    disconnects = Recorder()
    answer: AsyncResult = AsyncResult()

    @sio.on("connect")
    def connect(sid, environ, auth):
        connects.add(sid, auth, environ.get("QUERY_STRING", ""))
        sessions.append(sio.sockets[sid].connection.session)
        sio.emit("welcome", {"sid": sid, "text": TEXT}, to=sid)

    sio.on("disconnect", lambda sid, reason: disconnects.add(sid, reason))
    sio.on("echo", lambda sid, *args: tuple(args))

    @sio.on("start")
    def start(sid):
        try:
            answer.set(sio.call("ask", ("question", b"\x00\x01\xff"), to=sid, timeout=WAIT))
        except Exception as exc:  # reported through the AsyncResult
            answer.set_exception(exc)
        sio.emit("blob", (SERVER_BLOB, b"tail"), to=sid)
        return "started", sio.transport(sid)

    sio.on("kick-me", lambda sid: sio.disconnect(sid))
    running = serve_app(sio, path="socket.io")

    report = run_client(running, "roundtrip", transports, force_base64)

    check_transport(report, transports)
    assert report["upgrades"] == (["websocket"] if transports == "default" else [])
    [(sid, auth, query)] = connects.wait(1)
    assert auth is None  # protocol v4 has no auth payload
    assert "EIO=3" in query
    # socket.io-client 2.x in Node has no XHR2: it asks for base64 whenever it starts polling.
    assert ("b64=1" in query) == (force_base64 or transports != "websocket")
    # Each transport asks in its own request: the WebSocket of an upgrade carries binary frames.
    assert sessions[0].binary is (transports != "polling" and not force_base64)
    assert report["welcome"] == [{"sid": sid, "text": TEXT}]
    assert report["echo"] == [TEXT, CLIENT_BLOB]
    server_transport = "websocket" if transports != "polling" else "polling"
    assert report["served"] == ["started", server_transport]
    assert report["asked"] == ["question", b"\x00\x01\xff"]
    assert answer.get(timeout=WAIT) == ("answer", b"\x09\x08\x07", ["question", b"\x00\x01\xff"])
    assert report["blob"] == [SERVER_BLOB, b"tail"]
    assert report["later"] == ["still here"]
    assert report["disconnect_reason"] == "io server disconnect"
    assert disconnects.wait(1) == [(sid, "server disconnect")]


def test_namespaces_query_refusals_and_leaving(serve_app, transports):
    sio = new_server()
    connects = Recorder()
    disconnects = Recorder()

    def on_connect(nsp: str):
        def connect(sid, environ, auth):
            connects.add(nsp, sid, auth, environ.get("QUERY_STRING", ""))
        return connect

    def on_disconnect(nsp: str):
        return lambda sid, reason: disconnects.add(nsp, sid, reason)

    for nsp in ("/", "/chat"):
        sio.on("connect", on_connect(nsp), namespace=nsp)
        sio.on("disconnect", on_disconnect(nsp), namespace=nsp)
        sio.on("where", lambda sid, text, nsp=nsp: (nsp, sid, text), namespace=nsp)

    @sio.on("connect", namespace="/locked")
    def locked(sid, environ, auth):
        raise geventsio.exceptions.ConnectionRefusedError("locked out", {"reason": "no key"})

    running = serve_app(sio, path="socket.io")

    report = run_client(running, "namespaces", transports)

    check_transport(report, transports)
    seen = connects.wait(2)
    by_nsp = {c[0]: c for c in seen}
    assert set(by_nsp) == {"/", "/chat"}, seen
    _, root_sid, root_auth, query = by_nsp["/"]
    _, chat_sid, chat_auth, chat_query = by_nsp["/chat"]
    assert root_auth is None
    assert "engine=q" in query and query == chat_query  # one Engine.IO session
    assert chat_auth == {"token": "abc", "n": "1"}  # the namespace's query, as Node's server passes it
    assert report["chat_echo"] == ["/chat", chat_sid, "from chat"]
    assert report["root_echo"] == ["/", root_sid, "from root"]
    assert report["unknown_error"] == "Invalid namespace"
    assert report["locked_error"] == {"reason": "no key"}
    assert report["after_leave"] == ["/", root_sid, "after leave"]
    assert (report["chat_connected"], report["root_connected"]) == (False, True)
    assert disconnects.wait(1)[0] == ("/chat", chat_sid, "client disconnect")


def test_room_shared_by_v2_and_v4_clients(serve_app, transports):
    sio = new_server()
    tags: dict[str, str] = {}
    protocols: list[tuple[str, str]] = []

    @sio.on("join")
    def join(sid, tag):
        tags[sid] = tag
        eio = dict(parse_qsl(sio.get_environ(sid)["QUERY_STRING"]))["EIO"]
        protocols.append((tag, eio))
        sio.enter_room(sid, "r")
        return f"joined {tag}"

    @sio.on("shout")
    def shout(sid, data):
        sio.emit("shouted", {"from": tags[sid], **data}, to="r", skip_sid=sid)

    sio.on("announce", lambda sid: sio.emit("news", {"bin": bytes(range(10)), "text": TEXT}, to="r"))
    running = serve_app(sio, path="socket.io")

    report = run_client(running, "rooms", transports)

    check_transport(report, transports)
    assert report["joined"] == [["joined v2"], ["joined v4"]]
    assert report["v4_got"] == [{"from": "v2", "text": TEXT, "bin": b"\x01\x02\x03"}]
    assert report["v2_got"] == [{"from": "v4", "text": "from v4", "bin": b"\x04\x05"}]
    news = {"bin": bytes(range(10)), "text": TEXT}
    assert report["news"] == [[news], [news]]
    assert protocols == [("v2", "3"), ("v4", "4")]


def test_root_namespace_refusal_is_a_plain_message(serve_app, transports):
    sio = new_server()
    refused = Recorder()

    @sio.on("connect")
    def connect(sid, environ, auth):
        refused.add(sid)
        return False

    running = serve_app(sio, path="socket.io")

    report = run_client(running, "rejected", transports)

    assert report == {"ok": True, "connected": False, "error": "Connection rejected by server"}
    assert len(refused.wait(1)) == 1
    assert sio.sockets == {}


@pytest.mark.parametrize("transports_", ["polling", "websocket"])
def test_refused_without_allow_eio3(serve_app, transports_):
    sio = new_server(allow_eio3=False)
    connects = Recorder()
    sio.on("connect", lambda sid, environ, auth: connects.add(sid))
    running = serve_app(sio, path="socket.io")

    report = run_client(running, "refused", transports_)

    assert report["connected"] is False
    # The handshake's HTTP 400, on either transport (a WebSocket is refused before any 101).
    expected = "xhr poll error" if transports_ == "polling" else "websocket error"
    assert report["error"] == expected, report
    assert connects.seen == [] and sio.eio.sessions == {}


def test_binary_polling_payloads_with_the_reference_v3_parser(engine_server):
    """XHR2 clients' binary payloads, both ways, as engine.io-parser 2.x encodes and decodes them."""
    running = engine_server(allow_eio3=True, ping_interval=PING_INTERVAL, ping_timeout=WAIT)
    received = Recorder()
    running.server.on("message", lambda sid, data: (received.add(data), running.server.send(sid, data)))

    report = from_js(run_node_report(["node", str(LEGACY_DIR / "payload_client.js"), running.url],
                                     LEGACY_DIR, {}, 30))

    assert report["handshake"]["type"] == "open"
    mixed = ["héllo 😀 €", bytes([0, 1, 2, 255]), bytes([7]) * 1500]
    assert report["sent_mixed"] == {"binary": True, "status": 200, "text": "ok"}
    assert report["got_mixed"]["content_type"] == "application/octet-stream"
    assert report["got_mixed"]["packets"] == [{"type": "message", "data": d} for d in mixed]
    assert report["sent_text"] == {"binary": False, "status": 200, "text": "ok"}
    assert report["got_text"]["content_type"] == "text/plain; charset=UTF-8"
    # The pong is queued by the reading greenlet, the echo by the handler: either may be first.
    got = report["got_text"]["packets"]
    assert sorted(got, key=lambda p: p["type"]) == [{"type": "message", "data": "only text 😀"},
                                                    {"type": "pong", "data": None}]
    assert [item[0] for item in received.wait(4)] == [*mixed, "only text 😀"]


CHROMIUM = "/usr/bin/chromium"


def _blank_page(environ, start_response):
    body = b"<!doctype html><title>legacy client</title>"
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


def test_browser_client_uses_binary_payloads(serve_app, transports):
    """socket.io-client 2.x in Chromium: XHR2, so no b64=1 and binary polling payloads both ways."""
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"the browser test needs {CHROMIUM} (apt-get install -y chromium)")
    sio = new_server()
    sessions = []
    sio.on("connect", lambda sid, environ, auth: sessions.append(sio.sockets[sid].connection.session))
    sio.on("echo", lambda sid, text, blob: (text, blob))
    sio.on("push", lambda sid: sio.emit("pushed", ({"text": "sérver", "bin": bytes(range(5))}, b"\xff"),
                                        to=sid))
    running = serve_app(sio, path="socket.io", wsgi_app=_blank_page)

    report = run_node_report(["node", str(LEGACY_DIR / "browser_client.js"), running.url + "/", transports],
                             LEGACY_DIR, {"CHROMIUM_PATH": CHROMIUM}, 40)

    assert report["transport"] == ("polling" if transports == "polling" else "websocket")
    assert report["b64_in_first_query"] is False
    assert sessions[0].binary is True
    assert report["echo"] == ["b ✓ 😀", "000102faff"]
    assert report["echo_binary_type"] == "[object ArrayBuffer]"
    assert report["pushed"] == ["sérver", "0001020304", "ff"]
    if transports == "polling":
        # The binary event and ack went as binary payloads, in both directions.
        assert ["POST", "application/octet-stream", "text/plain; charset=UTF-8"] in report["polls"]
        assert ["GET", None, "application/octet-stream"] in report["polls"]
