"""The Socket.IO Admin UI against geventsio: its client protocol, and its real web app.

``tests/admin/admin_client.mjs`` speaks the protocol the Admin UI's web app
speaks (socket.io-client on ``/admin``) to a geventsio server served by this
test process, while an ordinary client on ``/`` is watched and acted upon.
The last test opens the web app itself (``ui/dist`` of the npm package
``@socket.io/admin-ui``) in headless Chromium, logs in, waits until the
sockets page lists the connected clients, joins one to a room from its page,
and saves screenshots (to pytest's tmp_path, or $GEVENTSIO_BROWSER_OUTPUT).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from node_support import require_npm_packages, run_node_report, skip_or_fail

import geventsio

ADMIN_DIR = Path(__file__).resolve().parent / "admin"
CLIENT_SCRIPT = ADMIN_DIR / "admin_client.mjs"
UI_SCRIPT = ADMIN_DIR / "admin_ui.mjs"
UI_DIST = ADMIN_DIR / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"
CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "admin", "s3cret-ü"
STATS_INTERVAL = 0.3  # seconds between server_stats reports: short, so the scenarios are quick
ALL_ACTIONS = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]

require_npm_packages(ADMIN_DIR)


def make_server() -> geventsio.Server:
    """A server with a few handlers the scenarios use on the watched client."""
    sio = geventsio.Server(cors_allowed_origins="*")

    @sio.on("hello")
    def hello(sid: str, data: Any) -> str:
        sio.emit("hi", {"back": data}, to=sid)
        return "hello to you"

    @sio.on("rooms")
    def rooms(sid: str) -> list[str]:
        return sio.rooms(sid)

    return sio


def run_scenario(running: Any, scenario: str, password: str = PASSWORD) -> dict:
    cmd = ["node", str(CLIENT_SCRIPT), running.url, scenario]
    return run_node_report(cmd, ADMIN_DIR, {"ADMIN_USER": USER, "ADMIN_PASSWORD": password}, 60)


@pytest.fixture
def served(serve_app):
    def start(**instrument_options: Any) -> tuple[geventsio.Server, Any, Any]:
        sio = make_server()
        instrument_options.setdefault("auth", {"username": USER, "password": PASSWORD})
        admin = sio.instrument(server_stats_interval=STATS_INTERVAL, **instrument_options)
        running = serve_app(sio, path="socket.io")
        return sio, admin, running

    made: list[Any] = []

    def tracked(**options: Any):
        sio, admin, running = start(**options)
        made.append(admin)
        return sio, admin, running

    yield tracked
    for admin in made:
        admin.stop()


def test_development_mode_reports_everything_and_actions_act(served) -> None:
    sio, admin, running = served(server_id="test-server")
    report = run_scenario(running, "development")

    assert report["wrongPassword"] == "invalid credentials"
    assert len(report["session"][0]) == 16
    assert report["config"]["supportedFeatures"] == ALL_ACTIONS + ["AGGREGATED_EVENTS", "ALL_EVENTS"]
    # At login the only socket is the admin itself.
    assert [(s["nsp"], s["id"]) for s in report["allSocketsAtLogin"]] == [("/admin", report["adminId"])]
    stats = report["firstStats"]
    assert stats["serverId"] == "test-server" and stats["pid"] == os.getpid()
    assert {"hostname", "uptime", "clientsCount", "pollingClientsCount", "aggregatedEvents",
            "namespaces"} <= set(stats)

    client_id = report["clientId"]
    socket, stamp = report["socketConnected"]
    assert socket["id"] == client_id and socket["nsp"] == "/" and socket["rooms"] == [client_id]
    assert socket["transport"] == "polling" and len(socket["clientId"]) == 12
    assert socket["handshake"]["query"]["who"] == "watched"
    assert socket["handshake"]["address"] == "127.0.0.1" and "auth" not in socket["handshake"]
    assert stamp.endswith("Z")

    assert report["helloAck"] == "hello to you"
    assert report["eventReceived"][:3] == ["/", client_id, ["hello", {"n": 1}]]
    assert report["eventSent"][:3] == ["/", client_id, ["hi", {"back": {"n": 1}}]]

    assert report.get("joinAck") is None  # acknowledged with no error
    assert "room1" in report["roomsAfterJoin"]
    assert report["roomJoined"][:3] == ["/", "room1", client_id]
    assert report["announce"] == ["to room1", 2]
    assert "room1" not in report["roomsAfterLeave"]
    assert report["roomLeft"][:3] == ["/", "room1", client_id]
    assert report["upgrade"][0] == {"id": client_id, "nsp": "/", "transport": "websocket"}

    later = report["statsWithClient"]
    kinds = {e["type"] for e in later["aggregatedEvents"]}
    assert {"packetsIn", "packetsOut", "bytesIn", "bytesOut"} & kinds
    assert later["clientsCount"] >= 2
    assert report["unknownNamespaceAck"] == {"error": "unknown namespace '/nowhere'"}
    assert report["badRoomAck"] == {"error": "the room must be a string"}

    assert report.get("disconnectAck") is None
    assert report["clientDisconnect"][0] == "io server disconnect"
    assert report["socketDisconnected"][:3] == ["/", client_id, "server disconnect"]
    assert report["reloginConfig"]["supportedFeatures"][:1] == ["EMIT"]
    assert report["forgedSession"] == "invalid credentials"
    assert sio.stats()["connect_refusals_by_namespace"] == {"/admin": 2}


def test_read_only_refuses_every_action(served) -> None:
    sio, admin, running = served(read_only=True)
    report = run_scenario(running, "readonly")
    assert report["config"]["supportedFeatures"] == ["AGGREGATED_EVENTS", "ALL_EVENTS"]
    for action in ("joinAck", "disconnectAck", "emitAck"):
        assert report[action] == {"error": "read-only"}, action
    assert "room1" not in report["roomsAfter"]
    assert report["stillConnected"] is True


def test_production_mode_sends_statistics_only(served) -> None:
    sio, admin, running = served(mode="production")
    assert sio.observers == []  # nothing on the data path
    report = run_scenario(running, "production")
    assert report["config"]["supportedFeatures"] == ALL_ACTIONS + ["AGGREGATED_EVENTS"]
    assert report["helloAck"] == "hello to you"
    assert "room1" in report["roomsAfterJoin"]  # actions still work
    assert set(report["events"]) <= {"session", "config", "server_stats"}, report["events"]
    assert any(e["type"] == "packetsIn" for e in report["stats"]["aggregatedEvents"])


def test_bcrypt_hash_and_callable_auth(served) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    sio, admin, running = served(auth={"username": USER, "password": hashed}, mode="production")
    assert run_scenario(running, "production")["config"]["supportedFeatures"][-1] == "AGGREGATED_EVENTS"
    admin.stop()
    checked: list[Any] = []

    def allow(auth: Any) -> bool:
        checked.append(auth)
        return auth.get("password") == PASSWORD

    admin = sio.instrument(auth=allow, mode="production", server_stats_interval=STATS_INTERVAL)
    try:
        assert run_scenario(running, "production")["stats"]["serverId"]
        assert checked[-1] == {"username": USER, "password": PASSWORD}
    finally:
        admin.stop()


def test_instrument_checks_its_options() -> None:
    sio = geventsio.Server()
    with pytest.raises(ValueError, match="auth"):
        sio.instrument()
    with pytest.raises(ValueError, match="mode"):
        sio.instrument(auth=False, mode="staging")
    admin = sio.instrument(auth=False)
    assert len(sio.observers) == 1
    admin.stop()
    assert sio.observers == [] and "/admin" not in sio.table.handlers
    admin = sio.instrument(auth=False, mode="production")
    sio.shutdown()  # stops the statistics reports too
    admin._ticker.join(1)
    assert admin._ticker.dead


# -- the real Admin UI web app in headless Chromium ------------------------------------------


def test_admin_ui_in_chromium_shows_the_connected_sockets(serve_app, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"the Admin UI screenshot needs {CHROMIUM} (apt-get install -y chromium)")
    assert (UI_DIST / "index.html").is_file(), "the npm package @socket.io/admin-ui ships ui/dist"
    # The UI from one server, the Socket.IO server on another origin, as with admin.socket.io.
    ui = geventsio.make_server(geventsio.WSGIApp(None, static_files={"/": str(UI_DIST)}), "127.0.0.1", 0)
    ui.start()
    ui_url = f"http://127.0.0.1:{ui.server_port}/"
    sio = make_server()
    admin = sio.instrument(auth={"username": USER, "password": PASSWORD}, server_id="geventsio-test",
                           server_stats_interval=STATS_INTERVAL)
    running = serve_app(sio, path="socket.io")
    out_dir = Path(os.environ.get("GEVENTSIO_BROWSER_OUTPUT") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            ["node", str(UI_SCRIPT), ui_url, running.url, USER, PASSWORD, str(out_dir)],
            cwd=ADMIN_DIR, capture_output=True, text=True, timeout=60)
    finally:
        admin.stop()
        ui.stop(timeout=1)
    lines = proc.stdout.splitlines()
    for line in lines:
        print(f"[admin-ui] {line}", flush=True)
    assert proc.returncode == 0 and lines[-1:] == ["DONE"], proc.stdout + proc.stderr[-3000:]
    shots = [line.split(" ", 1)[1] for line in lines if line.startswith("SCREENSHOT ")]
    assert shots and all(Path(p).stat().st_size > 10_000 for p in shots), shots
    print(f"[test] Admin UI screenshots: {' '.join(shots)}", flush=True)


def test_servers_of_a_cluster_get_distinct_ids() -> None:
    from redis_support import REDIS_URL, require_redis, unique_key

    require_redis()
    sio = geventsio.Server(client_manager=geventsio.RedisManager(REDIS_URL, key=unique_key()))
    try:
        admin = sio.instrument(auth=False, mode="production")
        assert admin.server_id.endswith(f"#{os.getpid()}")
    finally:
        sio.shutdown()
    alone = geventsio.Server()
    admin = alone.instrument(auth=False, mode="production")
    assert admin.server_id == socket.gethostname()
    admin.stop()
