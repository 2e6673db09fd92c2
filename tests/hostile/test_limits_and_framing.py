"""Oversized bodies and frames, RFC 6455 violations, junk HTTP, cross-origin requests.

Documented answers:

- a POST body over ``max_http_buffer_size`` gets 413 unread, with
  ``Connection: close`` (the session itself stays usable, as in Node);
- a WebSocket message over it is refused from its header: close 1009, session
  closed (``parse error``);
- a text frame that is not UTF-8: close 1007; any other RFC 6455 violation
  (unmasked frame, reserved bits, unknown opcode, bad fragmentation, oversized
  or fragmented control frame): close 1002;
- HTTP the WSGI server cannot parse: 400 (414 for an over-long request line);
- a request from an origin not in ``cors_allowed_origins`` (default: same
  origin only): 403 ``{"code": 4, "message": "Forbidden"}``, a WebSocket
  request too (it is refused before any 101).
"""

from __future__ import annotations

import pytest

from .support import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    SIOConn,
    WSConn,
    client_frame,
    eio_websocket,
    http_request,
    poll,
    polling_handshake,
    post,
    raw_http,
    websocket_request,
)

FORBIDDEN = {"code": 4, "message": "Forbidden"}
LIMIT = 10_000


def _joined(target) -> tuple[SIOConn, str]:
    raw = SIOConn(target.rs)
    return raw, raw.connect("/")


def _assert_closed_with(target, raw: SIOConn, sid: str, code: int) -> None:
    messages, got, _ = raw.ws.read_until_closed(answer_pings=True)
    assert got == code, (got, messages)
    assert target.recorder.reason(sid) == "parse error"
    assert raw.eio_sid not in target.sio.eio.sessions
    raw.close()


# -- oversized bodies and frames ----------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_post_is_413_and_the_session_survives(hostile, chunked):
    target = hostile(max_http_buffer_size=LIMIT)
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    poll(target.rs, eio)
    body = b"4" + b"x" * (LIMIT * 50)
    if chunked:
        def chunks():
            for i in range(0, len(body), 4096):
                yield body[i:i + 4096]
        reply = post(target.rs, eio, chunks())  # http.client sends an iterable chunked
    else:
        reply = post(target.rs, eio, body)
    assert reply.status == 413
    assert reply.headers.get("Connection") == "close"
    assert post(target.rs, eio, '421["echo","after 413"]').text == "ok"
    assert poll(target.rs, eio).text == '431["after 413"]'
    post(target.rs, eio, "1")
    target.finish()


def test_huge_content_length_is_refused_unread(hostile):
    target = hostile(max_http_buffer_size=LIMIT)
    eio = polling_handshake(target.rs)
    answer = raw_http(target.port, f"POST /socket.io/?EIO=4&transport=polling&sid={eio} HTTP/1.1\r\n"
                      f"Host: x\r\nContent-Length: {10**18}\r\n\r\n4abc".encode())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    target.finish()


@pytest.mark.parametrize("how", ["one frame", "fragments", "announced 2**63-1", "binary"])
def test_oversized_websocket_message_is_1009(hostile, how):
    target = hostile(max_http_buffer_size=LIMIT)
    raw, sid = _joined(target)
    if how == "one frame":
        raw.ws.send_frame(TEXT, b"4" + b"x" * (LIMIT + 1))
    elif how == "fragments":
        raw.ws.send_frame(TEXT, b"4" + b"x" * (LIMIT // 2), fin=False)
        raw.ws.send_frame(CONT, b"x" * (LIMIT // 2), fin=False)
        raw.ws.send_frame(CONT, b"x" * 10)
    elif how == "binary":
        raw.ws.send_frame(BINARY, b"\x00" * (LIMIT + 1))
    else:
        # Only the header is sent: the server must refuse it without waiting for the payload.
        raw.ws.send_raw(client_frame(TEXT, b"", length=2**63 - 1)[:10] + b"mask")
    _assert_closed_with(target, raw, sid, 1009)
    target.finish()


def test_websocket_message_at_the_limit_is_accepted(hostile):
    target = hostile(max_http_buffer_size=LIMIT)
    raw, sid = _joined(target)
    prefix = b'421["echo","'
    raw.ws.send_frame(TEXT, prefix + b"y" * (LIMIT - len(prefix) - 2) + b'"]')
    assert raw.recv() == '431["' + "y" * (LIMIT - len(prefix) - 2) + '"]'
    raw.close()
    target.finish()


# -- UTF-8 and RFC 6455 framing --------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    b"4\xff", b"4\xc3\x28", b"4\xc0\xaf",  # invalid bytes, overlong encoding
    b"4\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
    b'42["echo","\xf4\x90\x80\x80"]',  # beyond U+10FFFF
    b'42["echo","\xe2\x82"]',  # truncated sequence
])
def test_non_utf8_text_frame_is_1007(hostile, payload):
    target = hostile()
    raw, sid = _joined(target)
    raw.ws.send_frame(TEXT, payload)
    _assert_closed_with(target, raw, sid, 1007)
    target.finish()


def test_non_utf8_in_a_continuation_frame_is_1007(hostile):
    target = hostile()
    raw, sid = _joined(target)
    raw.ws.send_frame(TEXT, b'421["echo","', fin=False)
    raw.ws.send_frame(CONT, b'\xff"]')
    _assert_closed_with(target, raw, sid, 1007)
    target.finish()


def test_character_split_across_fragments_is_valid(hostile):
    target = hostile()
    raw, sid = _joined(target)
    euro = "\u20ac".encode()
    raw.ws.send_frame(TEXT, b'421["echo","' + euro[:1], fin=False)
    raw.ws.send_frame(PING, b"in between")  # control frames may interleave
    raw.ws.send_frame(CONT, euro[1:2], fin=False)
    raw.ws.send_frame(CONT, euro[2:] + b'"]')
    assert raw.recv() == '431["\u20ac"]'
    raw.close()
    target.finish()


@pytest.mark.parametrize("frames", [
    [client_frame(TEXT, b'42["echo",1]', masked=False)],
    [client_frame(TEXT, b'42["echo",1]', rsv=0x40)],  # RSV1 without permessage-deflate
    [client_frame(TEXT, b'42["echo",1]', rsv=0x30)],
    [client_frame(0x3, b"x")], [client_frame(0x7, b"x")], [client_frame(0xB, b"x")],
    [client_frame(CONT, b"x")],  # continuation without a message
    [client_frame(TEXT, b"4", fin=False), client_frame(TEXT, b"4")],  # new message mid-message
    [client_frame(PING, b"p" * 126)],  # control frame over 125 bytes
    [client_frame(PING, b"p", fin=False)],  # fragmented control frame
    [client_frame(CLOSE, b"\x03\xe8" + b"r" * 124)],  # close frame over 125 bytes
], ids=["unmasked", "rsv1", "rsv23", "op3", "op7", "opB", "lone-cont", "interleaved",
        "big-ping", "fragmented-ping", "big-close"])
def test_rfc6455_violation_is_1002(hostile, frames):
    target = hostile()
    raw, sid = _joined(target)
    for frame in frames:
        raw.ws.send_raw(frame)
    _assert_closed_with(target, raw, sid, 1002)
    target.finish()


@pytest.mark.parametrize("payload,echoed", [
    (b"", 1000), (b"\x03\xe8", 1000), (b"\x0b\xb8bye", 3000),
    (b"\x00", 1002), (b"\x03\xed", 1002), (b"\x00\x00", 1002), (b"\x13\x88", 1002),  # invalid codes
])
def test_client_close_frame(hostile, payload, echoed):
    target = hostile()
    raw, sid = _joined(target)
    raw.ws.send_frame(CLOSE, payload)
    messages, code, _ = raw.ws.read_until_closed()
    assert code == echoed, (code, messages)
    assert target.recorder.reason(sid) == "transport close"
    raw.close()
    target.finish()


def test_websocket_pings_and_unsolicited_pongs(hostile):
    target = hostile()
    raw, sid = _joined(target)
    for i in range(200):
        raw.ws.send_frame(PING, b"%d" % i)
        raw.ws.send_frame(PONG, b"unsolicited")
    pongs = 0
    while pongs < 200:
        fin, op, payload = raw.ws.recv_frame()
        if op == PONG:
            assert payload == b"%d" % pongs
            pongs += 1
        elif op == TEXT and payload == b"2":
            raw.send("3")
    raw.send('421["echo","after pings"]')
    assert raw.recv() == '431["after pings"]'
    raw.close()
    target.finish()


def test_frames_pipelined_behind_the_upgrade_request_are_read(hostile):
    # They reach the server with the request's last bytes: in the HTTP reader's
    # buffer, not in the socket the WebSocket reads from afterwards.
    target = hostile()
    early = (client_frame(TEXT, b"40") + client_frame(PING, b"early ping")
             + client_frame(TEXT, b'421["echo","early"]'))
    ws, _ = eio_websocket(target.rs, pipelined=early)
    got: list = []
    while len(got) < 3:
        fin, op, payload = ws.recv_frame()
        if op == PONG:
            got.append(("pong", payload))
        elif op == TEXT and payload != b"2":
            got.append(payload.decode())
    assert ("pong", b"early ping") in got, got
    texts = [m for m in got if isinstance(m, str)]
    assert len(texts) == 2 and texts[0].startswith("40{") and texts[1] == '431["early"]', got
    ws.close()
    target.finish()


# -- HTTP junk --------------------------------------------------------------------------


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /socket.io/?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
    (b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
     + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", b"400"),
    (b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", b"400"),
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100 + b"\r\n\r\n", b"400"),  # TLS
    (b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"400"),
    (b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"400"),
    (b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nContent-Length: 1\r\n"
     b"Content-Length: 2\r\n\r\n4a", b"400"),
], ids=["long-line", "many-headers", "long-header", "garbage", "tls", "cl-abc", "cl-negative",
        "cl-twice"])
def test_unparseable_http_is_refused(hostile, request_bytes, status):
    target = hostile()
    answer = raw_http(target.port, request_bytes)
    assert answer.split(b" ")[1:2] == [status], answer[:200]
    target.finish()


def test_invalid_chunked_post_body_is_400_and_closes_the_session(hostile):
    target = hostile()
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    sid = poll(target.rs, eio).text[2:].split('"sid":"')[1].split('"')[0]
    answer = raw_http(target.port, f"POST /socket.io/?EIO=4&transport=polling&sid={eio} HTTP/1.1\r\n"
                      "Host: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n40\r\n0\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert b'{"code": 3, "message": "Bad request"}' in answer
    assert target.recorder.reason(sid) == "transport error"
    target.finish()


@pytest.mark.parametrize("version,headers", [
    ("HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n"),
    ("HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: !!\r\n"),
    ("HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 99\r\n"
                 "Sec-WebSocket-Key: x\r\n"),
    ("HTTP/1.0", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
], ids=["no-version", "bad-key", "bad-version", "http10"])
def test_invalid_websocket_handshake(hostile, version, headers):
    target = hostile()
    answer = raw_http(target.port, (f"GET /socket.io/?EIO=4&transport=websocket {version}\r\nHost: x\r\n"
                                    + headers + "\r\n").encode())
    assert answer.split(b" ")[1:2] in ([b"400"], [b"426"]), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert body, answer  # the reason travels in the body
    target.finish()


# -- cross-origin requests -----------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1.evil.example",
                                    "https://127.0.0.1", "http://127.0.0.1"])
def test_cross_origin_polling_is_403(hostile, origin):
    target = hostile()
    for method, query in [("GET", "EIO=4&transport=polling"), ("OPTIONS", "EIO=4&transport=polling")]:
        reply = http_request(target.rs, method, query, headers={"Origin": origin})
        assert (reply.status, reply.json()) == (403, FORBIDDEN)
        assert reply.headers.get("Access-Control-Allow-Origin") is None
    target.finish()


def test_cross_origin_post_to_an_existing_session_is_403_and_not_delivered(hostile):
    notes: list = []
    target = hostile(setup=lambda sio: sio.on("note", lambda sid, x: notes.append(x)))
    eio = polling_handshake(target.rs)
    post(target.rs, eio, "40")
    poll(target.rs, eio)
    reply = post(target.rs, eio, '42["note","forged"]', headers={"Origin": "http://evil.example"})
    assert (reply.status, reply.json()) == (403, FORBIDDEN)
    assert post(target.rs, eio, '42["note","real"]\x1e421["echo","x"]').text == "ok"
    assert poll(target.rs, eio).text == '431["x"]'
    assert notes == ["real"]
    post(target.rs, eio, "1")
    target.finish()


def test_cross_origin_websocket_is_refused_with_403(hostile):
    target = hostile()
    reply = websocket_request(target.rs, "EIO=4&transport=websocket", {"Origin": "http://evil.example"})
    assert (reply.status, reply.json()) == (403, FORBIDDEN)
    target.finish()


def test_same_origin_and_listed_origins_are_allowed(hostile):
    target = hostile(cors_allowed_origins=["https://app.example"])
    ok = http_request(target.rs, headers={"Origin": "https://app.example"})
    assert ok.status == 200 and ok.headers.get("Access-Control-Allow-Origin") == "https://app.example"
    for origin in ["https://app.example.evil", "http://app.example", "https://APP.example "]:
        reply = http_request(target.rs, headers={"Origin": origin})
        assert (reply.status, reply.json()) == (403, FORBIDDEN), origin
    sid = ok.text[1:].split('"sid":"')[1].split('"')[0]
    post(target.rs, sid, "1")
    target.finish()


def test_refused_handshakes_create_nothing(hostile):
    target = hostile()
    for _ in range(200):
        reply = http_request(target.rs, headers={"Origin": "http://evil.example"})
        assert reply.status == 403
    assert target.tables() == target.baseline
    target.finish()
