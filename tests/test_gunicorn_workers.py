"""``gunicorn -w 3`` with geventsio's worker, no sticky proxy: long-polling works across workers.

Clients connect straight to gunicorn's one port, so each new TCP connection is
accepted by whichever worker wins it: a client's handshake, its parked GET, its
POSTs and its WebSocket upgrade land on different workers, and every request
for a session another worker owns must be handed to the owner (the owners'
router statistics prove that it happened). Broadcasts between workers go
through Redis (tests/apps/sio_cluster.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import socketio
from redis_support import REDIS_URL, WAIT, Inbox, require_redis, unique_key, wait_subscribers

import geventsio

REDIS = require_redis()
WORKERS = 3


@pytest.fixture
def gunicorn_cluster():
    """(url, key) of ``gunicorn -w 3`` serving tests/apps/sio_cluster.py, every worker subscribed."""
    key = unique_key()
    tests_dir = os.path.dirname(__file__)
    env = dict(os.environ, GEVENTSIO_TEST_REDIS_URL=REDIS_URL, GEVENTSIO_TEST_REDIS_KEY=key)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "geventsio.gunicorn_worker.GeventSocketIOWorker",
         "-w", str(WORKERS), "-b", "127.0.0.1:0", "--chdir", tests_dir, "apps.sio_cluster:app"],
        stderr=subprocess.PIPE, text=True, env=env)
    port = None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if sum("Booting worker" in s for s in seen) == WORKERS:
            break
    assert port is not None, "".join(seen)
    try:
        wait_subscribers(REDIS, key, WORKERS)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    log = "".join(seen) + rest
    assert "Session ID unknown" not in log and "Traceback" not in log, log


def python_socketio_client(url: str, transports, inbox: Inbox) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.on("msg", lambda data: inbox.add(data))
    client.connect(url, transports=transports, wait_timeout=WAIT)
    return client


def geventsio_client(url: str, transports, inbox: Inbox) -> geventsio.Client:
    client = geventsio.Client(reconnection=False)
    client.on("msg", lambda data: inbox.add(data))
    client.connect(url, transports=transports, wait_timeout=WAIT)
    return client


def test_clients_connect_upgrade_and_exchange_events_across_workers(gunicorn_cluster):
    url, _ = gunicorn_cluster
    kinds = ([(python_socketio_client, ["polling"])] * 8 + [(python_socketio_client, None)] * 4
             + [(geventsio_client, ["polling"])] * 8 + [(geventsio_client, None)] * 4)
    clients, inboxes = [], []
    try:
        for make, transports in kinds:
            inbox = Inbox()
            clients.append(make(url, transports, inbox))
            inboxes.append(inbox)
        for n, client in enumerate(clients):
            assert client.call("join", "all", timeout=WAIT) is True
            for i in range(5):
                assert client.call("echo", {"n": n, "i": i}, timeout=WAIT) == {"n": n, "i": i}

        # One broadcast reaches every client, whichever worker owns it (Redis between workers).
        assert clients[0].call("bcast", ("all", "hello everyone"), timeout=WAIT) is True
        for inbox in inboxes:
            inbox.wait_for("hello everyone")

        where = [client.call("where", timeout=WAIT) for client in clients]
        for (_, transports), w in zip(kinds, where):
            assert w["transport"] == ("polling" if transports == ["polling"] else "websocket"), w
        owners = {w["pid"]: w for w in where}
        assert len(owners) >= 2, f"every session landed on one worker: {owners}"
        # Sessions carry their owner's tag, and requests did reach workers that do not own them.
        for client, w in zip(clients, where):
            assert client.eio.sid.startswith(w["tag"]), (client.eio.sid, w)
        assert sum(w["stats"]["received"] for w in owners.values()) > 0, owners
    finally:
        for client in clients:
            client.disconnect()
