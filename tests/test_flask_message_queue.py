"""Flask-SocketIO's ``message_queue``: apps sharing Redis, and an emit-only SocketIO without an app."""

from __future__ import annotations

from typing import Iterator

import flask
import pytest
from flask import request
from redis_support import REDIS_URL, WAIT, Inbox, require_redis, unique_key, wait_subscribers

import geventsio
from geventsio.flask import SocketIO, join_room

REDIS = require_redis()


@pytest.fixture
def cluster(serve_app) -> Iterator[tuple[str, list, list]]:
    """Two Flask apps on one Redis channel: (channel, [(url, socketio, wsgi_server)] * 2, clients)."""
    channel = unique_key()
    members = []
    for _ in range(2):
        app = flask.Flask(__name__)
        socketio = SocketIO(app, message_queue=REDIS_URL, channel=channel)

        @socketio.event
        def join(room):
            join_room(room)
            return request.sid

        wsgi_server = geventsio.make_server(app, "127.0.0.1", 0)
        wsgi_server.start()
        members.append((f"http://127.0.0.1:{wsgi_server.server_port}", socketio, wsgi_server))
    wait_subscribers(REDIS, channel, 2)
    clients: list[geventsio.Client] = []
    yield channel, members, clients
    for client in clients:
        client.disconnect()
    for _, socketio, wsgi_server in members:
        wsgi_server.stop(timeout=1)
        socketio.server.shutdown(timeout=0.5)


def client_in_room(url: str, room: str, clients: list) -> Inbox:
    client = geventsio.Client(reconnection=False)
    inbox = Inbox()
    client.on("news", lambda *args: inbox.add(list(args)))
    client.connect(url, transports=["websocket"], wait_timeout=WAIT)
    clients.append(client)
    client.call("join", room, timeout=WAIT)
    return inbox


def test_an_emit_on_one_app_reaches_clients_of_the_other(cluster) -> None:
    channel, ((url_a, socketio_a, _), (url_b, socketio_b, _)), clients = cluster
    on_a, on_b = client_in_room(url_a, "r", clients), client_in_room(url_b, "r", clients)
    socketio_a.emit("news", "from A", to="r")
    socketio_b.emit("news", "from B", to="r")
    for inbox in (on_a, on_b):
        inbox.wait_for(["from A"])
        inbox.wait_for(["from B"])


def test_socketio_without_an_app_emits_through_the_queue(cluster) -> None:
    channel, ((url_a, _, _), (url_b, _, _)), clients = cluster
    on_a, on_b = client_in_room(url_a, "r", clients), client_in_room(url_b, "elsewhere", clients)
    worker = SocketIO(message_queue=REDIS_URL, channel=channel)  # a Celery task's view of the cluster
    worker.emit("news", "to r", to="r")
    worker.emit("news", "to everyone")
    on_a.wait_for(["to r"])
    on_a.wait_for(["to everyone"])
    on_b.wait_for(["to everyone"])
    assert ["to r"] not in on_b.messages
    with pytest.raises(ValueError):
        worker.emit("news", "x", callback=print)
