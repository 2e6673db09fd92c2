"""Helpers of the Redis cluster tests: the real Redis, geventsio cluster members, the Node member.

Redis is the one at 127.0.0.1:6379 (``.ci/run`` starts it when none answers).
When it does not answer, the tests are skipped locally and fail under CI.
Every test uses its own channel key, so runs never hear each other.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import gevent
import pytest
import redis
from gevent.event import AsyncResult, Event
from node_support import skip_or_fail

import geventsio
from geventsio.redis_protocol import new_uid, request_channel

REDIS_URL = "redis://127.0.0.1:6379/0"
CLUSTER_DIR = Path(__file__).resolve().parent / "cluster"
WAIT = 10  # seconds for any one observation


def require_redis() -> redis.Redis:
    """A client of the test Redis; skips (locally) or fails (under CI) when it does not answer."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        skip_or_fail(f"no Redis answers at {REDIS_URL} ({exc})")
    return client


def unique_key() -> str:
    return f"gsio-test-{new_uid()}"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll a condition that no event announces (Redis subscriber counts)."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not predicate():
            gevent.sleep(0.02)


def wait_subscribers(r: redis.Redis, key: str, count: int, nsp: str = "/") -> None:
    """Wait until ``count`` servers listen on the namespace's request channel (PUBSUB NUMSUB)."""
    channel = request_channel(key, nsp)
    wait_for(lambda: r.pubsub_numsub(channel)[0][1] == count,
             f"{count} subscribers on {channel} (have {r.pubsub_numsub(channel)[0][1]})")


class Inbox:
    """What one client received, with a wait for a given message."""

    def __init__(self) -> None:
        self.messages: list = []
        self._changed = Event()

    def add(self, message: Any) -> None:
        self.messages.append(message)
        self._changed.set()

    def wait_for(self, message: Any, timeout: float = WAIT) -> None:
        with gevent.Timeout(timeout, AssertionError(f"never received {message!r}; got {self.messages!r}")):
            while message not in self.messages:
                self._changed.clear()
                self._changed.wait()


def assert_each_receives_once(inboxes: list[Inbox], send: Callable[[str], Any], tag: str,
                              labels: list | None = None) -> None:
    """``send`` two messages tagged ``tag``; every inbox must get each exactly once, in order.

    The second is a marker: one sender's messages reach a client in order, so
    once the marker is in, a lost or doubled first message would show.
    """
    send(f"{tag}-1")
    send(f"{tag}-end")
    for inbox in inboxes:
        inbox.wait_for(f"{tag}-end")
    for n, inbox in enumerate(inboxes):
        got = [m for m in inbox.messages if isinstance(m, str) and m.startswith(tag + "-")]
        assert got == [f"{tag}-1", f"{tag}-end"], (labels[n] if labels else n, got)


def py_client(url: str, room: str) -> tuple[geventsio.Client, Inbox]:
    """A geventsio.Client on WebSocket, in ``room``, recording its ``room-msg`` events."""
    client = geventsio.Client(reconnection=False)
    inbox = Inbox()
    client.on("room-msg", lambda *args: inbox.add(list(args)))
    client.on("question", lambda value: {"from": "python", "value": value})
    client.connect(url, transports=["websocket"], wait_timeout=5)
    assert client.call("join", room, timeout=5) is True
    return client, inbox


def from_js(value: Any) -> Any:
    """Node's report with ``{"$bin": hex}`` (a Buffer) turned back into bytes."""
    if isinstance(value, list):
        return [from_js(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {k: from_js(v) for k, v in value.items()}
    return value


class NodeMember:
    """tests/cluster/node_cluster.mjs in a subprocess: commands in, results and observations out."""

    def __init__(self, key: str) -> None:
        self.proc = subprocess.Popen(
            ["node", str(CLUSTER_DIR / "node_cluster.mjs"), REDIS_URL, key], cwd=CLUSTER_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ready: AsyncResult = AsyncResult()
        self.results: dict[int, AsyncResult] = {}
        self.inboxes: dict[str, Inbox] = {}
        self.logs: list = []
        self._ids = itertools.count(1)
        self._reader = gevent.spawn(self._read)
        self.port = self.ready.get(timeout=WAIT)["port"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        for line in self.proc.stdout:
            if not line.strip():
                continue
            message = from_js(json.loads(line))
            kind = message.get("type")
            if kind == "ready":
                self.ready.set(message)
            elif kind == "result":
                self.results.setdefault(message["id"], AsyncResult()).set(message)
            elif kind == "event":
                self.inbox(message["client"]).add(message["args"])
            else:
                self.logs.append(message)
        if not self.ready.ready():
            self.ready.set_exception(RuntimeError(f"node exited: {self.proc.stderr.read()[-3000:]}"))

    def inbox(self, name: str) -> Inbox:
        return self.inboxes.setdefault(name, Inbox())

    def run(self, cmd: str, timeout: float = WAIT, **fields: Any) -> Any:
        """Send one command and return its result (an error from Node fails the test)."""
        command_id = next(self._ids)
        result = self.results.setdefault(command_id, AsyncResult())
        command = json.dumps({"cmd": cmd, "id": command_id, **fields},
                             default=lambda b: {"$bin": bytes(b).hex()})
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = result.get(timeout=timeout)
        if "error" in answer:
            pytest.fail(f"node command {cmd} failed: {answer['error']}; logs: {self.logs}")
        return answer["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.run("close", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.kill()
