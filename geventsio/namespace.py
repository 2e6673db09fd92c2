"""Handlers of one namespace: decorator-registered functions, or a class with ``on_<event>`` methods."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server

# Events a client may not emit: they would impersonate the server's own notifications.
RESERVED_EVENTS = frozenset(
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"])


def positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` accepts (a large number for ``*args``).

    Checked once at registration, so that optional arguments (``auth`` of
    connect, ``reason`` of disconnect) are passed only to handlers that take them.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return 99
    count = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class Handlers:
    """The handlers registered for one namespace name (or for ``"*"``, every namespace)."""

    def __init__(self) -> None:
        self.events: dict[str, Callable[..., Any]] = {}
        self.arity: dict[str, int] = {}

    def set(self, event: str, fn: Callable[..., Any]) -> None:
        self.events[event] = fn
        self.arity[event] = positional_arity(fn)

    def get(self, event: str) -> Callable[..., Any] | None:
        return self.events.get(event)


class Namespace:
    """Class-based handlers: ``on_<event>(self, sid, *args)`` methods for one namespace.

    Register with ``server.register_namespace(MyNamespace("/chat"))``. The
    ``emit``/``send``/``call``/room helpers default to this namespace.
    """

    def __init__(self, namespace: str | None = None):
        self.namespace = namespace or "/"
        self.server: "Server | None" = None
        self._handlers: dict[str, tuple[Callable[..., Any] | None, int]] = {}

    def _set_server(self, server: "Server") -> None:
        self.server = server

    def handler_for(self, event: str) -> tuple[Callable[..., Any] | None, int]:
        """The bound ``on_<event>`` method (None if the class has none) and its arity."""
        found = self._handlers.get(event)
        if found is None:
            fn = getattr(self, "on_" + event, None) if event.isidentifier() else None
            found = (fn, positional_arity(fn) if fn is not None else 0)
            if len(self._handlers) < 1000:  # event names come from clients: bound the cache
                self._handlers[event] = found
        return found

    def _srv(self) -> "Server":
        if self.server is None:
            raise RuntimeError("namespace is not registered with a server")
        return self.server

    def emit(self, event: str, data: Any = None, to: Any = None, room: Any = None,
             skip_sid: Any = None, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, **kwargs: Any) -> None:
        self._srv().emit(event, data, to=to, room=room, skip_sid=skip_sid,
                         namespace=namespace or self.namespace, callback=callback, **kwargs)

    def send(self, data: Any, to: Any = None, room: Any = None, skip_sid: Any = None,
             namespace: str | None = None, callback: Callable[..., Any] | None = None) -> None:
        self._srv().send(data, to=to, room=room, skip_sid=skip_sid,
                         namespace=namespace or self.namespace, callback=callback)

    def call(self, event: str, data: Any = None, to: Any = None, sid: Any = None,
             namespace: str | None = None, timeout: float = 60) -> Any:
        return self._srv().call(event, data, to=to, sid=sid,
                                namespace=namespace or self.namespace, timeout=timeout)

    def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        self._srv().enter_room(sid, room, namespace=namespace or self.namespace)

    def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        self._srv().leave_room(sid, room, namespace=namespace or self.namespace)

    def close_room(self, room: str, namespace: str | None = None) -> None:
        self._srv().close_room(room, namespace=namespace or self.namespace)

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        return self._srv().rooms(sid, namespace=namespace or self.namespace)

    def get_session(self, sid: str, namespace: str | None = None) -> dict:
        return self._srv().get_session(sid, namespace=namespace or self.namespace)

    def save_session(self, sid: str, session: dict, namespace: str | None = None) -> None:
        self._srv().save_session(sid, session, namespace=namespace or self.namespace)

    def session(self, sid: str, namespace: str | None = None) -> Any:
        return self._srv().session(sid, namespace=namespace or self.namespace)

    def disconnect(self, sid: str, namespace: str | None = None) -> None:
        self._srv().disconnect(sid, namespace=namespace or self.namespace)
