"""Redis managers in processes forked after the manager was built and its reader started.

tests/apps/forked_cluster.py builds a Server on ``RedisManager`` (or
``RedisStreamsManager``), waits until its reader reads Redis, queues one
broadcast, and forks two children that serve one port while the parent
serves a third. Each of the three must be a cluster member of its own: its
own uid, subscription and reader, nothing sent twice, nothing read from the
parent's sockets. (``gunicorn --preload``, where the manager is built in the
master but its greenlets never ran there, is in test_gunicorn_workers.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import socketio
from redis_support import (REDIS_URL, WAIT, Inbox, assert_each_receives_once, require_redis, unique_key,
                           wait_for, wait_subscribers)

import geventsio
from geventsio.redis_protocol import broadcast_channel

REDIS = require_redis()
APP = Path(__file__).resolve().parent / "apps" / "forked_cluster.py"


def connect(port: int, inbox: Inbox) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.on("msg", inbox.add)
    client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=WAIT)
    assert client.call("join", "room", timeout=WAIT) is True
    return client


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
def test_processes_forked_from_a_running_member_are_members_of_their_own(mode):
    key = unique_key()
    stream = key + "-stream" if mode == "streams" else None
    heard = REDIS.pubsub()  # every broadcast any process publishes (pub/sub mode)
    heard.psubscribe(broadcast_channel(key, "/") + "*")
    env = dict(os.environ, GEVENTSIO_TEST_REDIS_URL=REDIS_URL, GEVENTSIO_TEST_REDIS_KEY=key,
               GEVENTSIO_TEST_STREAM=stream or "", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, str(APP)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    clients, inboxes, where = [], [], []
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        for port in line.split():  # two children's, then the parent's
            inboxes.append(Inbox())
            clients.append(connect(int(port), inboxes[-1]))
            where.append(clients[-1].call("where", timeout=WAIT))
        pids = [w["pid"] for w in where]
        uids = {w["pid"]: w["uid"] for w in where}
        assert len(uids) == 3 and pids[-1] == proc.pid, uids
        assert len(set(uids.values())) == 3, f"a child kept its parent's uid: {uids}"
        wait_subscribers(REDIS, key, 3)  # one subscription each: the parent's is still its own

        senders = {pid: pids.index(pid) for pid in uids}
        for pid, n in senders.items():
            assert_each_receives_once(inboxes, lambda m: clients[n].call("bcast", ("room", m), timeout=WAIT),
                                      f"from{pid}", pids)
        if stream is None:
            emitter = geventsio.Emitter(REDIS, key=key)
        else:
            emitter = geventsio.StreamsEmitter(REDIS, stream_name=stream)
        assert_each_receives_once(inboxes, lambda m: emitter.to("room").emit("msg", m), "emitter", pids)

        if stream is None:
            # What each process's publisher had queued at the fork went out once (from the parent):
            # a child's copy would have been sent before that child's broadcasts above.
            published: list[bytes] = []

            def all_markers_heard() -> bool:
                message = heard.get_message(timeout=0.1)
                if message is not None and message["type"] == "pmessage":
                    published.append(message["data"])
                return all(any(f"from{pid}-end".encode() in m for m in published) for pid in uids)

            wait_for(all_markers_heard, "every process's broadcasts on the channel")
            assert sum(b"before-fork" in m for m in published) == 1, published
    finally:
        for client in clients:
            client.disconnect()
        heard.close()
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=30)
        if stream is not None:
            REDIS.delete(stream)
    assert proc.returncode == 0 and "Traceback" not in errors, errors
