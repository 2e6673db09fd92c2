"""One namespace's adapter in a Redis cluster (``RedisManager`` creates them).

Broadcasts are published for the other servers and delivered locally; cluster
requests (``fetch_sockets``, ``all_rooms``, server-side emits, broadcasts with
acknowledgements) are published on the namespace's request channel and their
answers collected from the response channels, in the format of Node's
``@socket.io/redis-adapter`` (``geventsio.redis_protocol``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable

import gevent
import redis
from gevent.event import Event

from . import redis_protocol as proto
from .adapter import Adapter, SocketInfo
from .exceptions import TimeoutError
from .redis_protocol import MalformedMessage, RequestType
from .socketio_packet import Packet, PacketType

if TYPE_CHECKING:  # pragma: no cover
    from .redis_manager import RedisManager
    from .server import Server

logger = logging.getLogger("geventsio.redis")

_REQUEST_NAMES = {
    RequestType.SOCKETS: "sockets",
    RequestType.ALL_ROOMS: "allRooms",
    RequestType.REMOTE_FETCH: "fetchSockets",
    RequestType.SERVER_SIDE_EMIT: "serverSideEmit",
}


class _Pending:
    """One request awaiting ``expected`` responses from the other servers."""

    __slots__ = ("type", "expected", "responses", "done", "failure")

    def __init__(self, kind: RequestType, expected: int):
        self.type = kind
        self.expected = expected
        self.responses: list = []
        self.done = Event()
        self.failure: str | None = None  # why it can no longer be answered

    def fail(self, reason: str) -> None:
        self.failure = reason
        self.done.set()

    def add(self, value: Any) -> None:
        self.responses.append(value)
        if len(self.responses) >= self.expected:
            self.done.set()


class _ClusterAck:
    """A broadcast with acknowledgements, as seen from the server that sent it to the cluster.

    Each other server first answers with how many of its clients it reached,
    then forwards one acknowledgement per client. Until ``timeout`` the
    acknowledgements go to ``callback``; then every client still silent gets
    a ``TimeoutError``, as a local one would.
    """

    __slots__ = ("callback", "direct", "servers_left", "clients", "acks", "on_count", "timer")

    def __init__(self, callback: Callable[..., Any], direct: bool, servers: int,
                 on_count: Callable[[int], Any] | None):
        self.callback = callback
        self.direct = direct
        self.servers_left = servers
        self.clients = 0
        self.acks = 0
        self.on_count = on_count
        self.timer: Any = None

    def run(self, *args: Any) -> None:
        # Never the application's code on the pub/sub reader: it must keep reading.
        if self.direct:
            self.callback(*args)
        else:
            gevent.spawn(self.callback, *args)

    def counted(self, clients: int) -> None:
        self.clients += clients
        self.servers_left -= 1
        if self.servers_left == 0 and self.on_count is not None:
            self.on_count(self.clients)
            self.on_count = None

    def acked(self, value: Any) -> None:
        # Not checked against the count: a server may publish an acknowledgement
        # before its count (on another pooled connection), and both are wanted.
        self.acks += 1
        self.run(value)

    def expire(self, timed: bool) -> None:
        if timed:
            for _ in range(self.clients - self.acks):
                self.run(TimeoutError("no acknowledgement within the time limit"))
        if self.on_count is not None:
            self.on_count(self.clients)  # the servers that never answered count for nothing


class RedisAdapter(Adapter):
    """The adapter of one namespace in a Redis cluster, with its own uid (created by ``RedisManager``)."""

    def __init__(self, namespace: str, server: "Server", manager: RedisManager):
        super().__init__(namespace, server)
        self.manager = manager
        self.uid = proto.new_uid()
        key = manager.key
        self.channel = proto.broadcast_channel(key, namespace)
        self.request_channel = proto.request_channel(key, namespace)
        self.response_channel = proto.response_channel(key, namespace)
        self.specific_response_channel = proto.specific_response_channel(key, namespace, self.uid)
        self.requests: dict[str, _Pending] = {}
        self.cluster_acks: dict[str, _ClusterAck] = {}

    def after_fork(self) -> None:
        """A forked child is another member of the cluster: it needs a uid of its own.

        With its parent's, each would drop the other's broadcasts and requests as its own.
        """
        self.uid = proto.new_uid()
        self.specific_response_channel = proto.specific_response_channel(self.manager.key, self.namespace,
                                                                         self.uid)

    # -- outgoing ------------------------------------------------------------

    def broadcast(self, data: list, frames: list, rooms: Iterable[str] = (),
                  except_rooms: Iterable[str] = (), volatile: bool = False) -> int:
        try:
            message = proto.encode_broadcast(self.uid, self.namespace, data, rooms, except_rooms,
                                             {"volatile": True} if volatile else None)
        except (TypeError, ValueError) as exc:
            logger.error("cannot send %r to the cluster (%s); delivered locally only", data[0], exc)
        else:
            self.manager.publish(proto.broadcast_target(self.manager.key, self.namespace, rooms), message)
        return self.local_broadcast(frames, rooms, except_rooms, volatile)

    def broadcast_with_ack(self, frames: list, ack_id: int, callback: Callable[..., Any],
                           timeout: float | None, direct: bool, rooms: Iterable[str] = (),
                           except_rooms: Iterable[str] = (), data: list | None = None,
                           on_remote_count: Callable[[int], Any] | None = None) -> int:
        rooms, except_rooms = list(rooms), list(except_rooms)
        count = self.local_broadcast_with_ack(frames, ack_id, callback, timeout, direct, rooms, except_rooms)
        others = self.server_count() - 1 if data is not None else 0
        if others <= 0:
            if on_remote_count is not None:
                on_remote_count(0)
            return count
        request_id = proto.new_uid()
        flags = {"timeout": int(timeout * 1000)} if timeout is not None else {}
        try:
            # msgpack, as Node's adapter sends this request: the packet may hold binaries.
            message = proto.pack({"uid": self.uid, "requestId": request_id,
                                  "type": int(RequestType.BROADCAST),
                                  "packet": {"type": int(PacketType.EVENT), "data": list(data),
                                             "nsp": self.namespace},
                                  "opts": {"rooms": rooms, "except": except_rooms, "flags": flags}})
        except (TypeError, ValueError) as exc:
            logger.error("cannot send %r to the cluster (%s); delivered locally only", data[0], exc)
            if on_remote_count is not None:
                on_remote_count(0)
            return count
        pending = self.cluster_acks[request_id] = _ClusterAck(callback, direct, others, on_remote_count)
        # Without a time limit the other servers' acknowledgements are taken
        # for a minute, then forgotten (nobody is told of the silent ones).
        pending.timer = gevent.get_hub().loop.timer(timeout if timeout is not None else 60.0)
        pending.timer.start(self._expire_cluster_ack, request_id, timeout is not None)
        self.manager.publish(self.request_channel, message)
        return count

    def _expire_cluster_ack(self, request_id: str, timed: bool) -> None:
        pending = self.cluster_acks.pop(request_id, None)
        if pending is not None:
            pending.expire(timed)

    def _publish_request(self, kind: RequestType, **fields: Any) -> None:
        message = proto.encode_json({"uid": self.uid, "type": int(kind), **fields})
        self.manager.publish(self.request_channel, message)

    def _request(self, kind: RequestType, expected: int, **fields: Any) -> list:
        request_id = proto.new_uid()
        pending = self.requests[request_id] = _Pending(kind, expected)
        name = _REQUEST_NAMES[kind]
        try:
            self.manager.check_available(name)
            self._publish_request(kind, requestId=request_id, **fields)
            if not pending.done.wait(self.manager.requests_timeout) or pending.failure is not None:
                why = pending.failure or "timeout reached"
                error = TimeoutError(f"{why} while waiting for {name} response: "
                                     f"{len(pending.responses)} of {expected} servers answered")
                error.responses = pending.responses  # type: ignore[attr-defined]
                raise error
            return pending.responses
        finally:
            self.requests.pop(request_id, None)

    def server_count(self) -> int:
        """The servers subscribed to this namespace's request channel (``PUBSUB NUMSUB``), self included."""
        try:
            return self._count_servers("serverCount")
        except TimeoutError as exc:
            logger.warning("%s; counting this server only", exc)
            return 1

    def _count_servers(self, what: str) -> int:
        self.manager.check_available(what)
        try:
            counts = self.manager.pub.pubsub_numsub(self.request_channel)
        except (redis.RedisError, OSError) as exc:
            raise TimeoutError(f"{what} failed at once: Redis is unavailable ({exc})") from None
        return int(counts[0][1]) if counts else 0

    def fetch_sockets(self, rooms: Iterable[str] = (), except_rooms: Iterable[str] = ()) -> list[SocketInfo]:
        rooms, except_rooms = list(rooms), list(except_rooms)
        found = self.local_fetch(rooms, except_rooms)
        others = self._count_servers("fetchSockets") - 1
        if others <= 0:
            return found
        for sockets in self._request(RequestType.REMOTE_FETCH, others,
                                     opts={"rooms": rooms, "except": except_rooms}):
            for s in sockets:
                if isinstance(s, dict) and isinstance(s.get("id"), str):
                    found.append(SocketInfo(s["id"], self.namespace, list(s.get("rooms") or []),
                                            s.get("handshake") or {}, s.get("data")))
        return found

    def all_rooms(self) -> set[str]:
        rooms = self.local_rooms()
        others = self._count_servers("allRooms") - 1
        if others > 0:
            for names in self._request(RequestType.ALL_ROOMS, others):
                rooms.update(str(r) for r in names)
        return rooms

    def add_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                    new_rooms: Iterable[str]) -> None:
        rooms, except_rooms, new_rooms = list(rooms), list(except_rooms), list(new_rooms)
        self.local_add_sockets(rooms, except_rooms, new_rooms)
        self._publish_request(RequestType.REMOTE_JOIN, opts={"rooms": rooms, "except": except_rooms},
                              rooms=new_rooms)

    def del_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                    old_rooms: Iterable[str]) -> None:
        rooms, except_rooms, old_rooms = list(rooms), list(except_rooms), list(old_rooms)
        self.local_del_sockets(rooms, except_rooms, old_rooms)
        self._publish_request(RequestType.REMOTE_LEAVE, opts={"rooms": rooms, "except": except_rooms},
                              rooms=old_rooms)

    def disconnect_sockets(self, rooms: Iterable[str], except_rooms: Iterable[str],
                           close: bool = False) -> None:
        rooms, except_rooms = list(rooms), list(except_rooms)
        self.local_disconnect(rooms, except_rooms, close)
        self._publish_request(RequestType.REMOTE_DISCONNECT, opts={"rooms": rooms, "except": except_rooms},
                              close=close)

    def server_side_emit(self, data: list, callback: Callable[..., Any] | None = None,
                         timeout: float | None = None) -> None:
        if callback is None:
            self._publish_request(RequestType.SERVER_SIDE_EMIT, data=list(data))
            return

        def wait_for_answers() -> None:
            try:
                others = self._count_servers("serverSideEmit") - 1
                if others <= 0:
                    callback([])
                    return
                responses = self._request(RequestType.SERVER_SIDE_EMIT, others, data=list(data))
            except TimeoutError as exc:
                callback(exc)
            else:
                callback(responses)

        gevent.spawn(wait_for_answers)

    # -- incoming (on the manager's reader greenlet) ----------------------------

    def on_broadcast(self, channel: str, raw: bytes) -> None:
        room = proto.room_of_channel(channel, self.manager.key, self.namespace)
        if room and room not in self.rooms and self.recovery is None:
            return  # a room with nobody here (and no lost session to log it for): skip decoding
        uid, packet, rooms, except_rooms, flags = proto.decode_broadcast(raw)
        if uid == self.uid or packet["nsp"] != self.namespace:
            return
        if packet.get("type") not in (PacketType.EVENT, PacketType.BINARY_EVENT):
            raise MalformedMessage(f"cannot broadcast a packet of type {packet.get('type')!r}")
        volatile = bool(flags.get("volatile"))
        if self.recovery is not None and not volatile:
            frames = self.recovery.record(packet["data"], frozenset(rooms), frozenset(except_rooms))
        else:
            frames = self.server.parser.to_frames(Packet(PacketType.EVENT, self.namespace, packet["data"]))
        self.local_broadcast(frames, rooms, except_rooms, volatile)

    def on_request(self, raw: bytes) -> None:
        request = proto.decode_message(raw)
        kind = request.get("type")
        request_id = request.get("requestId")
        if request.get("uid") == self.uid or request_id in self.requests:
            return  # our own request, heard back
        if kind == RequestType.SOCKETS:
            rooms = proto.rooms_list(request.get("rooms") or [])
            self._respond({"requestId": request_id, "sockets": sorted(self.sids_in(rooms))})
        elif kind == RequestType.ALL_ROOMS:
            self._respond({"requestId": request_id, "rooms": sorted(self.local_rooms())})
        elif kind in (RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE, RequestType.REMOTE_DISCONNECT):
            self._on_remote_operation(kind, request)
        elif kind == RequestType.REMOTE_FETCH:
            rooms, except_rooms = proto.targets_of(request)
            sockets = [s.to_json() for s in self.local_fetch(rooms, except_rooms)]
            self._respond({"requestId": request_id, "sockets": sockets})
        elif kind == RequestType.SERVER_SIDE_EMIT:
            data = request.get("data")
            if not isinstance(data, list) or not data or not isinstance(data[0], str):
                raise MalformedMessage("a server-side emit has no event")
            gevent.spawn(self._run_server_side, data, request_id)
        elif kind == RequestType.BROADCAST:
            self._on_broadcast_with_ack(request)
        else:
            logger.debug("ignored a request of type %r", kind)

    def _on_remote_operation(self, kind: int, request: dict) -> None:
        if request.get("opts") is not None:
            rooms, except_rooms = proto.targets_of(request)
            if kind == RequestType.REMOTE_JOIN:
                self.local_add_sockets(rooms, except_rooms, proto.rooms_list(request.get("rooms") or []))
            elif kind == RequestType.REMOTE_LEAVE:
                self.local_del_sockets(rooms, except_rooms, proto.rooms_list(request.get("rooms") or []))
            else:
                self.local_disconnect(rooms, except_rooms, bool(request.get("close")))
            return
        sid = request.get("sid")  # the single-socket form of older adapters
        if not isinstance(sid, str) or sid not in self.sockets:
            return
        if kind == RequestType.REMOTE_JOIN:
            self.add(sid, str(request.get("room")))
        elif kind == RequestType.REMOTE_LEAVE:
            self.discard(sid, str(request.get("room")))
        else:
            self.local_disconnect([sid], [], bool(request.get("close")))
        self._respond({"requestId": request.get("requestId")})

    def _run_server_side(self, data: list, request_id: Any) -> None:
        try:
            result = self.server._server_side_event(self.namespace, data)
        except Exception:
            logger.exception("server-side handler of %r failed", data[0])
            return
        if request_id is not None:
            # Node publishes these answers on the common response channel.
            self.manager.publish(self.response_channel, proto.encode_json(
                {"type": int(RequestType.SERVER_SIDE_EMIT), "requestId": request_id, "data": result}))

    def _on_broadcast_with_ack(self, request: dict) -> None:
        packet = request.get("packet")
        if not isinstance(packet, dict) or not isinstance(packet.get("data"), list) or not packet["data"]:
            raise MalformedMessage("a broadcast request has no packet")
        rooms, except_rooms = proto.targets_of(request)
        flags = (request.get("opts") or {}).get("flags") or {}
        timeout_ms = flags.get("timeout") if isinstance(flags, dict) else None
        timeout = timeout_ms / 1000 if isinstance(timeout_ms, (int, float)) else None
        request_id = request.get("requestId")
        ack_id = self.server._next_ack_id()
        packet = Packet(PacketType.EVENT, self.namespace, packet["data"], ack_id)
        frames = self.server.parser.to_frames(packet)

        def on_ack(*args: Any) -> None:
            if len(args) == 1 and isinstance(args[0], Exception):
                return  # timed out or gone: the requester's own timer covers it
            self._respond(proto.pack({"type": int(RequestType.BROADCAST_ACK), "requestId": request_id,
                                      "packet": args[0] if args else None}))

        count = self.local_broadcast_with_ack(frames, ack_id, on_ack, timeout, True, rooms, except_rooms)
        self._respond({"type": int(RequestType.BROADCAST_CLIENT_COUNT), "requestId": request_id,
                       "clientCount": count})

    def _respond(self, response: dict | bytes) -> None:
        raw = response if isinstance(response, bytes) else proto.encode_json(response)
        self.manager.publish(self.response_channel, raw)

    def on_response(self, raw: bytes) -> None:
        response = proto.decode_message(raw)
        request_id = response.get("requestId")
        ack = self.cluster_acks.get(request_id)  # type: ignore[arg-type]
        if ack is not None:
            kind = response.get("type")
            if kind == RequestType.BROADCAST_CLIENT_COUNT and isinstance(response.get("clientCount"), int):
                ack.counted(response["clientCount"])
            elif kind == RequestType.BROADCAST_ACK:
                ack.acked(response.get("packet"))
            return
        pending = self.requests.get(request_id)  # type: ignore[arg-type]
        if pending is None:
            return
        if pending.type == RequestType.REMOTE_FETCH or pending.type == RequestType.SOCKETS:
            if isinstance(response.get("sockets"), list):
                pending.add(response["sockets"])
        elif pending.type == RequestType.ALL_ROOMS:
            if isinstance(response.get("rooms"), list):
                pending.add(response["rooms"])
        elif pending.type == RequestType.SERVER_SIDE_EMIT:
            pending.add(response.get("data"))

    def close(self) -> None:
        for pending in list(self.requests.values()):
            pending.fail("the server shut down")
        for ack in self.cluster_acks.values():
            ack.timer.stop()
        self.cluster_acks.clear()
