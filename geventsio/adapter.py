"""Rooms: which sockets of a namespace are in which rooms, and delivery to them.

``Adapter`` is the seam for scale-out. The server goes through its namespace's
adapter for every room operation and broadcast; ``InMemoryAdapter`` keeps the
rooms of one process, and ``geventsio.RedisManager`` creates adapters that add
the other processes of a cluster behind the same methods.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable
from urllib.parse import parse_qs

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server
    from .socket import Socket

Frames = list  # Engine.IO frames of one encoded Socket.IO packet


@dataclasses.dataclass
class SocketInfo:
    """One socket of the cluster as ``fetch_sockets`` reports it (local or on another server)."""

    id: str
    namespace: str
    rooms: list[str]
    handshake: dict[str, Any]
    data: Any
    local: bool = False

    def to_json(self) -> dict[str, Any]:
        """The shape Node's redis-adapter sends for one socket of a ``fetchSockets`` answer."""
        return {"id": self.id, "handshake": self.handshake, "rooms": self.rooms, "data": self.data}


def handshake_of(environ: dict, auth: Any, issued: float) -> dict[str, Any]:
    """A Node-style ``socket.handshake`` built from the WSGI environ of the client's first request."""
    headers = {key[5:].replace("_", "-").lower(): value
               for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    query_string = environ.get("QUERY_STRING", "")
    query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
    return {
        "headers": headers,
        "time": time.strftime("%a %b %d %Y %H:%M:%S GMT", time.gmtime(issued)),
        "address": environ.get("REMOTE_ADDR", ""),
        "xdomain": "HTTP_ORIGIN" in environ,
        "secure": environ.get("wsgi.url_scheme") == "https",
        "issued": int(issued * 1000),
        "url": environ.get("PATH_INFO", "") + ("?" + query_string if query_string else ""),
        "query": query,
        "auth": auth if auth is not None else {},
    }


class Adapter:
    """The rooms of one namespace, and the operations that may span a cluster.

    Local state (``sockets``, room indexes) and local delivery are the same for
    every adapter; a cluster adapter overrides the methods marked *cluster*
    to also reach the other servers. ``server`` is the ``geventsio.Server``
    owning the namespace (needed to disconnect and to run server-side handlers).
    """

    # The namespace's connection state recovery store (``geventsio.recovery``), None when off.
    recovery: Any = None
    # True when the adapter delivers every emit without ack itself, in the order of a cluster-wide
    # log (``geventsio.redis_streams``): the server then hands it even the emits to one local sid.
    sequenced = False

    def __init__(self, namespace: str, server: "Server | None" = None):
        self.namespace = namespace
        self.server = server
        self.sockets: dict[str, "Socket"] = {}
        self.rooms: dict[str, set[str]] = {}
        self.sids: dict[str, set[str]] = {}
        self.auth: dict[str, Any] = {}
        self.issued: dict[str, float] = {}
        # The server's instrumentation (shared list): told of every room joined and left.
        observers = getattr(server, "observers", None)
        self.observers: list[Any] = observers if observers is not None else []

    # -- local state ------------------------------------------------------

    def add_socket(self, socket: "Socket", auth: Any = None) -> None:
        """A socket joined the namespace (``auth``: its CONNECT payload); it joins the room of its sid."""
        self.sockets[socket.sid] = socket
        self.auth[socket.sid] = auth
        self.issued[socket.sid] = time.time()
        self.add(socket.sid, socket.sid)

    def remove_socket(self, sid: str) -> None:
        self.sockets.pop(sid, None)
        self.auth.pop(sid, None)
        self.issued.pop(sid, None)
        self.discard_all(sid)

    def add(self, sid: str, room: str) -> None:
        self.rooms.setdefault(room, set()).add(sid)
        joined = self.sids.setdefault(sid, set())
        if self.observers and room not in joined:
            for observer in self.observers:
                observer.room_joined(self.namespace, room, sid)
        joined.add(room)

    def discard(self, sid: str, room: str) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self.rooms[room]
        joined = self.sids.get(sid)
        if joined is not None:
            if self.observers and room in joined:
                self._tell_left(room, sid)
            joined.discard(room)

    def discard_all(self, sid: str) -> None:
        for room in self.sids.pop(sid, ()):
            members = self.rooms.get(room)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self.rooms[room]
            if self.observers:
                self._tell_left(room, sid)

    def close_room(self, room: str) -> None:
        for sid in self.rooms.pop(room, ()):
            joined = self.sids.get(sid)
            if joined is not None:
                joined.discard(room)
                if self.observers:
                    self._tell_left(room, sid)

    def _tell_left(self, room: str, sid: str) -> None:
        for observer in self.observers:
            observer.room_left(self.namespace, room, sid)

    def rooms_of(self, sid: str) -> set[str]:
        return set(self.sids.get(sid, ()))

    def local_rooms(self) -> set[str]:
        return set(self.rooms)

    def sids_in(self, rooms: Iterable[str] = (), except_rooms: Iterable[str] = ()) -> set[str]:
        """Local socket ids in any of ``rooms`` (every socket if empty), minus those in ``except_rooms``."""
        if rooms:
            targets: set[str] = set()
            for room in rooms:
                members = self.rooms.get(room)
                if members:
                    targets |= members
        else:
            targets = set(self.sockets)
        for room in except_rooms:
            members = self.rooms.get(room)
            if members:
                targets -= members
        return targets

    def local_broadcast(self, frames: Frames, rooms: Iterable[str] = (),
                        except_rooms: Iterable[str] = (), volatile: bool = False) -> int:
        """Queue the same frames to every local target without blocking; returns how many.

        ``volatile`` frames skip the targets that lag (``Socket.deliver_volatile``).
        """
        sockets = self.sockets
        count = 0
        for sid in self.sids_in(rooms, except_rooms):
            socket = sockets.get(sid)
            if socket is None:
                continue
            if not volatile:
                socket.deliver(frames)
                count += 1
            elif socket.deliver_volatile(frames):
                count += 1
        return count

    def local_broadcast_with_ack(self, frames: Frames, ack_id: int, callback: Callable[..., Any],
                                 timeout: float | None, direct: bool, rooms: Iterable[str] = (),
                                 except_rooms: Iterable[str] = ()) -> int:
        """Queue frames asking for ack ``ack_id`` to every local target; returns how many."""
        targets = [self.sockets[s] for s in self.sids_in(rooms, except_rooms) if s in self.sockets]
        for socket in targets:
            socket.expect_ack(ack_id, callback, timeout, direct)
            socket.deliver(frames)
        return len(targets)

    def local_socket_info(self, sid: str) -> SocketInfo:
        socket = self.sockets[sid]
        handshake = handshake_of(socket.environ, self.auth.get(sid), self.issued.get(sid, time.time()))
        return SocketInfo(sid, self.namespace, sorted(self.sids.get(sid, ())), handshake,
                          socket.data, local=True)

    def local_fetch(self, rooms: Iterable[str] = (), except_rooms: Iterable[str] = ()) -> list[SocketInfo]:
        return [self.local_socket_info(sid) for sid in sorted(self.sids_in(rooms, except_rooms))
                if sid in self.sockets]

    def local_add_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                          new_rooms: Iterable[str]) -> None:
        for sid in self.sids_in(rooms, except_rooms):
            if sid in self.sockets:
                for room in new_rooms:
                    self.add(sid, room)

    def local_del_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                          old_rooms: Iterable[str]) -> None:
        for sid in self.sids_in(rooms, except_rooms):
            for room in old_rooms:
                self.discard(sid, room)

    def local_disconnect(self, rooms: Iterable[str], except_rooms: Iterable[str],
                         close: bool = False) -> None:
        if self.server is None:
            return
        for sid in sorted(self.sids_in(rooms, except_rooms)):
            socket = self.sockets.get(sid)
            if socket is None:
                continue
            self.server.disconnect(sid, self.namespace)
            if close:
                socket.connection.session.close("forced close")

    # -- operations that may span a cluster --------------------------------

    def broadcast(self, data: list, frames: Frames, rooms: Iterable[str] = (),
                  except_rooms: Iterable[str] = (), volatile: bool = False) -> int:
        """*cluster* Send an EVENT with ``data`` (already encoded as ``frames``); returns local targets."""
        return self.local_broadcast(frames, rooms, except_rooms, volatile)

    def broadcast_with_ack(self, frames: Frames, ack_id: int, callback: Callable[..., Any],
                           timeout: float | None, direct: bool, rooms: Iterable[str] = (),
                           except_rooms: Iterable[str] = (), data: list | None = None,
                           on_remote_count: Callable[[int], Any] | None = None) -> int:
        """*cluster* A broadcast asking every target for an acknowledgement; returns local targets.

        ``callback`` runs once per client: with its acknowledgement, or with a
        ``TimeoutError`` once ``timeout`` passed. ``on_remote_count(n)`` is told
        once how many clients the other servers reached (0 here: one server).
        """
        count = self.local_broadcast_with_ack(frames, ack_id, callback, timeout, direct, rooms, except_rooms)
        if on_remote_count is not None:
            on_remote_count(0)
        return count

    def fetch_sockets(self, rooms: Iterable[str] = (), except_rooms: Iterable[str] = ()) -> list[SocketInfo]:
        """*cluster* The sockets in ``rooms`` (all if empty) minus those in ``except_rooms``."""
        return self.local_fetch(rooms, except_rooms)

    def add_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                    new_rooms: Iterable[str]) -> None:
        """*cluster* Make the matching sockets join ``new_rooms``."""
        self.local_add_sockets(rooms, except_rooms, new_rooms)

    def del_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                    old_rooms: Iterable[str]) -> None:
        """*cluster* Make the matching sockets leave ``old_rooms``."""
        self.local_del_sockets(rooms, except_rooms, old_rooms)

    def disconnect_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                           close: bool = False) -> None:
        """*cluster* Disconnect the matching sockets (``close``: their whole connection too)."""
        self.local_disconnect(rooms, except_rooms, close)

    def all_rooms(self) -> set[str]:
        """*cluster* Every room name of the namespace."""
        return self.local_rooms()

    def server_side_emit(self, data: list, callback: Callable[..., Any] | None = None,
                         timeout: float | None = None) -> None:
        """*cluster* Run the other servers' server-side handlers of ``data[0]``.

        With one server there is nobody to tell: a callback gets ``[]`` at once.
        """
        if callback is not None:
            callback([])

    def server_count(self) -> int:
        """*cluster* How many servers serve this namespace."""
        return 1

    def close(self) -> None:
        """The server is shutting down: release what the adapter holds."""


class InMemoryAdapter(Adapter):
    """Rooms of one namespace in this process, indexed both ways.

    ``rooms`` maps a room to its socket ids and ``sids`` a socket id to its
    rooms, so that a socket leaving costs O(its rooms), not O(all rooms).
    Every socket is in the room named after its own id.
    """


class InMemoryManager:
    """The default client manager: one ``InMemoryAdapter`` per namespace, nothing shared."""

    def create_adapter(self, namespace: str, server: "Server") -> Adapter:
        return InMemoryAdapter(namespace, server)

    def close(self) -> None:
        pass


__all__ = ["Adapter", "InMemoryAdapter", "InMemoryManager", "SocketInfo", "handshake_of"]
