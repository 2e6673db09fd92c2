"""Connection state recovery kept in Redis: any server of a streams cluster restores a lost session.

With ``RedisStreamsManager`` the recovery offsets are the entry ids of the
cluster's stream, and every server delivers the stream's broadcasts in
stream order, so an offset means the same on every server. A lost session is
stored with ``SET <prefix><pid> ... EX <window>``; a reconnecting client's
server takes it (``GETDEL``: a session is restored once), checks that the
client's offset is still in the stream (else packets after it were trimmed
away), and replays the broadcast entries after it that were addressed to the
session's rooms.

The replay stops where this server's stream reader is: what comes after
reaches the restored socket from the reader, as to any socket in its rooms,
so nothing is received twice or skipped. When the client's offset is ahead
of this server's reader (another server read further before the client moved
here), the adapter skips what the client already has (a *floor* per socket).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable

import redis

from . import stream_protocol as sp
from .recovery import RecoveryOptions, RestoredSession, addressed_to
from .redis_protocol import MalformedMessage
from .socketio_packet import Packet, PacketType

if TYPE_CHECKING:  # pragma: no cover
    from .redis_streams import RedisStreamsAdapter, RedisStreamsManager

logger = logging.getLogger("geventsio.redis")

_MAX_TTL = 2 ** 31 - 1  # seconds: what Redis takes for EX


class StreamRecoveryStore:
    """The recovery store of one namespace of a streams cluster (made by ``RedisStreamsManager``).

    Nothing is kept in the process: the packets are the stream's entries and
    the sessions live in Redis with a TTL of ``max_disconnection_duration``,
    so a server that restarts (or another one) restores them.
    """

    def __init__(self, adapter: "RedisStreamsAdapter", options: RecoveryOptions):
        self.adapter = adapter
        self.manager: "RedisStreamsManager" = adapter.manager
        self.namespace = adapter.namespace
        self.options = options
        self.on_empty: Callable[[], Any] | None = None  # never called: no timers here

    def __len__(self) -> int:
        # Sessions wait in Redis, not here: an idle namespace may be dropped, a restore recreates it.
        return 0

    def session_key(self, pid: str) -> str:
        return self.manager.session_key_prefix + pid

    def persist(self, sid: str, pid: str, rooms: Iterable[str], data: Any) -> None:
        """Store a lost socket's session in Redis for the recovery window."""
        try:
            raw = sp.encode_session(self.namespace, sid, pid, rooms, data)
        except (TypeError, ValueError) as exc:
            logger.warning("session %s not kept for recovery: its data cannot be stored (%s)", sid, exc)
            return
        duration = self.options.max_disconnection_duration
        ttl = _MAX_TTL if math.isinf(duration) else max(1, min(_MAX_TTL, math.ceil(duration)))
        try:
            self.manager.redis.set(self.session_key(pid), raw, ex=ttl)
        except (redis.RedisError, OSError) as exc:
            logger.warning("session %s not kept for recovery: Redis failed (%s)", sid, exc)

    def restore(self, pid: Any, offset: Any) -> RestoredSession | None:
        """The session of ``pid`` with the packets missed after ``offset``, or None (a new session then)."""
        start = sp.parse_entry_id(offset)
        if not isinstance(pid, str) or start is None or len(pid) > 100:
            return None
        if self.manager.position is None:
            return None  # the reader has not reached the stream yet: nothing can be replayed exactly
        try:
            raw = self.manager.redis.getdel(self.session_key(pid))
            if raw is None:
                return None
            session = sp.decode_session(raw)
            if session.get("nsp", self.namespace) != self.namespace or session["sid"] in self.adapter.sockets:
                return None
            missed = self._missed(session["sid"], offset, start, frozenset(session["rooms"]))
        except MalformedMessage as exc:
            logger.warning("session of pid %r not recovered: %s", pid, exc)
            return None
        except (redis.RedisError, OSError) as exc:
            logger.warning("session of pid %r not recovered: Redis failed (%s)", pid, exc)
            return None
        if missed is None:
            logger.info("namespace %s: session %s not recovered: packets after offset %r are gone",
                        self.namespace, session["sid"], offset)
            return None
        # From here to the socket joining its rooms nothing yields: the reader cannot slip in between.
        return RestoredSession(session["sid"], pid, frozenset(session["rooms"]), session.get("data"), missed)

    def _missed(self, sid: str, offset: str, start: sp.EntryId, rooms: frozenset) -> list | None:
        """Frames of the entries after ``offset`` up to the reader's position, for ``rooms``.

        None if ``offset`` is no longer (or never was) in the stream, or the
        client missed more than the stream holds.
        """
        manager = self.manager
        asked = manager.read_count + 1
        entries = manager.redis.xrange(manager.stream_name, offset, "+", count=asked)
        if not entries or sp.parse_entry_id(entries[0][0]) != start:
            return None
        missed: list = []
        budget = manager.max_len * 2 + manager.read_count  # the stream holds about max_len entries
        cursor = start
        while True:
            for entry_id, fields in entries:
                at = sp.parse_entry_id(entry_id)
                if at is None or at <= cursor:
                    continue
                cursor = at
                budget -= 1
                frames = self._frames_for(entry_id, fields, rooms)
                if frames is not None:
                    missed.append((at, frames))
            if budget <= 0:
                return None
            if len(entries) < asked or cursor >= manager.position:
                break  # the end of the stream, or where the reader is
            asked = manager.read_count
            entries = manager.redis.xrange(manager.stream_name, "(" + sp.format_entry_id(cursor), "+",
                                           count=asked)
            if not entries:
                break
        position = manager.position
        if position < start:
            # The client is ahead of this server's reader: what the reader brings up to the
            # client's offset, the client has.
            self.adapter.floors[sid] = start
        return [frames for at, frames in missed if at <= position]

    def _frames_for(self, entry_id: Any, fields: dict, rooms: frozenset) -> list | None:
        try:
            uid, nsp, kind, data = sp.decode_entry(fields)
            if nsp != self.namespace or kind != sp.MessageType.BROADCAST:
                return None
            event, to, except_rooms, volatile, with_ack = sp.decode_broadcast(data)
        except MalformedMessage:
            return None  # the reader logs it
        if volatile or with_ack or not addressed_to(frozenset(to), frozenset(except_rooms), rooms):
            return None
        offset = entry_id.decode("ascii") if isinstance(entry_id, bytes) else str(entry_id)
        packet = Packet(PacketType.EVENT, self.namespace, [*event, offset])
        return self.adapter.server.parser.to_frames(packet)

    def close(self) -> None:
        """Nothing to release: the sessions stay in Redis for the other servers."""


__all__ = ["StreamRecoveryStore"]
