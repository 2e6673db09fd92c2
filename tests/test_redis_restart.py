"""Redis going away and coming back under two geventsio servers (RedisManager).

A private ``redis-server`` on a free port (never the shared one), killed and
started again on the same port mid-test. Each server has one geventsio client
in room "r". While Redis is away the servers keep serving their own clients
(events, local broadcasts) and say so in the log; a cluster request waiting
for answers when the connection breaks fails with a clear ``TimeoutError``,
as do requests made during the outage. Once Redis is back the servers
resubscribe (and log it), and broadcasts cross between them again.
"""

from __future__ import annotations

import logging
import time

import gevent
import pytest
from private_redis import private_redis  # noqa: F401 - a fixture
from redis_support import WAIT, py_client, unique_key, wait_for, wait_subscribers

import geventsio
from geventsio.redis_protocol import request_channel

REQUESTS_TIMEOUT = 4


def make_member(serve_app, url: str, key: str) -> geventsio.Server:
    manager = geventsio.RedisManager(url, key=key, requests_timeout=REQUESTS_TIMEOUT,
                                     reconnect_delay=0.05, reconnect_delay_max=0.2)
    sio = geventsio.Server(client_manager=manager)

    @sio.on("join")
    def join(sid, room):
        sio.enter_room(sid, room)
        return True

    @sio.on("echo")
    def echo(sid, data):
        return data

    @sio.on("bcast")
    def bcast(sid, room, data):
        sio.emit("room-msg", data, to=room)
        return True

    sio.url = serve_app(sio, path="socket.io").url  # type: ignore[attr-defined]
    return sio


def test_redis_restart_loses_no_local_client(serve_app, private_redis, caplog) -> None:
    caplog.set_level(logging.INFO, logger="geventsio.redis")
    key = unique_key()
    a = make_member(serve_app, private_redis.url, key)
    b = make_member(serve_app, private_redis.url, key)
    observer = private_redis.client()
    wait_subscribers(observer, key, 2)
    ca, inbox_a = py_client(a.url, "r")
    cb, inbox_b = py_client(b.url, "r")
    try:
        assert ca.call("bcast", ("r", "before"), timeout=WAIT) is True
        inbox_b.wait_for(["before"])

        # A request in flight: a silent third member (a bare subscriber) never answers,
        # so A's fetch_sockets is still waiting when Redis goes away.
        mute = private_redis.client().pubsub()
        mute.subscribe(request_channel(key, "/"))
        wait_subscribers(observer, key, 3)
        in_flight = gevent.spawn(a.fetch_sockets)
        wait_for(lambda: a.adapters["/"].requests, "A's fetchSockets request to be pending")
        started = time.monotonic()
        private_redis.kill()

        with pytest.raises(geventsio.TimeoutError, match="Redis connection was lost") as failed:
            in_flight.get(timeout=WAIT)
        assert time.monotonic() - started < REQUESTS_TIMEOUT  # told at once, not at the time limit
        assert "fetchSockets" in str(failed.value)
        wait_for(lambda: b.client_manager.lost is not None, "B to notice Redis is gone")
        lost_lines = [r for r in caplog.records if "lost the Redis connection" in r.getMessage()]
        assert len(lost_lines) == 2, [r.getMessage() for r in caplog.records]

        # Local clients are still served: events, acks, and broadcasts within the server.
        assert ca.connected and cb.connected
        assert ca.call("echo", {"n": 1}, timeout=WAIT) == {"n": 1}
        assert cb.call("bcast", ("r", "during"), timeout=WAIT) is True
        inbox_b.wait_for(["during"])
        assert ["during"] not in inbox_a.messages
        # Cluster requests made now fail at once, and say why.
        with pytest.raises(geventsio.TimeoutError, match="Redis is unavailable"):
            b.fetch_sockets()
        with pytest.raises(geventsio.TimeoutError, match="Redis is unavailable"):
            a.all_rooms()

        private_redis.start()
        assert a.client_manager.subscribed.wait(WAIT) and b.client_manager.subscribed.wait(WAIT)
        restored = [r for r in caplog.records if "subscriptions restored" in r.getMessage()]
        assert len(restored) == 2

        assert cb.call("bcast", ("r", "after"), timeout=WAIT) is True
        inbox_a.wait_for(["after"])
        assert ca.call("bcast", ("r", "after from A"), timeout=WAIT) is True
        inbox_b.wait_for(["after from A"])
        assert {s.id for s in a.fetch_sockets("r")} == {ca.get_sid(), cb.get_sid()}
        assert ca.connected and cb.connected
    finally:
        ca.disconnect()
        cb.disconnect()
        observer.close()
