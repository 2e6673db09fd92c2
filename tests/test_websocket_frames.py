"""RFC 6455 frame layer (geventsio.engine.websocket.WebSocket) over an in-memory stream.

Client frames are built here byte by byte (masked as RFC 6455 section 5.3
requires); the server's output is parsed back by an independent decoder.
"""

from __future__ import annotations

import socket
import struct

import pytest
from gevent.event import Event

from geventsio.engine import websocket
from geventsio.engine.websocket import WebSocket
from geventsio.engine.ws_frames import MessageTooBig, encode_frame, encode_frames
from geventsio.exceptions import ProtocolError

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MASK = b"\x37\xfa\x21\x3d"


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0, mask: bytes = MASK, length: int | None = None) -> bytes:
    """One client frame. ``length`` overrides the announced payload length."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if n <= 125:
        head = bytes([first, mask_bit | n])
    elif n <= 0xFFFF:
        head = bytes([first, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def header_size(frame_length: int) -> int:
    """Bytes of a masked client frame header (mask key included) for a payload length."""
    return 2 + (0 if frame_length <= 125 else 2 if frame_length <= 0xFFFF else 8) + 4


def parse_server_frames(data: bytes) -> list[tuple[bool, int, bytes]]:
    """Decode unmasked server frames into (fin, opcode, payload); fail on anything left over."""
    out = []
    i = 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        assert b0 & 0x70 == 0, "server set RSV bits"
        assert b1 & 0x80 == 0, "server frames must not be masked"
        n = b1 & 0x7F
        i += 2
        if n == 126:
            n = int.from_bytes(data[i:i + 2], "big")
            i += 2
        elif n == 127:
            n = int.from_bytes(data[i:i + 8], "big")
            i += 8
        payload = data[i:i + n]
        assert len(payload) == n, "truncated server frame"
        i += n
        out.append((bool(b0 & 0x80), b0 & 0x0F, payload))
    return out


class Stream:
    """An in-memory connection: reads from a fixed buffer, records every write.

    Like a socket's ``recv``, a read returns up to ``n`` bytes, and no more than
    ``max_read`` (a slow network that delivers a few bytes at a time).
    """

    def __init__(self, incoming: bytes = b"", max_read: int | None = None):
        self.incoming = incoming
        self.max_read = max_read
        self.pos = 0
        self.writes: list[bytes] = []
        self.shutdowns: list[int] = []  # how (socket.SHUT_WR, SHUT_RDWR), in order

    def read(self, n: int) -> bytes:
        if self.max_read is not None:
            n = min(n, self.max_read)
        chunk = self.incoming[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def shutdown(self, how: int) -> None:
        self.shutdowns.append(how)

    def frames(self) -> list[tuple[bool, int, bytes]]:
        return parse_server_frames(b"".join(self.writes))

    def close_codes(self) -> list[int]:
        return [struct.unpack("!H", p[:2])[0] for _, op, p in self.frames() if op == CLOSE]


def make_ws(incoming: bytes = b"", max_message_size: int = 1 << 20,
            max_read: int | None = None) -> tuple[WebSocket, Stream]:
    stream = Stream(incoming, max_read)
    return WebSocket(stream.read, stream.write, max_message_size, stream.shutdown), stream


SIZES = [0, 1, 125, 126, 65535, 65536]


# -- well-formed messages -------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_masked_text_message(size: int) -> None:
    text = ("\u00e9" * size)[:size // 2] + "a" * (size - 2 * (size // 2))  # exactly `size` bytes
    raw = text.encode("utf-8")
    assert len(raw) == size
    ws, stream = make_ws(client_frame(TEXT, raw))
    assert ws.receive() == text
    assert stream.pos == len(stream.incoming)
    assert stream.writes == []
    assert ws.receive() is None  # end of stream


@pytest.mark.parametrize("size", SIZES)
def test_masked_binary_message(size: int) -> None:
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    ws, stream = make_ws(client_frame(BINARY, data))
    got = ws.receive()
    assert type(got) is bytes
    assert got == data
    assert stream.writes == []


@pytest.mark.parametrize("size, header", [(125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_length_forms_are_the_shortest_encoding(size: int, header: int) -> None:
    frame = client_frame(BINARY, b"\x00" * size)
    assert len(frame) == header + 4 + size  # sanity check of the test's own encoder


def test_several_messages_in_a_row() -> None:
    incoming = client_frame(TEXT, b"4one") + client_frame(BINARY, b"\x01") + client_frame(TEXT, b"4two")
    ws, _ = make_ws(incoming)
    assert [ws.receive(), ws.receive(), ws.receive(), ws.receive()] == ["4one", b"\x01", "4two", None]


@pytest.mark.parametrize("max_read", [1, 3, 7, 70, 70000])
def test_messages_split_anywhere_by_the_network(max_read: int) -> None:
    # Frames cut at every position between reads: headers, lengths, masks, payloads.
    incoming = (
        client_frame(TEXT, b"4one") + client_frame(PING, b"hi") + client_frame(BINARY, b"\x01" * 300)
        + client_frame(TEXT, b"4" + b"z" * 70000) + client_frame(TEXT, b"4two", fin=False)
        + client_frame(CONT, b"!", fin=True)
    )
    ws, stream = make_ws(incoming, max_read=max_read)
    got = [ws.receive() for _ in range(5)]
    assert got == ["4one", b"\x01" * 300, "4" + "z" * 70000, "4two!", None]
    assert stream.frames() == [(True, PONG, b"hi")]


def test_each_frame_may_use_its_own_mask() -> None:
    incoming = (
        client_frame(TEXT, b"4abc", mask=b"\x00\x00\x00\x00")
        + client_frame(TEXT, b"4abc", mask=b"\xff\x01\x80\x7f")
    )
    ws, _ = make_ws(incoming)
    assert ws.receive() == "4abc"
    assert ws.receive() == "4abc"


def test_fragmented_text_message_with_a_character_split_across_frames() -> None:
    raw = "4h\u00e9llo \U0001f600 w\u00f6rld".encode("utf-8")
    # Split inside the two-byte "é" and inside the four-byte emoji.
    cut1 = raw.index("\u00e9".encode()) + 1
    cut2 = raw.index("\U0001f600".encode()) + 2
    incoming = (
        client_frame(TEXT, raw[:cut1], fin=False)
        + client_frame(CONT, raw[cut1:cut2], fin=False)
        + client_frame(CONT, b"", fin=False)
        + client_frame(CONT, raw[cut2:], fin=True)
    )
    ws, stream = make_ws(incoming)
    assert ws.receive() == raw.decode("utf-8")
    assert stream.writes == []


def test_fragmented_binary_message() -> None:
    parts = [b"\x00\x01", b"\x02" * 200, b"\x03" * 70000]
    incoming = (
        client_frame(BINARY, parts[0], fin=False)
        + client_frame(CONT, parts[1], fin=False)
        + client_frame(CONT, parts[2], fin=True)
    )
    ws, _ = make_ws(incoming)
    assert ws.receive() == b"".join(parts)


def test_ping_is_answered_with_a_pong_carrying_its_payload() -> None:
    ws, stream = make_ws(client_frame(PING, b"are you there?") + client_frame(TEXT, b"4after"))
    assert ws.receive() == "4after"
    assert stream.frames() == [(True, PONG, b"are you there?")]


def test_ping_inside_a_fragmented_message() -> None:
    incoming = (
        client_frame(TEXT, b"4hel", fin=False)
        + client_frame(PING, b"\x00\xffping")
        + client_frame(CONT, b"lo ", fin=False)
        + client_frame(PING, b"")
        + client_frame(PONG, b"unsolicited")
        + client_frame(CONT, b"world", fin=True)
    )
    ws, stream = make_ws(incoming)
    assert ws.receive() == "4hello world"
    assert stream.frames() == [(True, PONG, b"\x00\xffping"), (True, PONG, b"")]
    assert not ws.closed


def test_ping_with_the_largest_control_payload() -> None:
    ws, stream = make_ws(client_frame(PING, b"p" * 125))
    assert ws.receive() is None
    assert stream.frames() == [(True, PONG, b"p" * 125)]


# -- closing --------------------------------------------------------------


def test_close_frame_is_answered_and_ends_receiving() -> None:
    incoming = client_frame(CLOSE, struct.pack("!H", 1000) + b"bye") + client_frame(TEXT, b"4never")
    ws, stream = make_ws(incoming)
    assert ws.receive() is None
    assert ws.closed
    frames = stream.frames()
    assert len(frames) == 1
    fin, op, payload = frames[0]
    assert fin and op == CLOSE
    assert struct.unpack("!H", payload[:2])[0] == 1000
    # The server ends its side of the stream first, and drains what still comes.
    assert stream.shutdowns == [socket.SHUT_WR] and ws.lingering
    # Nothing after the close frame is returned (the reader may have buffered it).
    assert ws.receive() is None
    assert ws.receive() is None


def test_close_frame_without_a_status_code() -> None:
    ws, stream = make_ws(client_frame(CLOSE, b""))
    assert ws.receive() is None
    assert stream.close_codes() == [1000]


def test_close_code_of_the_peer_is_echoed() -> None:
    ws, stream = make_ws(client_frame(CLOSE, struct.pack("!H", 1001)))
    assert ws.receive() is None
    assert stream.close_codes() == [1001]


@pytest.mark.parametrize("code", [999, 1005, 1006, 1015, 5000])
def test_close_with_a_code_that_must_not_be_on_the_wire(code: int) -> None:
    # RFC 6455 7.4.1: 1005, 1006 and 1015 MUST NOT be sent in a close frame;
    # codes outside 1000-4999 are invalid. The answer is a protocol error.
    ws, stream = make_ws(client_frame(CLOSE, struct.pack("!H", code)))
    assert ws.receive() is None
    assert stream.close_codes() == [1002]


def test_close_is_idempotent() -> None:
    ws, stream = make_ws()
    ws.close(1001, "going away")
    ws.close()
    ws.close(1011, "again")
    assert stream.frames() == [(True, CLOSE, struct.pack("!H", 1001) + b"going away")]
    assert stream.shutdowns == [socket.SHUT_WR]
    assert ws.closed and ws.lingering
    assert ws.receive() is None
    assert stream.shutdowns == [socket.SHUT_WR]


def test_closing_side_drains_until_the_clients_end_of_stream() -> None:
    # What the client sent before it saw our close frame, and its own close
    # frame, are read and dropped (not answered: one close frame each way).
    incoming = (client_frame(TEXT, b"4late") + client_frame(BINARY, b"\x01", fin=False)
                + client_frame(CONT, b"\x02") + client_frame(CLOSE, struct.pack("!H", 1000)))
    ws, stream = make_ws(incoming, max_read=7)
    ws.close(1000)
    assert ws.lingering and stream.shutdowns == [socket.SHUT_WR]
    ws.drain()
    assert stream.pos == len(incoming)  # everything read, up to the end of stream
    assert stream.shutdowns == [socket.SHUT_WR, socket.SHUT_RDWR] and not ws.lingering
    assert stream.close_codes() == [1000]


def test_a_client_that_never_closes_is_cut_after_linger(monkeypatch) -> None:
    monkeypatch.setattr(websocket, "LINGER", 0.05)
    cut = Event()
    shutdowns = []

    def shutdown(how: int) -> None:
        shutdowns.append(how)
        if how == socket.SHUT_RDWR:
            cut.set()

    ws = WebSocket(lambda n: b"", lambda data: None, 100, shutdown)
    ws.close()
    assert ws.lingering and shutdowns == [socket.SHUT_WR]
    assert cut.wait(5), "the connection was never shut both ways"
    assert not ws.lingering and shutdowns == [socket.SHUT_WR, socket.SHUT_RDWR]


def test_close_survives_a_dead_connection() -> None:
    def broken_write(data: bytes) -> None:
        raise BrokenPipeError

    shutdowns = []
    ws = WebSocket(lambda n: b"", broken_write, 100, shutdowns.append)
    ws.close()
    assert ws.closed
    assert shutdowns == [socket.SHUT_WR]


def test_close_reason_is_truncated_to_fit_a_control_frame() -> None:
    ws, stream = make_ws()
    ws.close(1000, "x" * 300)
    [(fin, op, payload)] = stream.frames()
    assert op == CLOSE and len(payload) <= 125


# -- protocol errors ------------------------------------------------------


def assert_failed_with(ws: WebSocket, stream: Stream, code: int, exc_type=ProtocolError) -> None:
    with pytest.raises(exc_type) as info:
        ws.receive()
    if exc_type is ProtocolError:
        assert not isinstance(info.value, MessageTooBig)
    assert stream.close_codes() == [code]
    assert ws.closed
    assert stream.shutdowns == [socket.SHUT_RDWR]  # a broken stream: no closing handshake
    assert ws.receive() is None


def test_unmasked_client_frame_is_a_protocol_error() -> None:
    ws, stream = make_ws(client_frame(TEXT, b"4hello", masked=False))
    assert_failed_with(ws, stream, 1002)


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_reserved_bits_are_a_protocol_error(rsv: int) -> None:
    ws, stream = make_ws(client_frame(TEXT, b"4hello", rsv=rsv))
    assert_failed_with(ws, stream, 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_unknown_opcode_is_a_protocol_error(opcode: int) -> None:
    ws, stream = make_ws(client_frame(opcode, b"data"))
    assert_failed_with(ws, stream, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_control_frame_longer_than_125_bytes(opcode: int) -> None:
    ws, stream = make_ws(client_frame(opcode, b"\x03\xe8" + b"x" * 124))
    assert_failed_with(ws, stream, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame(opcode: int) -> None:
    incoming = client_frame(opcode, b"\x03\xe8", fin=False) + client_frame(CONT, b"", fin=True)
    ws, stream = make_ws(incoming)
    assert_failed_with(ws, stream, 1002)


def test_continuation_without_a_message() -> None:
    ws, stream = make_ws(client_frame(CONT, b"orphan"))
    assert_failed_with(ws, stream, 1002)


def test_new_message_inside_a_fragmented_one() -> None:
    incoming = client_frame(TEXT, b"4a", fin=False) + client_frame(TEXT, b"4b")
    ws, stream = make_ws(incoming)
    assert_failed_with(ws, stream, 1002)


def test_invalid_utf8_text() -> None:
    ws, stream = make_ws(client_frame(TEXT, b"4\xff\xfe"))
    assert_failed_with(ws, stream, 1007)


def test_invalid_utf8_across_fragments() -> None:
    # "é" is c3 a9; a lone c3 at the end of the message is truncated UTF-8.
    incoming = client_frame(TEXT, b"4ok", fin=False) + client_frame(CONT, b"\xc3", fin=True)
    ws, stream = make_ws(incoming)
    assert_failed_with(ws, stream, 1007)


def test_invalid_utf8_binary_is_fine() -> None:
    ws, _ = make_ws(client_frame(BINARY, b"\xff\xfe"))
    assert ws.receive() == b"\xff\xfe"


# -- size limit -----------------------------------------------------------


@pytest.mark.parametrize("limit, size", [(100, 101), (100, 125), (100, 126), (1000, 65536), (100, 1 << 40)])
def test_single_frame_over_the_limit_is_refused_before_its_payload_is_read(limit: int, size: int) -> None:
    # Only the header is on the stream for the huge case: reading the payload would fail the test.
    payload = b"x" * size if size < (1 << 20) else b""
    frame = client_frame(TEXT, payload, length=size)
    # One byte per read: the payload would be read only if it were asked for.
    ws, stream = make_ws(frame, max_message_size=limit, max_read=1)
    assert_failed_with(ws, stream, 1009, MessageTooBig)
    assert stream.pos <= header_size(size)


def test_message_exactly_at_the_limit_is_accepted() -> None:
    ws, stream = make_ws(client_frame(TEXT, b"4" + b"x" * 99), max_message_size=100)
    assert ws.receive() == "4" + "x" * 99
    assert stream.writes == []


def test_fragmented_message_over_the_limit_is_refused_at_the_offending_header() -> None:
    first = client_frame(TEXT, b"4" + b"x" * 59, fin=False)
    second = client_frame(CONT, b"y" * 60, fin=False)
    third = client_frame(CONT, b"z" * 10, fin=True)
    ws, stream = make_ws(first + second + third, max_message_size=100, max_read=1)
    assert_failed_with(ws, stream, 1009, MessageTooBig)
    assert stream.pos <= len(first) + header_size(60)


def test_fragments_adding_up_to_the_limit_are_accepted() -> None:
    incoming = client_frame(BINARY, b"a" * 50, fin=False) + client_frame(CONT, b"b" * 50, fin=True)
    ws, _ = make_ws(incoming, max_message_size=100)
    assert ws.receive() == b"a" * 50 + b"b" * 50


def test_control_frames_do_not_count_towards_the_message_size() -> None:
    incoming = (
        client_frame(TEXT, b"4" + b"x" * 59, fin=False)
        + client_frame(PING, b"p" * 100)
        + client_frame(CONT, b"y" * 40, fin=True)
    )
    ws, stream = make_ws(incoming, max_message_size=100)
    assert ws.receive() == "4" + "x" * 59 + "y" * 40
    assert stream.frames() == [(True, PONG, b"p" * 100)]


# -- truncated input ------------------------------------------------------


TRUNCATED = {
    "empty": b"",
    "one-header-byte": client_frame(TEXT, b"4hello")[:1],
    "no-mask-key": client_frame(TEXT, b"4hello")[:4],
    "short-payload": client_frame(TEXT, b"4hello")[:-1],
    "short-16-bit-length": client_frame(BINARY, b"x" * 300)[:3],
    "short-64-bit-length": client_frame(BINARY, b"x" * 70000)[:6],
    "short-ping": client_frame(PING, b"ping")[:-2],
    "fragment-then-eof": client_frame(TEXT, b"4abc", fin=False),
}


@pytest.mark.parametrize("incoming", TRUNCATED.values(), ids=TRUNCATED.keys())
def test_truncated_stream_ends_the_connection(incoming: bytes) -> None:
    ws, stream = make_ws(incoming)
    assert ws.receive() is None
    assert ws.closed
    assert stream.writes == []


# -- sending --------------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        pytest.param("4hi", b"\x81\x034hi", id="text"),
        pytest.param("", b"\x81\x00", id="empty-text"),
        pytest.param("\u00e9", b"\x81\x02\xc3\xa9", id="utf8-text"),
        pytest.param(b"\x00\x01", b"\x82\x02\x00\x01", id="binary"),
        pytest.param(b"", b"\x82\x00", id="empty-binary"),
        pytest.param("a" * 125, b"\x81\x7d" + b"a" * 125, id="text-125"),
        pytest.param("a" * 126, b"\x81\x7e\x00\x7e" + b"a" * 126, id="text-126"),
        pytest.param(b"b" * 65535, b"\x82\x7e\xff\xff" + b"b" * 65535, id="binary-65535"),
        pytest.param(
            b"b" * 65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + b"b" * 65536, id="binary-65536"
        ),
    ],
)
def test_encode_frame(data, expected: bytes) -> None:
    assert encode_frame(data) == expected


def test_send_writes_one_frame() -> None:
    ws, stream = make_ws()
    ws.send("4hello")
    ws.send(b"\x01\x02")
    assert stream.writes == [b"\x81\x064hello", b"\x82\x02\x01\x02"]


def test_encoded_frames_leave_in_one_write() -> None:
    ws, stream = make_ws()
    ws.write_all(encode_frames(["4a", b"\xff", "2"]))
    assert stream.writes == [b"\x81\x024a" + b"\x82\x01\xff" + b"\x81\x012"]
    assert stream.frames() == [(True, TEXT, b"4a"), (True, BINARY, b"\xff"), (True, TEXT, b"2")]


def test_send_after_close_raises_oserror() -> None:
    ws, stream = make_ws()
    ws.close()
    with pytest.raises(OSError):
        ws.send("4late")
    with pytest.raises(OSError):
        ws.write_all(encode_frames(["4late"]))
    with pytest.raises(OSError):
        ws.write_nowait(encode_frames(["4late"]))
    assert stream.close_codes() == [1000]
    assert len(stream.writes) == 1
