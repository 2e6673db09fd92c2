"""A cluster of Socket.IO servers over Redis, on the wire of Node's ``@socket.io/redis-adapter`` 8.x.

``Server(client_manager=RedisManager("redis://..."))`` joins the cluster that
Node servers using ``createAdapter(pubClient, subClient)`` (classic, not
sharded) form on the same Redis and key: broadcasts, room operations,
``fetch_sockets``, ``all_rooms`` and server-side emits reach every server,
whatever its language. The format is in ``geventsio.redis_protocol``.

One manager per server: one greenlet publishes (queued, batched: see
``redis_publisher``), one greenlet reads one pub/sub connection (RESP2) that
carries the subscriptions of every namespace. Redis-py's sockets must be
cooperative (``gevent.monkey.patch_all()`` before importing redis).

When Redis goes away, local clients keep being served, cluster messages are
dropped (said once in the log), cluster requests fail at once with a
``TimeoutError`` that says Redis is unavailable (those waiting for answers
when the connection broke fail the same way), and the reader reconnects with
back-off, resubscribes and says so in the log.

A process forked after the manager was built (``gunicorn --preload``, whose
master imports the app before forking its workers; ``os.fork()``;
``multiprocessing`` with fork) gets a manager of its own: a hook run by
``os.fork`` in the child gives each adapter a new uid (the parent's would make
each process drop the other's broadcasts as its own), closes the child's copy
of the parent's pub/sub socket, drops what the parent's publisher had queued,
and starts the child's own reader and publisher; redis-py's pools open new
connections in the child by themselves. A hook rather than an ``os.getpid()``
test on each emit: that is a system call (~0.3 µs) per emit, and the reader
must start in a child that never emits.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import TYPE_CHECKING, Any, Iterable

import gevent
import redis
from gevent.event import Event
from gevent.lock import RLock
from redis.backoff import NoBackoff
from redis.retry import Retry

from .exceptions import TimeoutError
from .redis_adapter import RedisAdapter
from .redis_protocol import MalformedMessage
from .redis_publisher import Publisher

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server

logger = logging.getLogger("geventsio.redis")


def redis_client(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for ``url`` speaking RESP2 (what pub/sub messages are parsed as here)."""
    try:
        return redis.Redis.from_url(url, protocol=2, **options)
    except TypeError:  # redis-py 4.x: RESP2 only, no ``protocol`` option
        return redis.Redis.from_url(url, **options)


class RedisManager:
    """The Redis client manager: pass it as ``geventsio.Server(client_manager=RedisManager(url))``.

    ``key`` is the channel prefix shared with the Node servers (their
    adapter's ``key`` option, ``"socket.io"`` by default).
    ``requests_timeout`` (seconds) bounds cluster requests (``fetch_sockets``,
    ``all_rooms``, server-side emits with acknowledgements). After a lost
    connection the reader tries again after ``reconnect_delay``, doubling up to
    ``reconnect_delay_max``. ``subscribed`` (an Event) is set while the
    subscriptions are in place; ``lost`` says why Redis is unavailable, while it
    is. Other keyword arguments go to ``redis.Redis.from_url``.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", key: str = "socket.io",
                 requests_timeout: float = 5.0, reconnect_delay: float = 0.1,
                 reconnect_delay_max: float = 5.0, **redis_options: Any):
        self.url = url
        self.key = key
        self.requests_timeout = requests_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        # One quick retry (a pooled connection may be stale after a Redis restart), never
        # redis-py's default of seconds of back-off while an emitting handler waits.
        self.pub = redis_client(url, **{"retry": Retry(NoBackoff(), 1), **redis_options})
        self.publisher = Publisher(self.pub)
        # The reader handles reconnection itself, so redis-py must not retry behind its back.
        self._sub_client = redis_client(url, retry=Retry(NoBackoff(), 0), **redis_options)
        self._patterns: dict[str, RedisAdapter] = {}
        self._channels: dict[str, RedisAdapter] = {}
        self._lock = RLock()
        self._pubsub: Any = None
        self._reader: gevent.Greenlet | None = None
        self._closed = False
        self.subscribed = Event()  # set while the subscriptions are in place
        self.lost: str | None = None  # why Redis is unavailable, while the reader knows it is
        _live_managers.add(self)

    adapter_class = RedisAdapter

    def create_adapter(self, namespace: str, server: "Server") -> "RedisAdapter":
        """The adapter of one namespace (called by the server when the namespace is first used)."""
        adapter = self.adapter_class(namespace, server, self)
        with self._lock:
            self._patterns[adapter.channel + "*"] = adapter
            for channel in (adapter.request_channel, adapter.response_channel,
                            adapter.specific_response_channel):
                self._channels[channel] = adapter
            if self._pubsub is not None:
                self._subscribe(self._pubsub, [adapter])
        if self._reader is None:
            self._reader = gevent.spawn(self._read_forever)
        return adapter

    def publish(self, channel: str, message: bytes) -> None:
        """Publish one message without waiting (see ``redis_publisher``); dropped while Redis is away."""
        if self.lost is not None:
            logger.debug("Redis unavailable; dropped a message on %s", channel)
            return
        self.publisher.publish(channel, message)

    def check_available(self, what: str) -> None:
        """Raise a ``TimeoutError`` saying why, if a cluster request cannot be answered now."""
        if self.lost is not None:
            raise TimeoutError(f"{what} failed at once: Redis is unavailable ({self.lost}); "
                               f"reconnecting in the background")

    def close(self) -> None:
        """Stop reading and drop the subscriptions (the server's shutdown calls this)."""
        self._closed = True
        self.publisher.flush(1.0)  # what the last handlers emitted still reaches the cluster
        self.publisher.close()
        if self._reader is not None:
            self._reader.kill(block=True, timeout=2)
        self._drop_pubsub()
        self.pub.close()
        self._sub_client.close()

    def _after_fork(self) -> None:
        """In a child process just forked: stop using the parent's uids, sockets and greenlets.

        Runs inside ``os.fork()`` (in the child), maybe before gevent's hub is
        reinitialized: nothing here may block or switch greenlets. The
        parent's greenlets are copied into the child; killed here, they are
        gone at the child's first loop turn, before it polls any socket. Only
        if the parent's socket was already found readable in the very loop turn
        that forked could a copy read from it first (a fork from a running app).
        """
        self._lock = RLock()  # the parent's may be held by one of its greenlets
        adapters = set(self._patterns.values())
        self._channels = {}
        for adapter in adapters:
            adapter.after_fork()
            for channel in (adapter.request_channel, adapter.response_channel,
                            adapter.specific_response_channel):
                self._channels[channel] = adapter
        # The copy of the parent's reader holds the parent's pub/sub connection: killed, it closes the
        # child's descriptor (redis-py shuts a socket down only in the process that opened it).
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.kill(block=False)
        self._pubsub = None
        self.subscribed.clear()
        self.lost = None
        self.publisher.after_fork()
        if not self._closed and adapters:
            self._reader = gevent.spawn(self._read_forever)

    # -- the reader ---------------------------------------------------------

    def _subscribe(self, pubsub: Any, adapters: Iterable["RedisAdapter"]) -> None:
        for adapter in adapters:
            pubsub.psubscribe(adapter.channel + "*")
            pubsub.subscribe(adapter.request_channel, adapter.response_channel,
                             adapter.specific_response_channel)

    def _drop_pubsub(self) -> None:
        with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        self.subscribed.clear()
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # pragma: no cover - closing a broken connection
                pass

    def _read_forever(self) -> None:
        me = gevent.getcurrent()
        delay = self.reconnect_delay
        lost = False
        while not self._closed:
            try:
                pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)
                with self._lock:
                    self._subscribe(pubsub, set(self._patterns.values()))
                    self._pubsub = pubsub
                self.subscribed.set()
                self.lost = None
                if lost:
                    logger.warning("reconnected to Redis at %s; subscriptions restored", self.url)
                    lost = False
                delay = self.reconnect_delay
                while not self._closed:
                    message = pubsub.get_message(timeout=5.0)
                    if message is not None:
                        self._dispatch(message)
            except (redis.RedisError, OSError) as exc:
                if self._reader is not me:
                    return  # a forked child's copy of its parent's reader, whose socket was closed
                self._drop_pubsub()
                if self._closed:
                    return
                self.lost = str(exc) or type(exc).__name__
                if not lost:
                    logger.warning("lost the Redis connection at %s (%s): local clients are still served, "
                                   "cluster messages are dropped; reconnecting with back-off",
                                   self.url, exc)
                    self._fail_requests(f"the Redis connection was lost ({exc})")
                else:
                    logger.info("Redis at %s still unavailable (%s); next attempt in %.1fs",
                                self.url, exc, delay)
                lost = True
                gevent.sleep(delay)
                delay = min(delay * 2, self.reconnect_delay_max)

    def _fail_requests(self, reason: str) -> None:
        """Requests waiting for answers will not get them over a broken connection."""
        with self._lock:
            adapters = set(self._patterns.values())
        for adapter in adapters:
            for pending in list(adapter.requests.values()):
                pending.fail(reason)

    def _dispatch(self, message: dict) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel"))
        data = message.get("data")
        if not isinstance(data, (bytes, str)):
            return
        raw = data.encode() if isinstance(data, str) else data
        try:
            if kind == "pmessage":
                adapter = self._patterns.get(_text(message.get("pattern")))
                if adapter is not None:
                    adapter.on_broadcast(channel, raw)
            elif kind == "message":
                adapter = self._channels.get(channel)
                if adapter is None:
                    return
                if channel == adapter.request_channel:
                    adapter.on_request(raw)
                else:
                    adapter.on_response(raw)
        except MalformedMessage as exc:
            logger.warning("dropped a malformed message on %s: %s", channel, exc)
        except Exception:
            logger.exception("dropped a message on %s that could not be handled", channel)


_live_managers: "weakref.WeakSet[RedisManager]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for manager in list(_live_managers):
        try:
            manager._after_fork()
        except Exception:  # pragma: no cover - never let a fork fail over a manager
            logger.exception("could not prepare a Redis manager for the forked process %d", os.getpid())


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
