"""A Redis cluster of two geventsio servers and one Node ``socket.io`` 4.x server.

The Node member is tests/cluster/node_cluster.mjs with ``@socket.io/redis-adapter``
8.x (and ``@socket.io/redis-emitter``), installed from tests/cluster/package-lock.json
on first use. The geventsio members are two ``Server(client_manager=RedisManager(...))``
served in this process on their own ports. Clients: one ``geventsio.Client`` per
geventsio server and one ``socket.io-client`` in the Node process, all in room "r".
"""

from __future__ import annotations

import json
import logging

import pytest
from gevent.event import AsyncResult, Event
from node_support import require_npm_packages
from redis_support import (CLUSTER_DIR, REDIS_URL, WAIT, NodeMember, py_client, require_redis,
                           unique_key, wait_for, wait_subscribers)

import geventsio

REDIS = require_redis()
require_npm_packages(CLUSTER_DIR)


def test_node_packages_are_the_versions_the_cluster_speaks() -> None:
    def version(name: str) -> str:
        return json.loads((CLUSTER_DIR / "node_modules" / name / "package.json").read_text())["version"]

    assert version("@socket.io/redis-adapter").split(".")[0] == "8"
    assert version("@socket.io/redis-emitter").split(".")[0] == "5"
    assert version("socket.io").split(".")[0] == "4"


def make_member(serve_app, key: str, name: str) -> geventsio.Server:
    manager = geventsio.RedisManager(REDIS_URL, key=key, requests_timeout=5, client_name=f"{key}-{name}")
    sio = geventsio.Server(client_manager=manager)

    @sio.on("connect")
    def connect(sid, environ, auth):
        sio.save_session(sid, {"lang": "python", "server": name})

    @sio.on("join")
    def join(sid, room):
        sio.enter_room(sid, room)
        return True

    @sio.on_server_side_emit("ask")
    def ask(value):
        return {"from": name, "value": value}

    sio.url = serve_app(sio, path="socket.io").url  # type: ignore[attr-defined]
    return sio


@pytest.fixture
def cluster(serve_app):
    """(key, server A, server B, node member), every member subscribed; clients in room "r"."""
    key = unique_key()
    a = make_member(serve_app, key, "A")
    b = make_member(serve_app, key, "B")
    node = NodeMember(key)
    clients = []
    try:
        wait_subscribers(REDIS, key, 3)
        yield key, a, b, node, clients
    finally:
        for client in clients:
            client.disconnect()
        node.close()


def join_all(a, b, node, clients):
    ca, inbox_a = py_client(a.url, "r")
    cb, inbox_b = py_client(b.url, "r")
    clients += [ca, cb]
    node_sid = node.run("client", url=node.url, name="cN", room="r")
    return (ca, cb, node_sid), (inbox_a, inbox_b, node.inbox("cN"))


def test_room_broadcast_from_each_server_reaches_clients_on_all_three(cluster) -> None:
    key, a, b, node, clients = cluster
    _, inboxes = join_all(a, b, node, clients)
    outsider, outsider_inbox = py_client(a.url, "elsewhere")
    clients.append(outsider)

    a.emit("room-msg", ("from A", b"\x00\x01\xff"), to="r")
    b.to("r").emit("room-msg", "from B", {"n": 2})
    node.run("emit", room="r", event="room-msg", args=["from node", {"nested": [1, None]}])
    for inbox in inboxes:
        inbox.wait_for(["from A", b"\x00\x01\xff"])
        inbox.wait_for(["from B", {"n": 2}])
        inbox.wait_for(["from node", {"nested": [1, None]}])
    # A broadcast to everyone but room "r" reaches only the outsider (delivered after the above).
    b.except_("r").emit("room-msg", "not r")
    outsider_inbox.wait_for(["not r"])
    assert all(["not r"] not in inbox.messages for inbox in inboxes)
    assert [m for m in outsider_inbox.messages if m[0] != "not r"] == []


def test_fetch_sockets_across_languages(cluster) -> None:
    key, a, b, node, clients = cluster
    (ca, cb, node_sid), _ = join_all(a, b, node, clients)
    sid_a, sid_b = ca.get_sid(), cb.get_sid()

    found = {s.id: s for s in a.fetch_sockets("r")}
    assert set(found) == {sid_a, sid_b, node_sid}
    assert found[node_sid].data == {"lang": "node"} and not found[node_sid].local
    assert found[sid_b].data == {"lang": "python", "server": "B"}
    assert set(found[sid_b].rooms) == {sid_b, "r"}
    assert found[sid_b].handshake["query"]["EIO"] == "4"
    assert found[node_sid].handshake["query"]["EIO"] == "4"
    assert found[sid_a].local
    assert {s.id for s in b.to("r").except_(sid_a).fetch_sockets()} == {sid_b, node_sid}

    from_node = {s["id"]: s for s in node.run("fetch", room="r")}
    assert set(from_node) == {sid_a, sid_b, node_sid}
    assert from_node[sid_a]["data"] == {"lang": "python", "server": "A"}
    assert set(from_node[sid_a]["rooms"]) == {sid_a, "r"}

    assert {"r", sid_a, sid_b, node_sid} <= a.all_rooms()
    assert a.server_count() == 3


def test_sockets_join_and_leave_cluster_wide(cluster) -> None:
    key, a, b, node, clients = cluster
    (ca, cb, node_sid), inboxes = join_all(a, b, node, clients)
    a.in_("r").sockets_join("r2")
    wait_for(lambda: {s.id for s in b.fetch_sockets("r2")} == {ca.get_sid(), cb.get_sid(), node_sid},
             "every socket of r in r2")
    node.run("emit", room="r2", event="room-msg", args=["to r2"])
    for inbox in inboxes:
        inbox.wait_for(["to r2"])
    b.in_("r2").except_(node_sid).sockets_leave("r2")
    wait_for(lambda: {s.id for s in a.fetch_sockets("r2")} == {node_sid}, "only the Node socket in r2")


def test_server_side_emit_with_ack_crosses_both_ways(cluster) -> None:
    key, a, b, node, clients = cluster
    answers: AsyncResult = AsyncResult()
    a.server_side_emit("ask", 41, callback=answers.set)
    got = answers.get(timeout=WAIT)
    assert not isinstance(got, Exception), got
    by_server = sorted(got, key=lambda r: r["from"])
    assert by_server == [{"from": "B", "value": 41}, {"from": "node", "value": 41}]

    from_node = node.run("ask", value=7)
    by_server = sorted(from_node, key=lambda r: r["from"])
    assert by_server == [{"from": "A", "value": 7}, {"from": "B", "value": 7}]

    # Without an acknowledgement: the handlers of the other servers run.
    heard: AsyncResult = AsyncResult()
    b.on_server_side_emit("note", lambda *args: heard.set(args))
    a.server_side_emit("note", "hi", 2)
    assert heard.get(timeout=WAIT) == ("hi", 2)


def test_broadcast_with_acks_collects_every_clients_answer_across_the_cluster(cluster) -> None:
    key, a, b, node, clients = cluster
    join_all(a, b, node, clients)
    python, node_answer = {"from": "python", "value": 7}, {"from": "node", "value": 7}
    assert sorted(a.to("r").timeout(5).call("question", 7), key=str) == [node_answer, python, python]

    per_client: list = []
    done = Event()

    def on_answer(answer):
        per_client.append(answer)
        if len(per_client) == 3:
            done.set()

    b.to("r").timeout(5).emit("question", 8, callback=on_answer)
    assert done.wait(WAIT)
    assert sorted(per_client, key=str) == sorted([{"from": "node", "value": 8},
                                                  {"from": "python", "value": 8},
                                                  {"from": "python", "value": 8}], key=str)

    from_node = node.run("call", room="r", event="question", args=[9])
    assert sorted(from_node, key=str) == [{"from": "node", "value": 9}] + [{"from": "python", "value": 9}] * 2


def test_broadcast_with_acks_reports_the_silent_clients_of_other_servers(cluster) -> None:
    key, a, b, node, clients = cluster
    join_all(a, b, node, clients)
    silent = geventsio.Client(reconnection=False)  # no "question" handler: it never answers
    silent.connect(b.url, transports=["websocket"], wait_timeout=5)
    clients.append(silent)
    assert silent.call("join", "r", timeout=5) is True

    with pytest.raises(geventsio.TimeoutError) as caught:
        a.to("r").timeout(1).call("question", 1)
    assert "1 of 4 clients" in str(caught.value), caught.value.responses
    assert len(caught.value.responses) == 3


def test_emitters_of_both_languages_reach_clients_of_both(cluster) -> None:
    key, a, b, node, clients = cluster
    _, inboxes = join_all(a, b, node, clients)
    node.run("emitter", room="r", event="room-msg", args=["node emitter", b"\x07"])
    emitter = geventsio.Emitter(REDIS_URL, key=key)
    emitter.to("r").emit("room-msg", "py emitter", [1, 2])
    emitter.except_("r").emit("room-msg", "nobody in r")
    emitter.of("/").emit("room-msg", "everyone")
    for inbox in inboxes:
        inbox.wait_for(["node emitter", b"\x07"])
        inbox.wait_for(["py emitter", [1, 2]])
        inbox.wait_for(["everyone"])
        assert ["nobody in r"] not in inbox.messages


@pytest.fixture
def py_cluster(serve_app):
    """(key, server A, server B), both subscribed; no Node member (garbage on its channels crashes it)."""
    key = unique_key()
    a = make_member(serve_app, key, "A")
    b = make_member(serve_app, key, "B")
    wait_subscribers(REDIS, key, 2)
    clients: list = []
    yield key, a, b, clients
    for client in clients:
        client.disconnect()


def test_malformed_messages_are_dropped_and_logged(py_cluster, caplog) -> None:
    key, a, b, clients = py_cluster
    ca, inbox_a = py_client(a.url, "r")
    cb, inbox_b = py_client(b.url, "r")
    clients += [ca, cb]
    caplog.set_level(logging.WARNING, logger="geventsio.redis")
    REDIS.publish(f"{key}#/#", b"\xc1 not msgpack")
    REDIS.publish(f"{key}#/#", b"\x93\xa3uid\x01\x02")  # [uid, 1, 2]
    REDIS.publish(f"{key}-request#/#", b"{not json")
    REDIS.publish(f"{key}-request#/#", b'{"type": "x"}')
    REDIS.publish(f"{key}-request#/#", b'{"type": 6, "data": 5}')
    REDIS.publish(f"{key}-response#/#", b"\xc1")
    a.emit("room-msg", "still alive", to="r")
    inbox_a.wait_for(["still alive"])
    inbox_b.wait_for(["still alive"])
    wait_for(lambda: sum("malformed" in r.getMessage() for r in caplog.records) >= 12,
             "two servers logging six malformed messages each")


def test_redis_connection_lost_then_back(py_cluster, caplog) -> None:
    """The pub/sub connections are killed: local clients stay served, the servers resubscribe."""
    key, a, b, clients = py_cluster
    ca, inbox_a = py_client(a.url, "r")
    cb, inbox_b = py_client(b.url, "r")
    clients += [ca, cb]
    caplog.set_level(logging.WARNING, logger="geventsio.redis")
    killed = 0
    for c in REDIS.client_list(_type="pubsub"):
        if c.get("name", "").startswith(key):
            REDIS.client_kill_filter(_id=c["id"])
            killed += 1
    assert killed == 2, "expected one pub/sub connection per server"
    a.emit("room-msg", "local while away", to=ca.get_sid())
    inbox_a.wait_for(["local while away"])
    wait_subscribers(REDIS, key, 2)
    wait_for(lambda: any("subscriptions restored" in r.getMessage() for r in caplog.records),
             "the reconnection logged")
    a.emit("room-msg", "after reconnect", to="r")
    inbox_a.wait_for(["after reconnect"])
    inbox_b.wait_for(["after reconnect"])
