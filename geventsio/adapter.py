"""Rooms: which sockets of a namespace are in which rooms, and delivery to them.

The adapter is the seam for scale-out: this in-memory implementation keeps the
rooms of one process; a Redis adapter will add the other processes behind the
same methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from .socket import Socket

Frames = list  # Engine.IO frames of one encoded Socket.IO packet


class InMemoryAdapter:
    """Rooms of one namespace in this process, indexed both ways.

    ``rooms`` maps a room to its socket ids and ``sids`` a socket id to its
    rooms, so that a socket leaving costs O(its rooms), not O(all rooms).
    Every socket is in the room named after its own id.
    """

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.sockets: dict[str, "Socket"] = {}
        self.rooms: dict[str, set[str]] = {}
        self.sids: dict[str, set[str]] = {}

    def add_socket(self, socket: "Socket") -> None:
        self.sockets[socket.sid] = socket
        self.add(socket.sid, socket.sid)

    def remove_socket(self, sid: str) -> None:
        self.sockets.pop(sid, None)
        self.discard_all(sid)

    def add(self, sid: str, room: str) -> None:
        self.rooms.setdefault(room, set()).add(sid)
        self.sids.setdefault(sid, set()).add(room)

    def discard(self, sid: str, room: str) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self.rooms[room]
        joined = self.sids.get(sid)
        if joined is not None:
            joined.discard(room)

    def discard_all(self, sid: str) -> None:
        for room in self.sids.pop(sid, ()):
            members = self.rooms.get(room)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self.rooms[room]

    def close_room(self, room: str) -> None:
        for sid in self.rooms.pop(room, ()):
            joined = self.sids.get(sid)
            if joined is not None:
                joined.discard(room)

    def rooms_of(self, sid: str) -> set[str]:
        return set(self.sids.get(sid, ()))

    def all_rooms(self) -> set[str]:
        return set(self.rooms)

    def sids_in(self, rooms: Iterable[str] = (), except_rooms: Iterable[str] = ()) -> set[str]:
        """Socket ids in any of ``rooms`` (every socket if empty), minus those in ``except_rooms``."""
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

    def broadcast(self, frames: Frames, rooms: Iterable[str] = (),
                  except_rooms: Iterable[str] = ()) -> int:
        """Queue the same frames to every target without blocking; returns how many."""
        sockets = self.sockets
        count = 0
        for sid in self.sids_in(rooms, except_rooms):
            socket = sockets.get(sid)
            if socket is not None:
                socket.deliver(frames)
                count += 1
        return count
