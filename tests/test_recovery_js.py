"""Connection state recovery with the official JavaScript client (socket.io-client 4.x).

tests/recovery/client.mjs joins a room, has its engine closed under it, and
comes back once the server told it (on a second connection) that it emitted
what the client misses. The JS client keeps the offset as its handlers' last
argument (Node's behaviour; the geventsio client takes it off).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import gevent
import pytest
from node_support import require_npm_packages, run_node_report

import geventsio

RECOVERY_DIR = Path(__file__).resolve().parent / "recovery"
CLIENT_SCRIPT = RECOVERY_DIR / "client.mjs"

require_npm_packages(RECOVERY_DIR)


def test_socket_io_client_package_is_4x() -> None:
    package = json.loads((RECOVERY_DIR / "node_modules" / "socket.io-client" / "package.json").read_text())
    assert package["version"].split(".")[0] == "4"


def make_app(after_loss: Callable[[geventsio.Server, str], None], **recovery: Any) -> geventsio.Server:
    """The server side of client.mjs; ``after_loss(sio, sid)`` emits what the client misses, then "go"."""
    sio = geventsio.Server(connection_state_recovery=recovery, ping_interval=0.5, ping_timeout=2)
    sio.on("connect", lambda sid, environ, auth: None, namespace="/control")

    @sio.on("join")
    def join(sid, room, nickname):
        sio.enter_room(sid, room)
        sio.save_session(sid, {"nickname": nickname})
        sio.emit("news", 0, to=room)
        return "joined"

    @sio.on("state")
    def state(sid):
        return {"sid": sid, "rooms": sio.rooms(sid), "session": sio.get_session(sid),
                "recovered": sio.is_recovered(sid)}

    @sio.on("disconnect")
    def disconnect(sid, reason):
        if reason == "transport close":
            sio.start_background_task(after_loss, sio, sid)

    return sio


def missed_and_go(sio: geventsio.Server, sid: str) -> None:
    sio.emit("news", 1, to="a")
    sio.emit("direct", 2, to=sid)
    sio.emit("news", 3)
    sio.emit("news", "not for a", to="b")
    sio.emit("news", {"four": [4]}, to="a")
    sio.emit("go", namespace="/control")


def run_client(running: Any, transports: str = "websocket") -> dict:
    return run_node_report(["node", str(CLIENT_SCRIPT), running.url, transports], RECOVERY_DIR, {}, 30)


@pytest.mark.parametrize("transports", ["polling", "websocket", "default"])
def test_js_client_recovers_sid_rooms_session_and_missed_packets(serve_app, transports):
    sio = make_app(missed_and_go, max_disconnection_duration=10)
    report = run_client(serve_app(sio, path="socket.io"), transports)
    first, second = report["connects"]
    assert first["recovered"] is False and second == {"id": first["id"], "recovered": True}
    received = report["received"]
    offsets = [entry.pop() for entry in received]  # the JS client leaves the offset in place
    assert all(isinstance(o, str) for o in offsets) and len(set(offsets)) == len(offsets)
    assert received == [["news", 0], ["news", 1], ["direct", 2], ["news", 3], ["news", {"four": [4]}]]
    assert report["state"] == {"sid": first["id"], "rooms": sorted([first["id"], "a"]),
                               "session": {"nickname": "js"}, "recovered": True}


def test_js_client_gets_a_new_session_after_the_window(serve_app):
    def after_loss(sio: geventsio.Server, sid: str) -> None:
        sio.emit("news", 1, to="a")
        store = sio.adapters["/"].recovery
        with gevent.Timeout(5):
            while len(store):  # the session's expiry is a timer on the loop: nothing to wait on
                gevent.sleep(0.02)
        sio.emit("go", namespace="/control")

    sio = make_app(after_loss, max_disconnection_duration=0.2)
    report = run_client(serve_app(sio, path="socket.io"))
    first, second = report["connects"]
    assert second["id"] != first["id"] and not second["recovered"]
    assert [entry[:2] for entry in report["received"]] == [["news", 0]]
    assert report["state"] == {"sid": second["id"], "rooms": [second["id"]], "session": {},
                               "recovered": False}
