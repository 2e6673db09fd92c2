"""The entries of a Socket.IO cluster's Redis stream, and its lost sessions (pure codec, no I/O).

The format of Node's ``@socket.io/redis-streams-adapter``: each stream entry
has the fields ``uid`` (the server that wrote it), ``nsp``, ``type`` (the
decimal number of a ``MessageType`` of ``socket.io-adapter``'s cluster
adapter) and, for most types, ``data``: JSON text, or msgpack in base64 when
the value holds binary. A broadcast's data is
``{"packet": {"type": 2, "data": [event, *args], "nsp": ...},
"opts": {"rooms": [...], "except": [...], "flags": {...}}}``.

A lost session is stored under ``<prefix><pid>`` as base64 msgpack of
``{"sid", "pid", "rooms", "data"}`` (plus ``"nsp"``, which Node ignores).

Stream entry ids (``<milliseconds>-<sequence>``) are the recovery offsets.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from typing import Any

from .redis_protocol import MalformedMessage, pack, unpack


class MessageType(enum.IntEnum):
    """The kinds of cluster messages (``socket.io-adapter``'s numbering)."""

    INITIAL_HEARTBEAT = 1
    HEARTBEAT = 2
    BROADCAST = 3
    SOCKETS_JOIN = 4
    SOCKETS_LEAVE = 5
    DISCONNECT_SOCKETS = 6


EMITTER_UID = "emitter"  # the uid of entries from writers that answer no requests

_ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

EntryId = tuple  # (milliseconds, sequence): ordered as the stream orders its entries


def parse_entry_id(value: Any) -> EntryId | None:
    """``(ms, seq)`` of a stream entry id such as ``"1700000000000-0"``; None if it is not one."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or not _ENTRY_ID.fullmatch(value):
        return None
    ms, seq = value.split("-")
    return (int(ms), int(seq))


def format_entry_id(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def has_binary(value: Any) -> bool:
    """Whether bytes appear anywhere in ``value`` (then the entry's data is msgpack, not JSON)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(has_binary(v) for v in value.values())
    return False


def encode_entry(uid: str, nsp: str, kind: MessageType, data: dict | None = None) -> dict[str, str]:
    """The fields of one stream entry; ``TypeError``/``ValueError`` if ``data`` cannot be encoded."""
    fields = {"uid": uid, "nsp": nsp, "type": str(int(kind))}
    if data is not None:
        if has_binary(data):
            fields["data"] = base64.b64encode(pack(data)).decode("ascii")
        else:
            fields["data"] = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return fields


def _text(fields: dict, name: str) -> str | None:
    value = fields.get(name.encode(), fields.get(name))
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage(f"field {name!r} is not UTF-8") from exc
    return value


def decode_entry(fields: dict) -> tuple[str, str, int, Any]:
    """``(uid, nsp, type, data)`` of an entry's fields (bytes or str keys); else ``MalformedMessage``."""
    uid, nsp, kind = _text(fields, "uid"), _text(fields, "nsp"), _text(fields, "type")
    if not isinstance(uid, str) or not isinstance(nsp, str) or not isinstance(kind, str) \
            or not kind.isdigit() or len(kind) > 4:
        raise MalformedMessage("a stream entry has uid, nsp and a numeric type")
    raw = _text(fields, "data")
    data: Any = None
    if raw:
        if raw.startswith("{"):
            try:
                data = json.loads(raw)
            except ValueError as exc:
                raise MalformedMessage(f"invalid JSON: {exc}") from exc
        else:
            try:
                data = unpack(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise MalformedMessage(f"data is neither JSON nor base64 msgpack: {exc}") from exc
    return uid, nsp, int(kind), data


def broadcast_data(nsp: str, data: list, rooms: Any, except_rooms: Any, volatile: bool) -> dict:
    """The data of a BROADCAST entry for the EVENT ``data`` (``[event, *args]``)."""
    return {"packet": {"type": 2, "data": list(data), "nsp": nsp},
            "opts": {"rooms": list(rooms), "except": list(except_rooms),
                     "flags": {"volatile": True} if volatile else {}}}


def decode_broadcast(data: Any) -> tuple[list, list[str], list[str], bool, bool]:
    """``(event data, rooms, except rooms, volatile, with_ack)`` of a BROADCAST entry's data."""
    if not isinstance(data, dict):
        raise MalformedMessage("a broadcast's data is an object")
    packet, opts = data.get("packet"), data.get("opts") or {}
    if not isinstance(packet, dict) or not isinstance(opts, dict):
        raise MalformedMessage("a broadcast has a packet and opts")
    event = packet.get("data")
    if not isinstance(event, list) or not event or not isinstance(event[0], str):
        raise MalformedMessage("a broadcast's packet has no event")
    rooms, except_rooms = targets(opts)
    flags = opts.get("flags") or {}
    volatile = isinstance(flags, dict) and bool(flags.get("volatile"))
    with_ack = data.get("requestId") is not None or packet.get("id") is not None
    return event, rooms, except_rooms, volatile, with_ack


def targets(opts: Any) -> tuple[list[str], list[str]]:
    """``opts.rooms`` and ``opts.except`` as lists of names."""
    if not isinstance(opts, dict):
        raise MalformedMessage("opts is an object")
    rooms, except_rooms = opts.get("rooms") or [], opts.get("except") or []
    if not isinstance(rooms, list) or not isinstance(except_rooms, list):
        raise MalformedMessage("rooms and except are arrays")
    return [str(r) for r in rooms], [str(r) for r in except_rooms]


def encode_session(nsp: str, sid: str, pid: str, rooms: Any, data: Any) -> str:
    """A lost session as stored in Redis; ``TypeError``/``ValueError`` if ``data`` is not msgpack-able."""
    session = {"sid": sid, "pid": pid, "rooms": sorted(rooms), "data": data, "nsp": nsp}
    return base64.b64encode(pack(session)).decode("ascii")


def decode_session(raw: bytes | str) -> dict:
    """A stored session: a dict with ``sid`` (str), ``pid``, ``rooms`` (list of str), ``data``."""
    try:
        session = unpack(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage(f"a stored session is base64 msgpack: {exc}") from exc
    if not isinstance(session, dict) or not isinstance(session.get("sid"), str) \
            or not isinstance(session.get("rooms", []), list):
        raise MalformedMessage("a stored session has a sid and rooms")
    session["rooms"] = [str(r) for r in session.get("rooms", [])]
    return session


__all__ = ["EMITTER_UID", "EntryId", "MessageType", "broadcast_data",
           "decode_broadcast", "decode_entry", "decode_session",
           "encode_entry", "encode_session", "format_entry_id", "has_binary", "parse_entry_id", "targets"]
