"""Emit to a Socket.IO cluster from a process that is not a server (a Celery task, a cron job).

``geventsio.Emitter("redis://...").to("room").emit("event", *args)`` publishes
what ``@socket.io/redis-emitter`` 5.x publishes, so every server of the
cluster (geventsio or Node with ``@socket.io/redis-adapter``) delivers it to
its clients. Needs no gevent: it only publishes.
"""

from __future__ import annotations

from typing import Any

from . import redis_protocol as proto
from .redis_protocol import RequestType

# Event names a client reserves for itself (Node's emitter refuses them too).
RESERVED_EVENTS = frozenset(["connect", "connect_error", "disconnect", "disconnecting",
                             "newListener", "removeListener"])


def _rooms(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class Emitter:
    """Broadcasts through Redis to the clients of a cluster; every modifier returns a new emitter.

    ``redis_url`` is a URL or an existing ``redis.Redis`` client; ``key`` is
    the cluster's channel prefix (the servers' adapter ``key``).
    """

    def __init__(self, redis_url: Any = "redis://127.0.0.1:6379/0", key: str = "socket.io",
                 namespace: str = "/", *, _rooms: tuple[str, ...] = (), _except: tuple[str, ...] = (),
                 _flags: dict | None = None):
        if isinstance(redis_url, str):
            from .redis_manager import redis_client
            self.redis = redis_client(redis_url)
        else:
            self.redis = redis_url
        self.key = key
        self.namespace = namespace
        self._rooms = _rooms
        self._except = _except
        self._flags = dict(_flags or {})

    def _with(self, **changes: Any) -> "Emitter":
        fields: dict[str, Any] = {"namespace": self.namespace, "_rooms": self._rooms,
                                  "_except": self._except, "_flags": self._flags}
        fields.update(changes)
        return Emitter(self.redis, self.key, **fields)

    def of(self, namespace: str) -> "Emitter":
        """An emitter for another namespace (``"/chat"``); rooms and flags start empty."""
        if not namespace.startswith("/"):
            namespace = "/" + namespace
        return Emitter(self.redis, self.key, namespace)

    def to(self, room: Any) -> "Emitter":
        """Add target rooms (a name or a list); with none, every client of the namespace is targeted."""
        return self._with(_rooms=self._rooms + tuple(r for r in _rooms(room) if r not in self._rooms))

    in_ = to

    def except_(self, room: Any) -> "Emitter":
        """Exclude the clients in these rooms."""
        return self._with(_except=self._except + tuple(r for r in _rooms(room) if r not in self._except))

    def volatile(self) -> "Emitter":
        return self._with(_flags={**self._flags, "volatile": True})

    def compress(self, compress: bool = True) -> "Emitter":
        return self._with(_flags={**self._flags, "compress": compress})

    def emit(self, event: str, *args: Any) -> bool:
        """Publish the event to the targets; returns True (like Node's emitter)."""
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is a reserved event name")
        message = proto.encode_broadcast(proto.EMITTER_UID, self.namespace, [event, *args],
                                         self._rooms, self._except, self._flags)
        self.redis.publish(proto.broadcast_target(self.key, self.namespace, self._rooms), message)
        return True

    def _request(self, kind: RequestType, **fields: Any) -> None:
        opts = {"rooms": list(self._rooms), "except": list(self._except)}
        message = proto.encode_json({"type": int(kind), "opts": opts, **fields})
        self.redis.publish(proto.request_channel(self.key, self.namespace), message)

    def sockets_join(self, room: Any) -> None:
        """Make the targeted sockets of every server join ``room`` (a name or a list)."""
        self._request(RequestType.REMOTE_JOIN, rooms=list(_rooms(room)))

    def sockets_leave(self, room: Any) -> None:
        """Make the targeted sockets of every server leave ``room``."""
        self._request(RequestType.REMOTE_LEAVE, rooms=list(_rooms(room)))

    def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the targeted sockets of every server (``close``: their connections too)."""
        self._request(RequestType.REMOTE_DISCONNECT, close=close)

    def server_side_emit(self, event: str, *args: Any) -> None:
        """Run the servers' server-side handlers of ``event`` (no acknowledgements, as in Node)."""
        message = proto.encode_json({"uid": proto.EMITTER_UID, "type": int(RequestType.SERVER_SIDE_EMIT),
                                     "data": [event, *args]})
        self.redis.publish(proto.request_channel(self.key, self.namespace), message)
