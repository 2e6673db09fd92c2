"""Client-side class-based namespaces; lookup is the shared ``namespace.HandlerTable``.

Catch-alls never receive the reserved events (``connect``, ``disconnect``,
``connect_error``) nor the reconnection events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..namespace import NOT_HANDLED, HandlerTable, call_with_optional, positional_arity

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

# Events the client raises itself; a catch-all handler never receives them.
LIFECYCLE_EVENTS = frozenset(["connect", "connect_error", "disconnect"])
MANAGER_EVENTS = frozenset(["reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"])

# Events a client handler table keeps from catch-alls.
OWN_EVENTS = LIFECYCLE_EVENTS | MANAGER_EVENTS

__all__ = ["ClientNamespace", "HandlerTable", "LIFECYCLE_EVENTS", "MANAGER_EVENTS", "NOT_HANDLED",
           "OWN_EVENTS"]


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
