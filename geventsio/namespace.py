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


class HandlerDecorators:
    """``on`` and ``event``, shared by the server and the client.

    Subclasses store a handler in ``_add_handler(namespace, event, fn)``.
    """

    def _add_handler(self, namespace: str, event: str, fn: Callable[..., Any]) -> None:
        raise NotImplementedError

    def on(self, event: str, handler: Callable[..., Any] | None = None,
           namespace: str | None = None) -> Any:
        """Register a handler for ``event`` in ``namespace`` ("*" for any event or namespace).

        Usable as ``on(event, fn)`` or as the decorator ``@on(event)``.
        """
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._add_handler(namespace or "/", event, fn)
            return fn

        return register(handler) if handler is not None else register

    def event(self, *args: Any, **kwargs: Any) -> Any:
        """Register a handler named after the function: ``@x.event`` or ``@x.event(namespace=...)``."""
        if len(args) == 1 and not kwargs and callable(args[0]):
            return self.on(args[0].__name__, args[0])

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            return self.on(fn.__name__, fn, **kwargs)

        return register


NOT_HANDLED = object()  # what a trigger returns when no handler took the event


def call_with_optional(fn: Callable[..., Any], args: tuple, optional: tuple, arity: int) -> Any:
    """Call ``fn(*args, *optional)``, dropping the optional tail it cannot take."""
    if optional and arity > len(args):
        return fn(*args, *optional)
    return fn(*args)


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


class HandlerTable:
    """Every handler of a server or a client, and python-socketio's lookup order.

    ``handlers[ns][event]``, then ``handlers[ns]["*"]`` (given the event name
    first), then ``handlers["*"][event]`` (given the namespace first), then
    ``handlers["*"]["*"]`` (event, namespace), then the class-based namespace
    of ``ns`` (or of ``"*"``, given the namespace first). Catch-alls never see
    ``own_events``: the lifecycle events the server or client raises itself.
    """

    def __init__(self, own_events: frozenset[str]):
        self.own_events = own_events
        self.handlers: dict[str, Handlers] = {}
        self.namespaces: dict[str, Any] = {}  # class-based: objects with trigger_event()

    def set(self, namespace: str, event: str, fn: Callable[..., Any]) -> None:
        self.handlers.setdefault(namespace, Handlers()).set(event, fn)

    def names(self) -> set[str]:
        """The namespaces something is registered for (including ``"*"``)."""
        return set(self.handlers) | set(self.namespaces)

    def trigger(self, event: str, namespace: str, args: tuple, optional: tuple = ()) -> Any:
        """Run the handler of ``event`` in ``namespace``; ``NOT_HANDLED`` if there is none.

        ``optional`` (connect's auth, disconnect's reason) is passed only to
        handlers whose signature takes it.
        """
        specific = self.handlers.get(namespace)
        if specific is not None:
            fn = specific.events.get(event)
            if fn is not None:  # the common case, without a call to call_with_optional
                if optional and specific.arity[event] > len(args):
                    return fn(*args, *optional)
                return fn(*args)
        own = event in self.own_events
        if specific is not None:
            fn = specific.get("*")
            if fn is not None and not own:
                return fn(event, *args)
        catch_all = self.handlers.get("*")
        if catch_all is not None:
            fn = catch_all.get(event)
            if fn is not None:
                return call_with_optional(fn, (namespace, *args), optional, catch_all.arity[event])
            fn = catch_all.get("*")
            if fn is not None and not own:
                return fn(event, namespace, *args)
        class_ns = self.namespaces.get(namespace)
        if class_ns is not None:
            return class_ns.trigger_event(event, *args, *optional)
        class_ns = self.namespaces.get("*")
        if class_ns is not None:
            return class_ns.trigger_event(event, namespace, *args, *optional)
        return NOT_HANDLED


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

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Run ``on_<event>(sid, ...)``; override for other routing. ``NOT_HANDLED`` without one.

        ``connect`` gets ``(sid, environ, auth)`` and ``disconnect`` ``(sid,
        reason)``; a method that takes fewer gets fewer.
        """
        fn, arity = self.handler_for(event)
        if fn is None:
            return NOT_HANDLED
        if event in ("connect", "disconnect") and arity < len(args):
            args = args[:arity]
        return fn(*args)

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

    def is_recovered(self, sid: str, namespace: str | None = None) -> bool:
        return self._srv().is_recovered(sid, namespace=namespace or self.namespace)

    def disconnect(self, sid: str, namespace: str | None = None) -> None:
        self._srv().disconnect(sid, namespace=namespace or self.namespace)
