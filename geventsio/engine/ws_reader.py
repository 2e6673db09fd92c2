"""Reading a WebSocket without a greenlet per idle connection.

A greenlet parked in ``recv`` costs ~10 KB per connection (its saved C stack,
its Python frames, what those frames hold), and an idle connection is nothing
but that wait. When the WSGI handler can let go of the connection
(``wsgi.Handler.detach_websocket``), the request returns and the socket is
watched by one io watcher on the event loop instead. When it becomes
readable a worker greenlet is borrowed from the server's ``WorkerPool`` and
reads whole messages until the socket would block at a message boundary, then
the watcher is armed again. A frame that arrives in pieces is finished on the
worker with ordinary blocking reads. The handler calls the messages queued on
the session then run on the same worker, once the watcher is armed (so that a
handler waiting for its own client is not waiting for itself): one greenlet
switch into the worker and one out per wake-up, instead of a second worker. The descriptor is never duplicated: the
one the server accepted stays open until this reader is done with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import gevent
from gevent import getcurrent

from .websocket import RECV_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from .dispatch import WorkerPool
    from .session import Session
    from .websocket import WebSocket

logger = logging.getLogger("geventsio.engine")


class EventReader:
    """Feeds one detached WebSocket's messages to its session, on demand."""

    __slots__ = ("session", "ws", "read_one", "workers", "_rfile", "_recv_nowait", "_watcher")

    def __init__(self, session: "Session", ws: "WebSocket", sock: Any, rfile: Any,
                 read_one: Callable[["Session", "WebSocket"], bool], workers: "WorkerPool"):
        """``read_one(session, ws)`` handles one message and returns True when reading is over."""
        self.session = session
        self.ws = ws
        self.read_one = read_one
        self.workers = workers
        self._rfile = rfile  # holds the descriptor open (see wsgi.Handler.detach_websocket)
        self._recv_nowait = sock._sock.recv  # the OS socket under gevent's: never waits
        self._watcher = gevent.get_hub().loop.io(sock.fileno(), 1)

    def run(self) -> None:
        """Read what is there now, then wait for more on the event loop (or finish).

        The session's calls queued meanwhile run here afterwards (see the module docstring).
        """
        done = True
        session = self.session
        session.reading = getcurrent()
        try:
            ws = self.ws
            read_one = self.read_one
            take = ws.take_available
            recv_nowait = self._recv_nowait
            while take(recv_nowait):
                if read_one(session, ws):
                    break
            else:
                done = False
        except Exception:  # nothing may escape into the worker pool or the hub
            logger.exception("session %s: WebSocket reader failed", self.session.sid)
            self.session.close("transport error")
        except BaseException:  # killed: what it queued runs on a worker of its own
            session.reading = None
            session.start_dispatcher()
            raise
        finally:
            session.reading = None
            if done:
                self._finish()
            else:
                self._watcher.start(self._readable)
        session.dispatch_here()

    def before_wait(self) -> None:
        """The reader is about to wait for the rest of a frame: queued calls must not wait with it."""
        self.session.start_dispatcher()

    def _readable(self) -> None:
        # On the event loop: nothing here may wait.
        self._watcher.stop()
        self.workers.run_from_hub(self.run)

    def _finish(self) -> None:
        self._watcher.stop()
        ws = self.ws
        ws.reader = None
        ws.close()  # as the request's end does for a greenlet reader: a close frame, once
        if ws.lingering:
            # What the client still sends is drained from the loop until its
            # end of stream (or the close's LINGER), then the descriptor closes.
            self._watcher.start(self._drain)
            return
        self._close()

    def _drain(self) -> None:
        # On the event loop: reads never wait here.
        try:
            while self._recv_nowait(RECV_SIZE):
                pass
        except BlockingIOError:
            if self.ws.lingering:
                return  # more to come, or the LINGER shutdown
        except OSError:
            pass
        self._watcher.stop()
        self.ws.abort()
        self._close()

    def _close(self) -> None:
        self._watcher.close()
        rfile, self._rfile = self._rfile, None
        if rfile is not None:
            try:
                rfile.close()  # the last reference to the descriptor: closes the socket
            except OSError:
                pass
