"""The wire format of Node's ``@socket.io/redis-adapter`` 8.x (classic) and ``@socket.io/redis-emitter``.

Pure functions, no I/O: channel names, and encoding/decoding of the messages
the servers of a cluster exchange.

- Broadcasts: msgpack ``[uid, packet, opts]`` on ``{key}#{nsp}#``, or on
  ``{key}#{nsp}#{room}#`` when they target exactly one room; ``packet`` is
  ``{"type": 2, "data": [event, *args], "nsp": nsp}``, ``opts`` is
  ``{"rooms": [...], "except": [...], "flags": {...}}``. Binary values are
  msgpack bin (Node Buffers).
- Requests on ``{key}-request#{nsp}#``: JSON objects with ``type`` (a
  ``RequestType``), ``uid`` and mostly ``requestId``; a broadcast with
  acknowledgements is msgpack. A receiver tells them apart by a leading ``{``.
- Responses on ``{key}-response#{nsp}#`` (or ``...#{uid}#``): JSON, except
  ``BROADCAST_ACK`` (msgpack).

Node's msgpack codec (notepack.io) writes ``undefined`` as the fixext 1 of
type 0 and, in old versions, ArrayBuffers and Dates as ext type 0: they decode
here as ``None``, ``bytes`` and an ISO 8601 string (what Node's JSON encoder
would send a client for a Date).
"""

from __future__ import annotations

import datetime
import enum
import json
import secrets
from typing import Any

import msgpack

EMITTER_UID = "emitter"  # the uid @socket.io/redis-emitter puts in its messages


class RequestType(enum.IntEnum):
    """Request types between the servers of a cluster, numbered as Node's adapter 8.x numbers them."""

    SOCKETS = 0
    ALL_ROOMS = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3
    REMOTE_DISCONNECT = 4
    REMOTE_FETCH = 5
    SERVER_SIDE_EMIT = 6
    BROADCAST = 7
    BROADCAST_CLIENT_COUNT = 8
    BROADCAST_ACK = 9


class MalformedMessage(ValueError):
    """A message on a cluster channel that does not have the expected shape."""


def new_uid() -> str:
    """A random server / request id, 12 characters like Node's ``uid2(6)``."""
    return secrets.token_hex(6)


def broadcast_channel(key: str, nsp: str) -> str:
    return f"{key}#{nsp}#"


def request_channel(key: str, nsp: str) -> str:
    return f"{key}-request#{nsp}#"


def response_channel(key: str, nsp: str) -> str:
    return f"{key}-response#{nsp}#"


def specific_response_channel(key: str, nsp: str, uid: str) -> str:
    return f"{key}-response#{nsp}#{uid}#"


def broadcast_target(key: str, nsp: str, rooms: Any) -> str:
    """The channel a broadcast is published on: the room's own channel when there is exactly one."""
    rooms = list(rooms)
    base = broadcast_channel(key, nsp)
    return base + rooms[0] + "#" if len(rooms) == 1 else base


def room_of_channel(channel: str, key: str, nsp: str) -> str:
    """``""`` for the namespace's broadcast channel, else the room named in it."""
    base = broadcast_channel(key, nsp)
    if not channel.startswith(base) or not channel.endswith("#") and channel != base:
        raise MalformedMessage(f"not a broadcast channel of {nsp!r}: {channel!r}")
    return channel[len(base):-1] if len(channel) > len(base) else ""


# -- msgpack -----------------------------------------------------------------


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        if len(data) == 1:
            return None  # notepack's undefined
        if len(data) == 8:  # notepack's old Date: signed milliseconds, high word first
            ms = int.from_bytes(data[:4], "big", signed=True) * 2 ** 32 + int.from_bytes(data[4:], "big")
            return _iso(datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc))
        return bytes(data)  # notepack's old ArrayBuffer
    return msgpack.ExtType(code, data)


def _iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{value.microsecond // 1000:03d}Z"


def _plain(value: Any) -> Any:
    """Timestamps (msgpack ext -1, Node Dates) as ISO strings, at any depth."""
    if isinstance(value, msgpack.Timestamp):
        return _iso(value.to_datetime())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _has_timestamp(raw: bytes) -> bool:
    # ext -1 is written as fixext 4 / fixext 8 / ext 8 with type byte 0xff: cheap pre-check
    return b"\xd6\xff" in raw or b"\xd7\xff" in raw or b"\xc7\x0c\xff" in raw


def unpack(raw: bytes) -> Any:
    """Decode one msgpack message as Node's notepack.io wrote it."""
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=False, ext_hook=_ext_hook)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise MalformedMessage(f"not msgpack ({type(exc).__name__}: {exc})") from exc
    return _plain(value) if _has_timestamp(raw) else value


def pack(value: Any) -> bytes:
    """Encode as msgpack with bytes as bin and str as str, as Node's notepack.io reads them."""
    return msgpack.packb(value, use_bin_type=True)


# -- broadcasts ----------------------------------------------------------------


def encode_broadcast(uid: str, nsp: str, data: list, rooms: Any = (), except_rooms: Any = (),
                     flags: dict | None = None) -> bytes:
    """The message of one broadcast of the EVENT ``data`` (``[event, *args]``)."""
    packet = {"type": 2, "data": list(data), "nsp": nsp}
    opts = {"rooms": list(rooms), "except": list(except_rooms), "flags": flags or {}}
    return pack([uid, packet, opts])


def decode_broadcast(raw: bytes) -> tuple[str, dict, list[str], list[str], dict]:
    """``(uid, packet, rooms, except_rooms, flags)`` of a broadcast message; ``MalformedMessage`` if not one.

    ``packet`` has ``type``, ``data`` (a non-empty list) and ``nsp`` (``"/"`` if absent).
    """
    value = unpack(raw)
    if not isinstance(value, list) or len(value) < 2:
        raise MalformedMessage("a broadcast is an array [uid, packet, opts]")
    uid, packet = value[0], value[1]
    opts = value[2] if len(value) > 2 and value[2] is not None else {}
    if not isinstance(packet, dict) or not isinstance(opts, dict):
        raise MalformedMessage("a broadcast's packet and opts are maps")
    if packet.get("nsp") is None:
        packet["nsp"] = "/"
    data = packet.get("data")
    if not isinstance(data, list) or not data or not isinstance(packet["nsp"], str):
        raise MalformedMessage("a broadcast's packet has no event")
    rooms = opts.get("rooms") or []
    except_rooms = opts.get("except") or []
    flags = opts.get("flags") or {}
    if not isinstance(rooms, list) or not isinstance(except_rooms, list) or not isinstance(flags, dict):
        raise MalformedMessage("a broadcast's rooms and except are arrays")
    return (str(uid), packet, [str(r) for r in rooms], [str(r) for r in except_rooms], flags)


# -- requests and responses ----------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # What Node's JSON.stringify makes of a Buffer.
        return {"type": "Buffer", "data": list(bytes(value))}
    return str(value)


def encode_json(message: dict) -> bytes:
    """A request or response as JSON (the format of every type but the broadcast with acks)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode()


def decode_message(raw: bytes | str) -> dict:
    """A request or response: JSON if it starts with ``{``, else msgpack; ``MalformedMessage`` if neither."""
    if isinstance(raw, str):
        raw = raw.encode()
    if raw[:1] == b"{":
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise MalformedMessage(f"invalid JSON: {exc}") from exc
    else:
        value = unpack(raw)
    if not isinstance(value, dict):
        raise MalformedMessage("a request or response is an object")
    kind = value.get("type")
    if kind is not None and (not isinstance(kind, int) or isinstance(kind, bool)):
        raise MalformedMessage(f"a request type is a number, not {kind!r}")
    return value


def targets_of(request: dict) -> tuple[list[str], list[str]]:
    """The ``opts.rooms`` / ``opts.except`` of a request."""
    opts = request.get("opts") or {}
    if not isinstance(opts, dict):
        raise MalformedMessage("a request's opts is an object")
    rooms = opts.get("rooms") or []
    except_rooms = opts.get("except") or []
    if not isinstance(rooms, list) or not isinstance(except_rooms, list):
        raise MalformedMessage("a request's rooms and except are arrays")
    return [str(r) for r in rooms], [str(r) for r in except_rooms]


def rooms_list(value: Any) -> list[str]:
    """The ``rooms`` of a join / leave request: a list (or, from old emitters, one name)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise MalformedMessage("a request's rooms is an array")
    return [str(r) for r in value]
