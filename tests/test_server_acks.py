"""Socket.IO server acknowledgements, binary payloads and handler concurrency over real
sockets (python-socketio clients).

python-socketio's client acknowledges every event that asks for it, so a client
that "never answers" is one whose handler blocks (on an Event released at the
end of the test) for longer than the server's time limit.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from gevent.event import AsyncResult, Event

import geventsio

pytest.register_assert_rewrite("sio_support")  # before its import below
from sio_support import TIMEOUT, Inbox, connect_client, serve  # noqa: E402

pytest_plugins = ["sio_support"]  # its fixtures: make_client, transports, raw_client
from sio_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)

SHORT = 0.3  # the time limit of the deliberate timeout tests


@pytest.fixture
def release() -> Iterator[Event]:
    """Blocks client handlers that must not answer in time; set at teardown so they end."""
    event = Event()
    yield event
    event.set()


def _slow_handler(release: Event):
    def slow(*args):
        release.wait(TIMEOUT)
        return "late"
    return slow


# -- client -> server acknowledgements -----------------------------------------


def test_server_handler_return_value_acks_the_client(serve_app, make_client, transports):
    sio = geventsio.Server()
    sio.on("add", lambda sid, x, y: x + y)
    sio.on("pair", lambda sid: ("a", 2))  # a tuple is several ack arguments
    sio.on("nothing", lambda sid: None)
    sio.on("listed", lambda sid: [1, 2])  # a list is one argument
    rs = serve(serve_app, sio)
    client = connect_client(make_client(), rs, transports=transports)

    assert client.call("add", (2, 3), timeout=TIMEOUT) == 5
    acks = {name: AsyncResult() for name in ("add", "pair", "nothing", "listed")}
    client.emit("add", (40, 2), callback=lambda *args: acks["add"].set(args))
    client.emit("pair", callback=lambda *args: acks["pair"].set(args))
    client.emit("nothing", callback=lambda *args: acks["nothing"].set(args))
    client.emit("listed", callback=lambda *args: acks["listed"].set(args))
    assert acks["add"].get(timeout=TIMEOUT) == (42,)
    assert acks["pair"].get(timeout=TIMEOUT) == ("a", 2)
    assert acks["nothing"].get(timeout=TIMEOUT) == ()
    assert acks["listed"].get(timeout=TIMEOUT) == ([1, 2],)


# -- server -> client acknowledgements -----------------------------------------


def test_server_call_returns_the_client_ack(serve_app, make_client, transports):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    client = make_client()
    client.on("double", lambda x: x * 2)
    client.on("pair", lambda: ("a", 2))
    client.on("nothing", lambda: None)
    connect_client(client, rs, transports=transports)
    sid = client.get_sid("/")
    assert sio.call("double", 21, to=sid, timeout=TIMEOUT) == 42
    assert sio.call("double", "ab", sid=sid, timeout=TIMEOUT) == "abab"
    assert sio.call("pair", to=sid, timeout=TIMEOUT) == ("a", 2)
    assert sio.call("nothing", to=sid, timeout=TIMEOUT) is None
    with pytest.raises(geventsio.DisconnectedError):
        sio.call("double", 1, to="no-such-sid", timeout=TIMEOUT)


def test_server_emit_with_callback(serve_app, make_client, transports):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    client = make_client()
    client.on("echo", lambda *args: args)
    connect_client(client, rs, transports=transports)
    sid = client.get_sid("/")
    one, many = AsyncResult(), AsyncResult()
    sio.emit("echo", "hi", to=sid, callback=lambda *args: one.set(args))
    sio.emit("echo", (1, "two"), to=sid, callback=lambda *args: many.set(args))
    assert one.get(timeout=TIMEOUT) == ("hi",)
    assert many.get(timeout=TIMEOUT) == (1, "two")


def test_server_call_times_out(serve_app, make_client, release, transports):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    client = make_client()
    client.on("slow", _slow_handler(release))
    client.on("fast", lambda: "ok")
    connect_client(client, rs, transports=transports)
    sid = client.get_sid("/")
    started = time.monotonic()
    with pytest.raises(geventsio.TimeoutError):
        sio.call("slow", to=sid, timeout=SHORT)
    assert SHORT - 0.05 <= time.monotonic() - started < SHORT + 0.5
    release.set()  # the late ack arrives now and must be ignored
    assert sio.call("fast", to=sid, timeout=TIMEOUT) == "ok"


def test_emit_callback_gets_timeout_error_when_client_never_answers(serve_app, make_client, release):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    client = make_client()
    client.on("slow", _slow_handler(release))
    connect_client(client, rs)
    sid = client.get_sid("/")
    plain, fluent = AsyncResult(), AsyncResult()
    calls = []

    def on_plain(*args):
        calls.append(args)
        plain.set(args)

    started = time.monotonic()
    sio.emit("slow", to=sid, callback=on_plain, timeout=SHORT)
    sio.to(sid).timeout(SHORT).emit("slow", callback=lambda *args: fluent.set(args))
    for result in (plain, fluent):
        args = result.get(timeout=TIMEOUT)
        assert len(args) == 1 and isinstance(args[0], geventsio.TimeoutError), args
    assert SHORT - 0.05 <= time.monotonic() - started < SHORT + 0.5
    release.set()
    # The late acknowledgement does not call the callback a second time.
    assert sio.call("slow", to=sid, timeout=TIMEOUT) == "late"
    assert len(calls) == 1


def test_broadcast_call_collects_every_answer(serve_app, make_client, transports):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    sids = {}
    for name in ("a", "b", "c", "outsider"):
        client = make_client()
        client.on("whoami", lambda prefix, name=name: f"{prefix}{name}")
        connect_client(client, rs, transports=transports)
        sids[name] = client.get_sid("/")
        if name != "outsider":
            sio.enter_room(sids[name], "room")
    answers = sio.to("room").timeout(2).call("whoami", "I am ")
    assert sorted(answers) == ["I am a", "I am b", "I am c"]
    answers = sio.to("room").except_(sids["b"]).timeout(2).call("whoami", "")
    assert sorted(answers) == ["a", "c"]
    assert sio.to("empty-room").timeout(2).call("whoami", "") == []
    with pytest.raises(ValueError):
        sio.to("room").call("whoami", "")  # a broadcast call needs a time limit

    acks = []
    all_acked = Event()

    def on_ack(*args):
        acks.append(args)
        if len(acks) == 3:
            all_acked.set()

    assert sio.to("room").emit("whoami", "cb ", callback=on_ack) == 3
    assert all_acked.wait(TIMEOUT)
    assert sorted(acks) == [("cb a",), ("cb b",), ("cb c",)]


def test_broadcast_call_timeout_keeps_the_answers_that_arrived(serve_app, make_client, release):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    for name in ("a", "b", "slow"):
        client = make_client()
        if name == "slow":
            client.on("whoami", _slow_handler(release))
        else:
            client.on("whoami", lambda name=name: name)
        connect_client(client, rs)
        sio.enter_room(client.get_sid("/"), "room")
    started = time.monotonic()
    with pytest.raises(geventsio.TimeoutError) as info:
        sio.to("room").timeout(SHORT).call("whoami")
    assert SHORT - 0.05 <= time.monotonic() - started < SHORT + 0.5
    assert sorted(info.value.responses) == ["a", "b"]


# -- binary payloads -------------------------------------------------------------


PAYLOAD = {
    "blob": b"\x00\x01\x02\xff",
    "nested": {"deep": [b"x", {"deeper": b"\xfe" * 1000}], "text": "t\u00e9xt"},
    "list": [1, b"", "two", [b"\x10"]],
}


def test_binary_payloads_both_ways(serve_app, make_client, transports):
    sio = geventsio.Server()
    received = AsyncResult()

    @sio.event
    def upload(sid, data, extra):
        received.set((data, extra))
        return {"echo": data, "extra": extra}, b"second"  # a binary ack with two arguments

    rs = serve(serve_app, sio)
    client = make_client()
    inbox = Inbox(client)
    client.on("reverse", lambda data: {"got": data, "raw": data["blob"][::-1]})
    connect_client(client, rs, transports=transports)
    sid = client.get_sid("/")

    ack = AsyncResult()
    client.emit("upload", (PAYLOAD, b"\x07"), callback=lambda *args: ack.set(args))
    assert received.get(timeout=TIMEOUT) == (PAYLOAD, b"\x07")
    assert ack.get(timeout=TIMEOUT) == ({"echo": PAYLOAD, "extra": b"\x07"}, b"second")

    sio.emit("download", [PAYLOAD, b"tail"], to=sid)
    assert inbox.wait_for("download") == [([PAYLOAD, b"tail"],)]

    answer = sio.call("reverse", PAYLOAD, to=sid, timeout=TIMEOUT)
    assert answer == {"got": PAYLOAD, "raw": b"\xff\x02\x01\x00"}


def test_binary_broadcast_to_several_clients(serve_app, make_client):
    sio = geventsio.Server()
    rs = serve(serve_app, sio)
    inboxes = []
    for only in (["polling"], ["websocket"]):
        client = make_client()
        inboxes.append(Inbox(client))
        connect_client(client, rs, transports=only)
    sio.emit("files", {"a": b"\x01" * 10, "b": [b"\x02"]})
    for inbox in inboxes:
        assert inbox.wait_for("files") == [({"a": b"\x01" * 10, "b": [b"\x02"]},)]


# -- ordering and concurrency -------------------------------------------------------


def test_handlers_run_in_arrival_order_for_one_client(serve_app, make_client, transports):
    sio = geventsio.Server()
    order = []
    done = Event()

    @sio.event
    def number(sid, n):
        order.append(n)
        if n == 99:
            done.set()

    rs = serve(serve_app, sio)
    client = connect_client(make_client(), rs, transports=transports)
    for n in range(100):
        client.emit("number", n)
    assert done.wait(TIMEOUT)
    assert order == list(range(100))


def test_slow_handler_of_one_client_does_not_block_another(serve_app, make_client, transports):
    sio = geventsio.Server()
    log = []
    a_waiting = Event()
    gate = Event()

    @sio.event
    def slow(sid):
        log.append("a started")
        a_waiting.set()
        released = gate.wait(TIMEOUT)
        log.append("a finished")
        return released

    @sio.event
    def fast(sid):
        log.append("b handled")
        gate.set()
        return "fast"

    rs = serve(serve_app, sio)
    a = connect_client(make_client(), rs, transports=transports)
    b = connect_client(make_client(), rs, transports=transports)
    a_ack = AsyncResult()
    a.emit("slow", callback=lambda *args: a_ack.set(args))
    assert a_waiting.wait(TIMEOUT)
    assert b.call("fast", timeout=TIMEOUT) == "fast"
    assert a_ack.get(timeout=TIMEOUT) == (True,)  # released by b's handler, not by the timeout
    assert log == ["a started", "b handled", "a finished"]


def test_handler_calling_its_own_client_does_not_deadlock(serve_app, make_client, transports):
    sio = geventsio.Server()

    @sio.event
    def ask(sid, question):
        answer = sio.call("question", question, to=sid, timeout=TIMEOUT)
        return f"client said {answer}"

    rs = serve(serve_app, sio)
    client = make_client()
    client.on("question", lambda q: q.upper())
    connect_client(client, rs, transports=transports)
    assert client.call("ask", "why", timeout=TIMEOUT) == "client said WHY"
    # and again, with the other client-side ack path (callback instead of call)
    ack = AsyncResult()
    client.emit("ask", "how", callback=lambda *args: ack.set(args))
    assert ack.get(timeout=TIMEOUT) == ("client said HOW",)


def test_class_namespace_call_from_handler(serve_app, make_client):
    sio = geventsio.Server()

    class Quiz(geventsio.Namespace):
        def on_start(self, sid):
            return self.call("q", 2, to=sid, timeout=TIMEOUT) + 1

    sio.register_namespace(Quiz("/quiz"))
    rs = serve(serve_app, sio)
    client = make_client()
    client.on("q", lambda n: n * 10, namespace="/quiz")
    connect_client(client, rs, namespaces=["/quiz"])
    assert client.call("start", namespace="/quiz", timeout=TIMEOUT) == 21


def test_a_handler_calling_its_own_client_gets_the_answer_behind_a_full_inbox(serve_app, make_client):
    # The client sends more events than max_inbox while the handler waits for
    # its answer; the answer arrives behind them and must still be read.
    sio = geventsio.Server(max_inbox=8)
    outcome: AsyncResult = AsyncResult()

    @sio.on("trigger")
    def trigger(sid):
        try:
            outcome.set(sio.call("question", to=sid, timeout=TIMEOUT))
        except Exception as exc:  # the failure the test looks for
            outcome.set(exc)

    sio.on("noise", lambda sid, n: None)
    rs = serve(serve_app, sio)
    client = make_client()
    connect_client(client, rs, ["websocket"])
    question_asked = Event()

    def answer(*args):
        question_asked.set()
        return "answer"

    client.on("question", answer)
    client.emit("trigger")
    for n in range(20):  # past max_inbox, within the 4x a waiting call allows
        client.emit("noise", n)
    assert outcome.get(timeout=TIMEOUT + 1) == "answer"
    assert question_asked.is_set()
