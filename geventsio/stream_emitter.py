"""Emit to a Redis streams cluster from a process that is not a server (a Celery task, a cron job).

``geventsio.StreamsEmitter("redis://...").to("room").emit("event", *args)``
appends the broadcast to the cluster's stream, as Node's
``@socket.io/redis-streams-emitter`` does: every server (geventsio with
``RedisStreamsManager``, or Node with ``@socket.io/redis-streams-adapter``)
delivers it in stream order, and it is replayed to clients that come back.
Room operations are appended too; ``server_side_emit`` is published as
``Emitter`` publishes it (geventsio's servers hear it on their pub/sub channels).
Needs no gevent: it only writes.
"""

from __future__ import annotations

from typing import Any

from . import stream_protocol as sp
from .emitter import RESERVED_EVENTS, Emitter
from .redis_protocol import RequestType
from .stream_protocol import MessageType

_OPERATIONS = {RequestType.REMOTE_JOIN: MessageType.SOCKETS_JOIN,
               RequestType.REMOTE_LEAVE: MessageType.SOCKETS_LEAVE,
               RequestType.REMOTE_DISCONNECT: MessageType.DISCONNECT_SOCKETS}


class StreamsEmitter(Emitter):
    """Broadcasts through a Redis stream to the clients of a streams cluster; modifiers return new emitters.

    ``stream_name`` and ``max_len`` are the servers' (``RedisStreamsManager``);
    ``key`` is their pub/sub prefix, used by ``server_side_emit`` only.
    """

    def __init__(self, redis_url: Any = "redis://127.0.0.1:6379/0", stream_name: str = "socket.io",
                 namespace: str = "/", max_len: int = 10_000, key: str = "socket.io", **modifiers: Any):
        super().__init__(redis_url, key, namespace, **modifiers)
        self.stream_name = stream_name
        self.max_len = max_len

    def _with(self, **changes: Any) -> "StreamsEmitter":
        fields: dict[str, Any] = {"namespace": self.namespace, "_rooms": self._rooms,
                                  "_except": self._except, "_flags": self._flags}
        fields.update(changes)
        return StreamsEmitter(self.redis, self.stream_name, max_len=self.max_len, key=self.key, **fields)

    def of(self, namespace: str) -> "StreamsEmitter":
        """An emitter for another namespace (``"/chat"``); rooms and flags start empty."""
        if not namespace.startswith("/"):
            namespace = "/" + namespace
        return StreamsEmitter(self.redis, self.stream_name, namespace, self.max_len, self.key)

    def _append(self, kind: MessageType, data: dict) -> None:
        fields = sp.encode_entry(sp.EMITTER_UID, self.namespace, kind, data)
        self.redis.xadd(self.stream_name, fields, maxlen=self.max_len, approximate=True)

    def emit(self, event: str, *args: Any) -> bool:
        """Append the event for the targets to the stream; returns True (like Node's emitter)."""
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is a reserved event name")
        data = sp.broadcast_data(self.namespace, [event, *args], self._rooms, self._except, False)
        data["opts"]["flags"] = dict(self._flags)
        self._append(MessageType.BROADCAST, data)
        return True

    def _request(self, kind: RequestType, **fields: Any) -> None:
        opts = {"rooms": list(self._rooms), "except": list(self._except)}
        self._append(_OPERATIONS[kind], {"opts": opts, **fields})


__all__ = ["StreamsEmitter"]
