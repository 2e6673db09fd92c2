"""One Engine.IO session: its state, its outgoing queue, its greenlets.

The session owns a single bounded queue of frames. Whichever transport is
current drains it: a parked polling GET, or the WebSocket writer greenlet. An
upgrade therefore only changes who drains the queue; nothing is copied or lost.

Incoming messages go through a per-session inbox served by a dispatcher
greenlet, so handlers run in arrival order, never while the reader is reading
(a handler that waits for an acknowledgement from its own client would
otherwise deadlock), and the session's close notification is delivered after
the messages that came before it. The event reader's worker serves as the
dispatcher of what it queued once it has stopped reading and re-armed its
watcher (``reading``, ``dispatch_here``).
"""

from __future__ import annotations

import enum
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import gevent
from gevent import getcurrent
from gevent.event import Event

from .packet import (CLOSE_FRAME, NOOP_FRAME, PING_FRAME, Frame, Packet, PacketType, decode_packet,
                     decode_payload, encode_payload)
from ..exceptions import ProtocolError

from . import loop_monitor
from .ws_frames import encode_frames

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server
    from .websocket import WebSocket

logger = logging.getLogger("geventsio.engine")

TEXT_CONTENT_TYPE = "text/plain; charset=UTF-8"


class State(enum.Enum):
    """Where a session is in its life; the transport is part of the state."""

    POLLING = "polling"  # open; drained by HTTP long-polling GETs
    UPGRADING = "upgrading"  # a WebSocket answered the probe; GETs get a noop
    WEBSOCKET = "websocket"  # open; drained by the WebSocket writer
    CLOSED = "closed"


# An enum member is a slow lookup (~60 ns, through the enum's metaclass); the
# per-message paths compare with these.
_CLOSED = State.CLOSED
_WEBSOCKET = State.WEBSOCKET


# Reasons reported to the layer above, in Node's engine.io wording where it has one.
REASON_TRANSPORT_CLOSE = "transport close"  # the client closed, or its connection ended
REASON_FORCED_CLOSE = "forced close"  # the server closed the session
REASON_TRANSPORT_ERROR = "transport error"
REASON_PING_TIMEOUT = "ping timeout"
REASON_PARSE_ERROR = "parse error"
REASON_BUFFER_FULL = "send buffer full"
REASON_SHUTDOWN = "server shutting down"


class Session:
    """An Engine.IO session. Create it through ``Server``; every method is greenlet-safe."""

    protocol = 4  # the Engine.IO revision; v3 sessions are ``session_v3.SessionV3``

    def __init__(self, server: "Server", sid: str, environ: dict, state: State):
        self.server = server
        self.sid = sid
        self.environ = environ
        self.state = state
        self.close_reason: str | None = None
        # Lists, not deques: an empty deque costs ~600 bytes on every idle
        # connection, and both are only ever appended to and taken whole.
        self._frames: list[Frame] = []
        self._queued_bytes = 0
        self._ready = Event()  # set while frames wait or the state changed for a drainer
        self._inbox: list[tuple[Callable[..., Any], tuple]] = []
        self._inbox_room = Event()
        self._inbox_room.set()
        self._awaited_acks = 0  # greenlets in awaiting_ack(True) for this client
        self._dispatcher: Any = None  # the worker greenlet while calls run
        # The event reader's greenlet while it reads (ws_reader.py): what it
        # queues waits for it to finish reading and then runs on it.
        self.reading: Any = None
        self._dispatch_done: Event | None = None  # created only for join_dispatcher
        # The heartbeat is two timers on the event loop, not a greenlet: an idle
        # connection then costs no greenlet for it.
        loop = gevent.get_hub().loop
        self._loop = loop
        self._ping_timer = self._start_timer(server.ping_interval, self._send_ping)
        self._pong_timer: Any = None
        self._pong_grace = False  # one more pong deadline was granted after a blocked loop
        self._writer: gevent.Greenlet | None = None  # only while a write would block
        self._pending = b""  # bytes of a write the socket did not take yet
        self._flush_scheduled = False
        self._cut_timer: Any = None
        self._forgotten: Event | None = None  # created only for wait_finished
        self.websocket: "WebSocket | None" = None
        self.polling_get_active = False
        self.polling_post_active = False

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.state.value}>"

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def _set_state(self, state: State) -> None:
        logger.debug("session %s: %s -> %s", self.sid, self.state.value, state.value)
        self.state = state
        self._ready.set()

    # -- outgoing -------------------------------------------------------

    def send_frames(self, frames: list[Frame]) -> bool:
        """Queue frames for the client without blocking; False once the session is closed.

        Past ``max_queued_bytes`` of unsent data the client is not keeping up,
        and the session is closed rather than buffering without bound.
        """
        if self.state is _CLOSED:
            return False
        self._frames.extend(frames)
        # Text frames count their characters: cheap, and within 4x of their bytes.
        self._queued_bytes += sum(map(len, frames))
        if self._queued_bytes + len(self._pending) > self.server.max_queued_bytes:
            self.server.counters.note_queue(self._queued_bytes + len(self._pending))
            logger.warning(
                "session %s: %d bytes queued for a client that is not reading; closing it "
                "(limit max_queued_bytes=%d)", self.sid, self._queued_bytes,
                self.server.max_queued_bytes)
            self.close(REASON_BUFFER_FULL)
            return False
        if self.state is _WEBSOCKET:
            self._schedule_flush()
        else:
            self._ready.set()
        return True

    def send_volatile(self, frames: list[Frame]) -> bool:
        """Queue frames the application can afford to lose; dropped (False) when the client lags.

        The client lags when its WebSocket took less than we wrote (a writer
        greenlet is waiting on it), or, on polling, when no GET is parked and
        something is queued already. Dropping these first keeps a slow client
        within ``max_queued_bytes`` for the packets that matter.
        """
        if self.state is State.WEBSOCKET:
            if self._writer is not None:
                return False
        elif self._frames and not self.polling_get_active:
            return False
        return self.send_frames(frames)

    def drain(self) -> list[Frame]:
        """Take every queued frame, in order."""
        frames = self._frames
        self._frames = []
        # The queue only grows between drains: its size now is its peak since the last one.
        counters = self.server.counters
        counters.packets_out += len(frames)
        queued = self._queued_bytes + len(self._pending)
        if queued > counters.queued_bytes_peak:
            counters.queued_bytes_peak = queued
        self._queued_bytes = 0
        return frames

    def wake(self) -> None:
        """Wake whoever waits in ``wait_for_frames`` to look at the session again."""
        self._ready.set()

    @property
    def has_frames(self) -> bool:
        return bool(self._frames)

    def wait_for_frames(self) -> None:
        """Block until frames are queued, the state changes, or a transport pokes the session."""
        if not self._frames and self.state is State.POLLING:
            self._ready.clear()
            self._ready.wait()

    def encode_polling(self, frames: list[Frame]) -> tuple[bytes, str]:
        """A polling response body (and its content type) carrying ``frames``."""
        return encode_payload(frames).encode("utf-8", "replace"), TEXT_CONTENT_TYPE

    # -- incoming -------------------------------------------------------

    def decode_polling(self, body: bytes, content_type: str | None) -> list[Packet]:
        """The packets of a polling request body (raises ``UnicodeDecodeError``, ``ProtocolError``)."""
        return decode_payload(body.decode("utf-8"))

    def receive_frame(self, frame: Frame) -> None:
        """Handle one WebSocket frame; messages skip the packet object (the hot path)."""
        if type(frame) is str:
            if frame[:1] != "4":
                self.receive(decode_packet(frame))
                return
            data: Frame = frame[1:]
        else:
            data = frame
        if self.state is not _CLOSED:
            self.server.listener.on_message(self, data)

    def receive(self, packet: Packet) -> None:
        """Handle one packet from the client's current transport (on the reading greenlet)."""
        t = packet.type
        if t is PacketType.MESSAGE:
            if self.state is not _CLOSED:
                self.server.listener.on_message(self, packet.data)
        elif t is PacketType.PONG:
            if self._pong_timer is not None:
                self._pong_timer.stop()
                self._pong_timer = None
                self._pong_grace = False
                self._ping_timer = self._start_timer(self.server.ping_interval, self._send_ping)
        elif t is PacketType.CLOSE:
            if self.polling_get_active:
                self._frames.append(NOOP_FRAME)  # releases the parked poll
            self.close(REASON_TRANSPORT_CLOSE)
        elif t is PacketType.NOOP:
            pass
        else:
            raise ProtocolError(f"unexpected {t.name.lower()} packet from the client")

    def run_ordered(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on this session's dispatcher greenlet, after the calls queued before it.

        Called from the reading greenlet. A client that outruns its handlers
        waits here, its unread bytes left in the kernel, instead of growing the
        queue without bound.
        """
        if len(self._inbox) >= self.server.max_inbox:  # the limit is never lower
            while len(self._inbox) >= self._inbox_limit() and self.state is not _CLOSED:
                self.start_dispatcher()  # the calls the reader kept for itself
                self._inbox_room.clear()
                self._inbox_room.wait()
        if self.state is not _CLOSED:
            self.schedule(fn, *args)

    def awaiting_ack(self, waiting: bool) -> None:
        """A greenlet starts (or stops) waiting for an answer from this client.

        A handler waiting in ``call()`` for its own client's answer holds the
        dispatcher, and the answer is behind whatever the client sent
        meanwhile: while someone waits, the reader takes in up to four times
        ``max_inbox`` calls to reach it, instead of waiting for room.
        """
        self._awaited_acks += 1 if waiting else -1
        if waiting:
            self._inbox_room.set()  # a reader waiting for room looks again

    def _inbox_limit(self) -> int:
        return self.server.max_inbox * 4 if self._awaited_acks else self.server.max_inbox

    def schedule(self, fn: Callable[..., Any], *args: Any) -> None:
        """Like ``run_ordered`` but never waits: for timers and the session's own close."""
        self._inbox.append((fn, args))
        if self._dispatcher is None:
            reading = self.reading
            if reading is None or reading is not getcurrent():
                self._dispatcher = self.server.workers.run(self._dispatch)

    def start_dispatcher(self) -> None:
        """Queued calls get a worker of their own now, if none is running them."""
        if self._dispatcher is None and self._inbox:
            self._dispatcher = self.server.workers.run(self._dispatch)

    def dispatch_here(self) -> None:
        """Run the queued calls on this greenlet, unless a dispatcher runs them already.

        For the event reader, once it has stopped reading: its own greenlet
        then serves as the dispatcher, with no switch to another worker.
        """
        if self._dispatcher is None and self._inbox:
            self._dispatcher = getcurrent()
            self._dispatch()

    def _dispatch(self) -> None:
        room = self._inbox_room
        try:
            while self._inbox:
                batch = self._inbox
                self._inbox = []
                if not room.is_set():
                    room.set()
                for fn, args in batch:
                    try:
                        fn(*args)
                    except Exception:
                        logger.exception("session %s: handler %s failed", self.sid,
                                         getattr(fn, "__qualname__", fn))
        finally:
            self._dispatcher = None
            done = self._dispatch_done
            if done is not None:
                self._dispatch_done = None
                done.set()

    def join_dispatcher(self, timeout: float | None = None) -> bool:
        """Wait until every queued handler call has run; False if ``timeout`` passed first."""
        deadline = None if timeout is None else self._loop.now() + timeout
        # Calls the event reader queued for itself run when it stops reading,
        # through _dispatch like any others.
        while self._dispatcher is not None or (self._inbox and self.reading is not None):
            left = None if deadline is None else deadline - self._loop.now()
            if left is not None and left <= 0:
                return False
            if self._dispatch_done is None:
                self._dispatch_done = Event()
            self._dispatch_done.wait(left)
        return True

    # -- heartbeat ------------------------------------------------------

    def _start_timer(self, seconds: float, callback: Callable[[], None]) -> Any:
        # A fresh timer each time: restarting a libev timer that already fired
        # does not wait its delay again, it fires at once.
        timer = self._loop.timer(seconds)
        timer.start(callback)
        return timer

    def _send_ping(self) -> None:
        # On the event loop: queue the ping (never blocks) and arm the pong deadline.
        if self.state is not State.CLOSED:
            self.send_frames([PING_FRAME])
            self._pong_timer = self._start_timer(self.server.ping_timeout, self._pong_missed)

    def _pong_missed(self) -> None:
        if self.state is State.CLOSED:
            return
        monitor = loop_monitor.current()
        block = monitor.blocked_recently(self.server.ping_timeout) if monitor is not None else None
        if block is not None and not self._pong_grace:
            # The server, not the client, went quiet: the pong may be unread
            # in the socket. One more ping_timeout to read it.
            self._pong_grace = True
            self._pong_timer = self._start_timer(self.server.ping_timeout, self._pong_missed)
            return
        if block is not None:
            logger.info("session %s: no pong within %ss; the event loop was blocked for %.1f s by %s; "
                        "closing", self.sid, self.server.ping_timeout, block.seconds, block.culprit)
        else:
            logger.info("session %s: no pong within %ss: the client went silent; closing",
                        self.sid, self.server.ping_timeout)
        # close() may write to a socket: not from the event loop itself.
        gevent.spawn(self.close, REASON_PING_TIMEOUT)

    # -- transports -----------------------------------------------------

    def start_upgrade(self) -> bool:
        """A WebSocket answered the probe: park polling, releasing any GET with a noop."""
        if self.state is not State.POLLING:
            return False
        self._set_state(State.UPGRADING)
        return True

    def cancel_upgrade(self) -> None:
        if self.state is State.UPGRADING:
            self._set_state(State.POLLING)

    def attach_websocket(self, ws: "WebSocket", query: dict | None = None) -> None:
        """Make ``ws`` the transport; what polling had queued goes out first.

        ``query`` is the WebSocket request's (a v3 session reads ``b64`` there).
        """
        self.websocket = ws
        self._set_state(State.WEBSOCKET)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._writer is None:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    def _flush(self) -> None:
        """Write everything queued, once the greenlets that queued it have yielded.

        Runs on the event loop: every frame queued during one turn of the
        loop leaves in one write, with no greenlet switch. Only when the
        socket does not take it all does a writer greenlet finish the job.
        """
        self._flush_scheduled = False
        ws = self.websocket
        if self._writer is not None or ws is None:
            return
        fresh = encode_frames(self.drain())
        self.server.counters.bytes_out += len(fresh)
        data = self._pending + fresh
        self._pending = b""
        try:
            written = ws.write_nowait(data) if data else 0
        except OSError:
            self.close(REASON_TRANSPORT_ERROR)
            written = len(data)
        if written < len(data):
            self._pending = data[written:]
            self._writer = gevent.spawn(self._run_writer, ws)
        elif self.state is _CLOSED:
            self._close_websocket()

    def _run_writer(self, ws: "WebSocket") -> None:
        """Blocking writes for a client that does not read as fast as we send."""
        try:
            while True:
                fresh = encode_frames(self.drain())
                self.server.counters.bytes_out += len(fresh)
                data = self._pending + fresh
                if not data:
                    break
                self._pending = data  # still counted against max_queued_bytes
                ws.write_all(data)
                self._pending = b""
        except OSError:
            self._pending = b""
            self.close(REASON_TRANSPORT_ERROR)
        finally:
            self._writer = None
            if self.state is State.CLOSED:
                self._close_websocket()

    # -- closing --------------------------------------------------------

    def close(self, reason: str = REASON_FORCED_CLOSE) -> None:
        """Close the session once, from any greenlet; later calls do nothing.

        Queued frames still reach a live transport, followed by a close packet
        unless the client is the one that closed. After ``disconnect()`` a
        polling session stays reachable by its sid until one more GET has
        collected them (or ``close_flush_timeout`` passes). The layer above
        hears of the close exactly once, after the messages received before it.
        """
        if self.state is State.CLOSED:
            return
        was_polling = self.state is not State.WEBSOCKET
        self.close_reason = reason
        self.server.counters.count(self.server.counters.engine_closes, reason)
        if reason != REASON_TRANSPORT_CLOSE:
            self._frames.append(CLOSE_FRAME)
        self._set_state(State.CLOSED)
        self._inbox_room.set()
        self._ping_timer.stop()
        if self._pong_timer is not None:
            self._pong_timer.stop()
        if not self.polling_get_active:
            if was_polling and (reason == REASON_FORCED_CLOSE or reason == REASON_SHUTDOWN):
                # As Node's engine.io does: the next GET collects the close packet.
                timer = gevent.get_hub().loop.timer(self.server.close_flush_timeout)
                timer.start(self.server._forget, self)
            else:
                self.server._forget(self)
        if self.websocket is not None:
            # The close packet, then the connection; a client that does not
            # read gets a bounded grace period, then its socket is cut.
            self._schedule_flush()
            self._cut_timer = self._start_timer(self.server.close_flush_timeout, self._cut)
        self.schedule(self.server.listener.on_close, self, reason)

    def _close_websocket(self) -> None:
        if self._cut_timer is not None:
            self._cut_timer.stop()
            self._cut_timer = None
        if self.websocket is not None:
            self.websocket.close()

    def _cut(self) -> None:
        # On the event loop: nothing here waits (WebSocket.close never does).
        self._cut_timer = None
        writer = self._writer
        if writer is not None:
            gevent.kill(writer)
        self._pending = b""
        self._frames = []
        if self.websocket is not None:
            # It does not read: no closing handshake to wait for.
            self.websocket.close(linger=False)
            self.websocket.abort()

    def wait_finished(self, timeout: float) -> bool:
        """After ``close``: wait until the last frames left and every queued call ran.

        False if ``timeout`` passed first (a client that does not read, a
        handler that does not return).
        """
        deadline = time.monotonic() + timeout
        gevent.sleep(0)  # the flush callback that close() scheduled runs first
        writer = self._writer
        if writer is not None:
            writer.join(timeout)
            if not writer.dead:
                return False
        if self.server.sessions.get(self.sid) is self:
            # A polling client collects its last frames with one more GET.
            self._forgotten = Event()
            if not self._forgotten.wait(max(0.0, deadline - time.monotonic())):
                return False
        return self.join_dispatcher(max(0.0, deadline - time.monotonic()))

    def forgotten(self) -> None:
        """The server dropped this session from its table (no request can reach it now)."""
        if self._forgotten is not None:
            self._forgotten.set()

    def kill(self) -> None:
        """Stop every greenlet of this session at once (the end of a server shutdown)."""
        self.close(REASON_SHUTDOWN)
        for g in (self._writer, self._dispatcher):
            if g is not None and g is not gevent.getcurrent():
                gevent.kill(g)
