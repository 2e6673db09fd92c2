"""What becomes of a client's emits: sent, buffered, dropped, acknowledged, timed out, retried.

- ``Outgoing``: one emit. Its frames are encoded once, at the emit (bad data
  fails there, and every attempt carries the same ack id); its outcome goes
  to a callback run on the dispatcher or to the ``AsyncResult`` of a
  ``call()``, exactly once; its timer is a plain event-loop timer (no
  greenlet per pending ack), so everything here runs without blocking.
- ``Outbox``: the packets of one namespace that may not leave yet, in order:
  what was emitted while it was not connected and, with retries, the packets
  waiting for their turn. Bounded; when full the oldest is dropped.
- ``Delivery``: the rules (see ``geventsio/client.py``'s docstring) applied
  to every namespace of one client and to its current connection.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import gevent

from ..exceptions import DisconnectedError, TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.client import EngineClient

logger = logging.getLogger("geventsio.client")


class BufferFullError(DisconnectedError):
    """The packet was dropped from a full buffer before it could be sent."""


class Outgoing:
    """One emit on its way: frames, ack id, where the outcome goes, retry state."""

    __slots__ = ("namespace", "frames", "id", "callback", "waiter", "timeout", "sequential",
                 "volatile", "tries", "in_flight", "done", "_timer")

    def __init__(self, namespace: str, frames: list, ack_id: int | None, callback: Any,
                 waiter: Any, timeout: float | None, sequential: bool, volatile: bool = False):
        self.namespace = namespace
        self.frames = frames
        self.id = ack_id
        self.callback = callback
        self.waiter = waiter
        self.timeout = timeout
        self.sequential = sequential  # retries: one at a time, re-sent until acknowledged
        self.volatile = volatile
        self.tries = 0
        self.in_flight = False
        self.done = False
        self._timer: Any = None

    def start_timer(self, seconds: float | None, fn: Callable[["Outgoing"], Any]) -> None:
        """Call ``fn(self)`` from the event loop after ``seconds`` (it must not block)."""
        self.stop_timer()
        if seconds is None:
            return
        self._timer = gevent.get_hub().loop.timer(max(seconds, 0))
        self._timer.start(fn, self)

    def stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
            timer.close()


class Outbox:
    """The packets of one namespace that have not left yet, oldest first, at most ``limit``."""

    __slots__ = ("limit", "_items")

    def __init__(self, limit: int):
        self.limit = limit
        self._items: deque[Outgoing] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Any:
        return iter(self._items)

    def append(self, out: Outgoing) -> Outgoing | None:
        """Add ``out``; when full, drop and return the oldest packet not in flight."""
        items = self._items
        if len(items) < self.limit:
            items.append(out)
            return None
        index = 1 if items[0].in_flight else 0
        if index >= len(items):
            return out  # only the packet in flight is older: the new one goes
        dropped = items[index]
        del items[index]
        items.append(out)
        return dropped

    def requeue(self, packets: list[Outgoing]) -> list[Outgoing]:
        """Put ``packets`` (older than anything here) back in front; return those past the limit."""
        self._items.extendleft(reversed(packets))
        dropped = []
        while len(self._items) > self.limit:
            dropped.append(self._items.popleft())
        return dropped

    def head(self) -> Outgoing:
        return self._items[0]

    def popleft(self) -> Outgoing:
        return self._items.popleft()

    def remove(self, out: Outgoing) -> bool:
        """Take ``out`` out if it is here; True when it was the head (the next may go now)."""
        items = self._items
        if not items:
            return False
        if items[0] is out:
            items.popleft()
            return True
        try:
            items.remove(out)
        except ValueError:
            pass
        return False

    def drain(self) -> list[Outgoing]:
        items = list(self._items)
        self._items.clear()
        return items


class NamespaceState:
    """One namespace the client wants: its state on the current connection, and its outbox."""

    __slots__ = ("name", "sid", "connected", "active", "answered", "outbox", "refusal", "pid", "offset",
                 "recovered")

    def __init__(self, name: str, max_buffered: int):
        self.name = name
        self.sid: str | None = None
        self.connected = False
        self.active = True  # still wanted: not refused, not disconnected by the server or the user
        self.answered = False  # the server answered this connection's CONNECT
        self.outbox = Outbox(max_buffered)
        self.refusal: Any = None  # the server's CONNECT_ERROR payload
        # Connection state recovery: the private id the server gave, the offset of the last
        # event received, and whether the current connection got the old state back.
        self.pid: str | None = None
        self.offset: str | None = None
        self.recovered = False


class Delivery:
    """The emits of one client: where each goes, and its one outcome.

    ``engine`` is the current connection (None while there is none);
    ``schedule(fn, *args)`` runs user callbacks on the dispatcher. Every
    method is non-blocking, so timers can call them from the event loop.
    """

    def __init__(self, retries: int, schedule: Callable[..., Any]):
        self.retries = retries
        self.schedule = schedule
        self.namespaces: dict[str, NamespaceState] = {}
        self.acks: dict[int, Outgoing] = {}
        self.engine: "EngineClient | None" = None

    def live(self, ns: NamespaceState) -> bool:
        """Packets for ``ns`` may leave now (a connection whose pings have not stopped)."""
        eio = self.engine
        return ns.connected and eio is not None and eio.connected and not eio.expired

    def submit(self, ns: NamespaceState, out: Outgoing) -> None:
        """Send ``out`` now, or buffer it (volatile: drop it) while ``ns`` is not connected."""
        volatile = out.volatile
        live = self.live(ns)
        if volatile and not live:
            logger.debug("volatile packet dropped: namespace %s is not connected", ns.name)
            self.complete(out, error=DisconnectedError("volatile packet dropped while disconnected"))
            return
        if not out.sequential and out.id is not None and out.timeout is not None:
            out.start_timer(out.timeout, self._expired)
        eio = self.engine
        if volatile:  # straight to the connection, past anything queued
            assert eio is not None
            self._transmit(eio, out)
            return
        if live and not ns.outbox and not out.sequential:
            assert eio is not None
            eio.wait_for_room()  # backpressure: the one place an emit may wait
            if ns.connected and eio.connected:
                self._transmit(eio, out)
                return
        dropped = ns.outbox.append(out)
        if dropped is not None:
            logger.warning("buffer of namespace %s full (%d packets): dropped the oldest",
                           ns.name, ns.outbox.limit)
            self.complete(dropped, error=BufferFullError(
                f"dropped from the full buffer of namespace {ns.name}"))
        self.pump(ns)

    def _transmit(self, eio: "EngineClient", out: Outgoing) -> None:
        if out.id is not None:
            self.acks[out.id] = out
        eio.send(out.frames, out)

    def pump(self, ns: NamespaceState) -> None:
        """Send what the outbox holds, in order: all of it, or with retries one at a time."""
        outbox = ns.outbox
        while outbox and self.live(ns):
            eio = self.engine
            assert eio is not None
            out = outbox.head()
            if out.sequential:
                if out.in_flight:
                    return
                out.in_flight = True
                out.tries += 1
                out.start_timer(out.timeout, self._attempt_expired)
                self._transmit(eio, out)
                return
            outbox.popleft()
            self._transmit(eio, out)

    def acknowledge(self, namespace: str, ack_id: int | None, args: list) -> None:
        """An ACK from the server (on the reader): the first one for an emit completes it."""
        out = self.acks.get(ack_id) if ack_id is not None else None
        if out is not None and out.namespace == namespace:
            self.complete(out, args=args)

    def _expired(self, out: Outgoing) -> None:
        self.complete(out, error=TimeoutError("no acknowledgement within the time limit"))

    def _attempt_expired(self, out: Outgoing) -> None:
        if out.done or not out.in_flight:
            return
        out.in_flight = False
        if out.tries > self.retries:
            self.complete(out, error=TimeoutError(f"no acknowledgement after {out.tries} attempts"))
            return
        # The ack id stays registered: a late ack of this attempt still completes the emit.
        logger.info("no ack for packet %s within %ss; sending it again", out.id, out.timeout)
        ns = self.namespaces.get(out.namespace)
        if ns is not None:
            self.pump(ns)

    def connection_lost(self, error: BaseException, unsent: list[Outgoing]) -> None:
        """The connection is gone: what was sent and awaits an ack cannot be acknowledged.

        ``unsent`` were queued but never handed to a transport: they go back
        to their outboxes, in order (volatile ones are dropped), to leave on
        the next connection. Of the rest, with retries the packet in flight is
        sent again after reconnecting (if attempts remain); otherwise callbacks
        with a timeout and ``call()`` waiters get ``error``, the others are
        dropped. Buffered packets stay.
        """
        back: dict[str, list[Outgoing]] = {}
        for out in unsent:
            if out.done:
                continue
            if out.sequential:
                out.tries -= 1  # that attempt never left
            elif out.volatile:
                self.complete(out, error=error)
            else:
                if out.id is not None:
                    self.acks.pop(out.id, None)
                back.setdefault(out.namespace, []).append(out)
        for name, packets in back.items():
            ns = self.namespaces.get(name)
            if ns is None or not ns.active:
                for out in packets:
                    self.complete(out, error=error)
                continue
            for out in ns.outbox.requeue(packets):
                self.complete(out, error=BufferFullError(
                    f"dropped from the full buffer of namespace {ns.name}"))
        for out in list(self.acks.values()):
            if out.sequential:
                if out.in_flight:
                    out.in_flight = False
                    out.stop_timer()
                    if out.tries > self.retries:
                        self.complete(out, error=error)
            elif out.waiter is not None or out.timeout is not None:
                self.complete(out, error=error)
            else:
                out.done = True
                del self.acks[out.id]

    def complete(self, out: Outgoing, args: list | None = None,
                 error: BaseException | None = None) -> None:
        """The emit's one outcome: its ack's arguments or an error. Later outcomes are ignored."""
        if out.done:
            return
        out.done = True
        out.stop_timer()
        if out.id is not None and self.acks.get(out.id) is out:
            del self.acks[out.id]
        ns = self.namespaces.get(out.namespace)
        was_head = ns is not None and ns.outbox.remove(out)
        if out.waiter is not None:
            out.waiter.set(error if error is not None else list(args or ()))
        elif out.callback is not None:
            if error is not None:
                self.schedule(out.callback, error)
            else:
                self.schedule(out.callback, *(args or ()))
        if was_head and ns is not None:
            self.pump(ns)  # with retries, the next packet's turn

    def fail_all(self, ns: NamespaceState, error: BaseException) -> None:
        """``ns`` is no longer wanted: everything emitted to it fails with ``error``."""
        for out in [o for o in self.acks.values() if o.namespace == ns.name]:
            self.complete(out, error=error)
        for out in ns.outbox.drain():
            self.complete(out, error=error)
