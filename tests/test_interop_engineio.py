"""Interop: the official Node ``engine.io-client`` 6.x against geventsio's Engine.IO server.

Each test starts a real server on a loopback port (the ``engine_server`` fixture),
runs ``tests/interop/eio_client.mjs`` under Node in a subprocess (cooperative,
since conftest monkey-patches the standard library) and checks both what the
client printed (one JSON line) and what the server's handlers saw.

The JavaScript dependencies come from ``tests/interop/package-lock.json``,
installed on first use by ``node_support.require_npm_packages``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import gevent.event
import pytest
from node_support import require_npm_packages, run_node_report

from geventsio.engine.session import (
    REASON_FORCED_CLOSE,
    REASON_TRANSPORT_CLOSE,
)

INTEROP_DIR = Path(__file__).resolve().parent / "interop"
CLIENT_SCRIPT = INTEROP_DIR / "eio_client.mjs"
CLIENT_PACKAGE = INTEROP_DIR / "node_modules" / "engine.io-client" / "package.json"

# What eio_client.mjs sends in the echo scenario (keep in step with the script).
TEXT = "hello from node: héllo wörld ✓ 🚀"
SMALL = bytes([1, 2, 3, 4])
LARGE = bytes((i * 31 + 7) & 0xFF for i in range(100 * 1024))

# What the server sends first in the server-first scenario.
SERVER_TEXT = "welcome from geventsio: ✓ ünïcode"
SERVER_BINARY = bytes(range(256))

MODES = ("polling", "websocket", "upgrade")
PING_INTERVAL = 0.5  # seconds: short, so that every run sees a server ping
PING_TIMEOUT = 5
CLIENT_TIMEOUT_MS = 10_000  # the script gives up (with a JSON error) after this
DISCONNECT_TIMEOUT = 10  # seconds to wait for the server's disconnect handler


require_npm_packages(INTEROP_DIR)


@pytest.fixture(autouse=True)
def _require_node_client() -> None:
    version = json.loads(CLIENT_PACKAGE.read_text())["version"]
    assert version.split(".")[0] == "6", f"expected engine.io-client 6.x, found {version}"


# -- helpers ------------------------------------------------------------------


class Recorder:
    """Records what the server's handlers saw; echoes messages when asked to."""

    def __init__(self, server: Any, echo: bool = True):
        self.server = server
        self.echo = echo
        # ("connect", sid) / ("message", sid, data) / ("disconnect", sid, reason)
        self.events: list[tuple] = []
        self.disconnected = gevent.event.Event()
        server.on("connect", self.on_connect)
        server.on("message", self.on_message)
        server.on("disconnect", self.on_disconnect)

    def on_connect(self, sid: str, environ: dict) -> None:
        self.events.append(("connect", sid))

    def on_message(self, sid: str, data: str | bytes) -> None:
        self.events.append(("message", sid, data))
        if self.echo:
            self.server.send(sid, data)

    def on_disconnect(self, sid: str, reason: str) -> None:
        self.events.append(("disconnect", sid, reason))
        self.disconnected.set()

    def connects(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "connect"]

    def messages(self, sid: str) -> list[str | bytes]:
        return [e[2] for e in self.events if e[0] == "message" and e[1] == sid]

    def disconnects(self, sid: str) -> list[str]:
        return [e[2] for e in self.events if e[0] == "disconnect" and e[1] == sid]

    def kinds(self, sid: str) -> list[str]:
        return [e[0] for e in self.events if e[1] == sid]

    def wait_disconnect(self) -> None:
        assert self.disconnected.wait(DISCONNECT_TIMEOUT), (
            f"the server reported no disconnect within {DISCONNECT_TIMEOUT}s; "
            f"events so far: {_summarize(self.events)}")


def _summarize(events: list[tuple]) -> list[tuple]:
    """Events with long payloads shortened, for assertion messages."""
    out = []
    for e in events:
        if e[0] == "message" and len(e[2]) > 64:
            e = (e[0], e[1], f"<{type(e[2]).__name__} of length {len(e[2])}>")
        out.append(e)
    return out


def run_client(running: Any, mode: str, scenario: str = "echo") -> dict:
    """Run eio_client.mjs against ``running`` and return its JSON report (checked to be ok)."""
    cmd = ["node", str(CLIENT_SCRIPT), running.url, f"/{running.path}/", mode, scenario]
    return run_node_report(cmd, INTEROP_DIR, {"EIO_CLIENT_TIMEOUT_MS": str(CLIENT_TIMEOUT_MS)},
                           CLIENT_TIMEOUT_MS / 1000 + 20, _short_report)


def _short_report(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("sent",)}


def text(data: str) -> dict:
    return {"type": "text", "data": data}


def binary(data: bytes) -> dict:
    d = {"type": "binary", "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if len(data) <= 64:
        d["bytes"] = list(data)
    return d


def received(report: dict) -> list[dict]:
    """The client's received messages, without per-message details not compared exactly."""
    keep = ("type", "data", "length", "sha256", "bytes")
    return [{k: v for k, v in m.items() if k in keep} for m in report["received"]]


def check_transports(report: dict, mode: str) -> None:
    if mode == "polling":
        assert report["transport_at_open"] == "polling"
        assert report["transport_after_upgrade"] is None
        assert report["transport_at_close"] == "polling"
    elif mode == "websocket":
        assert report["transport_at_open"] == "websocket"
        assert report["upgrades_offered"] == []
        assert report["transport_after_upgrade"] is None
        assert report["transport_at_close"] == "websocket"
    else:
        assert report["transport_at_open"] == "polling"
        assert report["upgrades_offered"] == ["websocket"]
        assert report["transport_after_upgrade"] == "websocket"
        assert report["transport_at_close"] == "websocket"
    assert report["upgrade_errors"] == []


# -- tests --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_client_echo_text_and_binary(engine_server, mode):
    """The client sends text and binary, gets exact echoes and a ping, then closes."""
    running = engine_server(echo=False, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT)
    rec = Recorder(running.server, echo=True)

    report = run_client(running, mode)

    # The client's side.
    check_transports(report, mode)
    assert received(report) == [text(TEXT), binary(SMALL), binary(LARGE)]
    final_transport = "polling" if mode == "polling" else "websocket"
    assert [m["transport"] for m in report["received"]] == [final_transport] * 3
    assert report["pings"] >= 1
    assert report["close"]["reason"] == "forced close"  # the client closed it
    assert report["errors"] == []

    # The server's side: one session, the three messages as str/bytes, then a disconnect.
    sid = report["sid"]
    assert rec.connects() == [sid]
    rec.wait_disconnect()
    msgs = rec.messages(sid)
    assert [type(m) for m in msgs] == [str, bytes, bytes], _summarize(rec.events)
    assert msgs[0] == TEXT
    assert msgs[1] == SMALL
    assert len(msgs[2]) == len(LARGE) and msgs[2] == LARGE
    assert rec.kinds(sid) == ["connect", "message", "message", "message", "disconnect"]
    # Whether the client sends a close packet (polling) or just closes the
    # connection (engine.io-client's WebSocket transport), Node calls it a transport close.
    assert rec.disconnects(sid) == [REASON_TRANSPORT_CLOSE]
    assert sid not in running.server.sessions


@pytest.mark.parametrize("mode", MODES)
def test_server_sends_first_then_disconnects(engine_server, mode):
    """The server sends text and binary on connect, and closes the session on "bye"."""
    running = engine_server(echo=False, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT)
    server = running.server
    rec = Recorder(server, echo=False)
    sends: list[bool] = []

    def on_connect(sid: str, environ: dict) -> None:
        rec.on_connect(sid, environ)
        sends.append(server.send(sid, SERVER_TEXT))
        sends.append(server.send(sid, SERVER_BINARY))

    def on_message(sid: str, data: str | bytes) -> None:
        rec.on_message(sid, data)
        if data == "bye":
            server.disconnect(sid)

    server.on("connect", on_connect)
    server.on("message", on_message)

    report = run_client(running, mode, "server-first")

    check_transports(report, mode)
    assert received(report) == [text(SERVER_TEXT), binary(SERVER_BINARY)]
    assert report["sent"] == [text("bye")]
    # engine.io-client reports a close by the server as "transport close".
    assert report["close"]["reason"] == "transport close"
    assert report["errors"] == []

    sid = report["sid"]
    assert sends == [True, True]
    assert rec.connects() == [sid]
    rec.wait_disconnect()
    assert rec.messages(sid) == ["bye"]
    assert rec.kinds(sid) == ["connect", "message", "disconnect"]
    assert rec.disconnects(sid) == [REASON_FORCED_CLOSE]
    assert sid not in server.sessions
