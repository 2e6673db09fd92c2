"""Connection state recovery across a Redis streams cluster, and across a server's restart.

Servers use ``geventsio.RedisStreamsManager`` on the real Redis, each test on
its own stream, pub/sub key and session key prefix. A client's server is shut
down (or its transport cut) with the client held at its reconnection gate
(``GatedClient`` of test_recovery), another server broadcasts meanwhile, then
the client comes back to a new Server object (a restart) or to another
server: same sid, rooms, session data, and every missed packet once, in
order. Also: every server delivers the cluster's broadcasts in one order with
the same offsets, expiry, a trimmed stream, malformed entries, and the
reader's connection being killed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import gevent
import pytest
import redis
from conftest import RunningServer

import geventsio

pytest.register_assert_rewrite("client_support")  # before its import below
from client_support import WAIT, FreezingProxy, Log  # noqa: E402
from redis_support import REDIS_URL, require_redis, unique_key, wait_for, wait_subscribers  # noqa: E402
from test_recovery import App, GatedClient, lose, setup  # noqa: E402

pytest_plugins = ["client_support"]  # its fixture make_client
from client_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)


class Cluster:
    """Servers of one test's stream; each served on a loopback port, restartable on that port."""

    def __init__(self, r: redis.Redis, max_len: int = 10_000):
        self.r = r
        self.key = unique_key()
        self.stream = self.key + "-stream"
        self.prefix = self.key + ":session:"
        self.max_len = max_len
        self.running: list[RunningServer] = []

    def manager(self, name: str, **options: Any) -> Any:
        return geventsio.RedisStreamsManager(REDIS_URL, stream_name=self.stream, key=self.key,
                                             session_key_prefix=self.prefix, max_len=self.max_len,
                                             client_name=f"{self.key}-{name}", **options)

    def app(self, name: str, port: int = 0, manager: dict | None = None, **recovery: Any) -> App:
        """A server with recovery on (test_recovery's handlers) on ``port`` (0: any).

        ``manager``: options of its RedisStreamsManager.
        """

        def serve(sio: geventsio.Server, path: str) -> RunningServer:
            wsgi = geventsio.make_server(geventsio.WSGIApp(sio, socketio_path=path), "127.0.0.1", port)
            wsgi.start()
            running = RunningServer(sio, wsgi, wsgi.server_port, path)
            self.running.append(running)
            return running

        return App(serve, client_manager=self.manager(name, **(manager or {})), **recovery)

    def stop(self, app: App) -> None:
        """The whole server goes away: its port is closed and it shuts down (sessions kept in Redis)."""
        app.running.wsgi_server.stop(timeout=0)
        app.sio.shutdown(timeout=2)
        self.running.remove(app.running)

    def sessions(self) -> list:
        return self.r.keys(self.prefix + "*")

    def close(self) -> None:
        for running in self.running:
            running.wsgi_server.stop(timeout=0)
            running.server.shutdown(timeout=0.5)
        self.r.delete(self.stream, *self.sessions())


@pytest.fixture
def cluster():
    made: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        c = Cluster(require_redis(), **options)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


MISSED = [("news", 1), ("direct", 2), ("news", 3), ("news", 4, {"with": ["json"]}),
          ("direct", b"\x00binary\xff")]


def emit_while_away(there: App, sid: str) -> None:
    """What the tests' lost client misses (MISSED), and what it must not get."""
    there.sio.emit("news", 1, to="a")
    there.sio.emit("direct", 2, to=sid)  # its sid's room: on no server now, but in its session
    there.sio.emit("news", 3)
    there.sio.emit("news", "not for a", to="b")
    there.sio.emit("news", "a minus the sid", to="a", skip_sid=sid)
    there.sio.emit("news", (4, {"with": ["json"]}), to="a")
    there.sio.emit("direct", b"\x00binary\xff", to=sid)


def check_recovered(app: App, gated: GatedClient, sid: str) -> None:
    assert gated.come_back() == (sid, True)
    app.sio.emit("news", 5, to="a")  # after the replay
    received = gated.received.wait_for(lambda items: ("news", 5) in items)
    assert received == [("news", 0), *MISSED, ("news", 5)]
    state = gated.client.call("state", timeout=WAIT)
    assert state == {"rooms": sorted([sid, "a"]), "session": {"nickname": "ann"}, "recovered": True}
    assert gated.client.recovered and gated.client.get_sid() == sid


def test_a_restarted_server_restores_the_session_its_predecessor_lost(cluster, make_client):
    c = cluster()
    a, b = c.app("A"), c.app("B")
    gated = GatedClient(make_client, a.url)
    sid = setup(a, gated)
    port = a.running.port
    gated.gate.clear()
    c.stop(a)  # "server shutting down": recoverable, the session goes to Redis
    assert len(c.sessions()) == 1
    gated.lost.wait_for(1)

    emit_while_away(b, sid)
    restarted = c.app("A2", port=port)  # a new Server object (nothing in memory) on the same port
    check_recovered(restarted, gated, sid)
    assert c.sessions() == []  # restored once: the pid is spent
    assert [s for s, *_ in restarted.connects.items] == []  # skip_middlewares: no connect handler


def test_msgpack_servers_deliver_and_replay_with_their_parser(cluster, make_client):
    c = cluster()
    a, b = c.app("A", serializer="msgpack"), c.app("B", serializer="msgpack")
    gated = GatedClient(make_client, a.url, serializer="msgpack")
    sid = setup(a, gated)
    lose(a, gated, sid)
    emit_while_away(b, sid)
    gated.gate.set()
    assert gated.come_back() == (sid, True)
    assert gated.received.wait_for(1 + len(MISSED)) == [("news", 0), *MISSED]


def test_a_replay_longer_than_one_read_is_read_in_several(cluster, make_client):
    c = cluster()
    a = c.app("A", manager={"read_count": 3})
    gated = GatedClient(make_client, a.url)
    sid = setup(a, gated)
    lose(a, gated, sid)
    for n in range(1, 12):
        a.sio.emit("news", n, to="a" if n % 3 else "b")
    assert gated.come_back() == (sid, True)
    a.sio.emit("news", "after", to="a")
    received = gated.received.wait_for(lambda items: ("news", "after") in items)
    assert received == [("news", n) for n in range(12) if n % 3 or n == 0] + [("news", "after")]


def test_a_client_cut_from_one_server_is_restored_by_another(cluster, make_client):
    c = cluster()
    a, b = c.app("A"), c.app("B")
    proxy = FreezingProxy(a.running.port)
    try:
        gated = GatedClient(make_client, proxy.url)
        sid = setup(a, gated)
        lose(a, gated, sid)  # "transport close" on A
        emit_while_away(a, sid)
        proxy.target = b.running.port  # the load balancer now sends the client to B
        check_recovered(b, gated, sid)
    finally:
        proxy.close()


def test_every_server_delivers_the_clusters_broadcasts_in_one_order_with_the_same_offsets(
        cluster, make_client):
    c = cluster()
    a, b = c.app("A"), c.app("B")
    on_a, on_b = GatedClient(make_client, a.url), GatedClient(make_client, b.url)
    for gated in (on_a, on_b):
        assert gated.client.call("join", ("a", "x"), timeout=WAIT) == "joined"

    def burst(app: App, tag: str) -> None:
        for n in range(40):
            app.sio.emit("news", f"{tag}{n}", to="a")
            if n % 7 == 0:
                gevent.sleep(0)

    gevent.joinall([gevent.spawn(burst, a, "A"), gevent.spawn(burst, b, "B")], raise_error=True)
    got_a = on_a.received.wait_for(80)
    got_b = on_b.received.wait_for(80)
    assert got_a == got_b and len(got_a) == 80
    assert [m for m in got_a if m[1].startswith("A")] == [("news", f"A{n}") for n in range(40)]
    # Delivered in the stream's order; each client's offset (of its last packet) is the last entry id.
    entries = c.r.xrange(c.stream)
    assert [("news", json.loads(fields[b"data"])["packet"]["data"][1]) for _, fields in entries] == got_a
    last = entries[-1][0].decode()
    for gated in (on_a, on_b):
        assert gated.client.delivery.namespaces["/"].offset == last


def kill_reader(c: Cluster, name: str) -> None:
    """Close the stream reader's Redis connection of server ``name`` (it reconnects after its delay)."""
    reader = [x for x in c.r.client_list() if x.get("name") == f"{c.key}-{name}-stream"]
    assert len(reader) == 1
    c.r.client_kill_filter(_id=reader[0]["id"])


def test_a_client_ahead_of_its_new_servers_reader_gets_nothing_twice(cluster, make_client, caplog):
    """The client comes to B with an offset B's reader has not reached: what B's reader then
    brings up to that offset the client has already, what follows it is new."""
    c = cluster()
    a, b = c.app("A"), c.app("B", manager={"reconnect_delay": 3})
    caplog.set_level(logging.WARNING, logger="geventsio.redis")
    proxy = FreezingProxy(a.running.port)
    try:
        gated = GatedClient(make_client, proxy.url)
        sid = setup(a, gated)
        kill_reader(c, "B")
        wait_for(lambda: any("lost the Redis stream" in r.getMessage() for r in caplog.records),
                 "B's reader losing its connection")
        a.sio.emit("news", 1, to="a")  # received here; B's reader is behind it
        gated.received.wait_for(2)
        lose(a, gated, sid)
        a.sio.emit("news", 2, to="a")  # missed
        proxy.target = b.running.port
        assert gated.come_back() == (sid, True)
        assert not any("reading the stream" in r.getMessage() for r in caplog.records), \
            "B's reader came back before the client: nothing was ahead of it"
        a.sio.emit("news", 3, to="a")
        received = gated.received.wait_for(lambda items: ("news", 3) in items)
        assert received == [("news", 0), ("news", 1), ("news", 2), ("news", 3)]
    finally:
        proxy.close()


def test_room_operations_travel_in_the_stream_in_order_with_broadcasts(cluster, make_client):
    c = cluster()
    a, b = c.app("A"), c.app("B")
    wait_subscribers(c.r, c.key, 2)  # fetch_sockets asks over pub/sub
    on_b = GatedClient(make_client, b.url)
    sid = on_b.client.get_sid()
    a.sio.to(sid).sockets_join("vip")
    a.sio.emit("news", "vip only", to="vip")  # read by B after the join: no wait needed
    assert on_b.received.wait_for(1) == [("news", "vip only")]
    assert [s.id for s in a.sio.fetch_sockets(room="vip")] == [sid]
    a.sio.to("vip").sockets_leave("vip")
    a.sio.emit("news", "vip again", to="vip")
    a.sio.emit("news", "all")
    assert on_b.received.wait_for(2) == [("news", "vip only"), ("news", "all")]
    a.sio.to(sid).disconnect_sockets()
    on_b.lost.wait_for(1)
    assert c.sessions() == []  # a deliberate disconnect ("server disconnect") is not kept


def test_a_streams_emitter_reaches_every_server_and_is_replayed(cluster, make_client):
    c = cluster()
    a, b = c.app("A"), c.app("B")
    emitter = geventsio.StreamsEmitter(REDIS_URL, stream_name=c.stream, key=c.key)
    on_b = GatedClient(make_client, b.url)
    emitter.to(on_b.client.get_sid()).sockets_join("a")
    gated = GatedClient(make_client, a.url)
    sid = setup(a, gated)
    assert on_b.received.wait_for(1) == [("news", 0)]  # joined "a" by the emitter, in stream order
    lose(a, gated, sid)
    emitter.to("a").emit("news", 1)
    emitter.to("a").except_(on_b.client.get_sid()).emit("news", "not for b")
    emitter.to("b").emit("news", "not for a")
    emitter.emit("news", b"\x01")
    emitter.of("/other").emit("news", "elsewhere")
    assert on_b.received.wait_for(3) == [("news", 0), ("news", 1), ("news", b"\x01")]
    assert gated.come_back() == (sid, True)
    assert gated.received.wait_for(4) == [("news", 0), ("news", 1), ("news", "not for b"), ("news", b"\x01")]
    with pytest.raises(ValueError):
        emitter.emit("connect")


def test_after_the_window_the_session_is_gone_from_redis(cluster, make_client):
    c = cluster()
    a = c.app("A", max_disconnection_duration=1.5)
    gated = GatedClient(make_client, a.url)
    sid = setup(a, gated)
    lose(a, gated, sid)
    [key] = c.sessions()
    assert 0 < c.r.pttl(key) <= 2000  # whole seconds for Redis: the window rounded up
    a.sio.emit("news", 1, to="a")
    wait_for(lambda: c.sessions() == [], "the session's expiry in Redis")
    new_sid, recovered = gated.come_back()
    assert new_sid != sid and not recovered
    assert gated.client.call("state", timeout=WAIT) == {"rooms": [new_sid], "session": {}, "recovered": False}
    assert gated.received.items == [("news", 0)]


def test_a_client_whose_offset_left_the_stream_gets_a_new_session(cluster, make_client):
    c = cluster(max_len=1)  # trimmed with "~": whole nodes of 100 entries leave
    a = c.app("A")
    gated = GatedClient(make_client, a.url)
    sid = setup(a, gated)
    offset = gated.client.delivery.namespaces["/"].offset
    lose(a, gated, sid)
    for n in range(250):
        a.sio.emit("news", n, to="b")
    assert c.r.xrange(c.stream, offset, offset) == []
    new_sid, recovered = gated.come_back()
    assert new_sid != sid and not recovered
    assert c.sessions() == []


def test_a_bad_offset_or_pid_is_a_new_session(cluster, make_client):
    c = cluster()
    a = c.app("A")
    gated = GatedClient(make_client, a.url)
    sid = setup(a, gated)
    pid = gated.client.delivery.namespaces["/"].pid
    lose(a, gated, sid)
    for auth in ({"pid": "unknown", "offset": "0-0"}, {"pid": pid, "offset": "not-an-id"}):
        other = GatedClient(make_client, a.url, auth=auth)
        assert other.connects.items[0][0] != sid and not other.connects.items[0][1]
    assert gated.come_back() == (sid, True)  # neither attempt spent the session


def test_malformed_entries_are_skipped_and_logged(cluster, make_client, caplog):
    c = cluster()
    a = c.app("A")
    gated = GatedClient(make_client, a.url)
    setup(a, gated)
    caplog.set_level(logging.WARNING, logger="geventsio.redis")
    bad = [{"junk": "1"}, {"uid": "x", "nsp": "/", "type": "3", "data": "{not json"},
           {"uid": "x", "nsp": "/", "type": "3", "data": "!!"},
           {"uid": "x", "nsp": "/", "type": "3", "data": '{"packet": {"data": 5}}'},
           {"uid": "x", "nsp": "/", "type": "4", "data": '{"opts": {"rooms": 1}, "rooms": ["z"]}'},
           {"uid": b"\xff", "nsp": "/", "type": "3"}]
    for fields in bad:
        c.r.xadd(c.stream, fields)
    a.sio.emit("news", "still alive", to="a")
    assert gated.received.wait_for(2) == [("news", 0), ("news", "still alive")]
    wait_for(lambda: sum("malformed entry" in r.getMessage() for r in caplog.records) == len(bad),
             "one warning per malformed entry")


def test_the_reader_comes_back_and_delivers_what_was_appended_meanwhile(cluster, make_client, caplog):
    c = cluster()
    a, b = c.app("A"), c.app("B")
    gated = GatedClient(make_client, a.url)
    setup(a, gated)
    caplog.set_level(logging.WARNING, logger="geventsio.redis")
    kill_reader(c, "A")
    b.sio.emit("news", "while A's reader was away", to="a")
    wait_for(lambda: any("reading the stream" in r.getMessage() for r in caplog.records),
             "the reader's reconnection")
    b.sio.emit("news", "after", to="a")
    assert gated.received.wait_for(3) == [("news", 0), ("news", "while A's reader was away"),
                                          ("news", "after")]


def test_redis_unreachable_local_clients_are_still_served(make_client):
    require_redis()
    proxy = FreezingProxy(6379)  # Redis behind a proxy that the test closes
    app = None
    try:
        manager = geventsio.RedisStreamsManager(f"redis://127.0.0.1:{proxy.port}/0",
                                                stream_name=unique_key(), socket_timeout=1,
                                                socket_connect_timeout=1)
        sio = geventsio.Server(client_manager=manager, connection_state_recovery=True)
        got = Log()
        wsgi = geventsio.make_server(geventsio.WSGIApp(sio), "127.0.0.1", 0)
        wsgi.start()
        app = (sio, wsgi)
        client = make_client()
        client.on("news", got)
        client.connect(f"http://127.0.0.1:{wsgi.server_port}", transports=["websocket"], wait_timeout=WAIT)
        sio.emit("news", "via the stream")
        got.wait_for(1)
        proxy.close()  # Redis is gone for this server
        sio.emit("news", "without redis")
        assert got.wait_for(2) == ["via the stream", "without redis"]
    finally:
        if app is not None:
            app[1].stop(timeout=0)
            app[0].shutdown(timeout=0.5)
        proxy.close()


def test_a_reader_held_back_past_max_len_counts_and_logs_the_gap(make_client, caplog):
    """Entries trimmed before the reader read them are lost to its clients: said once, and counted."""
    r = require_redis()
    stream = unique_key()
    proxy = FreezingProxy(6379)  # between this server and Redis only: the emitter appends directly
    app = None
    try:
        manager = geventsio.RedisStreamsManager(f"redis://127.0.0.1:{proxy.port}/0", stream_name=stream,
                                                key=unique_key(), max_len=10, read_count=5)
        sio = geventsio.Server(client_manager=manager)
        wsgi = geventsio.make_server(geventsio.WSGIApp(sio), "127.0.0.1", 0)
        wsgi.start()
        app = (sio, wsgi)
        got = Log()
        client = make_client()
        client.on("news", got)
        client.connect(f"http://127.0.0.1:{wsgi.server_port}", transports=["websocket"], wait_timeout=WAIT)
        emitter = geventsio.StreamsEmitter(r, stream_name=stream, max_len=10)
        emitter.emit("news", "before")
        got.wait_for(1)
        caplog.set_level(logging.WARNING, logger="geventsio.redis")

        proxy.freeze()  # the reader's XREAD waits (its answer, at most, is held in the proxy)
        sent = 300
        for i in range(sent):
            emitter.emit("news", i)  # each append trims the stream (~10 entries kept)
        assert r.xlen(stream) < sent
        proxy.thaw()
        emitter.emit("news", "after")
        received = got.wait_for(lambda items: "after" in items)
        numbers = [n for n in received if isinstance(n, int)]
        assert numbers == sorted(numbers) and numbers[-1] == sent - 1, numbers
        missed = sent - len(numbers)
        assert missed > 0
        stats = sio.stats()
        assert (stats["stream_gaps"], stats["stream_entries_missed"]) == (1, missed), stats
        gaps = [rec.getMessage() for rec in caplog.records if "fell more than max_len" in rec.getMessage()]
        assert len(gaps) == 1 and f": {missed} entries after" in gaps[0], gaps
        assert "geventsio_redis_stream_entries_missed_total %d" % missed in \
            geventsio.metrics.prometheus_text(stats)
    finally:
        if app is not None:
            app[1].stop(timeout=0)
            app[0].shutdown(timeout=0.5)
        proxy.close()
        r.delete(stream)
