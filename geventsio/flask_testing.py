"""The Flask test client: a Socket.IO client that speaks long-polling through the app's WSGI stack.

Every packet is really encoded and decoded, binary attachments included, and
goes through ``WSGIApp``, the Engine.IO polling transport and the Socket.IO
server, in process, without a network socket. After each action the client
waits for the session's handlers to finish, then collects what they sent.
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

from .engine.packet import PacketType as EIOType, decode_payload, encode_payload
from .socketio_packet import Packet, PacketType

if TYPE_CHECKING:  # pragma: no cover
    import flask

    from .flask import SocketIO

_HANDLER_TIMEOUT = 10


class SocketIOTestClient:
    """Flask-SocketIO's test client API, over geventsio's real layers."""

    def __init__(self, app: "flask.Flask", socketio: "SocketIO", namespace: str | None = None,
                 query_string: str | None = None, headers: dict | None = None, auth: Any = None,
                 flask_test_client: Any = None):
        self.app = app
        self.socketio = socketio
        self.http = flask_test_client if flask_test_client is not None else app.test_client()
        self.eio_sid: str | None = None
        self.sids: dict[str, str] = {}
        self.connect_errors: dict[str, Any] = {}
        self.queue: list[dict] = []
        self.acks: dict[int, list] = {}
        self._decoder = socketio._srv().parser.decoder(socketio._srv().max_attachments)
        self._ack_ids = itertools.count(1)
        self._query_string = query_string
        self._headers = headers
        self.connect(namespace=namespace, query_string=query_string, headers=headers, auth=auth)

    # -- HTTP -----------------------------------------------------------

    def _request(self, method: str, body: str | None = None) -> tuple[int, str]:
        query = "EIO=4&transport=polling"
        if self.eio_sid is not None:
            query += "&sid=" + self.eio_sid
        if self._query_string:
            query += "&" + self._query_string.lstrip("?")
        resp = self.http.open("/" + self.socketio.path + "/", method=method, query_string=query,
                              data=body, headers=self._headers,
                              content_type="text/plain;charset=UTF-8" if body is not None else None)
        return resp.status_code, resp.get_data(as_text=True)

    def _post_packet(self, packet: Packet) -> None:
        frames = self.socketio._srv().parser.to_frames(packet)
        status, body = self._request("POST", encode_payload(frames))
        if status != 200:
            raise RuntimeError(f"the server refused a packet: HTTP {status} {body}")

    def _pump(self) -> None:
        """Let the session's handlers finish, then collect everything queued for this client."""
        eio = self.socketio._srv().eio
        session = eio.sessions.get(self.eio_sid) if self.eio_sid else None
        while session is not None:
            session.join_dispatcher(_HANDLER_TIMEOUT)
            if not session.has_frames:
                break
            status, body = self._request("GET")
            if status != 200:
                break
            for eio_packet in decode_payload(body):
                if eio_packet.type is EIOType.MESSAGE:
                    packet = self._decoder.feed(eio_packet.data)
                    if packet is not None:
                        self._receive(packet)
                elif eio_packet.type is EIOType.PING:
                    self._request("POST", "3")
            session = eio.sessions.get(self.eio_sid)
        if session is None:
            self.sids.clear()

    def _receive(self, packet: Packet) -> None:
        nsp = packet.namespace
        t = packet.type
        if t is PacketType.CONNECT:
            self.sids[nsp] = packet.data["sid"]
            self.connect_errors.pop(nsp, None)
        elif t is PacketType.CONNECT_ERROR:
            self.sids.pop(nsp, None)
            self.connect_errors[nsp] = packet.data
        elif t is PacketType.DISCONNECT:
            self.sids.pop(nsp, None)
        elif t in (PacketType.EVENT, PacketType.BINARY_EVENT):
            name, *args = packet.data
            # Flask-SocketIO's shape: "message"/"json" events carry their one argument bare.
            value: Any = args[0] if name in ("message", "json") and args else args
            self.queue.append({"name": name, "args": value, "namespace": nsp})
        elif t in (PacketType.ACK, PacketType.BINARY_ACK):
            self.acks[packet.id] = packet.data

    # -- API ------------------------------------------------------------

    def connect(self, namespace: str | None = None, query_string: str | None = None,
                headers: dict | None = None, auth: Any = None) -> None:
        """Connect to a namespace (opening the Engine.IO session first if needed)."""
        if self.eio_sid is None or self.eio_sid not in self.socketio._srv().eio.sessions:
            if query_string is not None:
                self._query_string = query_string
            if headers is not None:
                self._headers = headers
            self.eio_sid = None
            self._decoder = self.socketio._srv().parser.decoder(self.socketio._srv().max_attachments)
            status, body = self._request("GET")
            if status != 200 or not body.startswith("0"):
                raise RuntimeError(f"handshake failed: HTTP {status} {body}")
            self.eio_sid = json.loads(body[1:])["sid"]
        self._post_packet(Packet(PacketType.CONNECT, namespace or "/", auth))
        self._pump()

    def disconnect(self, namespace: str | None = None) -> None:
        nsp = namespace or "/"
        if nsp not in self.sids:
            raise RuntimeError("not connected")
        self._post_packet(Packet(PacketType.DISCONNECT, nsp))
        self.sids.pop(nsp, None)
        self._pump()

    def emit(self, event: str, *args: Any, callback: bool = False, namespace: str | None = None) -> Any:
        """Emit an event; with ``callback=True`` return the server's acknowledgement."""
        nsp = namespace or "/"
        if nsp not in self.sids:
            raise RuntimeError("not connected")
        ack_id = next(self._ack_ids) if callback else None
        self._post_packet(Packet(PacketType.EVENT, nsp, [event, *args], ack_id))
        self._pump()
        if ack_id is not None:
            ack = self.acks.pop(ack_id, None)
            if ack is None:
                return None
            return ack[0] if len(ack) == 1 else ack
        return None

    def send(self, data: Any, json: bool = False, callback: bool = False,
             namespace: str | None = None) -> Any:
        return self.emit("json" if json else "message", data, callback=callback, namespace=namespace)

    def get_received(self, namespace: str | None = None) -> list[dict]:
        """Events received for a namespace since the last call, oldest first."""
        self._pump()
        nsp = namespace or "/"
        mine = [e for e in self.queue if e["namespace"] == nsp]
        self.queue = [e for e in self.queue if e["namespace"] != nsp]
        return mine

    def is_connected(self, namespace: str | None = None) -> bool:
        self._pump()
        return (namespace or "/") in self.sids
