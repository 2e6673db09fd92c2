"""Engine.IO v3 on the same endpoint (``allow_eio3=True``): the cases of the official v3 test suite.

The official suite (socketio/socket.io, docs/engine.io-protocol/v3-test-suite)
drives an echo server on /engine.io/ with pingInterval=300 ms and
pingTimeout=200 ms; the ``engine_server`` fixture provides exactly that, here
with ``allow_eio3=True``. Requests are plain http.client / websocket-client
ones, as in test_engine_conformance.py (whose helpers are reused). A few
cases beyond the suite: the refusal when ``allow_eio3`` is off, v4 clients
beside v3 ones, lengths of characters outside the BMP, a client pong.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any, Callable
from urllib.parse import quote

import gevent
import pytest
import websocket

from test_engine_conformance import (
    IO_TIMEOUT,
    RequestWatch,
    http_request,
    wait_until,
    ws_recv,
    ws_recv_until_close,
)

PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2
SLACK = 0.1

POLLING = "EIO=3&transport=polling"
WEBSOCKET = "EIO=3&transport=websocket"


def polling_query(sid: str) -> str:
    return f"{POLLING}&sid={quote(sid)}"


def split_payload(text: str) -> list[str]:
    """The records of a v3 text payload, checking each length the way JavaScript counts."""
    records = []
    while text:
        length, _, rest = text.partition(":")
        n = int(length)
        units = rest.encode("utf-16-le", "surrogatepass")
        record = units[: 2 * n].decode("utf-16-le")
        records.append(record)
        text = units[2 * n:].decode("utf-16-le")
    return records


def open_polling_session(srv: Any, binary: bool = False) -> str:
    status, body = http_request(srv, "GET", POLLING + ("" if binary else "&b64=1"))
    assert status == 200, body
    [record] = split_payload(body.decode("utf-8"))
    return json.loads(record[1:])["sid"]


@pytest.fixture
def srv(engine_server):
    return engine_server(ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, allow_eio3=True)


@pytest.fixture
def ws_connect(srv):
    opened: list[websocket.WebSocket] = []

    def connect(query: str = WEBSOCKET) -> websocket.WebSocket:
        ws = websocket.create_connection(srv.ws_url + srv.endpoint(query), timeout=IO_TIMEOUT)
        opened.append(ws)
        return ws

    yield connect
    for ws in opened:
        try:
            ws.close(timeout=0.1)
        except Exception:
            pass


@pytest.fixture
def watch(srv, monkeypatch):
    return RequestWatch(monkeypatch, srv.server)


def ws_open_session(ws_connect: Callable[..., websocket.WebSocket]) -> tuple[websocket.WebSocket, dict]:
    ws = ws_connect()
    frame = ws_recv(ws)
    assert frame.startswith("0"), frame
    return ws, json.loads(frame[1:])


# -- handshake -----------------------------------------------------------------


class TestHandshake:
    def test_polling_open_packet_is_a_v3_payload_without_max_payload(self, srv):
        status, body = http_request(srv, "GET", POLLING)
        assert status == 200
        text = body.decode("utf-8")
        length, _, content = text.partition(":")
        assert length == str(len(content))
        value = json.loads(content[1:])
        assert content[0] == "0"
        assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout"}
        assert value["upgrades"] == ["websocket"]
        assert (value["pingInterval"], value["pingTimeout"]) == (300, 200)
        assert srv.server.sessions[value["sid"]].protocol == 3

    def test_websocket_open_packet(self, srv, ws_connect):
        ws, value = ws_open_session(ws_connect)
        assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout"}
        assert value["upgrades"] == []

    @pytest.mark.parametrize("query", ["EIO=3", "EIO=3&transport=abc"])
    def test_invalid_transport(self, srv, query):
        assert http_request(srv, "GET", query)[0] == 400

    def test_invalid_request_method(self, srv):
        assert http_request(srv, "POST", POLLING, body="1:6")[0] == 400

    def test_refused_unless_allowed(self, engine_server):
        off = engine_server()
        status, body = http_request(off, "GET", POLLING)
        assert (status, json.loads(body)) == (400, {"code": 5, "message": "Unsupported protocol version"})
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(off.ws_url + off.endpoint(WEBSOCKET), timeout=IO_TIMEOUT)
        assert (refused.value.status_code, json.loads(refused.value.resp_body)) == (
            400, {"code": 5, "message": "Unsupported protocol version"})
        assert off.server.sessions == {}

    def test_v4_clients_keep_the_v4_protocol(self, srv):
        status, body = http_request(srv, "GET", "EIO=4&transport=polling")
        value = json.loads(body[1:])
        assert value["maxPayload"] == 1_000_000
        sid = value["sid"]
        assert srv.server.sessions[sid].protocol == 4
        query = f"EIO=4&transport=polling&sid={quote(sid)}"
        assert http_request(srv, "POST", query, body="4a\x1e4b") == (200, b"ok")
        assert http_request(srv, "GET", query) == (200, b"4a\x1e4b")


# -- messages --------------------------------------------------------------------


class TestMessagePolling:
    @pytest.mark.parametrize("payload", ["6:4hello", "6:4test16:4test26:4test3", "6:4hello10:b4AQIDBA=="])
    def test_echo_base64_client(self, srv, payload):
        sid = open_polling_session(srv)
        assert http_request(srv, "POST", polling_query(sid), body=payload) == (200, b"ok")
        assert http_request(srv, "GET", polling_query(sid)) == (200, payload.encode())

    def test_echo_binary_client_gets_a_binary_payload(self, srv):
        sid = open_polling_session(srv, binary=True)
        assert http_request(srv, "POST", polling_query(sid), body="6:4hello10:b4AQIDBA==") == (200, b"ok")
        status, body = http_request(srv, "GET", polling_query(sid))
        assert (status, body) == (200, bytes([0, 6, 255, 52, 104, 101, 108, 108, 111,
                                              1, 5, 255, 4, 1, 2, 3, 4]))

    def test_binary_request_body(self, srv):
        sid = open_polling_session(srv, binary=True)
        body = bytes([0, 4, 255]) + "4€".encode() + bytes([1, 4, 255, 4, 7, 8, 9])
        conn_status, answer = _post_octets(srv, polling_query(sid), body)
        assert (conn_status, answer) == (200, b"ok")
        status, echoed = http_request(srv, "GET", polling_query(sid))
        assert (status, echoed) == (200, body)

    def test_lengths_count_utf16_units(self, srv):
        sid = open_polling_session(srv)
        payload = "5:4a😀b3:4😀"
        assert http_request(srv, "POST", polling_query(sid), body=payload) == (200, b"ok")
        status, body = http_request(srv, "GET", polling_query(sid))
        assert status == 200
        assert body.decode("utf-8") == payload
        assert split_payload(body.decode("utf-8")) == ["4a😀b", "4😀"]

    @pytest.mark.parametrize("payload", ["abc", "6:4hell", "2:4😀", "1:5", "3:b5AQ"])
    def test_invalid_payload_closes_the_session(self, srv, payload):
        sid = open_polling_session(srv)
        assert http_request(srv, "POST", polling_query(sid), body=payload)[0] == 400
        assert http_request(srv, "GET", polling_query(sid))[0] == 400

    @pytest.mark.parametrize("body", [
        bytes([0, 9, 9, 9, 9, 9, 9, 9, 9, 255]) + b"4x",  # a length past the body's end
        bytes([1, 2, 255, 2, 0]),  # a binary record that is not a message
        bytes([0, 2, 255, 0xC3, 0x28]),  # text that is not UTF-8
        bytes([7, 1, 255, 0x34]),  # neither text nor binary
    ])
    def test_invalid_binary_payload_closes_the_session(self, srv, body):
        sid = open_polling_session(srv, binary=True)
        assert _post_octets(srv, polling_query(sid), body)[0] == 400
        assert http_request(srv, "GET", polling_query(sid))[0] == 400


def _post_octets(srv: Any, query: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=IO_TIMEOUT)
    try:
        conn.request("POST", srv.endpoint(query), body=body,
                     headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class TestMessageWebSocket:
    def test_plain_text(self, srv, ws_connect):
        ws, _ = ws_open_session(ws_connect)
        ws.send("4hello")
        assert ws_recv(ws) == "4hello"

    def test_binary_carries_the_type_byte(self, srv, ws_connect):
        ws, _ = ws_open_session(ws_connect)
        ws.send_binary(bytes([4, 1, 2, 3, 4]))
        assert ws_recv(ws) == bytes([4, 1, 2, 3, 4])

    def test_base64_text_frame_is_a_binary_message(self, srv, ws_connect):
        ws, _ = ws_open_session(ws_connect)
        ws.send("b4AQIDBA==")
        assert ws_recv(ws) == bytes([4, 1, 2, 3, 4])

    def test_b64_client_gets_base64_text_frames(self, srv, ws_connect):
        ws = ws_connect(WEBSOCKET + "&b64=1")
        assert ws_recv(ws).startswith("0")
        ws.send_binary(bytes([4, 1, 2, 3, 4]))
        assert ws_recv(ws) == "b4AQIDBA=="

    @pytest.mark.parametrize("frame", ["abc", b"\x02\x01"])
    def test_invalid_packet_closes_the_session(self, srv, ws_connect, frame):
        ws, value = ws_open_session(ws_connect)
        opcode = websocket.ABNF.OPCODE_BINARY if isinstance(frame, bytes) else websocket.ABNF.OPCODE_TEXT
        ws.send(frame, opcode)
        ws_recv_until_close(ws)
        assert wait_until(lambda: value["sid"] not in srv.server.sessions)


# -- heartbeat -------------------------------------------------------------------


class TestHeartbeat:
    def test_polling_ping_is_answered_with_pong(self, srv):
        sid = open_polling_session(srv)
        for _ in range(3):
            assert http_request(srv, "POST", polling_query(sid), body="1:2") == (200, b"ok")
            assert http_request(srv, "GET", polling_query(sid)) == (200, b"1:3")

    def test_pings_keep_the_session_open_and_server_never_pings(self, srv, ws_connect):
        ws, value = ws_open_session(ws_connect)
        ws.settimeout(IO_TIMEOUT)
        end = time.monotonic() + 3 * (PING_INTERVAL + PING_TIMEOUT)
        while time.monotonic() < end:
            ws.send("2")
            assert ws_recv(ws) == "3"  # the only frame: the server sends no ping of its own
            gevent.sleep(PING_INTERVAL)
        assert value["sid"] in srv.server.sessions

    def test_any_packet_shows_the_client_is_alive(self, srv, ws_connect):
        # The v3 spec: the server closes a session it receives no data from for
        # pingInterval + pingTimeout; messages count as much as pings.
        ws, value = ws_open_session(ws_connect)
        end = time.monotonic() + 3 * (PING_INTERVAL + PING_TIMEOUT)
        while time.monotonic() < end:
            ws.send("4tick")
            assert ws_recv(ws) == "4tick"
            gevent.sleep(PING_INTERVAL)
        assert value["sid"] in srv.server.sessions

    def test_polling_session_without_ping_is_closed(self, srv):
        sid = open_polling_session(srv)
        gevent.sleep(PING_INTERVAL + PING_TIMEOUT + SLACK)
        assert sid not in srv.server.sessions
        assert http_request(srv, "POST", polling_query(sid), body="1:2")[0] == 400

    def test_websocket_session_without_ping_is_closed(self, srv, ws_connect):
        ws, value = ws_open_session(ws_connect)
        started = time.monotonic()
        frames = ws_recv_until_close(ws, timeout=PING_INTERVAL + PING_TIMEOUT + IO_TIMEOUT)
        assert set(frames) <= {"1"}, frames  # no ping from the server, at most a close packet
        assert time.monotonic() - started >= PING_INTERVAL + PING_TIMEOUT - SLACK
        assert wait_until(lambda: value["sid"] not in srv.server.sessions)

    def test_pong_from_the_client_is_a_protocol_error(self, srv, ws_connect):
        ws, value = ws_open_session(ws_connect)
        ws.send("3")
        ws_recv_until_close(ws)
        assert wait_until(lambda: value["sid"] not in srv.server.sessions)


# -- close -------------------------------------------------------------------------


class TestClose:
    def test_polling_close_releases_the_pending_poll_with_a_noop(self, srv, watch):
        sid = open_polling_session(srv)
        query = polling_query(sid)
        poll = gevent.spawn(http_request, srv, "GET", query)
        watch.wait_for("GET", query)
        assert http_request(srv, "POST", query, body="1:1") == (200, b"ok")
        assert poll.get(timeout=IO_TIMEOUT) == (200, b"1:6")
        assert http_request(srv, "GET", query)[0] == 400

    def test_server_close_reaches_a_polling_client(self, srv):
        sid = open_polling_session(srv)
        srv.server.disconnect(sid)
        assert http_request(srv, "GET", polling_query(sid)) == (200, b"1:1")

    def test_websocket_close(self, srv, ws_connect):
        ws, value = ws_open_session(ws_connect)
        ws.send("1")
        ws_recv_until_close(ws)
        assert wait_until(lambda: value["sid"] not in srv.server.sessions)


# -- upgrade -------------------------------------------------------------------------


class TestUpgrade:
    def test_upgrade_from_polling(self, srv, ws_connect):
        sid = open_polling_session(srv, binary=True)
        ws = ws_connect(f"{WEBSOCKET}&sid={quote(sid)}")
        ws.send("2probe")
        assert ws_recv(ws) == "3probe"
        assert http_request(srv, "GET", polling_query(sid)) == (200, b"1:6")
        ws.send("5")
        ws.send("4hello")
        assert ws_recv(ws) == "4hello"
        ws.send_binary(b"\x04\x00\xff")
        assert ws_recv(ws) == b"\x04\x00\xff"
        assert srv.server.transport(sid) == "websocket"
        assert http_request(srv, "GET", polling_query(sid))[0] == 400

    @pytest.mark.parametrize("ws_b64", [False, True])
    def test_each_transport_asks_for_base64_in_its_own_request(self, srv, ws_connect, ws_b64):
        sid = open_polling_session(srv)  # b64=1: binary as base64 while polling
        srv.server.send(sid, b"\x01")
        assert http_request(srv, "GET", polling_query(sid)) == (200, b"6:b4AQ==")
        ws = ws_connect(f"{WEBSOCKET}&sid={quote(sid)}" + ("&b64=1" if ws_b64 else ""))
        ws.send("2probe")
        assert ws_recv(ws) == "3probe"
        ws.send("5")
        ws.send_binary(b"\x04\x02")
        assert ws_recv(ws) == ("b4Ag==" if ws_b64 else b"\x04\x02")

    def test_frames_queued_while_polling_leave_on_the_websocket(self, srv, ws_connect):
        sid = open_polling_session(srv, binary=True)
        ws = ws_connect(f"{WEBSOCKET}&sid={quote(sid)}")
        ws.send("2probe")
        assert ws_recv(ws) == "3probe"
        srv.server.send(sid, b"\x09\x08")
        srv.server.send(sid, "queued")
        ws.send("5")
        assert [ws_recv(ws), ws_recv(ws)] == [b"\x04\x09\x08", "4queued"]
        ws.send("2")
        assert ws_recv(ws) == "3"
