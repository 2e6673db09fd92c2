"""Fixtures of the hostile-client suite (tests/hostile/).

- ``hostile(**server_options)``: a ``geventsio.Server`` with short heartbeats
  on a loopback port, an ``echo`` handler, recorded disconnect reasons, and a
  well-behaved ``Bystander`` client already echoing; returns a ``Target``.
- Every test is watched for server-side failures: an ERROR record of a
  ``geventsio`` logger, or an error reported to the gevent hub (an exception
  that escaped a greenlet or the WSGI handler). Either fails the test in its
  call phase (so an ``xfail`` can name it) and again at teardown.
- The whole package must finish within ``BUDGET`` seconds (CI runs it on
  every push); each test has its own ``timeout`` too.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

import gevent
import pytest

import geventsio
from geventsio.wsgi import Handler

from .support import (
    KEEPALIVE_TIMEOUT,
    PING_INTERVAL,
    PING_TIMEOUT,
    REQUEST_TIMEOUT,
    Bystander,
    Recorder,
    Served,
    Target,
)

BUDGET = 180  # seconds for the whole hostile suite
PER_TEST_TIMEOUT = 30


class QuickHandler(Handler):
    """geventsio's WSGI handler with its time limits shortened (class attributes)."""

    request_timeout = REQUEST_TIMEOUT
    keepalive_timeout = KEEPALIVE_TIMEOUT


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hostile: hostile-client tests (tests/hostile/)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/hostile/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("hostile/"):
            item.add_marker(pytest.mark.hostile)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(PER_TEST_TIMEOUT))


@pytest.fixture(scope="package", autouse=True)
def _time_budget() -> Iterator[None]:
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET, f"the hostile suite took {elapsed:.0f}s; its budget is {BUDGET}s"


# -- server-side failures ----------------------------------------------------------


class ErrorGuard(logging.Handler):
    """Collects ERROR records of geventsio's loggers and errors reported to the gevent hub."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.hub_errors: list[str] = []
        self.call_failed = False
        self._hub = gevent.get_hub()
        self._original = self._hub.handle_error

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def install(self) -> None:
        logging.getLogger("geventsio").addHandler(self)

        def handle_error(context: Any, type_: Any, value: Any, tb: Any) -> Any:
            if type_ is not None and not issubclass(type_, (gevent.GreenletExit,)):
                self.hub_errors.append(f"{type_.__name__}: {value} (in {context!r})"[:500])
            return self._original(context, type_, value, tb)

        self._hub.handle_error = handle_error

    def uninstall(self) -> None:
        logging.getLogger("geventsio").removeHandler(self)
        try:
            del self._hub.handle_error
        except AttributeError:  # pragma: no cover
            pass

    def problems(self) -> list[str]:
        found = [f"hub: {e}" for e in self.hub_errors]
        for r in self.records:
            tb = " (with traceback)" if r.exc_info else ""
            found.append(f"log {r.name} {r.levelname}{tb}: {r.getMessage()[:300]}")
        return found

    def check(self) -> None:
        problems = self.problems()
        if problems:
            self.records.clear()
            self.hub_errors.clear()
            raise AssertionError("server-side errors: " + "; ".join(problems))


_GUARD = pytest.StashKey[ErrorGuard]()


@pytest.fixture(autouse=True)
def server_errors(request: pytest.FixtureRequest) -> Iterator[ErrorGuard]:
    guard = ErrorGuard()
    guard.install()
    request.node.stash[_GUARD] = guard
    try:
        yield guard
    finally:
        guard.uninstall()
    if not guard.call_failed:
        guard.check()  # what happened after the call phase (teardown of the servers)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    guard = item.stash.get(_GUARD, None)
    try:
        result = yield
        if guard is not None:
            guard.check()
    except BaseException:
        if guard is not None:
            guard.call_failed = True  # one failure per test: teardown does not report it again
        raise
    return result


@pytest.fixture
def unretained_logs() -> Iterator[None]:
    """Keep pytest's log capture from holding geventsio's records (and, through the exceptions
    in their arguments, the frames and sessions they reference) while a test counts objects."""
    log = logging.getLogger("geventsio")
    log.propagate = False
    try:
        yield
    finally:
        log.propagate = True


# -- the server under attack -------------------------------------------------------


@pytest.fixture
def hostile() -> Iterator[Callable[..., Target]]:
    """Factory: hostile(bystander=True, setup=None, **geventsio.Server options) -> Target.

    ``setup(sio)`` registers more handlers before the server starts.
    """
    made: list[Target] = []

    def start(bystander: bool = True, setup: Callable[[Any], Any] | None = None,
              **options: Any) -> Target:
        options.setdefault("ping_interval", PING_INTERVAL)
        options.setdefault("ping_timeout", PING_TIMEOUT)
        options.setdefault("body_timeout", REQUEST_TIMEOUT)
        sio = geventsio.Server(**options)
        recorder = Recorder()
        sio.on("disconnect", recorder.disconnect)
        sio.on("echo", lambda sid, *args: args[0] if len(args) == 1 else args)
        if setup is not None:
            setup(sio)
        app = geventsio.WSGIApp(sio, socketio_path="socket.io")
        wsgi_server = geventsio.make_server(app, "127.0.0.1", 0, handler_class=QuickHandler)
        wsgi_server.start()
        target = Target(sio, Served(sio, wsgi_server, wsgi_server.server_port), recorder)
        made.append(target)
        if bystander:
            target.bystander = Bystander(target.rs)
            target.bystander.echo("warm-up")
        target.baseline = target.tables()
        return target

    yield start
    for target in made:
        target.stop()
        target.rs.wsgi_server.stop(timeout=1)
        target.sio.shutdown()
