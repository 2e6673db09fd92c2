"""Malformed Socket.IO packets: every type truncated or broken, bad ack ids, attachment
counts that lie, placeholders out of range, deep JSON, reserved event names, floods.

The documented answers (socket.py ``Connection.feed``, server.py ``on_message``):
a packet the protocol forbids closes that client's Engine.IO session with the
reason ``parse error`` (close packet ``1``, then WebSocket close 1000); packets
that are well-formed but point at nothing (an ack nobody awaits, an event for a
namespace not joined) are ignored. A client can hold at most one partial binary
packet (at most ``max_attachments`` attachments) at a time.
"""

from __future__ import annotations

import json
import time

import gevent
import pytest

from .support import TIMEOUT, SIOConn, poll, polling_handshake, post, wait_until

PH = '{"_placeholder":true,"num":%s}'


def _joined(target, namespace: str = "/") -> tuple[SIOConn, str]:
    raw = SIOConn(target.rs)
    return raw, raw.connect(namespace)


def _assert_parse_error_close(target, raw: SIOConn, sid: str) -> list:
    messages, code, _ = raw.read_until_closed()
    assert messages[-1:] == ["1"], messages  # the Engine.IO close packet, then the WebSocket close
    assert code == 1000
    assert target.recorder.reason(sid) == "parse error"
    assert raw.eio_sid not in target.sio.eio.sessions
    raw.close()
    return messages


def _assert_still_connected(raw: SIOConn, sid: str, target) -> None:
    raw.send('42777["echo","still connected"]')
    assert raw.recv() == '43777["still connected"]'
    assert sid in target.sio.sockets


# -- malformed and truncated packets of every type --------------------------------------

MALFORMED = [
    # CONNECT
    "40{", "40[]", '40"token"', "401", "40/admin,{", "40admin", "40/admin,[1]",
    # DISCONNECT
    "41{}", "41[]", '41/x,"y"', "411",
    # EVENT
    "42", "42[", "42[]", "42[1]", '42[null,"x"]', '42{"a":1}', '42"x"', "421", "42/x,", "42/x,1",
    '42["a"]]', '42["a"] x', "42-1[\"a\"]", '42["a",NaN]', '42["a",Infinity]', '42["a",-Infinity]',
    '42["a",' + "9" * 5000 + "]",  # beyond Python's int-from-string limit
    '42\u0661["a"]',  # a non-ASCII digit as ack id
    # ACK
    "43", "43[]", "431", "431{}", '431"x"', "431[", "43/x,[]",
    # CONNECT_ERROR: the server's to send
    "44", '44{"message":"x"}', '44"x"',
    # BINARY_EVENT
    "45", '45["x"]', '45-["x"]', '451["x"]', "451-", '451-["x"', '45a-["x"]', "451-[]",
    '450-[1]', '45-1-["x"]',
    # BINARY_ACK
    "46", "461-", '461-[]', '461-{}', "461-1",
    # unknown types and junk
    "47", "48", "49", "4a", "4/", "4-", "4 ", "4\u00e9", "4\x00",
]


@pytest.mark.parametrize("packet", MALFORMED, ids=lambda p: repr(p)[:24])
def test_malformed_socketio_packet_closes_only_that_client(hostile, packet):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(packet)
    _assert_parse_error_close(target, raw, sid)
    target.finish()


@pytest.mark.parametrize("packet", ["40{", '42["a"', "45", '451-["x",' + PH % 3 + "]"])
def test_malformed_socketio_packet_over_polling(hostile, packet):
    target = hostile()
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    socket_sid = json.loads(poll(target.rs, eio).text[2:])["sid"]
    assert post(target.rs, eio, packet).text == "ok"  # Engine.IO took it; Socket.IO refuses it
    assert target.recorder.reason(socket_sid) == "parse error"
    # Closed for a parse error, the session is forgotten at once: its next poll learns so.
    reply = poll(target.rs, eio)
    assert (reply.status, reply.json()) == (400, {"code": 1, "message": "Session ID unknown"})
    target.finish()


# -- ack ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("packet", [
    '42' + "9" * 16 + '["echo",1]',  # beyond 15 digits (2**53 is 16 digits)
    '42' + "9" * 40 + '["echo",1]',
    '43' + "1" * 16 + '[]',
    '44/x,1{}',
    '401',  # an ack id on CONNECT
    '41/x,5',  # an ack id on DISCONNECT
    '43-1[]', '431.5[]', '431e3[]',
])
def test_malformed_ack_id_closes_the_client(hostile, packet):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(packet)
    _assert_parse_error_close(target, raw, sid)
    target.finish()


@pytest.mark.parametrize("packet", [
    '43123[]',  # nobody awaits ack 123
    '43999999999999999["x"]',  # the largest id accepted, awaited by nobody
    '43/nowhere,1[]',  # a namespace not joined
    '430[]', '430[]',  # twice
    '461-5[' + PH % 0 + ']',  # a binary ack nobody awaits (its attachment follows)
])
def test_ack_nobody_awaits_is_ignored(hostile, packet):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(packet)
    if packet.startswith("461-"):
        raw.send(b"\x00")
    _assert_still_connected(raw, sid, target)
    raw.close()
    target.finish()


def test_ack_answered_twice_resolves_once(hostile):
    target = hostile()
    raw, sid = _joined(target)
    answers = []
    caller = gevent.spawn(lambda: answers.append(target.sio.call("question", to=sid, timeout=TIMEOUT)))
    question = raw.recv()
    assert question.startswith("42") and question.endswith('["question"]'), question
    ack_id = question[2:question.index("[")]
    raw.send(f'43{ack_id}["first"]')
    raw.send(f'43{ack_id}["second"]')
    caller.join(TIMEOUT)
    assert answers == ["first"]
    _assert_still_connected(raw, sid, target)
    raw.close()
    target.finish()


# -- attachments that lie -------------------------------------------------------------


def test_more_attachments_announced_than_sent_then_text(hostile):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(f'452-["echo",{PH % 0},{PH % 1}]')
    raw.send(b"only one")
    raw.send('42["echo","too early"]')
    _assert_parse_error_close(target, raw, sid)
    target.finish()


def test_more_attachments_sent_than_announced(hostile):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(f'451-1["echo",{PH % 0}]')
    raw.send(b"one")
    raw.send(b"two")
    _assert_parse_error_close(target, raw, sid)
    target.finish()


def test_missing_attachments_hold_one_partial_packet_until_the_client_leaves(hostile):
    target = hostile(max_attachments=10)
    raw, sid = _joined(target)
    raw.send("4510-" + json.dumps(["echo"] + [{"_placeholder": True, "num": i} for i in range(10)]))
    for _ in range(9):
        raw.send(b"x" * 1000)
    conn = target.sio.connections[raw.eio_sid]
    wait_until(lambda: len(conn.decoder._buffers) == 9, what="nine attachments buffered")
    # The client stays connected (it answers pings) while its tenth attachment never comes;
    # what it holds is bounded: one packet, at most max_attachments buffers.
    deadline = time.monotonic() + 2 * (target.sio.eio.ping_interval + target.sio.eio.ping_timeout)
    while time.monotonic() < deadline:
        try:
            raw.recv(timeout=deadline - time.monotonic())
        except OSError:
            break
    assert sid in target.sio.sockets
    assert len(conn.decoder._buffers) == 9
    target.assert_healthy()
    raw.close()
    assert target.recorder.reason(sid) == "transport close"
    target.finish()


@pytest.mark.parametrize("count", ["11", "999", "9" * 15, "9" * 16, "9" * 40])
def test_huge_attachment_counts_are_refused(hostile, count):
    target = hostile(max_attachments=10)
    raw, sid = _joined(target)
    raw.send(f'45{count}-["echo",{PH % 0}]')
    _assert_parse_error_close(target, raw, sid)
    target.finish()


@pytest.mark.parametrize("num", ["1", "2", "-1", '"0"', "0.0", "0.5", "true", "null", "1e400",
                                 "99999999999999999999", "[0]", "{}"])
def test_placeholder_out_of_range_is_refused(hostile, num):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(f'451-["echo",{PH % num}]')
    _assert_parse_error_close(target, raw, sid)
    target.finish()


def test_placeholder_without_num_is_refused(hostile):
    target = hostile()
    raw, sid = _joined(target)
    raw.send('451-["echo",{"_placeholder":true}]')
    _assert_parse_error_close(target, raw, sid)
    target.finish()


def test_placeholders_in_a_plain_event_are_plain_data(hostile):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(f'421["echo",{PH % 0}]')
    assert raw.recv() == f'431[{PH % 0}]'
    raw.close()
    target.finish()


def test_binary_at_any_depth_round_trips(hostile):
    target = hostile()
    raw, sid = _joined(target)
    nested = PH % 0
    for i in range(300):
        nested = '{"k%d":[%s]}' % (i % 3, nested)
    raw.send(f'451-1["echo",{nested}]')
    raw.send(b"\xff\x00deep")
    answer = raw.recv()
    assert answer == f"461-1[{nested}]", answer[:100]
    assert raw.recv() == b"\xff\x00deep"
    raw.close()
    target.finish()


# -- deep JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("packet", [
    '42["echo",' + "[" * 100_000 + "]" * 100_000 + "]",
    '42["echo",' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "]",
    "40" + '{"a":' * 100_000 + "1" + "}" * 100_000,
    '451-["echo",' + "[" * 100_000 + PH % 0 + "]" * 100_000 + "]",
    '42["echo",' + "[" * 100_000,  # and never closed
])
def test_deeply_nested_json_is_refused(hostile, packet):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(packet)
    _assert_parse_error_close(target, raw, sid)
    target.finish()


def test_deeply_nested_json_over_polling_is_refused(hostile):
    target = hostile()
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    socket_sid = json.loads(poll(target.rs, eio).text[2:])["sid"]
    body = '42["echo",' + "[" * 100_000 + "]" * 100_000 + "]"
    assert post(target.rs, eio, body).text == "ok"
    assert target.recorder.reason(socket_sid) == "parse error"
    target.finish()


@pytest.mark.parametrize("depth", [500, 900, 930, 940, 945, 950, 960, 980, 990, 1000, 1100, 5000])
def test_json_nested_near_the_recursion_limit(hostile, depth):
    """Either the event is answered, or the client is refused; never an error on the server."""
    target = hostile()
    raw, sid = _joined(target)
    value = "[" * depth + "]" * depth
    raw.send(f'421["echo",{value}]')
    answer = raw.recv()
    if answer == "1":
        assert target.recorder.reason(sid) == "parse error"
    else:
        assert answer == f"431[{value}]"
        raw.close()
    target.finish()


# -- values the server would have to send back -------------------------------------------


@pytest.mark.parametrize("number", ["1e999", "-1e400"])
def test_number_that_overflows_a_float(hostile, number):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(f'421["echo",{number}]')
    answer = raw.recv()
    if answer == "1":  # refused like NaN and Infinity
        assert target.recorder.reason(sid) == "parse error"
    else:
        assert answer.startswith("431["), answer
        raw.close()
    target.finish()


def test_lone_surrogate_relayed_to_everyone(hostile):
    target = hostile(setup=lambda sio: sio.on("relay", lambda sid, text: sio.emit("relayed", text)))
    raw, sid = _joined(target)
    raw.send('42["relay","\\ud800"]')
    raw.send('421["echo","after"]')
    wait_until(lambda: target.bystander.broadcasts >= 1, what="the bystander got the broadcast")
    answers = [raw.recv(), raw.recv()]
    assert '431["after"]' in answers, answers
    raw.close()
    target.finish()


# -- reserved event names and events that point at nothing ------------------------------


@pytest.mark.parametrize("event", ["connect", "connect_error", "disconnect", "disconnecting",
                                   "newListener", "removeListener"])
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_reserved_event_name_closes_the_client(hostile, event, binary):
    seen: list = []
    target = hostile(setup=lambda sio: sio.on("*", lambda name, sid, *a: seen.append(name)))
    raw, sid = _joined(target)
    if binary:
        raw.send(f'451-["{event}",{PH % 0}]')
        raw.send(b"\x01")
    else:
        raw.send(f'42["{event}",1]')
    _assert_parse_error_close(target, raw, sid)
    assert seen == []
    target.finish()


def test_event_for_a_namespace_not_joined_is_ignored(hostile):
    target = hostile(namespaces=["/", "/other"])
    raw, sid = _joined(target)
    raw.send('42/other,1["echo","x"]')
    raw.send('42/nowhere,2["echo","x"]')
    _assert_still_connected(raw, sid, target)
    raw.close()
    target.finish()


def test_unhandled_event_names_of_any_size(hostile):
    target = hostile()
    raw, sid = _joined(target)
    for name in ["", "x" * 100_000, "\u00e9\u4e2d", "on_connect", "__class__", "*"]:
        raw.send("42" + json.dumps([name, 1]))
    _assert_still_connected(raw, sid, target)
    raw.close()
    target.finish()


# -- floods --------------------------------------------------------------------------


def test_event_flood_is_throttled_not_queued(hostile):
    """A client that sends far faster than its handlers run waits (backpressure, max_inbox)."""
    released = gevent.event.Event()
    handled = []

    def slow(sid, n):
        released.wait(TIMEOUT)
        handled.append(n)

    target = hostile(max_inbox=32, setup=lambda sio: sio.on("slow", slow))
    raw, sid = _joined(target)
    session = target.session(raw.eio_sid)
    peak = [0]

    def watch() -> None:
        while not released.is_set():
            peak[0] = max(peak[0], len(session._inbox))
            gevent.sleep(0.001)

    watcher = gevent.spawn(watch)
    sender = gevent.spawn(lambda: [raw.send(f'42["slow",{n}]') for n in range(5000)])
    wait_until(lambda: len(session._inbox) >= 32, what="inbox full")
    target.bystander.check()  # disturbed neither by the flood nor by the blocked handlers
    assert len(session._inbox) <= 32
    released.set()
    sender.join(TIMEOUT * 2)
    assert sender.successful(), sender.exception
    wait_until(lambda: len(handled) == 5000, TIMEOUT * 2, "every event handled")
    watcher.join(TIMEOUT)
    assert handled == list(range(5000))  # in order, none lost
    assert peak[0] <= 32
    _assert_still_connected(raw, sid, target)
    raw.close()
    target.finish()
