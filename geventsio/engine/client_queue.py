"""The client's one queue of outgoing frames, as the server's session has one.

Frames wait here for the writer greenlet whichever transport is current, so
an upgrade only changes where the writer sends them. Producers never block
in ``put``; ``room`` is clear while more than ``max_bytes`` wait (so that an
emitter can wait for the network instead of growing the queue), and
``drained`` is set while nothing waits (what a closing client waits for).

A producer may tag what it puts (the Socket.IO layer tags each emit): when
the session dies, ``release()`` returns the tags of what the writer never
took, which certainly never reached the server and may be sent again on
the next connection without any risk of duplicates.
"""

from __future__ import annotations

from collections import deque

from gevent.event import Event

from .packet import Frame


def payload_size(frame: Frame) -> int:
    """Bytes of a frame in a polling payload (UTF-8 text, or ``b`` + base64)."""
    if isinstance(frame, str):
        return len(frame) if frame.isascii() else len(frame.encode("utf-8"))
    return 1 + (len(frame) + 2) // 3 * 4


class OutgoingQueue:
    """Frames for the server, oldest first; only the writer takes from it."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._frames: deque[Frame] = deque()
        self._tags: deque = deque()  # one per frame: the tag of a packet on its first frame
        self._bytes = 0
        self.wake = Event()  # something changed for the writer (only the writer clears it)
        self.room = Event()  # no more than max_bytes wait
        self.room.set()
        self.drained = Event()  # nothing waits
        self.drained.set()

    def __bool__(self) -> bool:
        return bool(self._frames)

    def put(self, frames: list[Frame], tag: object = None) -> None:
        self._frames.extend(frames)
        self._tags.append(tag)
        if len(frames) > 1:
            self._tags.extend([None] * (len(frames) - 1))
        for f in frames:
            self._bytes += len(f)
        if self._bytes > self.max_bytes:
            self.room.clear()
        self.drained.clear()
        self.wake.set()

    def take(self, max_payload: int | None) -> list[Frame]:
        """The next batch: everything, or (polling) as much as one payload of ``max_payload`` holds."""
        frames = self._frames
        if max_payload is None:
            batch = list(frames)
            frames.clear()
            self._tags.clear()
        else:
            batch = [frames.popleft()]
            size = payload_size(batch[0])
            while frames:
                size += 1 + payload_size(frames[0])
                if size > max_payload:
                    break
                batch.append(frames.popleft())
            for _ in batch:
                self._tags.popleft()
        for f in batch:
            self._bytes -= len(f)
        if self._bytes <= self.max_bytes:
            self.room.set()
        return batch

    def release(self) -> list:
        """The session ended: forget the frames, wake every waiter; the tags never taken."""
        unsent = [t for t in self._tags if t is not None]
        self._frames.clear()
        self._tags.clear()
        self._bytes = 0
        for event in (self.wake, self.room, self.drained):
            event.set()
        return unsent
