"""The server side of the Socket.IO Admin UI (``@socket.io/admin-ui``).

The Admin UI is a web app that connects to a server's ``/admin`` namespace as
an ordinary Socket.IO client and expects the events its Node package emits:

- on connection: ``session`` (a token the UI reconnects with instead of the
  password), ``config`` (``supportedFeatures``), and in development mode
  ``all_sockets``;
- every ``server_stats_interval`` seconds, to every admin: ``server_stats``
  (``serverId``, ``hostname``, ``pid``, ``uptime``, ``clientsCount``,
  ``pollingClientsCount``, ``aggregatedEvents``, ``namespaces``);
- in development mode, as things happen: ``socket_connected``,
  ``socket_updated`` (a transport upgrade), ``socket_disconnected``,
  ``room_joined``, ``room_left``, ``event_received``, ``event_sent``.

It sends the actions ``emit(nsp, filter, event, *args)``,
``join(nsp, room, filter)``, ``leave(nsp, room, filter)`` and
``_disconnect(nsp, close, filter)``, where ``filter`` is a room (a socket id
is a room) or empty for the whole namespace.

``aggregatedEvents`` (the dashboard's connection and bytes histograms) are the
differences of the server's ``metrics.Counters`` between two reports, so
production mode adds nothing to the data path. Development mode registers an
observer on the server (``Server.observers``) that turns sockets, rooms and
events into admin events as they happen.
"""

from __future__ import annotations

import collections
import datetime
import hmac
import json
import logging
import os
import secrets
import socket as socket_module
import time
from typing import TYPE_CHECKING, Any, Callable

import gevent

from .adapter import InMemoryManager
from .exceptions import ConnectionRefusedError

if TYPE_CHECKING:  # pragma: no cover
    from .adapter import Adapter
    from .server import Server
    from .socket import Socket

logger = logging.getLogger("geventsio")

ACTIONS = ("EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT")
MAX_ADMIN_SESSIONS = 1000  # remembered login tokens; the oldest is forgotten first
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def _now() -> str:
    """A timestamp as the UI reads it (JavaScript's ``Date`` as JSON)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _password_matches(given: Any, expected: str) -> bool:
    if not isinstance(given, str):
        return False
    if expected.startswith(_BCRYPT_PREFIXES):
        import bcrypt  # checked when the instrumentation was set up

        try:
            return bcrypt.checkpw(given.encode("utf-8"), expected.encode("utf-8"))
        except ValueError:
            return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _credentials_match(given: Any, expected: dict) -> bool:
    if not isinstance(given, dict):
        return False
    for key, value in expected.items():
        if key == "password":
            if not _password_matches(given.get(key), value):
                return False
        elif given.get(key) != value:
            return False
    return True


def _json_safe(data: Any) -> Any:
    """``socket.data`` as the UI may show it: anything JSON cannot carry becomes its repr."""
    try:
        json.dumps(data)
        return data
    except (TypeError, ValueError):
        return {"repr": repr(data)[:1000]}


class AdminInstrumentation:
    """What ``Server.instrument()`` sets up; ``stop()`` takes it all down again."""

    def __init__(self, sio: "Server", auth: Any = None, mode: str = "development",
                 read_only: bool = False, server_id: str | None = None, namespace: str = "/admin",
                 server_stats_interval: float = 2):
        if auth is None:
            raise ValueError("instrument() needs auth: {'username': ..., 'password': ...}, "
                             "a list of them, a callable, or False to allow anyone")
        if mode not in ("development", "production"):
            raise ValueError(f"mode must be 'development' or 'production', not {mode!r}")
        self._credentials: list[dict] = []
        self._auth_callable: Callable[[Any], Any] | None = None
        if callable(auth):
            self._auth_callable = auth
        elif auth is not False:
            self._credentials = [auth] if isinstance(auth, dict) else list(auth)
            for credentials in self._credentials:
                _check_credentials(credentials)
        self.sio = sio
        self.auth_required = auth is not False
        self.namespace = namespace
        self.development = mode == "development"
        self.read_only = read_only
        # Servers of a cluster may share a host: the UI tells them apart by this id.
        clustered = not isinstance(sio.client_manager, InMemoryManager)
        self.server_id = server_id or (f"{socket_module.gethostname()}#{os.getpid()}" if clustered
                                       else socket_module.gethostname())
        self.interval = server_stats_interval
        features = [] if read_only else list(ACTIONS)
        features.append("AGGREGATED_EVENTS")
        if self.development:
            features.append("ALL_EVENTS")
        self.features = features
        self._tokens: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._last_counts = self._counts()
        self._transports: dict[str, str] = {}  # sid -> transport last reported (development mode)
        self._observer = _Observer(self) if self.development else None
        self._stopped = False

        sio.on("connect", self._on_connect, namespace=namespace)
        for event, action in (("emit", self._emit), ("join", self._join), ("leave", self._leave),
                              ("_disconnect", self._disconnect)):
            sio.on(event, self._guarded(event, action), namespace=namespace)
        if self._observer is not None:
            sio.observers.append(self._observer)
        sio._adapter(namespace)
        self._ticker = gevent.spawn(self._tick_forever)

    # -- the admin namespace -----------------------------------------------

    def _authorized(self, auth: Any) -> bool:
        if not self.auth_required:
            return True
        if self._auth_callable is not None:
            return bool(self._auth_callable(auth))
        return any(_credentials_match(auth, c) for c in self._credentials)

    def _on_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        token = auth.get("sessionId") if isinstance(auth, dict) else None
        if not (isinstance(token, str) and token in self._tokens):
            if not self._authorized(auth):
                logger.info("admin: refused a connection with invalid credentials from %s",
                            environ.get("REMOTE_ADDR"))
                raise ConnectionRefusedError("invalid credentials")
            if self.auth_required:
                token = secrets.token_hex(8)
                self._tokens[token] = None
                while len(self._tokens) > MAX_ADMIN_SESSIONS:
                    self._tokens.popitem(last=False)
                self._emit_to(sid, "session", token)
        self._emit_to(sid, "config", {"supportedFeatures": self.features})
        if self.development:
            self._emit_to(sid, "all_sockets", self.all_sockets(connecting=sid))
        # The UI lists this server as soon as it has its first report.
        self._emit_to(sid, "server_stats", self.server_stats(aggregated=[]))

    def _emit_to(self, sid: str | None, event: str, *args: Any) -> None:
        self.sio._emit(self.namespace, frozenset([sid]) if sid else frozenset(), frozenset(),
                       [event, *args], None, None)

    def _guarded(self, name: str, action: Callable[..., None]) -> Callable[..., Any]:
        def handler(sid: str, *args: Any) -> Any:
            if self.read_only:
                logger.info("admin: refused %r from %s: the admin interface is read-only", name, sid)
                return {"error": "read-only"}
            nsp = args[0] if args else None
            if not isinstance(nsp, str) or nsp not in self.sio.adapters:
                return {"error": f"unknown namespace {nsp!r}"}
            try:
                action(*args)
            except (TypeError, ValueError) as exc:
                logger.info("admin: invalid %r from %s: %s", name, sid, exc)
                return {"error": str(exc)}
            return None
        return handler

    def _targets(self, nsp: str, room_filter: Any) -> Any:
        operator = self.sio.of(nsp)
        if room_filter:
            if not isinstance(room_filter, str):
                raise TypeError("the filter must be a room name")
            operator = operator.to(room_filter)
        return operator

    def _emit(self, nsp: str, room_filter: Any = None, event: Any = None, *args: Any) -> None:
        if not isinstance(event, str):
            raise TypeError("the event name must be a string")
        self._targets(nsp, room_filter).emit(event, *args)

    def _join(self, nsp: str, room: Any = None, room_filter: Any = None) -> None:
        if not isinstance(room, str):
            raise TypeError("the room must be a string")
        self._targets(nsp, room_filter).sockets_join(room)

    def _leave(self, nsp: str, room: Any = None, room_filter: Any = None) -> None:
        if not isinstance(room, str):
            raise TypeError("the room must be a string")
        self._targets(nsp, room_filter).sockets_leave(room)

    def _disconnect(self, nsp: str, close: Any = False, room_filter: Any = None) -> None:
        self._targets(nsp, room_filter).disconnect_sockets(close=bool(close))

    # -- what the UI is told ---------------------------------------------------

    def serialize(self, adapter: "Adapter", sid: str) -> dict[str, Any]:
        """One socket as the UI's socket list shows it."""
        info = adapter.local_socket_info(sid)
        handshake = dict(info.handshake)
        handshake.pop("auth", None)  # credentials stay on the server
        headers = handshake.get("headers", {})
        handshake["address"] = headers.get("cf-connecting-ip") or headers.get("x-forwarded-for") \
            or handshake.get("address")
        socket = adapter.sockets[sid]
        engine_sid = socket.connection.session.sid
        return {
            "id": sid,
            "clientId": engine_sid[:12],
            "transport": self.sio.eio.transport(engine_sid) or "polling",
            "nsp": adapter.namespace,
            "data": _json_safe(socket.data),
            "handshake": handshake,
            "rooms": info.rooms,
        }

    def all_sockets(self, connecting: str | None = None) -> list[dict[str, Any]]:
        """Every socket of this server, in every namespace (``connecting``: one being admitted)."""
        found = []
        for adapter in list(self.sio.adapters.values()):
            for sid, socket in list(adapter.sockets.items()):
                if socket.connected or sid == connecting:
                    found.append(self.serialize(adapter, sid))
        return found

    def _counts(self) -> dict[str, Any]:
        c = self.sio.eio.counters
        return {"rawConnection": c.handshakes, "packetsIn": c.packets_in, "packetsOut": c.packets_out,
                "bytesIn": c.bytes_in, "bytesOut": c.bytes_out, "rawDisconnection": dict(c.engine_closes)}

    def aggregated_events(self) -> list[dict[str, Any]]:
        """What happened since the last report, as the dashboard's histograms count it."""
        now = self._counts()
        last, self._last_counts = self._last_counts, now
        timestamp = int(time.time()) * 1000
        events = []
        for kind in ("rawConnection", "packetsIn", "packetsOut", "bytesIn", "bytesOut"):
            delta = now[kind] - last[kind]
            if delta:
                events.append({"timestamp": timestamp, "type": kind, "count": delta})
        for reason, total in now["rawDisconnection"].items():
            delta = total - last["rawDisconnection"].get(reason, 0)
            if delta:
                events.append({"timestamp": timestamp, "type": "rawDisconnection", "subType": reason,
                               "count": delta})
        return events

    def server_stats(self, aggregated: list | None = None) -> dict[str, Any]:
        eio = self.sio.eio
        polling = sum(1 for s in list(eio.sessions.values()) if eio.transport(s.sid) == "polling")
        return {
            "serverId": self.server_id,
            "hostname": socket_module.gethostname(),
            "pid": os.getpid(),
            "uptime": time.time() - eio.counters.started,
            "clientsCount": len(eio.sessions),
            "pollingClientsCount": polling,
            "aggregatedEvents": self.aggregated_events() if aggregated is None else aggregated,
            "namespaces": [{"name": nsp, "socketsCount": len(adapter.sockets)}
                           for nsp, adapter in list(self.sio.adapters.items())],
        }

    def _report_upgrades(self) -> None:
        """``socket_updated`` for every socket whose transport changed since the last look."""
        seen: dict[str, str] = {}
        for adapter in list(self.sio.adapters.values()):
            for sid, socket in list(adapter.sockets.items()):
                transport = self.sio.eio.transport(socket.connection.session.sid)
                if transport is None or not socket.connected:
                    continue
                seen[sid] = transport
                if self._transports.get(sid, transport) != transport:
                    self._emit_to(None, "socket_updated",
                                  {"id": sid, "nsp": adapter.namespace, "transport": transport})
        self._transports = seen

    def _tick_forever(self) -> None:
        while not self._stopped:
            gevent.sleep(self.interval)
            if self._stopped:
                return
            try:
                admins = self.sio.adapters.get(self.namespace)
                if admins is not None and admins.sockets:
                    if self.development:
                        self._report_upgrades()
                    self._emit_to(None, "server_stats", self.server_stats())
                else:
                    self._last_counts = self._counts()  # nobody watched this interval
            except Exception:
                logger.exception("admin: the statistics report failed")

    def stop(self) -> None:
        """Stop reporting, disconnect the admins and unregister the admin namespace's handlers."""
        if self._stopped:
            return
        self._stopped = True
        self._ticker.kill(block=False)
        if self._observer is not None and self._observer in self.sio.observers:
            self.sio.observers.remove(self._observer)
        self.sio.table.handlers.pop(self.namespace, None)
        adapter = self.sio.adapters.get(self.namespace)
        if adapter is not None:
            for sid in list(adapter.sockets):
                self.sio.disconnect(sid, self.namespace)


def _check_credentials(credentials: Any) -> None:
    if not isinstance(credentials, dict) or not credentials:
        raise ValueError("each set of admin credentials must be a non-empty dict")
    password = credentials.get("password")
    if isinstance(password, str) and password.startswith(_BCRYPT_PREFIXES):
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ValueError("the admin password is a bcrypt hash: pip install bcrypt") from None


class _Observer:
    """Development mode: tells the admins of every socket, room change and event, as it happens.

    Called by the server (``Server.observers``) and the adapters; the admin
    namespace's own events are not reported (reporting them would be reported
    again, without end).
    """

    def __init__(self, admin: AdminInstrumentation):
        self.admin = admin
        self.namespace = admin.namespace

    def _watched(self) -> bool:
        admins = self.admin.sio.adapters.get(self.namespace)
        return admins is not None and bool(admins.sockets)

    def socket_connected(self, socket: "Socket") -> None:
        if not self._watched():
            return
        adapter = self.admin.sio.adapters.get(socket.namespace)
        if adapter is not None and socket.sid in adapter.sockets:
            serialized = self.admin.serialize(adapter, socket.sid)
            self.admin._transports[socket.sid] = serialized["transport"]  # to notice its upgrade
            self.admin._emit_to(None, "socket_connected", serialized, _now())

    def socket_disconnected(self, socket: "Socket", reason: str) -> None:
        if socket.connected and self._watched():
            self.admin._emit_to(None, "socket_disconnected", socket.namespace, socket.sid, reason, _now())

    def _connected(self, nsp: str, sid: str) -> bool:
        socket = self.admin.sio.sockets.get(sid)
        return socket is not None and socket.connected and socket.namespace == nsp

    def room_joined(self, nsp: str, room: str, sid: str) -> None:
        # A socket's rooms while it connects arrive with its socket_connected.
        if self._connected(nsp, sid) and self._watched():
            self.admin._emit_to(None, "room_joined", nsp, room, sid, _now())

    def room_left(self, nsp: str, room: str, sid: str) -> None:
        if self._connected(nsp, sid) and self._watched():
            self.admin._emit_to(None, "room_left", nsp, room, sid, _now())

    def event_received(self, socket: "Socket", data: list) -> None:
        if socket.namespace != self.namespace and self._watched():
            self.admin._emit_to(None, "event_received", socket.namespace, socket.sid, data, _now())

    def event_sent(self, socket: "Socket", data: list) -> None:
        if socket.namespace != self.namespace and self._watched():
            self.admin._emit_to(None, "event_sent", socket.namespace, socket.sid, data, _now())

    def events_sent(self, adapter: "Adapter", rooms: Any, except_rooms: Any, data: list) -> None:
        if adapter.namespace == self.namespace or not self._watched():
            return
        stamp = _now()
        for sid in sorted(adapter.sids_in(rooms, except_rooms)):
            if sid in adapter.sockets:
                self.admin._emit_to(None, "event_sent", adapter.namespace, sid, data, stamp)
