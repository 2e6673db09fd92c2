"""A redis-server of one test only (never the shared one), that can be killed and started again.

Used by the tests of Redis going away and coming back (tests/test_redis_restart.py,
tests/test_gunicorn_workers.py).
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
import redis
from redis_support import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test only, that can be killed and started again on its port."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()

        def answers() -> bool:
            try:
                return client.ping()
            except (redis.RedisError, OSError):
                return False

        wait_for(answers, f"redis-server on port {self.port}")
        client.close()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis():
    """A PrivateRedis, killed at the end of the test."""
    server = PrivateRedis()
    yield server
    server.kill()
