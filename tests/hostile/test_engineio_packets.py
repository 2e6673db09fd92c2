"""Malformed and truncated Engine.IO packets, over WebSocket and in long-polling bodies.

The documented answers (engine/transports.py, engine/http.py):

- WebSocket: an invalid packet closes the session with reason ``parse error``
  and the WebSocket with 1000 (after the close packet ``1`` when the Socket.IO
  layer refused it; at once when the Engine.IO layer did);
- long-polling POST: a body with any malformed record (unknown type, invalid
  base64, not UTF-8, empty) is rejected as a whole with HTTP 400
  ``{"code": 3, "message": "Bad request"}`` and the session is closed
  (``parse error``); none of its packets reach the application;
- packets a client may send at any time and that mean nothing (an unsolicited
  pong, a noop) are ignored.

Each case runs next to a well-behaved client that keeps echoing, and ends with
the server's tables back to their baseline.
"""

from __future__ import annotations

import pytest

from .support import SIOConn, WSConn, http_request, poll, polling_handshake, post, wait_until

BAD_REQUEST = {"code": 3, "message": "Bad request"}


def _joined(target) -> tuple[SIOConn, str]:
    raw = SIOConn(target.rs)
    return raw, raw.connect("/")


def _assert_parse_error_close(target, raw: SIOConn, sid: str) -> None:
    messages, code, _ = raw.read_until_closed()
    # The close packet is sent when the Socket.IO layer refuses the packet; when the
    # Engine.IO layer does, the reader ends and the WebSocket closes at once.
    assert messages in ([], ["1"]), messages
    assert code == 1000
    assert target.recorder.reason(sid) == "parse error"
    assert raw.eio_sid not in target.sio.eio.sessions
    raw.close()


# -- WebSocket -----------------------------------------------------------------------


@pytest.mark.parametrize("frame", [
    "",  # no packet type at all
    "7", "9", "x", "\u00e9", "\x00",  # unknown packet types
    "bAQID",  # base64 binary is for polling payloads only
    "0", '0{"sid":"x"}',  # OPEN is the server's
    "5",  # UPGRADE outside an upgrade
    "2", "2probe",  # PING: in Engine.IO v4 the server pings, not the client
])
def test_invalid_engineio_packet_over_websocket(hostile, frame):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(frame)
    _assert_parse_error_close(target, raw, sid)
    target.finish()


def test_binary_frame_without_pending_attachment_over_websocket(hostile):
    target = hostile()
    raw, sid = _joined(target)
    raw.send(b"\x01\x02\x03")
    _assert_parse_error_close(target, raw, sid)
    target.finish()


@pytest.mark.parametrize("frame", ["3", "3probe", "6", "6junk"])
def test_meaningless_packets_are_ignored(hostile, frame):
    target = hostile()
    raw, sid = _joined(target)
    for _ in range(50):
        raw.send(frame)
    raw.send('421["echo","still here"]')
    assert raw.recv() == '431["still here"]'
    assert sid in target.sio.sockets
    raw.close()
    assert target.recorder.reason(sid) == "transport close"
    target.finish()


def test_close_packet_from_the_client_is_a_transport_close(hostile):
    target = hostile()
    raw, sid = _joined(target)
    raw.send("1")
    assert target.recorder.reason(sid) == "transport close"
    wait_until(lambda: raw.eio_sid not in target.sio.eio.sessions, what="session forgotten")
    raw.close()
    target.finish()


@pytest.mark.parametrize("frames", [
    ["hello"],  # garbage instead of the probe
    ["5"],  # UPGRADE before the probe
    ["2probe", "4early"],  # a message before the upgrade completed
    ["2probe", "2probe"],  # a second probe
    ["2probe", "0"],
])
def test_invalid_upgrade_leaves_the_polling_session_working(hostile, frames):
    target = hostile()
    eio = polling_handshake(target.rs)
    assert post(target.rs, eio, "40").status == 200
    assert poll(target.rs, eio).text.startswith("40")
    ws = WSConn(target.port, f"/socket.io/?EIO=4&transport=websocket&sid={eio}")
    for frame in frames:
        ws.send(frame)
    messages, code, _ = ws.read_until_closed()
    assert code in (1000, None), (messages, code)
    assert all(m in ("3probe",) for m in messages), messages
    ws.close()
    # The session falls back to polling, untouched.
    session = target.session(eio)
    wait_until(lambda: session.state.value == "polling", what="back to polling")
    assert post(target.rs, eio, '421["echo","polling still works"]').text == "ok"
    assert poll(target.rs, eio).text == '431["polling still works"]'
    assert post(target.rs, eio, "1").status == 200
    target.finish()


# -- long-polling bodies ------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"",  # empty
    b"\x1e",  # two empty records
    b"4hello\x1e",  # a trailing separator: an empty record
    b"9", b"x", b"0", b"5", b"2",  # unknown types, and types the client may not send
    b"b!!!!", b"bAQ", b"bAQI=x", b"bA Q I D", b"b\xc3\xa9",  # invalid base64
    b"4\xff\xfe", b"\xc3\x28",  # not UTF-8
    b'42["note","first"]\x1e9',  # a valid record before a malformed one
], ids=lambda b: repr(b)[:30])
def test_invalid_polling_body_is_refused_whole(hostile, body):
    notes: list = []
    target = hostile(setup=lambda sio: sio.on("note", lambda sid, x: notes.append(x)))
    eio = polling_handshake(target.rs)
    assert post(target.rs, eio, "40").status == 200
    reply = poll(target.rs, eio)
    assert reply.text.startswith("40"), reply.text
    socket_sid = reply.text[2:].split('"sid":"')[1].split('"')[0]
    reply = post(target.rs, eio, body)
    assert reply.status == 400, (reply.status, reply.body)
    assert reply.json() == BAD_REQUEST
    assert target.recorder.reason(socket_sid) == "parse error"
    assert notes == []  # nothing of a refused body reached the application
    assert eio not in target.sio.eio.sessions
    target.finish()


def test_valid_binary_record_in_a_polling_body_is_accepted(hostile):
    """The positive control of the cases above: ``b`` + valid base64 is a binary attachment."""
    target = hostile()
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    poll(target.rs, eio)
    body = '451-1["echo",{"_placeholder":true,"num":0}]\x1ebAQID'
    assert post(target.rs, eio, body).text == "ok"
    answer = poll(target.rs, eio).text
    assert answer == '461-1[{"_placeholder":true,"num":0}]\x1ebAQID', answer
    post(target.rs, eio, "1")
    target.finish()


@pytest.mark.parametrize("method,query,status,code", [
    ("GET", "EIO=3&transport=polling", 400, 5),
    ("GET", "EIO=5&transport=polling", 400, 5),
    ("GET", "transport=polling", 400, 5),
    ("GET", "EIO=4&transport=flashsocket", 400, 0),
    ("GET", "EIO=4", 400, 0),
    ("POST", "EIO=4&transport=polling", 400, 2),
    ("PUT", "EIO=4&transport=polling&sid=%s", 400, 3),
    ("GET", "EIO=4&transport=polling&sid=" + "A" * 5000, 400, 1),
    ("GET", "EIO=4&transport=polling&sid=%ff%fe%00", 400, 1),
    ("GET", "EIO=4&transport=polling&transport=websocket", 400, 3),
])
def test_invalid_handshake_queries(hostile, method, query, status, code):
    target = hostile()
    if "%s" in query:
        query = query % polling_handshake(target.rs)
    reply = http_request(target.rs, method, query, body=b"4x" if method != "GET" else None)
    assert reply.status == status, (reply.status, reply.body)
    assert reply.json()["code"] == code
    target.finish()
