"""A cluster of Socket.IO servers over one Redis stream: one order of broadcasts for every server.

``Server(client_manager=RedisStreamsManager("redis://..."))``. Each broadcast
is appended to the stream (``XADD ... MAXLEN ~ max_len``) and delivered
by every server, this one included, only when its reader greenlet reads it
back (``XREAD BLOCK`` from the last entry read). So every server delivers
the cluster's broadcasts in the stream's order, and with connection state
recovery on the entry id is the packet's offset: the same on every server.
That is what lets a client lost by one server be restored by any other,
or by the same one after a restart (``geventsio.stream_recovery``: sessions
in Redis, missed packets read back from the stream).

The price: a broadcast (an emit to one sid too) reaches even local clients
one Redis round trip later, after the reader wakes; an app's emits keep
their order (one stream), replies to a client's event with an ack do not
wait (they are not broadcasts).

Room operations (``socketsJoin``, ``socketsLeave``, ``disconnectSockets``)
also travel in the stream, in order with the broadcasts. Requests that
collect answers (``fetch_sockets``, ``all_rooms``, server-side emits,
broadcasts with acknowledgements) use the pub/sub channels of
``RedisManager`` under ``key``.

The entries have the format of Node's ``@socket.io/redis-streams-adapter``
(``geventsio.stream_protocol``): its servers' broadcasts and room operations
on the same stream reach geventsio's clients and the reverse; sessions are
stored as Node stores them. Node's servers find each other by heartbeats in
the stream, which geventsio does not send: their ``fetchSockets`` and
server-side emits do not see geventsio's servers.

When Redis goes away, local clients keep being served (broadcasts are
delivered locally, without an offset) and the reader reconnects with
back-off, continuing from the last entry it read: what other servers
appended meanwhile still arrives, as long as the stream holds it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable

import gevent
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import stream_protocol as sp
from .recovery import RecoveryOptions
from .redis_adapter import RedisAdapter
from .redis_manager import RedisManager, redis_client
from .redis_protocol import MalformedMessage
from .socketio_packet import Packet, PacketType
from .stream_protocol import EntryId, MessageType
from .stream_recovery import StreamRecoveryStore

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server

logger = logging.getLogger("geventsio.redis")

_MAX_OWN_ENTRIES = 10_000
UNSEQUENCED = "unsequenced"  # the offset of a packet that never made it into the stream


class RedisStreamsManager(RedisManager):
    """The Redis streams client manager: ``geventsio.Server(client_manager=RedisStreamsManager(url))``.

    ``stream_name``: the stream every server of the cluster reads (Node's
    ``streamName``). ``max_len``: entries kept (trimmed with ``~``; a client
    that missed more is not recovered). ``read_count``: entries per read.
    ``session_key_prefix``: where lost sessions are stored (Node's
    ``sessionKeyPrefix``). ``block``: seconds one ``XREAD`` waits.
    ``key``, ``requests_timeout`` and the other keyword arguments are those
    of ``geventsio.RedisManager`` (its pub/sub channels carry the requests).
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", stream_name: str = "socket.io",
                 max_len: int = 10_000, read_count: int = 100, session_key_prefix: str = "sio:session:",
                 block: float = 2.0, **options: Any):
        if max_len < 1 or read_count < 1 or block <= 0:
            raise ValueError("max_len, read_count and block must be positive")
        super().__init__(url, **options)
        self.stream_name = stream_name
        self.max_len = max_len
        self.read_count = read_count
        self.session_key_prefix = session_key_prefix
        self.block = block
        self.redis = self.pub  # commands (XADD, XRANGE, SET, GETDEL) share the pooled connections
        reader_options = {k: v for k, v in options.items()
                          if k not in ("key", "requests_timeout", "reconnect_delay", "reconnect_delay_max",
                                       "retry", "socket_timeout")}
        if reader_options.get("client_name"):
            reader_options["client_name"] = f"{reader_options['client_name']}-stream"
        # The reader reconnects itself; a blocked XREAD must not look like a dead socket.
        self._stream_client = redis_client(url, retry=Retry(NoBackoff(), 0), socket_timeout=block + 5,
                                           **reader_options)
        self._stream_adapters: dict[str, RedisStreamsAdapter] = {}
        self._stream_reader: gevent.Greenlet | None = None
        # The id of the last entry the reader delivered; None until known (Redis away at start).
        self.position: EntryId | None = None
        # Entries ever appended to the stream up to the position (Redis ≥ 7; else None): with the
        # stream's count of them, how many were trimmed unread.
        self._added_to_position: int | None = None
        self.stream_gaps = 0  # times the reader found entries trimmed before it read them
        self.stream_entries_missed = 0  # ... and how many

    def create_adapter(self, namespace: str, server: "Server") -> "RedisStreamsAdapter":
        """The adapter of one namespace (called by the server when the namespace is first used)."""
        # Subscribed as RedisManager subscribes its adapters (for the requests).
        adapter: RedisStreamsAdapter = super().create_adapter(namespace, server)  # type: ignore[assignment]
        self._stream_adapters[namespace] = adapter
        if self.position is None:
            # Now, not in the reader: an emit that follows must be read back, not skipped.
            try:
                self._find_position()
            except (redis.RedisError, OSError) as exc:
                logger.warning("cannot read the stream %s yet (%s)", self.stream_name, exc)
        if self._stream_reader is None:
            self._stream_reader = gevent.spawn(self._read_stream)
        return adapter

    def create_recovery_store(self, namespace: str, options: RecoveryOptions) -> StreamRecoveryStore:
        """The recovery store of a namespace whose adapter was just created (``geventsio.recovery``)."""
        return StreamRecoveryStore(self._stream_adapters[namespace], options)

    def forget(self, adapter: "RedisStreamsAdapter") -> None:
        if self._stream_adapters.get(adapter.namespace) is adapter:
            del self._stream_adapters[adapter.namespace]

    def append(self, fields: dict) -> str | None:
        """XADD one entry (trimming the stream); its id, or None when Redis failed (logged)."""
        try:
            entry_id = self.redis.xadd(self.stream_name, fields, maxlen=self.max_len, approximate=True)
        except (redis.RedisError, OSError) as exc:
            logger.warning("Redis XADD to %s failed (%s)", self.stream_name, exc)
            return None
        return entry_id.decode("ascii") if isinstance(entry_id, bytes) else entry_id

    def close(self) -> None:
        """Stop reading the stream and leave the pub/sub channels (the server's shutdown calls this)."""
        self._closed = True
        if self._stream_reader is not None:
            self._stream_reader.kill(block=True, timeout=2)
        super().close()
        self._stream_client.close()

    def _after_fork(self) -> None:
        """In a child process just forked (see ``RedisManager._after_fork``): a stream reader of its own.

        The child reads on from the parent's position. Its copy of the parent's
        reader is killed before the child's loop polls; only if that reader's
        reply was already due in the very loop turn that forked could the copy
        take it, and the parent would then read again after ``block`` + 5 s.
        """
        super()._after_fork()
        reader, self._stream_reader = self._stream_reader, None
        if reader is not None:
            reader.kill(block=False)
        if not self._closed and self._stream_adapters:
            self._stream_reader = gevent.spawn(self._read_stream)

    # -- the stream reader ----------------------------------------------------

    def _find_position(self) -> None:
        try:
            info = self._stream_client.xinfo_stream(self.stream_name)
        except redis.ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            self.position, self._added_to_position = (0, 0), 0
            return
        self.position = sp.parse_entry_id(info.get("last-generated-id")) or (0, 0)
        added = info.get("entries-added")  # Redis 7: entries ever appended, all up to the position
        self._added_to_position = added if isinstance(added, int) else None

    def _read_stream(self) -> None:
        me = gevent.getcurrent()
        delay = self.reconnect_delay
        lost = False
        behind = True  # at the start and after a reconnection, see first whether entries were trimmed
        while not self._closed and self._stream_reader is me:
            try:
                if self.position is None:
                    self._find_position()
                start = self.position
                reply = None
                if not behind:
                    reply = self._stream_client.xread({self.stream_name: sp.format_entry_id(start)},
                                                      count=self.read_count, block=int(self.block * 1000))
                behind = self._is_full(reply)
                if behind or reply is None:
                    # Perhaps past trimmed entries: read again with the stream's state, atomically.
                    reply = self._read_checked(start)
                    behind = self._is_full(reply)
                if lost:
                    logger.warning("reconnected to Redis at %s; reading the stream %s from %s", self.url,
                                   self.stream_name, sp.format_entry_id(start))
                    lost = False
                delay = self.reconnect_delay
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        self._dispatch_entry(entry_id, fields)
            except (redis.RedisError, OSError) as exc:
                if self._closed or self._stream_reader is not me:
                    return
                logger.warning("lost the Redis stream connection (%s); reconnecting in %.1fs", exc, delay)
                lost = True
                behind = True
                self._stream_client.connection_pool.disconnect()
                gevent.sleep(delay)
                delay = min(delay * 2, self.reconnect_delay_max)

    def _is_full(self, reply: Any) -> bool:
        """Whether a read may have jumped over trimmed entries.

        Trimming (``~``) keeps at least ``max_len`` entries, so a reader whose next
        entries were trimmed gets a full read: ``read_count`` entries, or ``max_len``.
        """
        count = sum(len(entries) for _stream, entries in reply or ())
        return count >= min(self.read_count, self.max_len)

    def _read_checked(self, start: EntryId) -> Any:
        """XINFO STREAM and XREAD (not blocking) from ``start`` in one transaction; a gap is noted."""
        pipe: Any = self._stream_client.pipeline(transaction=True)
        pipe.xinfo_stream(self.stream_name)
        pipe.xread({self.stream_name: sp.format_entry_id(start)}, count=self.read_count)
        info, reply = pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(info, dict):
            self._check_gap(start, info)
        elif "no such key" not in str(info).lower():
            raise info
        return reply

    def _check_gap(self, start: EntryId, info: dict) -> None:
        """Count and log (once) the entries after ``start`` trimmed before this reader read them."""
        first = info.get("first-entry")
        first_id = sp.parse_entry_id(first[0]) if first else None
        if first_id is None or first_id <= start:
            return  # the entry at the position is still there: nothing after it was trimmed
        added, length = info.get("entries-added"), info.get("length")
        missed = None
        if isinstance(added, int) and isinstance(length, int) and self._added_to_position is not None:
            trimmed = added - length  # Redis 7: every entry before the first one still there
            missed = trimmed - self._added_to_position
            if missed <= 0:
                return  # only entries up to the position were trimmed
            self._added_to_position = trimmed
        self.stream_gaps += 1
        if missed is not None:
            self.stream_entries_missed += missed
        logger.warning("the reader of the stream %s fell more than max_len=%d entries behind: %s entries "
                       "after %s were trimmed before it read them (the stream now starts at %s, %.3fs "
                       "later); its clients missed them and cannot recover them", self.stream_name,
                       self.max_len, missed if missed is not None else "an unknown number of",
                       sp.format_entry_id(start), sp.format_entry_id(first_id), (first_id[0] - start[0]) / 1000)

    def cluster_stats(self) -> dict[str, int]:
        """Counters of this manager, part of ``Server.stats()``.

        ``stream_gaps``: times the reader found entries trimmed before it read
        them (it fell more than ``max_len`` behind); ``stream_entries_missed``:
        how many entries those were (counted with Redis ≥ 7).
        """
        return {"stream_gaps": self.stream_gaps, "stream_entries_missed": self.stream_entries_missed}

    def _dispatch_entry(self, raw_id: Any, fields: dict) -> None:
        at = sp.parse_entry_id(raw_id)
        if at is None or (self.position is not None and at <= self.position):
            return
        self.position = at
        if self._added_to_position is not None:
            self._added_to_position += 1
        entry_id = sp.format_entry_id(at)
        try:
            uid, nsp, kind, data = sp.decode_entry(fields)
            adapter = self._stream_adapters.get(nsp)
            if adapter is not None:
                adapter.on_entry(entry_id, at, uid, kind, data)
        except MalformedMessage as exc:
            logger.warning("skipped a malformed entry %s of the stream %s: %s", entry_id, self.stream_name,
                           exc)
        except Exception:
            logger.exception("skipped an entry %s of the stream %s that could not be handled",
                             entry_id, self.stream_name)


class RedisStreamsAdapter(RedisAdapter):
    """The adapter of one namespace in a streams cluster (created by ``RedisStreamsManager``)."""

    sequenced = True  # the server leaves every emit without ack to ``broadcast`` (stream order)

    def __init__(self, namespace: str, server: "Server", manager: RedisStreamsManager):
        super().__init__(namespace, server, manager)
        self.manager: RedisStreamsManager = manager
        # Restored sockets whose client already had the entries up to this id (see stream_recovery).
        self.floors: dict[str, EntryId] = {}
        # Room operations appended here (applied when sent): skipped when read back.
        self.own_entries: set[str] = set()

    # -- outgoing ------------------------------------------------------------

    def _append(self, kind: MessageType, data: dict, what: str) -> str | None:
        try:
            # Written as an emitter: Node's servers count the writers of entries as members of the
            # cluster and would wait for geventsio's answers to requests that come by pub/sub here.
            fields = sp.encode_entry(sp.EMITTER_UID, self.namespace, kind, data)
        except (TypeError, ValueError) as exc:
            logger.error("cannot send %s to the cluster (%s); applied locally only", what, exc)
            return None
        return self.manager.append(fields)

    def _append_operation(self, kind: MessageType, data: dict, what: str) -> None:
        entry_id = self._append(kind, data, what)
        if entry_id is not None:
            if len(self.own_entries) >= _MAX_OWN_ENTRIES:
                self.own_entries.clear()  # never read back (the reader is far behind): forget them
            self.own_entries.add(entry_id)

    def broadcast(self, data: list, frames: Any = None, rooms: Iterable[str] = (),
                  except_rooms: Iterable[str] = (), volatile: bool = False) -> int:
        """Append the EVENT ``data`` to the stream; every server delivers it when it reads it back.

        Returns the local clients it is for now. When it cannot be appended,
        local clients get it at once (with an offset that recovers nothing).
        """
        rooms, except_rooms = list(rooms), list(except_rooms)
        entry = sp.broadcast_data(self.namespace, data, rooms, except_rooms, volatile)
        if self._append(MessageType.BROADCAST, entry, repr(data[0])) is not None:
            return len(self.sids_in(rooms, except_rooms))
        if self.recovery is not None and not volatile:
            # The clients expect an offset as the last argument; this one is in no stream, so
            # a client that comes back with it gets a new session (nothing to replay from).
            data = [*data, UNSEQUENCED]
        frames = self.server.parser.to_frames(Packet(PacketType.EVENT, self.namespace, data))
        return self.local_broadcast(frames, rooms, except_rooms, volatile)

    def add_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                    new_rooms: Iterable[str]) -> None:
        rooms, except_rooms, new_rooms = list(rooms), list(except_rooms), list(new_rooms)
        self.local_add_sockets(rooms, except_rooms, new_rooms)
        opts = {"rooms": rooms, "except": except_rooms}
        self._append_operation(MessageType.SOCKETS_JOIN, {"opts": opts, "rooms": new_rooms}, "socketsJoin")

    def del_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                    old_rooms: Iterable[str]) -> None:
        rooms, except_rooms, old_rooms = list(rooms), list(except_rooms), list(old_rooms)
        self.local_del_sockets(rooms, except_rooms, old_rooms)
        opts = {"rooms": rooms, "except": except_rooms}
        self._append_operation(MessageType.SOCKETS_LEAVE, {"opts": opts, "rooms": old_rooms}, "socketsLeave")

    def disconnect_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                           close: bool = False) -> None:
        rooms, except_rooms = list(rooms), list(except_rooms)
        self.local_disconnect(rooms, except_rooms, close)
        opts = {"rooms": rooms, "except": except_rooms}
        self._append_operation(MessageType.DISCONNECT_SOCKETS, {"opts": opts, "close": close},
                               "disconnectSockets")

    # -- incoming (on the manager's stream reader) ------------------------------

    def on_entry(self, entry_id: str, at: EntryId, uid: str, kind: int, data: Any) -> None:
        """One entry of the stream for this namespace, in stream order."""
        if kind == MessageType.BROADCAST:
            event, rooms, except_rooms, volatile, with_ack = sp.decode_broadcast(data)
            if with_ack:
                return  # Node's broadcasts with acks: geventsio's travel over pub/sub
            if self.recovery is not None and not volatile:
                event = [*event, entry_id]
            self._deliver(self.server.parser.to_frames(Packet(PacketType.EVENT, self.namespace, event)), at,
                          rooms, except_rooms, volatile)
        elif kind in (MessageType.SOCKETS_JOIN, MessageType.SOCKETS_LEAVE, MessageType.DISCONNECT_SOCKETS):
            if entry_id in self.own_entries:
                self.own_entries.discard(entry_id)
                return  # applied here when it was sent
            if not isinstance(data, dict):
                raise MalformedMessage("a room operation's data is an object")
            rooms, except_rooms = sp.targets(data.get("opts"))
            if kind == MessageType.DISCONNECT_SOCKETS:
                self.local_disconnect(rooms, except_rooms, bool(data.get("close")))
                return
            names = data.get("rooms")
            if not isinstance(names, list):
                raise MalformedMessage("a room operation's rooms is an array")
            names = [str(r) for r in names]
            if kind == MessageType.SOCKETS_JOIN:
                self.local_add_sockets(rooms, except_rooms, names)
            else:
                self.local_del_sockets(rooms, except_rooms, names)

    def _deliver(self, frames: list, at: EntryId, rooms: list, except_rooms: list, volatile: bool) -> None:
        if not self.floors:
            self.local_broadcast(frames, rooms, except_rooms, volatile)
            return
        skip = {sid for sid, floor in self.floors.items() if at <= floor}
        for sid, floor in list(self.floors.items()):
            if at >= floor:
                del self.floors[sid]
        for sid in self.sids_in(rooms, except_rooms) - skip:
            socket = self.sockets.get(sid)
            if socket is None:
                continue
            if volatile:
                socket.deliver_volatile(frames)
            else:
                socket.deliver(frames)

    def on_broadcast(self, channel: str, raw: bytes) -> None:
        """Broadcasts of the pub/sub protocol are not taken: only the stream orders deliveries."""

    def remove_socket(self, sid: str) -> None:
        super().remove_socket(sid)
        self.floors.pop(sid, None)

    def close(self) -> None:
        super().close()
        self.manager.forget(self)


__all__ = ["RedisStreamsAdapter", "RedisStreamsManager"]


RedisStreamsManager.adapter_class = RedisStreamsAdapter
