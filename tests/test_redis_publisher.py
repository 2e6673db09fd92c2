"""geventsio.redis_publisher: publishing never waits, keeps order, is bounded, survives Redis failing.

Against the real Redis of the cluster tests (tests/redis_support.py).
"""

from __future__ import annotations

import logging

import gevent
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_support import REDIS_URL, WAIT, require_redis, unique_key

from geventsio.redis_manager import redis_client
from geventsio.redis_publisher import Publisher

REDIS = require_redis()


def subscriber(channel: str):
    pubsub = REDIS.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=WAIT) is None  # the subscribe confirmation, skipped
    return pubsub


def received(pubsub, count: int) -> list[bytes]:
    out = []
    with gevent.Timeout(WAIT, AssertionError(f"got {len(out)} of {count} messages")):
        while len(out) < count:
            message = pubsub.get_message(timeout=WAIT)
            if message is not None:
                out.append(message["data"])
    return out


def test_publishes_are_queued_at_once_and_arrive_in_order() -> None:
    channel = unique_key()
    pubsub = subscriber(channel)
    publisher = Publisher(redis_client(REDIS_URL), batch=64)
    try:
        for i in range(1000):
            publisher.publish(channel, b"%d" % i)
        # Nothing was sent yet: publish() returned without any I/O (no greenlet switch happened).
        assert len(publisher._queue) == 1000
        assert publisher.flush(WAIT)
        assert received(pubsub, 1000) == [b"%d" % i for i in range(1000)]
    finally:
        publisher.close()
        pubsub.close()


def test_the_queue_is_bounded(caplog) -> None:
    channel = unique_key()
    pubsub = subscriber(channel)
    publisher = Publisher(redis_client(REDIS_URL), max_queued=10)
    try:
        for i in range(25):
            publisher.publish(channel, b"%d" % i)
        assert publisher.flush(WAIT)
        assert received(pubsub, 10) == [b"%d" % i for i in range(10)]
        overflow = [r for r in caplog.records if "dropping cluster messages" in r.getMessage()]
        assert len(overflow) == 1  # said once, not per message
        publisher.publish(channel, b"again")  # drained: accepted again
        assert publisher.flush(WAIT)
        assert received(pubsub, 1) == [b"again"]
    finally:
        publisher.close()
        pubsub.close()


def test_a_failing_redis_drops_the_batch_and_says_so(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="geventsio.redis")
    with gevent.socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0", retry=Retry(NoBackoff(), 0))
    publisher = Publisher(client)
    try:
        for i in range(5):
            publisher.publish("nowhere", b"%d" % i)
        assert publisher.flush(WAIT)
        lines = [r.getMessage() for r in caplog.records if "Redis publish failed" in r.getMessage()]
        assert len(lines) == 1 and "5 message(s) dropped" in lines[0], lines
    finally:
        publisher.close()
