"""``gunicorn -w 3`` with geventsio's worker, no sticky proxy: long-polling works across workers.

Clients connect straight to gunicorn's one port, so each new TCP connection is
accepted by whichever worker wins it: a client's handshake, its parked GET, its
POSTs and its WebSocket upgrade land on different workers, and every request
for a session another worker owns must be handed to the owner (the owners'
router statistics prove that it happened). Clients: python-socketio,
geventsio's, and the official socket.io-client (tests/interop/cluster_clients.mjs).
Broadcasts between workers go through Redis (tests/apps/sio_cluster.py), and a
private Redis is killed and started again under the workers. The documented
alternative, WebSocket-only clients, is checked with routing off. With
``--preload`` the app's Server and Redis manager are built in the master, and
each forked worker must still be a cluster member of its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
import redis
import socketio
from node_support import require_npm_packages, run_node_report
from private_redis import private_redis  # noqa: F401 - a fixture
from redis_support import (REDIS_URL, WAIT, Inbox, assert_each_receives_once, require_redis, unique_key,
                           wait_subscribers)

import geventsio
from geventsio.worker_routing import default_directory

REDIS = require_redis()
WORKERS = 3
INTEROP_DIR = Path(__file__).resolve().parent / "interop"


class Gunicorn:
    """``gunicorn -w 3`` serving tests/apps/sio_cluster.py on a Redis; every worker is subscribed.

    ``preload``: the app (its Server and Redis manager) is built in the master,
    before the workers fork. ``stream``: ``RedisStreamsManager`` on that stream.
    """

    def __init__(self, routing: bool = True, redis_url: str = REDIS_URL, workers: int = WORKERS,
                 preload: bool = False, stream: str | None = None):
        self.routing = routing
        self.workers = workers
        self.key = unique_key()
        self.redis = redis.Redis.from_url(redis_url)
        env = dict(os.environ, GEVENTSIO_TEST_REDIS_URL=redis_url, GEVENTSIO_TEST_REDIS_KEY=self.key,
                   GEVENTSIO_WORKER_ROUTING="1" if routing else "0", GEVENTSIO_TEST_STREAM=stream or "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "geventsio.gunicorn_worker.GeventSocketIOWorker",
             "-w", str(workers), "-b", "127.0.0.1:0", "--graceful-timeout", "5",
             *(["--preload"] if preload else []),
             "--chdir", os.path.dirname(__file__), "apps.sio_cluster:app"],
            stderr=subprocess.PIPE, text=True, env=env)
        port = None
        self.seen: list[str] = []
        for line in self.proc.stderr:
            self.seen.append(line)
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
            if sum("Booting worker" in s for s in self.seen) == workers:
                break
        assert port is not None, "".join(self.seen)
        self.url = f"http://127.0.0.1:{port}"
        try:
            self.wait_subscribed()
            if routing:  # one socket per worker, in a directory named after the master
                assert len(os.listdir(default_directory(self.proc.pid))) == workers
        except BaseException:
            self.proc.kill()
            self.proc.communicate()
            raise

    def wait_subscribed(self) -> None:
        wait_subscribers(self.redis, self.key, self.workers)

    def stop(self) -> str:
        """Stop gunicorn and check its log (returned) and that the workers cleaned up."""
        self.proc.send_signal(signal.SIGTERM)
        _, rest = self.proc.communicate(timeout=30)
        self.redis.close()
        log = "".join(self.seen) + rest
        assert "Session ID unknown" not in log and "Traceback" not in log, log
        # The last worker out removed the directory.
        assert not os.path.exists(default_directory(self.proc.pid))
        return log


@pytest.fixture
def gunicorn_cluster():
    """The URL of ``gunicorn -w 3`` with session routing (the default)."""
    server = Gunicorn()
    yield server.url
    server.stop()


@pytest.fixture
def gunicorn_unrouted():
    """The URL of ``gunicorn -w 3`` with routing off (GEVENTSIO_WORKER_ROUTING=0)."""
    server = Gunicorn(routing=False)
    yield server.url
    server.stop()


def disconnect_all(clients) -> None:
    """Disconnect every client, even when one of them fails to (the others must not linger)."""
    errors = []
    for client in clients:
        try:
            client.disconnect()
        except Exception as exc:  # noqa: BLE001 - reported below, after the others are closed
            errors.append(repr(exc))
    assert not errors, errors


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
    url = gunicorn_cluster
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
        disconnect_all(clients)


def test_official_js_clients_across_workers(gunicorn_cluster):
    url = gunicorn_cluster
    require_npm_packages(INTEROP_DIR)
    report = run_node_report(["node", str(INTEROP_DIR / "cluster_clients.mjs"), url, "12"], INTEROP_DIR,
                             {}, timeout=40)
    clients = report["clients"]
    assert len(clients) == 12
    for c in clients:
        assert c["sid"].startswith(c["where"]["tag"]), c
        assert c["where"]["transport"] == ("polling" if c["transports"] == "polling" else "websocket"), c
    # Node keeps its connections alive and a handed-over connection stays with its new
    # worker, so the sessions may well all belong to one worker; hand-overs happened anyway.
    owners = {c["where"]["pid"]: c["where"] for c in clients}
    assert sum(w["stats"]["received"] for w in owners.values()) > 0, owners


def test_websocket_only_clients_need_no_routing(gunicorn_unrouted):
    """The documented alternative to routing: one connection per session, any worker will do."""
    url = gunicorn_unrouted
    makers = [python_socketio_client] * 4 + [geventsio_client] * 4
    clients, inboxes = [], []
    try:
        for make in makers:
            inbox = Inbox()
            clients.append(make(url, ["websocket"], inbox))
            inboxes.append(inbox)
        for n, client in enumerate(clients):
            assert client.call("join", "all", timeout=WAIT) is True
            assert client.call("echo", n, timeout=WAIT) == n
        assert clients[-1].call("bcast", ("all", "to every worker"), timeout=WAIT) is True
        for inbox in inboxes:
            inbox.wait_for("to every worker")
        where = [client.call("where", timeout=WAIT) for client in clients]
        assert all(w["transport"] == "websocket" and w["tag"] == "" for w in where), where
        assert len({w["pid"] for w in where}) >= 2
    finally:
        disconnect_all(clients)


def test_redis_restart_loses_no_client_of_any_worker(private_redis):  # noqa: F811 - the fixture
    """Redis killed and started again under the workers: every client keeps being served."""
    server = Gunicorn(redis_url=private_redis.url)
    kinds = [(python_socketio_client, ["polling"])] * 6 + [(geventsio_client, None)] * 3
    clients, inboxes = [], []
    try:
        for make, transports in kinds:
            inbox = Inbox()
            clients.append(make(server.url, transports, inbox))
            inboxes.append(inbox)
        for client in clients:
            assert client.call("join", "all", timeout=WAIT) is True
        assert clients[0].call("bcast", ("all", "before"), timeout=WAIT) is True
        for inbox in inboxes:
            inbox.wait_for("before")

        private_redis.kill()
        for n, client in enumerate(clients):  # served by their workers, hand-overs included
            for i in range(3):
                assert client.call("echo", [n, i], timeout=WAIT) == [n, i]

        private_redis.start()
        server.wait_subscribed()
        assert clients[-1].call("bcast", ("all", "after"), timeout=WAIT) is True
        for inbox in inboxes:
            inbox.wait_for("after")
        assert all(client.connected for client in clients)
    finally:
        disconnect_all(clients)
        log = server.stop()
    assert log.count("lost the Redis connection") == WORKERS, log
    assert log.count("subscriptions restored") == WORKERS, log


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
def test_preloaded_app_each_worker_is_a_cluster_member_of_its_own(mode):
    """``gunicorn --preload``: the manager was built in the master; each worker has its own
    uid, connections and reader, and a broadcast reaches every member once, whichever process
    (a worker, an emitter) sent it."""
    stream = unique_key() + "-stream" if mode == "streams" else None
    server = Gunicorn(workers=2, preload=True, stream=stream)
    clients, inboxes, where = [], [], []
    try:
        # Until both workers own sessions. Whichever worker accepts a handshake owns it; polling
        # clients connecting at once keep both workers accepting.
        while len({w["pid"] for w in where}) < 2 and len(clients) < 48:
            batch = [Inbox() for _ in range(8)]
            connecting = [gevent.spawn(python_socketio_client, server.url, ["polling"], inbox) for inbox in batch]
            gevent.joinall(connecting, raise_error=True)
            for inbox, greenlet in zip(batch, connecting):
                clients.append(greenlet.value)
                inboxes.append(inbox)
                assert greenlet.value.call("join", "room", timeout=WAIT) is True
                where.append(greenlet.value.call("where", timeout=WAIT))
        by_pid = {w["pid"]: w["uid"] for w in where}
        assert len(by_pid) == 2, f"every session landed on one worker: {by_pid}"
        assert len(set(by_pid.values())) == 2, f"the workers share the master's uid: {by_pid}"
        server.wait_subscribed()  # exactly one subscription per worker

        pids = [w["pid"] for w in where]
        other = next(n for n, pid in enumerate(pids) if pid != pids[0])
        for n in (0, other):  # from a client of each worker
            assert_each_receives_once(inboxes, lambda m: clients[n].call("bcast", ("room", m), timeout=WAIT),
                                      f"worker{n}", pids)
        if stream is None:
            emitter = geventsio.Emitter(server.redis, key=server.key)
        else:
            emitter = geventsio.StreamsEmitter(server.redis, stream_name=stream)
        assert_each_receives_once(inboxes, lambda m: emitter.to("room").emit("msg", m), "emitter", pids)
    finally:
        disconnect_all(clients)
        if stream is not None:
            server.redis.delete(stream)
        server.stop()
