"""Notice when something blocks the gevent event loop, and name what it is.

A handler that calls blocking code (an unpatched driver, a CPU-bound loop,
``time.sleep`` from a C extension) stops every other client of the process:
no pings go out, no messages are read. Clients then drop with "ping timeout"
and nothing in the log says why. This monitor makes the cause visible.

One repeating timer on the loop records when the loop last turned; one native
thread (not a greenlet: it must run while the loop is stuck) checks that
record. When the loop has not turned for ``threshold`` seconds, it reads the
stack of the hub's thread and logs once which handler holds it: for a
Socket.IO handler, the namespace and event too (found by duck typing on the
dispatcher's ``packet`` local, so this module knows nothing of the layer
above). When the loop turns again, the length of the block is logged and kept
as ``last_block``, so that a ping timeout soon after can say the server, not
the client, was the one that went quiet.

gevent's own monitor thread (``gevent.config.monitor_thread``) can tell as
well, but it prints whole stack dumps to stderr on every block of 0.1 s; this
one logs one line per block, through ``logging``, at a threshold that matters
for heartbeats.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from dataclasses import dataclass
from types import FrameType
from typing import Any

import gevent
from gevent.hub import Hub
from gevent.monkey import get_original

logger = logging.getLogger("geventsio.engine")

_start_thread = get_original("_thread", "start_new_thread")
_thread_sleep = get_original("time", "sleep")

# Frames under these directories are not "the application": gevent and the
# other installed packages, geventsio itself, and the standard library.
_LIBRARY_DIRS = tuple(path + os.sep for path in (
    os.path.dirname(os.path.dirname(gevent.__file__)),
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    os.path.dirname(os.__file__),
))


@dataclass(frozen=True)
class Block:
    """One stretch of time during which the event loop did not turn."""

    seconds: float
    culprit: str  # who held the loop, as the log said it
    ended_at: float  # time.monotonic() when the loop turned again


def describe_blocker(frame: FrameType | None) -> tuple[str, bool]:
    """Name the code that runs in ``frame`` (the hub thread's innermost frame), for the log.

    Prefers the application's function over library internals, and adds the
    Socket.IO namespace and event when a dispatcher frame above it has them.
    The flag says whether the application is involved (its code, or one of
    its handlers); a pause of the interpreter's own (a garbage collection at
    exit, say) is not something the application can fix.
    """
    if frame is None:
        return "unknown code", False
    chain = []
    while frame is not None:
        chain.append(frame)
        frame = frame.f_back
    app_frame = next((f for f in chain if _is_application(f.f_code.co_filename)), None)
    involved = app_frame is not None
    if app_frame is None:
        app_frame = chain[0]
    code = app_frame.f_code
    where = f"{getattr(code, 'co_qualname', code.co_name)} ({code.co_filename}:{app_frame.f_lineno})"
    for f in chain:
        packet = f.f_locals.get("packet") if f.f_code.co_name.startswith("_handle") else None
        namespace = getattr(packet, "namespace", None)
        data = getattr(packet, "data", None)
        if isinstance(namespace, str):
            if isinstance(data, list) and data and isinstance(data[0], str):
                return f"handler {where} of event {data[0]!r} in namespace {namespace!r}", True
            return f"handler {where} in namespace {namespace!r}", True
    return where, involved


def _is_application(filename: str) -> bool:
    return not (filename.startswith(_LIBRARY_DIRS) or filename.startswith("<"))


class LoopMonitor:
    """Watches one hub; see the module docstring. Start it with ``ensure_started``."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.period = min(0.25, threshold / 4)
        # Each server's threshold; the lowest of the servers alive applies.
        self.thresholds: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()
        self.hub = gevent.get_hub()
        self.pid = os.getpid()
        self.last_block: Block | None = None
        self._last_turn = time.monotonic()
        self._reported: tuple[float, str, int] | None = None  # (blocked since, culprit, log level)
        self._running = True
        self._timer = self.hub.loop.timer(self.period, self.period)
        self._timer.ref = False  # the monitor alone must not keep the loop alive
        self._timer.start(self._turned)
        _start_thread(self._watch, ())

    def stop(self) -> None:
        self._running = False
        self._timer.stop()

    def blocked_recently(self, seconds: float) -> Block | None:
        """The last block if it ended less than ``seconds`` ago (or is still going on)."""
        now = time.monotonic()
        if self._reported is not None:
            since, culprit, _ = self._reported
            return Block(now - since, culprit, now)
        block = self.last_block
        if block is not None and now - block.ended_at <= seconds:
            return block
        return None

    def _turned(self) -> None:
        # On the loop: it is turning.
        now = time.monotonic()
        reported = self._reported
        if reported is not None:
            self._reported = None
            since, culprit, level = reported
            self.last_block = Block(now - since, culprit, now)
            logger.log(level, "the event loop ran again after %.1f s blocked by %s", now - since, culprit)
        self._last_turn = now
        if self.thresholds:
            self.threshold = min(self.thresholds.values())

    def _watch(self) -> None:
        # On a native thread: runs while the loop is stuck.
        while self._running:
            _thread_sleep(self.period)
            last_turn = self._last_turn
            stalled = time.monotonic() - last_turn
            if stalled < self.threshold or self._reported is not None:
                continue
            frame = sys._current_frames().get(self.hub.thread_ident)
            if frame is not None and frame.f_code is _HUB_RUN:
                # Inside the loop's own C code (a busy or descheduled process):
                # no Python code of anyone's is holding it.
                del frame
                continue
            culprit, involved = describe_blocker(frame)
            del frame
            level = logging.WARNING if involved else logging.DEBUG
            self._reported = (last_turn, culprit, level)
            logger.log(
                level,
                "the event loop has been blocked for %.1f s by %s: every client of this process "
                "waits (heartbeats too). Use gevent-friendly I/O there, or move the work to "
                "start_background_task / a thread pool", stalled, culprit)


_monitors: dict[int, LoopMonitor] = {}
_HUB_RUN = Hub.run.__code__  # the frame of a hub waiting in (or running) its loop


def ensure_started(owner: Any, threshold: float) -> LoopMonitor:
    """The monitor of the current hub, started on first use, watching for ``owner`` too.

    The lowest threshold of the owners still alive (and not ``release``d) applies.
    """
    hub = gevent.get_hub()
    monitor = _monitors.get(id(hub))
    # After a fork (gunicorn --preload) the child has the hub but not the thread.
    if monitor is None or monitor.hub is not hub or monitor.pid != os.getpid():
        monitor = _monitors[id(hub)] = LoopMonitor(threshold)
    monitor.thresholds[owner] = threshold
    monitor.threshold = min(monitor.thresholds.values())
    return monitor


def release(owner: Any) -> None:
    """``owner`` no longer needs the watch (its threshold stops counting)."""
    monitor = current()
    if monitor is not None:
        monitor.thresholds.pop(owner, None)


def current() -> Any:
    """The current hub's monitor, or None when no server started one."""
    monitor = _monitors.get(id(gevent.get_hub()))
    return monitor if monitor is not None and monitor.hub is gevent.get_hub() else None
