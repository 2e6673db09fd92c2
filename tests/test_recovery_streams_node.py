"""A geventsio streams cluster with a Node server running @socket.io/redis-streams-adapter.

tests/streams/server.mjs is a Node socket.io server on the same Redis stream
(and session key prefix) as a geventsio server. Checked: broadcasts of each
reach the clients of the other, in one order, with the same offsets (the
stream's entry ids); and a client lost by one server is restored by the other
(sessions and entries have one format), both ways.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.event import AsyncResult
from node_support import require_npm_packages

pytest.register_assert_rewrite("client_support")  # before its import below
from client_support import WAIT, FreezingProxy  # noqa: E402
from redis_support import REDIS_URL, wait_for  # noqa: E402
from test_recovery import GatedClient  # noqa: E402
from test_recovery_streams import cluster  # noqa: E402,F401  (a fixture)

pytest_plugins = ["client_support"]  # its fixture make_client
from client_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)

STREAMS_DIR = Path(__file__).resolve().parent / "streams"

require_npm_packages(STREAMS_DIR)


def test_node_packages_are_the_versions_spoken() -> None:
    def version(name: str) -> str:
        return json.loads((STREAMS_DIR / "node_modules" / name / "package.json").read_text())["version"]

    assert version("@socket.io/redis-streams-adapter").startswith("0.2.")
    assert version("socket.io").split(".")[0] == "4"


class NodeStreamsServer:
    """tests/streams/server.mjs in a subprocess, on the cluster's stream."""

    def __init__(self, stream: str, prefix: str):
        self.proc = subprocess.Popen(["node", str(STREAMS_DIR / "server.mjs"), REDIS_URL, stream, prefix],
                                     cwd=STREAMS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.ready: AsyncResult = AsyncResult()
        self.results: dict[int, AsyncResult] = {}
        self._ids = itertools.count(1)
        self._reader = gevent.spawn(self._read)
        self.port = self.ready.get(timeout=WAIT)["port"]
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            if message["type"] == "ready":
                self.ready.set(message)
            elif message["type"] == "result":
                self.results.setdefault(message["id"], AsyncResult()).set(message)
        if not self.ready.ready():
            self.ready.set_exception(RuntimeError(f"node exited: {self.proc.stderr.read()[-3000:]}"))

    def run(self, cmd: str, **fields: Any) -> None:
        command_id = next(self._ids)
        result = self.results.setdefault(command_id, AsyncResult())
        self.proc.stdin.write(json.dumps({"id": command_id, "cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        result.get(timeout=WAIT)

    def emit(self, *args: Any, room: str | None = None, stream: Any = None) -> None:
        """``io.to(room).emit("news", *args)``; with ``stream`` (a Cluster), returns once it is appended.

        (Node appends after the command's answer: the order with later emits is decided there.)
        """
        before = stream.r.xlen(stream.stream) if stream is not None else 0
        self.run("emit", room=room, args=list(args))
        if stream is not None:
            wait_for(lambda: stream.r.xlen(stream.stream) > before, "the Node server's entry")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.run("close")
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._reader.kill()


@pytest.fixture
def node_member(cluster):  # noqa: F811
    """(the Cluster, its geventsio server A, the Node server N), on one stream."""
    c = cluster()
    a = c.app("A")
    node = NodeStreamsServer(c.stream, c.prefix)
    try:
        yield c, a, node
    finally:
        node.close()


def test_broadcasts_cross_languages_in_one_order_with_the_same_offsets(node_member, make_client):
    c, a, node = node_member
    on_a, on_n = GatedClient(make_client, a.url), GatedClient(make_client, node.url)
    for gated in (on_a, on_n):
        assert gated.client.call("join", ("a", "x"), timeout=WAIT) == "joined"
    a.sio.emit("news", 1, to="a")
    on_a.received.wait_for(1)
    node.emit(2, {"from": "node"}, room="a")
    on_a.received.wait_for(2)
    a.sio.emit("news", (3, b"\x01\x02"), to="a")
    node.emit(4, stream=c)
    expected = [("news", 1), ("news", 2, {"from": "node"}), ("news", 3, b"\x01\x02"), ("news", 4)]
    assert on_a.received.wait_for(4) == on_n.received.wait_for(4) == expected
    last = c.r.xrevrange(c.stream, count=1)[0][0].decode()
    assert on_a.client.delivery.namespaces["/"].offset == on_n.client.delivery.namespaces["/"].offset == last


@pytest.mark.parametrize("lost_by", ["node", "geventsio"])
def test_a_client_lost_by_one_language_is_restored_by_the_other(node_member, make_client, lost_by):
    c, a, node = node_member
    first, second = (node.port, a.running.port) if lost_by == "node" else (a.running.port, node.port)
    proxy = FreezingProxy(first)
    try:
        gated = GatedClient(make_client, proxy.url)
        assert gated.client.call("join", ("a", "ann"), timeout=WAIT) == "joined"
        a.sio.emit("news", 0, to="a")
        gated.received.wait_for(1)
        sid = gated.client.get_sid()
        gated.cut()
        wait_for(lambda: len(c.sessions()) == 1, "the lost session stored in Redis")
        a.sio.emit("news", 1, to="a")
        node.emit(2, room="a", stream=c)
        a.sio.emit("news", "not for a", to="b")
        a.sio.emit("direct", 3, to=sid)
        a.sio.emit("news", (4, b"\xff"))
        proxy.target = second
        assert gated.come_back() == (sid, True)
        received = gated.received.wait_for(5)
        assert received == [("news", 0), ("news", 1), ("news", 2), ("direct", 3), ("news", 4, b"\xff")]
        state = gated.client.call("state", timeout=WAIT)
        assert state["rooms"] == sorted([sid, "a"]) and state["session"] == {"nickname": "ann"}
        assert state["recovered"] is True
    finally:
        proxy.close()


def test_the_official_client_is_restored_by_a_restarted_server(cluster, make_client):  # noqa: F811
    c = cluster()
    a, b = c.app("A"), c.app("B")
    port = a.running.port
    proc = subprocess.Popen(["node", str(STREAMS_DIR / "client.mjs"), a.url], cwd=STREAMS_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stdout)
        with gevent.Timeout(WAIT, AssertionError("the JS client never joined")):
            joined = json.loads(next(lines))
        assert joined["type"] == "joined"
        sid = joined["id"]
        a.sio.emit("news", 0, to="a")
        with gevent.Timeout(WAIT, AssertionError("the JS client never received news 0")):
            assert json.loads(next(lines)) == {"type": "received"}
        c.stop(a)  # the client reconnects on its own, to nothing until the restart
        b.sio.emit("news", 1, to="a")
        b.sio.emit("direct", (2, b"\x00\xff"), to=sid)
        b.sio.emit("news", "not for a", to="b")
        c.app("A2", port=port)
        with gevent.Timeout(WAIT, AssertionError("the JS client never reported")):
            report = json.loads(next(lines))
    finally:
        proc.kill()
        proc.wait()
    assert report["ok"], report
    assert report["connects"] == [{"id": sid, "recovered": False}, {"id": sid, "recovered": True}]
    offsets = [args[-1] for args in report["received"]]
    assert [args[:-1] for args in report["received"]] == [
        ["news", 0], ["news", 1], ["direct", 2, {"$bin": "00ff"}]]
    assert offsets[1:] == [eid.decode() for eid, _ in c.r.xrange(c.stream)][1:3]
    assert report["state"] == {"rooms": sorted([sid, "a"]), "session": {"nickname": "js"}, "recovered": True}
