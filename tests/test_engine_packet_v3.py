"""The Engine.IO v3 codec (``geventsio.engine.packet_v3``): payload framing and WebSocket frames.

Expected bytes are the examples of docs/engine.io-protocol/v3.md and of the
v3 test suite; lengths are checked against what JavaScript's ``String.length``
says (UTF-16 code units).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geventsio.engine import packet_v3
from geventsio.engine.packet import Packet, PacketType, decode_packet
from geventsio.exceptions import ProtocolError

MSG = PacketType.MESSAGE


def test_js_length_counts_utf16_code_units():
    assert packet_v3.js_length("4hello") == 6
    assert packet_v3.js_length("4€") == 2  # one BMP character: one unit (3 UTF-8 bytes)
    assert packet_v3.js_length("4😀") == 3  # outside the BMP: a surrogate pair
    assert packet_v3.js_length("😀é😀") == 5


class TestTextPayload:
    def test_spec_examples_encode(self):
        assert packet_v3.encode_text_payload(["4hello", "4€"]) == "6:4hello2:4€"
        assert packet_v3.encode_text_payload(["4€", b"\x01\x02\x03\x04"]) == "2:4€10:b4AQIDBA=="

    def test_emoji_length_is_in_utf16_units(self):
        assert packet_v3.encode_text_payload(["4a😀b"]) == "5:4a😀b"

    def test_spec_examples_decode(self):
        assert packet_v3.decode_text_payload("6:4hello2:4€") == [Packet(MSG, "hello"), Packet(MSG, "€")]
        assert packet_v3.decode_text_payload("2:4€10:b4AQIDBA==") == [
            Packet(MSG, "€"), Packet(MSG, b"\x01\x02\x03\x04")]

    def test_decodes_records_holding_characters_outside_the_bmp(self):
        body = "5:4a😀b3:4😀1:2"
        assert packet_v3.decode_text_payload(body) == [
            Packet(MSG, "a😀b"), Packet(MSG, "😀"), Packet(PacketType.PING)]

    @pytest.mark.parametrize("frames", [
        ["4x"], ["2", "3probe", "6"], ["4" + "é" * 300, b"", b"\xff" * 70], ["4😀😀😀", "4:", "4::12:"],
        ["4" + "\U0010ffff" * 3 + "z"],
    ])
    def test_round_trip(self, frames):
        text = packet_v3.encode_text_payload(frames)
        decoded = packet_v3.decode_text_payload(text)
        expected = [Packet(MSG, f) if isinstance(f, bytes) else decode_packet(f) for f in frames]
        assert decoded == expected

    def test_empty_record_is_skipped(self):
        assert packet_v3.decode_text_payload("0:6:4hello") == [Packet(MSG, "hello")]

    @pytest.mark.parametrize("body", [
        "", "abc", "6:4hell", "4hello", ":4", "x:4", "1:9", "3:b5AQ", "5:b4***", "2:4a1",
        "1" * 20 + ":4", "-1:4", "１:4",  # a full-width digit is not a length
        "2:4😀",  # the length splits the surrogate pair
    ])
    def test_malformed_payload_is_refused(self, body):
        with pytest.raises(ProtocolError):
            packet_v3.decode_text_payload(body)


class TestBinaryPayload:
    # The v3 test suite's expected response for ["4hello", <01 02 03 04>].
    SUITE = bytes([0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4])

    def test_test_suite_example(self):
        assert packet_v3.encode_binary_payload(["4hello", b"\x01\x02\x03\x04"]) == self.SUITE
        assert packet_v3.decode_binary_payload(self.SUITE) == [
            Packet(MSG, "hello"), Packet(MSG, b"\x01\x02\x03\x04")]

    def test_spec_example_counts_utf8_bytes(self):
        # "4€" is 4 bytes of UTF-8: the length digit is the byte value 4.
        assert packet_v3.encode_binary_payload(["4€"]) == bytes([0, 4, 255, 0x34, 0xE2, 0x82, 0xAC])

    def test_multi_digit_lengths_are_digit_bytes(self):
        body = packet_v3.encode_binary_payload([b"x" * 1234])
        assert body[:6] == bytes([1, 1, 2, 3, 5, 255])  # 1235 = the type byte + 1234
        assert packet_v3.decode_binary_payload(body) == [Packet(MSG, b"x" * 1234)]

    @pytest.mark.parametrize("body", [
        b"", b"\x02\x01\xff4", b"\x00\x01", b"\x00\xff4", b"\x00\x0a\xff4", b"\x00\x05\xff4",
        b"\x01\x02\xff\x03\x01", b"\x00\x02\xff\xc3\x28", b"\x00" + b"\x01" * 20 + b"\xff",
    ])
    def test_malformed_payload_is_refused(self, body):
        with pytest.raises(ProtocolError):
            packet_v3.decode_binary_payload(body)


class TestPollingBodies:
    def test_binary_form_only_for_binary_clients_with_binary_frames(self):
        assert packet_v3.encode_payload(["4a", "2"], binary=True) == (b"2:4a1:2", "text/plain; charset=UTF-8")
        assert packet_v3.encode_payload(["4a", b"\x01"], binary=False) == (
            b"2:4a6:b4AQ==", "text/plain; charset=UTF-8")
        assert packet_v3.encode_payload(["4a", b"\x01"], binary=True) == (
            bytes([0, 2, 255]) + b"4a" + bytes([1, 2, 255, 4, 1]), "application/octet-stream")

    def test_request_body_form_follows_its_content_type(self):
        binary = packet_v3.encode_binary_payload(["4a"])
        assert packet_v3.decode_payload(binary, "application/octet-stream") == [Packet(MSG, "a")]
        assert packet_v3.decode_payload(b"2:4a", "text/plain;charset=UTF-8") == [Packet(MSG, "a")]
        assert packet_v3.decode_payload(b"2:4a", None) == [Packet(MSG, "a")]
        with pytest.raises(ProtocolError):
            packet_v3.decode_payload(b"\xff", "text/plain")


class TestWebSocketFrames:
    def test_binary_messages_carry_their_type_byte(self):
        assert packet_v3.encode_websocket_frames(["4a", b"\x01\x02"], binary=True) == ["4a", b"\x04\x01\x02"]
        assert packet_v3.decode_binary_frame(b"\x04\x01\x02") == Packet(MSG, b"\x01\x02")
        assert packet_v3.decode_binary_frame(b"\x04") == Packet(MSG, b"")

    def test_base64_for_clients_without_binary(self):
        assert packet_v3.encode_websocket_frames([b"\x01\x02\x03\x04"], binary=False) == ["b4AQIDBA=="]
        assert packet_v3.decode_base64_record("b4AQIDBA==") == Packet(MSG, b"\x01\x02\x03\x04")

    @pytest.mark.parametrize("frame", [b"", b"\x02", b"4abc"])
    def test_binary_frame_that_is_not_a_message_is_refused(self, frame):
        with pytest.raises(ProtocolError):
            packet_v3.decode_binary_frame(frame)


# -- properties (hypothesis) ----------------------------------------------------------

SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Frames as the session queues them: text packets of any type, binary messages.
queued_frames = st.one_of(
    st.tuples(st.sampled_from("0123456"), st.text()).map("".join),
    st.binary(),
)


def _packets_of(frames: list) -> list[Packet]:
    return [Packet(MSG, f) if isinstance(f, bytes) else decode_packet(f) for f in frames]


@SETTINGS
@given(st.lists(queued_frames, min_size=1, max_size=12))
def test_text_payload_round_trip(frames: list) -> None:
    decoded = packet_v3.decode_text_payload(packet_v3.encode_text_payload(frames))
    assert decoded == _packets_of(frames)


@SETTINGS
@given(st.lists(queued_frames, min_size=1, max_size=12))
def test_binary_payload_round_trip(frames: list) -> None:
    assert packet_v3.decode_binary_payload(packet_v3.encode_binary_payload(frames)) == _packets_of(frames)


@SETTINGS
@given(st.lists(queued_frames, min_size=1, max_size=12), st.booleans())
def test_websocket_frames_round_trip(frames: list, binary: bool) -> None:
    # What a v3 client sends back in the same forms decodes to the same packets.
    wire = packet_v3.encode_websocket_frames(frames, binary)
    decoded = [packet_v3.decode_binary_frame(f) if isinstance(f, bytes)
               else packet_v3.decode_base64_record(f) if f[:1] == "b" else decode_packet(f) for f in wire]
    assert decoded == _packets_of(frames)


v3_like_text = st.lists(
    st.tuples(st.integers(0, 40).map(str), st.just(":"), st.sampled_from(list("0123456b4x") + [""]),
              st.text(max_size=30)).map("".join), max_size=6).map("".join)


def _packets_or_protocol_error(fn, *args) -> list | None:
    try:
        return fn(*args)
    except ProtocolError:
        return None


@SETTINGS
@given(st.one_of(st.text(), v3_like_text))
def test_decode_text_payload_of_anything(body: str) -> None:
    result = _packets_or_protocol_error(packet_v3.decode_text_payload, body)
    assert result is None or all(isinstance(p, Packet) for p in result)


# Records that look like the binary form: a mark, digit bytes (and 10), maybe 255, then data.
v3_like_binary = st.lists(
    st.tuples(st.sampled_from([b"\x00", b"\x01", b"\x02"]),
              st.binary(max_size=3).map(lambda b: bytes(x % 11 for x in b)),
              st.sampled_from([b"\xff", b""]), st.binary(max_size=20)).map(b"".join),
    max_size=5).map(b"".join)


@SETTINGS
@given(st.one_of(st.binary(), v3_like_binary))
def test_decode_binary_payload_of_anything(body: bytes) -> None:
    result = _packets_or_protocol_error(packet_v3.decode_binary_payload, body)
    assert result is None or all(isinstance(p, Packet) for p in result)
