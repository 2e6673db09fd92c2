"""Client-side handlers: decorator-registered functions, or a class with ``on_<event>`` methods.

Lookup follows python-socketio's client: ``handlers[ns][event]``, then
``handlers[ns]["*"]`` (gets the event name first), then ``handlers["*"][event]``
(gets the namespace first), then ``handlers["*"]["*"]`` (event, namespace),
then the class-based namespace registered for ``ns`` (or for ``"*"``).
Catch-alls never receive the reserved events (``connect``, ``disconnect``,
``connect_error``) nor the reconnection events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..namespace import Handlers, positional_arity

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

# Events the client raises itself; a catch-all handler never receives them.
LIFECYCLE_EVENTS = frozenset(["connect", "connect_error", "disconnect"])
MANAGER_EVENTS = frozenset(["reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"])

NOT_HANDLED = object()


def call_with_optional(fn: Callable[..., Any], args: tuple, optional: tuple, arity: int) -> Any:
    """Call ``fn(*args, *optional)``, dropping the optional tail it cannot take (disconnect's reason)."""
    if optional and arity > len(args):
        return fn(*args, *optional)
    return fn(*args)


class ClientNamespace:
    """Class-based handlers for one namespace: ``on_<event>(self, *args)`` methods.

    Register with ``client.register_namespace(MyNamespace("/chat"))``; the
    ``emit``/``send``/``call`` helpers default to this namespace.
    ``on_disconnect`` may take the reason as its one argument, or nothing.
    """

    def __init__(self, namespace: str | None = None):
        self.namespace = namespace or "/"
        self.client: "Client | None" = None

    def _set_client(self, client: "Client") -> None:
        self.client = client

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Run ``on_<event>``; override for other routing. Returns ``NOT_HANDLED`` without one."""
        fn = getattr(self, "on_" + event, None) if event.isidentifier() else None
        if fn is None:
            return NOT_HANDLED
        if event == "disconnect":
            return call_with_optional(fn, (), args, positional_arity(fn))
        return fn(*args)

    def _cl(self) -> "Client":
        if self.client is None:
            raise RuntimeError("namespace is not registered with a client")
        return self.client

    def emit(self, event: str, data: Any = None, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, timeout: float | None = None,
             volatile: bool = False) -> None:
        self._cl().emit(event, data, namespace=namespace or self.namespace, callback=callback,
                        timeout=timeout, volatile=volatile)

    def send(self, data: Any, namespace: str | None = None,
             callback: Callable[..., Any] | None = None) -> None:
        self._cl().send(data, namespace=namespace or self.namespace, callback=callback)

    def call(self, event: str, data: Any = None, namespace: str | None = None,
             timeout: float = 60) -> Any:
        return self._cl().call(event, data, namespace=namespace or self.namespace, timeout=timeout)

    def disconnect(self) -> None:
        self._cl().disconnect()


class HandlerTable:
    """Every handler of one client, and the lookup rules above."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handlers] = {}
        self.namespaces: dict[str, ClientNamespace] = {}

    def set(self, namespace: str, event: str, fn: Callable[..., Any]) -> None:
        self.handlers.setdefault(namespace, Handlers()).set(event, fn)

    def names(self) -> set[str]:
        """The namespaces something is registered for (including ``"*"``)."""
        return set(self.handlers) | set(self.namespaces)

    def trigger(self, event: str, namespace: str, args: tuple, optional: tuple = ()) -> Any:
        """Run the handler of ``event`` in ``namespace``; ``NOT_HANDLED`` if there is none.

        ``optional`` (disconnect's reason) is passed only to handlers that take it.
        """
        own_only = event in LIFECYCLE_EVENTS or event in MANAGER_EVENTS
        specific = self.handlers.get(namespace)
        if specific is not None:
            fn = specific.get(event)
            if fn is not None:
                return call_with_optional(fn, args, optional, specific.arity[event])
            fn = specific.get("*")
            if fn is not None and not own_only:
                return fn(event, *args)
        catch_all = self.handlers.get("*")
        if catch_all is not None:
            fn = catch_all.get(event)
            if fn is not None:
                return call_with_optional(fn, (namespace, *args), optional, catch_all.arity[event])
            fn = catch_all.get("*")
            if fn is not None and not own_only:
                return fn(event, namespace, *args)
        class_ns = self.namespaces.get(namespace)
        if class_ns is not None:
            return class_ns.trigger_event(event, *args, *optional)
        class_ns = self.namespaces.get("*")
        if class_ns is not None:
            return class_ns.trigger_event(event, namespace, *args, *optional)
        return NOT_HANDLED
