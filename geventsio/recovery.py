"""Connection state recovery: a client that lost its connection gets its state back.

Socket.IO v5's mechanism, as Node's server (4.6+) implements it: with
``Server(connection_state_recovery={...})`` each socket gets a private id
(``pid``, sent in the CONNECT answer beside the ``sid``) and every EVENT
without an ack id is logged under a fresh *offset*, appended to the packet as
its last argument. When a socket is lost for a recoverable reason, its session
(sid, rooms, the session dict) is kept for ``max_disconnection_duration``
seconds. A client that comes back within that window and names its pid and
the offset of the last event it received in its CONNECT payload
(``{"pid": ..., "offset": ...}``) gets the same sid, its rooms and its data,
and every logged packet after that offset that was addressed to it, in order.

Why one log per namespace and not a buffer per lost session: the offset says
what the client *received*; what was queued to a transport that was already
dead (for up to ``ping_interval + ping_timeout`` before the server noticed)
is only found by looking at everything emitted after that offset.

Bounds: the log keeps ``max_buffered_packets`` packets (the oldest leave
first) and none older than the window; a client whose next packet has left
the log, whose pid is unknown or whose window has passed starts a new
session. Logged packets are the frames already encoded for delivery, shared
with it, so the log costs a reference per packet (and keeps those frames
alive for the window).

``InMemoryRecoveryStore`` keeps this in the process. A client manager may
provide ``create_recovery_store(namespace, options)`` to keep it elsewhere
(for example Redis streams, so that sessions survive a restart).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import gevent

from .socketio_packet import Packet, PacketType

if TYPE_CHECKING:  # pragma: no cover
    from .adapter import Adapter
    from .server import Server
    from .socket import Socket

logger = logging.getLogger("geventsio")

# Reasons after which a session is kept (the names of ``geventsio.Server.reason``). Node's list
# also has "forced close"; here a server-side disconnect is "server disconnect", which is
# deliberate and, as a client disconnect, never recoverable.
RECOVERABLE_REASONS = frozenset(["transport close", "transport error", "ping timeout",
                                 "server shutting down"])

_MAX_OFFSET_DIGITS = 20  # offsets are decimal counters; longer input is not one of ours


@dataclasses.dataclass(frozen=True)
class RecoveryOptions:
    """The ``connection_state_recovery`` option of ``geventsio.Server``.

    ``max_disconnection_duration``: seconds a lost session stays recoverable.
    ``skip_middlewares``: a recovered socket does not run the ``connect``
    handler (it was admitted already; the handler is where python-socketio
    apps authenticate and set up, which is Node's middlewares' job).
    ``max_buffered_packets``: packets each namespace's log keeps.
    """

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True
    max_buffered_packets: int = 10_000

    @classmethod
    def of(cls, config: Any) -> "RecoveryOptions | None":
        """Options from ``True``/``False``/``None``, a dict, or a ``RecoveryOptions``."""
        if config is None or config is False:
            return None
        if config is True:
            return cls()
        if isinstance(config, cls):
            return config
        if not isinstance(config, Mapping):
            raise TypeError("connection_state_recovery must be a dict of options, True or None")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise TypeError(f"unknown connection_state_recovery options: {', '.join(sorted(unknown))}")
        options = cls(**config)
        if options.max_disconnection_duration <= 0 or options.max_buffered_packets < 1:
            raise ValueError("max_disconnection_duration and max_buffered_packets must be positive")
        return options


@dataclasses.dataclass
class RestoredSession:
    """What a reconnecting client gets back: its sid, rooms, data, and the frames it missed."""

    sid: str
    pid: str
    rooms: frozenset
    data: Any
    missed: list  # Engine.IO frames of each missed packet, in emission order


def new_pid() -> str:
    """A private session id: a bearer secret, never shown to other clients."""
    return secrets.token_urlsafe(15)


def addressed_to(rooms: frozenset, except_rooms: frozenset, session_rooms: Iterable[str]) -> bool:
    """Whether a packet sent to ``rooms`` minus ``except_rooms`` reached a socket in ``session_rooms``."""
    session_rooms = frozenset(session_rooms)
    if rooms and rooms.isdisjoint(session_rooms):
        return False
    return except_rooms.isdisjoint(session_rooms)


class _Logged:
    __slots__ = ("seq", "at", "rooms", "except_rooms", "frames")

    def __init__(self, seq: int, at: float, rooms: frozenset, except_rooms: frozenset, frames: list):
        self.seq = seq
        self.at = at
        self.rooms = rooms
        self.except_rooms = except_rooms
        self.frames = frames


class _Saved:
    __slots__ = ("sid", "pid", "rooms", "data", "lost_at", "timer")

    def __init__(self, sid: str, pid: str, rooms: frozenset, data: Any, lost_at: float, timer: Any):
        self.sid = sid
        self.pid = pid
        self.rooms = rooms
        self.data = data
        self.lost_at = lost_at
        self.timer = timer


class InMemoryRecoveryStore:
    """The packet log and the lost sessions of one namespace, in this process.

    Each lost session has one timer on the gevent loop (no greenlet) that
    forgets it when its window ends; the log is trimmed as packets are added
    and when sessions expire.
    """

    def __init__(self, namespace: str, options: RecoveryOptions,
                 encode: Callable[[Packet], list], clock: Callable[[], float] = time.monotonic):
        self.namespace = namespace
        self.options = options
        self._encode = encode
        self._clock = clock
        self._log: deque[_Logged] = deque(maxlen=options.max_buffered_packets)
        self._seqs = itertools.count(1)
        self._last_seq = 0
        self._sessions: dict[str, _Saved] = {}
        self.on_empty: Callable[[], Any] | None = None  # called (on the loop) when the last session expires

    def __len__(self) -> int:
        """How many lost sessions are kept."""
        return len(self._sessions)

    # -- the packet log ------------------------------------------------------

    def record(self, data: list, rooms: frozenset, except_rooms: frozenset) -> list:
        """Log an EVENT (no ack) for ``rooms`` minus ``except_rooms``; returns its frames with the offset."""
        seq = next(self._seqs)
        self._last_seq = seq
        frames = self._encode(Packet(PacketType.EVENT, self.namespace, [*data, str(seq)]))
        now = self._clock()
        self._trim(now)
        self._log.append(_Logged(seq, now, frozenset(rooms), frozenset(except_rooms), frames))
        return frames

    def _trim(self, now: float) -> None:
        oldest = now - self.options.max_disconnection_duration
        log = self._log
        while log and log[0].at < oldest:
            log.popleft()

    def _missed(self, offset: Any, rooms: frozenset) -> list | None:
        """Frames after ``offset`` addressed to ``rooms``; None if some of them are gone (or unknown)."""
        if not isinstance(offset, str) or not offset.isdigit() or len(offset) > _MAX_OFFSET_DIGITS:
            return None
        seq = int(offset)
        if seq > self._last_seq:
            return None
        if seq == self._last_seq:
            return []
        log = self._log
        if not log or log[0].seq > seq + 1:
            return None  # the packet after the client's last one has left the log
        start = seq + 1 - log[0].seq
        return [p.frames for p in itertools.islice(log, start, None)
                if addressed_to(p.rooms, p.except_rooms, rooms)]

    # -- sessions ----------------------------------------------------------------

    def persist(self, sid: str, pid: str, rooms: Iterable[str], data: Any) -> None:
        """Keep a lost socket's session for the recovery window."""
        old = self._sessions.pop(pid, None)
        if old is not None:
            old.timer.stop()
        timer = gevent.get_hub().loop.timer(self.options.max_disconnection_duration)
        saved = _Saved(sid, pid, frozenset(rooms), data, self._clock(), timer)
        self._sessions[pid] = saved
        timer.start(self._expire, pid)

    def _expire(self, pid: str) -> None:
        saved = self._sessions.pop(pid, None)
        if saved is not None:
            saved.timer.stop()
        self._trim(self._clock())
        if not self._sessions and self.on_empty is not None:
            self.on_empty()

    def restore(self, pid: Any, offset: Any) -> RestoredSession | None:
        """The session of ``pid`` with what it missed after ``offset``, or None (a new session then).

        A session is restored once: a second CONNECT with the same pid starts a new one.
        """
        if not isinstance(pid, str):
            return None
        saved = self._sessions.pop(pid, None)
        if saved is None:
            return None
        saved.timer.stop()
        if self._clock() - saved.lost_at > self.options.max_disconnection_duration:
            return None
        missed = self._missed(offset, saved.rooms)
        if missed is None:
            logger.info("namespace %s: session %s not recovered: packets after offset %r are gone",
                        self.namespace, saved.sid, offset)
            return None
        return RestoredSession(saved.sid, saved.pid, saved.rooms, saved.data, missed)

    def close(self) -> None:
        """Forget everything and stop the timers (the server is shutting down)."""
        for saved in self._sessions.values():
            saved.timer.stop()
        self._sessions.clear()
        self._log.clear()


# -- the server's side (called by geventsio.Server) ---------------------------------------

def attach_recovery_store(server: "Server", nsp: str, adapter: "Adapter") -> None:
    """Give a new adapter its recovery store when the server has ``connection_state_recovery``."""
    options = server.connection_state_recovery
    if options is None:
        return
    make = getattr(server.client_manager, "create_recovery_store", None)
    if make is not None:
        store = make(nsp, options)
    else:
        store = InMemoryRecoveryStore(nsp, options, server.parser.to_frames)

    def on_empty() -> None:
        # On the loop (a timer): dropping an idle namespace may block, so it gets a greenlet.
        if not adapter.sockets:
            gevent.spawn(server._drop_if_idle, nsp, adapter)

    store.on_empty = on_empty
    adapter.recovery = store


def restore(server: "Server", adapter: "Adapter", auth: Any) -> RestoredSession | None:
    """The session a CONNECT payload ``{"pid": ..., "offset": ...}`` recovers, if any."""
    store = adapter.recovery
    if store is None or not isinstance(auth, dict):
        return None
    pid, offset = auth.get("pid"), auth.get("offset")
    if not isinstance(pid, str) or not isinstance(offset, str):
        return None
    restored = store.restore(pid, offset)
    if restored is None or restored.sid in server.sockets:
        return None
    return restored


def start_socket(socket: "Socket", adapter: "Adapter", restored: RestoredSession | None) -> None:
    """Give a socket just added to ``adapter`` its pid, and its old state when ``restored``.

    The missed packets are held by the socket until its CONNECT answer is sent,
    then leave first, before anything emitted since.
    """
    if restored is None:
        socket.pid = new_pid()
        return
    socket.pid = restored.pid
    socket.recovered = True
    socket.data = restored.data
    for room in restored.rooms:
        adapter.add(socket.sid, room)
    for frames in restored.missed:
        socket.deliver(frames)


def session_to_keep(server: "Server", socket: "Socket", reason: str) -> Callable[[], None] | None:
    """For a socket lost for a recoverable reason: a function that keeps its session, else None.

    The rooms are taken now, before the disconnect handler runs (as Node
    does); the session is stored by calling the function, once the handler
    has run.
    """
    adapter = server.adapters.get(socket.namespace)
    if adapter is None or adapter.recovery is None or socket.pid is None or not socket.connected \
            or reason not in RECOVERABLE_REASONS:
        return None
    store = adapter.recovery
    rooms = adapter.rooms_of(socket.sid)
    pid = socket.pid
    return lambda: store.persist(socket.sid, pid, rooms, socket.data)


__all__ = ["InMemoryRecoveryStore", "RECOVERABLE_REASONS", "RecoveryOptions", "RestoredSession",
           "addressed_to", "attach_recovery_store", "new_pid"]
