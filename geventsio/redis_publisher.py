"""Publishing to Redis without making the emitter wait: a queue, one greenlet, pipelines.

A broadcast used to cost its handler one ``PUBLISH`` round trip through redis-py
(a quarter of the CPU of a process broadcasting to a cluster, in the benchmark).
Here ``publish`` appends to a bounded queue and returns; one greenlet sends
whatever is queued in a single pipeline (one write, one read of the replies),
in order. When Redis fails, the batch is logged and dropped, as a failed
``PUBLISH`` always was.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import gevent
import redis
from gevent.event import Event

logger = logging.getLogger("geventsio.redis")


class Publisher:
    """Sends ``(channel, message)`` pairs to Redis from its own greenlet, in order, batched.

    At most ``max_queued`` messages wait; past that, new ones are dropped (and
    said so once until the queue has drained). ``batch`` bounds one pipeline.
    """

    def __init__(self, client: redis.Redis, max_queued: int = 10_000, batch: int = 256):
        self.client = client
        self.max_queued = max_queued
        self.batch = batch
        self._queue: collections.deque = collections.deque()
        self._ready = Event()
        self._idle = Event()
        self._idle.set()
        self._greenlet: gevent.Greenlet | None = None
        self._overflowing = False

    def publish(self, channel: str, message: bytes) -> None:
        """Queue one message; never blocks."""
        if len(self._queue) >= self.max_queued:
            if not self._overflowing:
                self._overflowing = True
                logger.warning("%d messages wait for Redis; dropping cluster messages until they are sent",
                               len(self._queue))
            return
        self._queue.append((channel, message))
        self._idle.clear()
        self._ready.set()
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until everything queued has been sent or dropped."""
        return self._idle.wait(timeout)

    def after_fork(self) -> None:
        """In a forked child (called by the manager): the queued messages are the parent's to send.

        The parent's greenlet, copied into the child, is killed before it can run;
        the next ``publish`` starts the child's own. Never blocks.
        """
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=False)
        self._queue.clear()
        self._ready = Event()  # the killed copy waits on the old one
        self._idle = Event()
        self._idle.set()
        self._overflowing = False

    def close(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self._queue.clear()
        self._idle.set()

    def _run(self) -> None:
        queue = self._queue
        while True:
            ready = self._ready
            ready.wait()
            ready.clear()
            while queue:
                batch = [queue.popleft() for _ in range(min(self.batch, len(queue)))]
                self._send(batch)
            self._overflowing = False
            self._idle.set()

    def _send(self, batch: list) -> None:
        try:
            if len(batch) == 1:
                self.client.publish(*batch[0])
                return
            pipe: Any = self.client.pipeline(transaction=False)
            for channel, message in batch:
                pipe.publish(channel, message)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            logger.warning("Redis publish failed (%s); %d message(s) dropped (first on %s)",
                           exc, len(batch), batch[0][0])
