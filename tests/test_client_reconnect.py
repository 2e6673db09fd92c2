"""geventsio.Client's promises across lost connections, against the geventsio server.

The server is really stopped (every open request killed, as when its process
dies) and started again on the same port; a partition is a TCP proxy that
stops forwarding. Checked: reconnection within the back-off bounds, buffered
emits delivered once and in order, volatile emits dropped, the buffer's bound,
ack timeouts and retries, the heartbeat watchdog, giving up.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
import pytest
from gevent.event import Event

import geventsio
from geventsio.client import BufferFullError
from geventsio.socketio_packet import decode_text

pytest.register_assert_rewrite("client_support")  # before its import below
from client_support import (  # noqa: E402
    TRANSPORT_IDS,
    TRANSPORTS,
    WAIT,
    Emitter,
    FreezingProxy,
    Lifecycle,
    Log,
    check_emitter_delivery,
    wait_event,
)

pytest_plugins = ["client_support"]  # its fixtures: make_client, restartable
from client_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORT_IDS)
def transports(request):
    return request.param


class ObservedServer(geventsio.Server):
    """A geventsio.Server that also logs every EVENT packet it reads (on its reading greenlet)."""

    def __init__(self, packets: Log, **options):
        super().__init__(**options)
        self.packets = packets

    def on_message(self, session, data):
        if isinstance(data, str) and data[:1] == "2":
            self.packets.add(decode_text(data)[0])
        super().on_message(session, data)


class Recorder:
    """Server-side record of ``record`` events, shared by every incarnation of the server."""

    def __init__(self) -> None:
        self.records = Log()
        self.connects = Log()
        self.packets = Log()  # every EVENT packet as read, duplicates included
        self.hold: Any = None  # called by the first copy of a "gated" event before it acks

    def make_sio(self, **options) -> geventsio.Server:
        options.setdefault("ping_interval", 0.5)
        options.setdefault("ping_timeout", 2)
        sio = ObservedServer(self.packets, **options)
        sio.on("connect", lambda sid, environ, auth: self.connects.add(auth))
        sio.on("record", lambda sid, value: self.records.add(value) or value)

        @sio.on("gated")
        def gated(sid, value):
            self.records.add(value)
            calls = self.records.items.count(value)
            if calls == 1 and self.hold is not None:
                self.hold()
            return ("ack", calls)

        return sio

    def copies(self, value: Any) -> list:
        """The EVENT packets that carried ``value``."""
        return [p for p in self.packets.items if p.data[1:2] == [value]]


def test_server_restart_buffered_emits_arrive_once_in_order(restartable, make_client, transports):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client()
    life = Lifecycle(client)
    client.connect(server.url, transports=transports, auth=lambda: {"n": len(recorder.connects)})
    for i in range(5):
        assert client.call("record", i) == i  # acknowledged: on the first server

    server.stop()
    life.wait("disconnect")
    assert not client.connected
    for i in range(5, 15):
        client.emit("record", i)  # buffered while disconnected
        if i == 7:
            client.emit("record", "volatile", volatile=True)  # dropped, not buffered
    life.wait("reconnect_error", 2)  # attempts fail while nothing listens
    server.start()

    assert recorder.records.wait_for(15) == list(range(15))
    life.wait("reconnect")
    life.wait("connect", 2)
    assert client.call("record", 15) == 15
    assert recorder.records.items == list(range(16))  # nothing twice, the volatile one never
    # Every namespace was joined again, with auth evaluated anew.
    assert recorder.connects.items == [{"n": 0}, {"n": 1}]
    reason = life.log.items[1]
    assert reason in (("disconnect", "transport close"), ("disconnect", "transport error"))
    attempts = life.check_backoff()
    assert attempts >= 3  # two failed while the server was down, then the one that worked
    assert ("reconnect", attempts) in life.log.items


def test_server_restart_while_the_client_keeps_emitting(restartable, make_client, transports):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client()
    life = Lifecycle(client)
    client.connect(server.url, transports=transports)
    emitter = Emitter(client)
    recorder.records.wait_for(20)
    server.stop()
    life.wait("disconnect")
    emitter.buffered.wait_for(20)
    first_server_count = len(recorder.records)
    server.start()
    life.wait("reconnect")
    count = emitter.count
    recorder.records.wait_for(lambda items: items and items[-1] >= count + 10)
    emitter.stop()
    assert client.call("record", "sync") == "sync"
    received = recorder.records.items[:-1]
    check_emitter_delivery(emitter, received, first_server_count)


def test_volatile_emits_are_dropped_only_while_disconnected(restartable, make_client):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client()
    life = Lifecycle(client)
    client.connect(server.url)
    client.emit("record", "v1", volatile=True)
    assert client.call("record", "sync") == "sync"
    server.stop()
    life.wait("disconnect")
    dropped = Log()
    client.emit("record", "v2", volatile=True, callback=dropped)
    assert isinstance(dropped.wait_for(1)[0], geventsio.DisconnectedError)
    client.emit("record", "kept")
    server.start()
    assert recorder.records.wait_for(3) == ["v1", "sync", "kept"]


def test_full_buffer_drops_the_oldest_with_a_warning(restartable, make_client, caplog):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client(max_buffered_packets=3)
    life = Lifecycle(client)
    client.connect(server.url)
    server.stop()
    life.wait("disconnect")
    outcomes = Log()
    with caplog.at_level(logging.WARNING, logger="geventsio.client"):
        for i in range(5):
            client.emit("record", i, callback=lambda *a, i=i: outcomes.add((i, a)))
    dropped = outcomes.wait_for(2)
    assert [i for i, _ in dropped] == [0, 1]
    assert all(isinstance(a[0], BufferFullError) for _, a in dropped)
    assert sum("buffer of namespace / full" in r.getMessage() for r in caplog.records) == 2
    server.start()
    assert recorder.records.wait_for(3) == [2, 3, 4]
    assert outcomes.wait_for(5)[2:] == [(2, (2,)), (3, (3,)), (4, (4,))]


def test_buffered_emit_whose_ack_timeout_expires_is_not_sent(restartable, make_client):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client()
    life = Lifecycle(client)
    client.connect(server.url)
    server.stop()
    life.wait("disconnect")
    outcome = Log()
    client.emit("record", "expires", callback=outcome, timeout=0.05)
    assert isinstance(outcome.wait_for(1)[0], geventsio.TimeoutError)
    with pytest.raises(geventsio.TimeoutError):
        client.call("record", "also expires", timeout=0.05)
    client.emit("record", "sent")
    server.start()
    assert recorder.records.wait_for(1) == ["sent"]
    assert client.call("record", "after") == "after"
    assert recorder.records.items == ["sent", "after"]


def test_call_sent_before_the_loss_fails_with_disconnected(restartable, make_client):
    recorder = Recorder()
    gate = Event()
    recorder.hold = lambda: gate.wait(WAIT)
    server = restartable(recorder.make_sio)
    client = make_client()
    client.connect(server.url)
    result = gevent.spawn(client.call, "gated", "x", timeout=WAIT)
    recorder.records.wait_for(1)  # the server got it and holds the ack
    server.stop()
    with pytest.raises(geventsio.DisconnectedError):
        result.get(timeout=WAIT)
    gate.set()


def test_retries_resend_and_a_late_ack_of_an_earlier_copy_completes(
        restartable, make_client, transports):
    """No ack within ack_timeout: the packet is sent again with the same ack id; the first
    copy's late ack completes the emit, once, and nothing more is re-sent."""
    recorder = Recorder()
    # The server acknowledges the first copy only once the second has arrived.
    recorder.hold = lambda: recorder.packets.wait_for(lambda p: len(recorder.copies("x")) >= 2)
    server = restartable(recorder.make_sio)
    client = make_client(retries=1, ack_timeout=0.3)
    client.connect(server.url, transports=transports)
    outcomes = Log()
    client.emit("gated", "x", callback=lambda *a: outcomes.add(a))
    client.emit("record", "next")  # with retries, emits leave one at a time, in order
    assert outcomes.wait_for(1) == [("ack", 1)]  # the first copy's answer
    assert recorder.records.wait_for(3) == ["x", "x", "next"]
    assert client.call("record", "sync") == "sync"
    first, second = recorder.copies("x")
    assert first == second and first.id is not None  # one ack id for every attempt
    assert recorder.records.items == ["x", "x", "next", "sync"]
    assert outcomes.items == [("ack", 1)]


def test_retries_give_up_with_timeout_after_retries_plus_one_attempts(restartable, make_client):
    recorder = Recorder()
    gate = Event()
    recorder.hold = lambda: gate.wait(WAIT)
    server = restartable(recorder.make_sio)
    client = make_client(retries=2, ack_timeout=0.1)
    client.connect(server.url)
    with pytest.raises(geventsio.TimeoutError):
        client.call("gated", "lost", timeout=WAIT)
    assert len(recorder.copies("lost")) == 3
    gate.set()  # the held copy and the two queued behind it on the server now run
    assert recorder.records.wait_for(3) == ["lost"] * 3
    assert client.call("record", "sync") == "sync"
    assert len(recorder.copies("lost")) == 3


def test_retries_across_a_restart_deliver_every_emit_once_in_order(restartable, make_client):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client(retries=2, ack_timeout=1)
    life = Lifecycle(client)
    client.connect(server.url)
    assert client.call("record", 0) == 0
    server.stop()
    life.wait("disconnect")
    outcomes = Log()
    for i in range(1, 11):
        client.emit("record", i, callback=outcomes)
    server.start()
    assert outcomes.wait_for(10) == list(range(1, 11))
    assert recorder.records.items == list(range(11))


def test_watchdog_notices_a_silent_server_and_reconnects(restartable, make_client, transports):
    recorder = Recorder()
    server = restartable(lambda: recorder.make_sio(ping_interval=0.2, ping_timeout=0.3))
    proxy = FreezingProxy(server.port)
    try:
        client = make_client()
        life = Lifecycle(client)
        client.connect(proxy.url, transports=transports)
        if transports is None:
            wait_event(client.eio.upgrade_done, "the upgrade")
        assert client.call("record", "before") == "before"
        proxy.freeze()  # connections stay open, nothing flows: only the missing pings tell
        life.wait("disconnect")
        assert life.log.items[-1] == ("disconnect", "ping timeout")
        client.emit("record", "buffered")
        proxy.thaw()
        assert recorder.records.wait_for(2) == ["before", "buffered"]
        life.wait("reconnect")
    finally:
        proxy.close()


def test_reconnection_gives_up_after_the_configured_attempts(restartable, make_client):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client(reconnection_attempts=2, reconnection_delay=0.05,
                         reconnection_delay_max=0.1)
    life = Lifecycle(client)
    errors = Log()
    client.on("connect_error", errors)
    client.connect(server.url)
    server.stop()
    outcome = Log()
    life.wait("disconnect")
    client.emit("record", "never sent", callback=outcome)
    with gevent.Timeout(WAIT):
        client.wait()
    assert life.names() == ["connect", "disconnect", "reconnect_attempt", "reconnect_error",
                            "reconnect_attempt", "reconnect_error", "reconnect_failed"]
    assert len(errors.items) == 2  # each failed attempt also reports connect_error
    assert isinstance(outcome.wait_for(1)[0], geventsio.DisconnectedError)
    assert client.greenlets() == []


def test_without_reconnection_a_lost_connection_is_final(restartable, make_client):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client(reconnection=False)
    life = Lifecycle(client)
    client.connect(server.url)
    server.stop()
    with gevent.Timeout(WAIT):
        client.wait()
    assert life.names() == ["connect", "disconnect"]


def test_disconnect_while_reconnecting_stops_the_loop(restartable, make_client):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    client = make_client()
    life = Lifecycle(client)
    client.connect(server.url)
    server.stop()
    life.wait("reconnect_error")
    client.disconnect()
    assert client.greenlets() == []
    server.start()
    with pytest.raises(geventsio.client.BadNamespaceError):
        client.emit("record", "after disconnect")
    client.connect(server.url)  # a disconnected client may connect again
    assert client.call("record", "again") == "again"


def test_connect_with_retry_waits_for_the_server(restartable, make_client):
    recorder = Recorder()
    server = restartable(recorder.make_sio)
    port = server.port
    server.stop()
    client = make_client()
    life = Lifecycle(client)
    started = gevent.spawn(client.connect, f"http://127.0.0.1:{port}", retry=True)
    life.wait("reconnect_error")
    server.start()
    started.get(timeout=WAIT)
    assert client.connected
    assert client.call("record", 1) == 1
