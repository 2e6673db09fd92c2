"""A handler that blocks the event loop is named in the log, and does not cost healthy clients."""

from __future__ import annotations

import json
import logging

import websocket
from gevent.event import Event
from gevent.monkey import get_original

import geventsio
from sio_support import TIMEOUT, connect_client, serve

pytest_plugins = ["sio_support"]
from sio_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)

blocking_sleep = get_original("time", "sleep")  # holds the whole event loop, as a blocking driver would


class LoopTurned(logging.Handler):
    """Collects engine log lines; ``resumed`` is set when the monitor logs the end of a block."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.resumed = Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.lines.append(message)
        if message.startswith("the event loop ran again"):
            self.resumed.set()  # logged on the loop itself, so a gevent Event is safe


def capture_engine_log() -> LoopTurned:
    handler = LoopTurned()
    log = logging.getLogger("geventsio.engine")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def release(handler: LoopTurned) -> None:
    logging.getLogger("geventsio.engine").removeHandler(handler)


def test_the_log_names_the_handler_event_and_namespace_that_block(serve_app, make_client):
    sio = geventsio.Server(loop_block_warning=0.2)

    @sio.on("crunch", namespace="/reports")
    def crunch_numbers(sid):
        blocking_sleep(0.6)
        return "done"

    rs = serve(serve_app, sio)
    client = connect_client(make_client(), rs, ["websocket"], namespaces=["/reports"])
    log = capture_engine_log()
    try:
        assert client.call("crunch", namespace="/reports", timeout=TIMEOUT) == "done"
        assert log.resumed.wait(TIMEOUT), log.lines
    finally:
        release(log)
    blocked = [line for line in log.lines if line.startswith("the event loop has been blocked")]
    assert len(blocked) == 1, log.lines
    assert "crunch_numbers" in blocked[0] and "test_loop_monitor.py" in blocked[0]
    assert "event 'crunch' in namespace '/reports'" in blocked[0]
    resumed = [line for line in log.lines if line.startswith("the event loop ran again after")]
    assert any("crunch_numbers" in line for line in resumed), log.lines


def test_a_blocked_loop_does_not_time_out_a_client_whose_pong_waits_unread(engine_server):
    rs = engine_server(ping_interval=0.2, ping_timeout=0.4, loop_block_warning=0.1)
    closed = Event()
    reasons: list[str] = []
    rs.server.on("disconnect", lambda sid, reason: (reasons.append(reason), closed.set()))
    ws = websocket.create_connection(f"{rs.ws_url}/engine.io/?EIO=4&transport=websocket", timeout=TIMEOUT)
    log = capture_engine_log()
    try:
        assert ws.recv().startswith("0")
        assert ws.recv() == "2"
        # The ping is out and its pong deadline armed; now the loop stops for
        # longer than that deadline, as under a blocking handler.
        blocking_sleep(0.8)
        ws.send("3")  # the client answered in time; the server has not read it yet
        assert log.resumed.wait(TIMEOUT), log.lines
        assert ws.recv() == "2", "the session did not survive the block"  # the next ping
        ws.send("3")
        assert not reasons, reasons
    finally:
        release(log)
        ws.close()


def test_a_client_that_stops_answering_is_said_to_have_gone_silent(engine_server):
    rs = engine_server(ping_interval=0.2, ping_timeout=0.2, loop_block_warning=5)
    closed = Event()
    rs.server.on("disconnect", lambda sid, reason: closed.set())
    log = capture_engine_log()
    ws = websocket.create_connection(f"{rs.ws_url}/engine.io/?EIO=4&transport=websocket", timeout=TIMEOUT)
    try:
        sid = json.loads(ws.recv()[1:])["sid"]
        assert closed.wait(TIMEOUT)
    finally:
        release(log)
        ws.close()
    assert f"session {sid}: no pong within 0.2s: the client went silent; closing" in log.lines
