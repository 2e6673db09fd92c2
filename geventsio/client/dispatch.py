"""The client's dispatcher: user code of one client runs here, one call at a time, in order.

Handlers, ack callbacks and lifecycle events are queued by the reader (or a
timer, or the reconnect loop) and run on one greenlet, spawned when work
arrives and gone when the queue is empty, like the server session's. The
reader waits while ``max_inbox`` calls are queued (backpressure: the
server's bytes stay in the kernel) instead of growing the queue without
bound; a handler that ``call()``s the server while that many events are
queued behind it waits until its call times out, so keep ``max_inbox`` well
above any burst a handler can wait on.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable

import gevent
from gevent.event import Event

logger = logging.getLogger("geventsio.client")


class Dispatcher:
    """Runs scheduled calls in order on one greenlet; exceptions are logged, not raised."""

    def __init__(self, max_inbox: int = 1024):
        self.max_inbox = max_inbox
        self._inbox: deque[tuple[Callable[..., Any], tuple]] = deque()
        self._room = Event()
        self._room.set()
        self.greenlet: gevent.Greenlet | None = None

    def schedule(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; never blocks (safe from timers and the event loop)."""
        self._inbox.append((fn, args))
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._run)

    def wait_for_room(self, still_open: Callable[[], bool]) -> None:
        """Block (the reader) while ``max_inbox`` calls are queued and ``still_open()``."""
        while len(self._inbox) >= self.max_inbox and still_open():
            self._room.clear()
            self._room.wait()

    def in_dispatcher(self) -> bool:
        return self.greenlet is not None and gevent.getcurrent() is self.greenlet

    def flush(self, timeout: float = 5) -> bool:
        """Wait until what is queued now has run; at once from the dispatcher itself."""
        if self.greenlet is None or self.in_dispatcher():
            return True
        done = Event()
        self.schedule(done.set)
        return done.wait(timeout)

    def _run(self) -> None:
        inbox = self._inbox
        try:
            while inbox:
                fn, args = inbox.popleft()
                if len(inbox) < self.max_inbox:
                    self._room.set()
                try:
                    fn(*args)
                except Exception:
                    logger.exception("handler %s failed", getattr(fn, "__qualname__", fn))
        finally:
            self.greenlet = None
            self._room.set()
