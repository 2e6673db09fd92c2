"""The server's room and cluster operations, each going through the namespace's adapter.

A mixin of ``geventsio.Server``: with the default client manager they act on
this process; with ``RedisManager`` the cluster-wide ones (``fetch_sockets``,
``all_rooms``, ``server_side_emit``, and the broadcast operator's
``sockets_join`` / ``sockets_leave`` / ``disconnect_sockets``) reach every
server of the cluster, Node servers included.
"""

from __future__ import annotations

from typing import Any, Callable

from .adapter import Adapter, SocketInfo
from .broadcast import BroadcastOperator, as_rooms
from .recovery import attach_recovery_store


class RoomsMixin:
    """Rooms, broadcast operators and cluster-wide operations of ``geventsio.Server``."""

    adapters: dict[str, Adapter]
    client_manager: Any
    server_side_handlers: dict[tuple[str, str], Callable[..., Any]]

    def _adapter(self, nsp: str) -> Adapter:
        adapter = self.adapters.get(nsp)
        if adapter is None:
            adapter = self.adapters[nsp] = self.client_manager.create_adapter(nsp, self)
            attach_recovery_store(self, nsp, adapter)  # with connection_state_recovery only
        return adapter

    # -- rooms of one client ----------------------------------------------

    def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Put the local client ``sid`` in ``room``."""
        adapter = self.adapters.get(namespace or "/")
        if adapter is not None and sid in adapter.sockets:
            adapter.add(sid, room)

    def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Take the local client ``sid`` out of ``room``."""
        adapter = self.adapters.get(namespace or "/")
        if adapter is not None:
            adapter.discard(sid, room)

    def close_room(self, room: str, namespace: str | None = None) -> None:
        """Take every local client out of ``room``."""
        adapter = self.adapters.get(namespace or "/")
        if adapter is not None:
            adapter.close_room(room)

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        """The rooms of the local client ``sid`` (its own sid included), sorted."""
        adapter = self.adapters.get(namespace or "/")
        return sorted(adapter.rooms_of(sid)) if adapter is not None else []

    # -- broadcast operators ------------------------------------------------

    def to(self, room: Any, namespace: str | None = None) -> BroadcastOperator:
        """A broadcast to ``room`` (a name or list).

        Chain ``.to``, ``.except_``, ``.timeout``, then ``.emit`` or ``.call``.
        """
        return BroadcastOperator(self, namespace or "/").to(room)  # type: ignore[arg-type]

    in_ = to

    def except_(self, room: Any, namespace: str | None = None) -> BroadcastOperator:
        """A broadcast to every client of the namespace but those in ``room``."""
        return BroadcastOperator(self, namespace or "/").except_(room)  # type: ignore[arg-type]

    @property
    def volatile(self) -> BroadcastOperator:
        """A volatile broadcast to every client of "/" (see ``BroadcastOperator.volatile``)."""
        return BroadcastOperator(self).volatile  # type: ignore[arg-type]

    def of(self, namespace: str) -> BroadcastOperator:
        """A broadcast to every client of ``namespace``."""
        return BroadcastOperator(self, namespace)  # type: ignore[arg-type]

    # -- cluster-wide --------------------------------------------------------

    def fetch_sockets(self, room: Any = None, namespace: str | None = None) -> list[SocketInfo]:
        """The sockets of every server in ``room`` (a name or list; all if None).

        Each has ``id``, ``rooms``, ``handshake`` and ``data`` (the session
        dict here, ``socket.data`` on Node). Raises ``geventsio.TimeoutError``
        when a server of the cluster does not answer in time.
        """
        return self._adapter(namespace or "/").fetch_sockets(as_rooms(room), ())

    def all_rooms(self, namespace: str | None = None) -> set[str]:
        """Every room name of the namespace across the cluster (sids included, as Node's ``allRooms``)."""
        return self._adapter(namespace or "/").all_rooms()

    def server_count(self, namespace: str | None = None) -> int:
        """How many servers serve the namespace (1 without a cluster)."""
        return self._adapter(namespace or "/").server_count()

    def server_side_emit(self, event: str, *args: Any, namespace: str | None = None,
                         callback: Callable[..., Any] | None = None) -> None:
        """Run ``event``'s server-side handlers on the *other* servers of the cluster.

        With ``callback``, it is called once (on its own greenlet) with the
        list of the other servers' answers, or with a ``geventsio.TimeoutError``
        (its ``.responses`` holds the answers that came) when some server did
        not answer within the manager's ``requests_timeout``.
        """
        self._adapter(namespace or "/").server_side_emit([event, *args], callback)

    def on_server_side_emit(self, event: str, handler: Callable[..., Any] | None = None,
                            namespace: str | None = None) -> Any:
        """Register ``handler(*args)`` for server-side emits of ``event`` from other servers.

        Its return value is the acknowledgement the emitting server collects.
        Usable as ``on_server_side_emit(event, fn)`` or as a decorator.
        """
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.server_side_handlers[(namespace or "/", event)] = fn
            return fn

        return register(handler) if handler is not None else register

    def _server_side_event(self, nsp: str, data: list) -> Any:
        handler = self.server_side_handlers.get((nsp, data[0]))
        if handler is None:
            return None
        return handler(*data[1:])
