"""The fluent broadcast: ``sio.to(room).except_(sid).timeout(5).emit(...)``, as Node's server has it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from gevent.event import Event

from .compat import ack_value
from .exceptions import DisconnectedError, TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from .adapter import SocketInfo
    from .server import Server


def as_rooms(value: Any) -> frozenset[str]:
    """One room name, or a list/tuple/set of them, as a frozenset (empty for None)."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


class BroadcastOperator:
    """An immutable description of a broadcast's targets; every modifier returns a new one."""

    __slots__ = ("_server", "_namespace", "_rooms", "_except", "_timeout", "_volatile")

    def __init__(self, server: "Server", namespace: str = "/", rooms: frozenset[str] = frozenset(),
                 except_rooms: frozenset[str] = frozenset(), timeout: float | None = None,
                 volatile: bool = False):
        self._server = server
        self._namespace = namespace
        self._rooms = rooms
        self._except = except_rooms
        self._timeout = timeout
        self._volatile = volatile

    def _with(self, **changes: Any) -> "BroadcastOperator":
        fields = {"namespace": self._namespace, "rooms": self._rooms,
                  "except_rooms": self._except, "timeout": self._timeout, "volatile": self._volatile}
        fields.update(changes)
        return BroadcastOperator(self._server, **fields)

    def to(self, room: Any) -> "BroadcastOperator":
        """Add target rooms (a name or a list); targets are the union of all rooms named."""
        return self._with(rooms=self._rooms | as_rooms(room))

    in_ = to

    def except_(self, room: Any) -> "BroadcastOperator":
        """Exclude every client in these rooms (a sid is a room too)."""
        return self._with(except_rooms=self._except | as_rooms(room))

    @property
    def volatile(self) -> "BroadcastOperator":
        """Let the next ``emit`` skip the clients that lag instead of queueing for them.

        For packets that a newer one soon replaces (positions, typing
        indicators): a client whose socket is full, or a polling client with
        packets already waiting, does not get it. Acknowledged emits are never
        volatile.
        """
        return self._with(volatile=True)

    def timeout(self, seconds: float) -> "BroadcastOperator":
        """Time limit for acknowledgements of the next ``emit`` (with callback) or ``call``."""
        return self._with(timeout=seconds)

    def emit(self, event: str, *args: Any, callback: Callable[..., Any] | None = None) -> int:
        """Send ``event`` with ``args`` to the targets; returns how many clients it was queued to.

        With ``callback``, each client's acknowledgement arguments are passed
        to it, or a single ``TimeoutError`` once the operator's timeout passes.
        """
        return self._server._emit(self._namespace, self._rooms, self._except, [event, *args],
                                  callback, self._timeout, volatile=self._volatile and callback is None)

    def send(self, data: Any, callback: Callable[..., Any] | None = None) -> int:
        return self.emit("message", data, callback=callback)

    def call(self, event: str, *args: Any) -> list:
        """Emit and collect every target's acknowledgement until all answered or the timeout.

        Returns the answers (each as ``Server.call`` returns one). Raises
        ``TimeoutError`` (with ``.responses``, the answers that did arrive) if
        some client did not answer in time.
        """
        if self._timeout is None:
            raise ValueError("a broadcast with acknowledgements needs .timeout(seconds) first")
        responses: list = []
        missing: list = []
        done = Event()
        # Clients reached here, and on the other servers of a cluster (known
        # when they all answered with their counts); None until known.
        expected: list[int | None] = [None, None]

        def check() -> None:
            if None not in expected:
                if len(responses) + len(missing) >= sum(expected):  # type: ignore[arg-type]
                    done.set()

        def on_ack(*ack: Any) -> None:
            if len(ack) == 1 and isinstance(ack[0], (TimeoutError, DisconnectedError)):
                missing.append(ack[0])
            else:
                responses.append(ack_value(ack))
            check()

        def on_remote_count(count: int) -> None:
            expected[1] = count
            check()

        expected[0] = self._server._emit(self._namespace, self._rooms, self._except, [event, *args],
                                         on_ack, self._timeout, direct=True, on_remote_count=on_remote_count)
        check()
        if not done.wait(self._timeout + 1):
            missing.append(TimeoutError("no acknowledgement within the time limit"))
        expected_count = sum(n or 0 for n in expected)
        if missing:
            error = TimeoutError(f"{len(missing)} of {expected_count} clients did not acknowledge in time")
            error.responses = responses  # type: ignore[attr-defined]
            raise error
        return responses

    def sockets(self) -> list[str]:
        """The sids of the local clients this operator targets."""
        adapter = self._server.adapters.get(self._namespace)
        return sorted(adapter.sids_in(self._rooms, self._except)) if adapter is not None else []

    def fetch_sockets(self) -> list["SocketInfo"]:
        """The targeted sockets of every server of the cluster (id, rooms, handshake, data)."""
        return self._server._adapter(self._namespace).fetch_sockets(self._rooms, self._except)

    def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the targeted sockets on every server (``close``: their whole connections too)."""
        self._server._adapter(self._namespace).disconnect_sockets(self._rooms, self._except, close)

    def sockets_join(self, room: Any) -> None:
        """Make the targeted sockets of every server join ``room`` (a name or list)."""
        self._server._adapter(self._namespace).add_sockets(self._rooms, self._except, sorted(as_rooms(room)))

    def sockets_leave(self, room: Any) -> None:
        """Make the targeted sockets of every server leave ``room`` (a name or list)."""
        self._server._adapter(self._namespace).del_sockets(self._rooms, self._except, sorted(as_rooms(room)))
