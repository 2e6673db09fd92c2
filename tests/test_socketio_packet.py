"""Socket.IO v5 packet codec: wire vectors from the protocol document, edge cases, bad input."""

from __future__ import annotations

import pytest

from geventsio.exceptions import ProtocolError
from geventsio.socketio_packet import Decoder, Packet, PacketType, decode_text, encode

T = PacketType
PH0 = '{"_placeholder":true,"num":0}'
PH1 = '{"_placeholder":true,"num":1}'


def decode_all(parts: list) -> Packet:
    """Feed every part to a fresh decoder; only the last one may complete the packet."""
    decoder = Decoder()
    for part in parts[:-1]:
        assert decoder.feed(part) is None
    packet = decoder.feed(parts[-1])
    assert packet is not None
    return packet


VECTORS = [
    # Examples of the protocol document, section "Packet encoding".
    (Packet(T.CONNECT), ["0"]),
    (
        Packet(T.CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}),
        ['0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}'],
    ),
    (Packet(T.CONNECT_ERROR, data={"message": "Not authorized"}), ['4{"message":"Not authorized"}']),
    (Packet(T.EVENT, data=["foo"]), ['2["foo"]']),
    (Packet(T.EVENT, "/admin", ["bar"]), ['2/admin,["bar"]']),
    (
        Packet(T.BINARY_EVENT, data=["baz", b"\x01\x02\x03\x04"]),
        [f'51-["baz",{PH0}]', b"\x01\x02\x03\x04"],
    ),
    (
        Packet(T.BINARY_EVENT, "/admin", ["baz", b"\x01\x02", b"\x03\x04"]),
        [f'52-/admin,["baz",{PH0},{PH1}]', b"\x01\x02", b"\x03\x04"],
    ),
    (Packet(T.EVENT, data=["foo"], id=12), ['212["foo"]']),
    (Packet(T.ACK, "/admin", ["bar"], 13), ['3/admin,13["bar"]']),
    (
        Packet(T.BINARY_ACK, data=["bar", b"\x01\x02\x03\x04"], id=15),
        [f'61-15["bar",{PH0}]', b"\x01\x02\x03\x04"],
    ),
    (Packet(T.DISCONNECT), ["1"]),
    (Packet(T.DISCONNECT, "/admin"), ["1/admin,"]),
    # From the exchange examples and the sample session of the same document.
    (Packet(T.CONNECT, "/admin", {"token": "123"}), ['0/admin,{"token":"123"}']),
    (Packet(T.CONNECT, "/admin"), ["0/admin,"]),
    (Packet(T.ACK, data=[], id=12), ["312[]"]),
    (Packet(T.EVENT, data=["hey", "Jude"]), ['2["hey","Jude"]']),
    (Packet(T.EVENT, "/admin", ["tellme"], 1), ['2/admin,1["tellme"]']),
    (Packet(T.BINARY_ACK, "/admin", [b"\xff"], 1), [f"61-/admin,1[{PH0}]", b"\xff"]),
    (Packet(T.CONNECT_ERROR, data="Invalid namespace"), ['4"Invalid namespace"']),
]


@pytest.mark.parametrize(("packet", "wire"), VECTORS)
def test_encode_vectors(packet, wire):
    assert encode(packet) == wire


@pytest.mark.parametrize(("packet", "wire"), VECTORS)
def test_decode_vectors(packet, wire):
    decoded = decode_all(wire)
    assert decoded == packet
    assert type(decoded.type) is PacketType


@pytest.mark.parametrize(("plain", "binary"), [(T.EVENT, T.BINARY_EVENT), (T.ACK, T.BINARY_ACK)])
def test_binary_data_promotes_event_and_ack(plain, binary):
    wire = encode(Packet(plain, data=["x", b"\x00"], id=7))
    assert wire == [f'{binary.value}1-7["x",{PH0}]', b"\x00"]
    assert decode_all(wire) == Packet(binary, data=["x", b"\x00"], id=7)


def test_binary_type_without_binary_announces_zero_attachments():
    wire = encode(Packet(T.BINARY_EVENT, data=["x"]))
    assert wire == ['50-["x"]']
    assert decode_all(wire) == Packet(T.BINARY_EVENT, data=["x"])


def test_nested_binary_keeps_placeholder_order():
    data = ["ev", {"a": [1, {"b": b"deep"}], "c": None}, b"top", [{"d": [b"inner"]}]]
    wire = encode(Packet(T.EVENT, "/ns", data))
    ph2 = '{"_placeholder":true,"num":2}'
    assert wire == [
        f'53-/ns,["ev",{{"a":[1,{{"b":{PH0}}}],"c":null}},{PH1},[{{"d":[{ph2}]}}]]',
        b"deep",
        b"top",
        b"inner",
    ]
    assert decode_all(wire) == Packet(T.BINARY_EVENT, "/ns", data)


def test_bytearray_and_memoryview_become_bytes():
    wire = encode(Packet(T.EVENT, data=["ev", bytearray(b"ab"), memoryview(b"cd")]))
    assert wire[1:] == [b"ab", b"cd"]
    assert all(type(part) is bytes for part in wire[1:])


def test_decoder_converts_bytes_like_frames():
    decoder = Decoder()
    assert decoder.feed(f'52-["ev",{PH0},{{"k":{PH1}}}]') is None
    assert decoder.feed(bytearray(b"one")) is None
    packet = decoder.feed(memoryview(b"two"))
    assert packet.data == ["ev", b"one", {"k": b"two"}]
    assert type(packet.data[1]) is bytes and type(packet.data[2]["k"]) is bytes


def test_same_attachment_referenced_twice():
    decoder = Decoder()
    assert decoder.feed(f'51-["ev",{PH0},[{PH0}]]') is None
    assert decoder.feed(b"z").data == ["ev", b"z", [b"z"]]


def test_unicode_is_sent_unescaped():
    packet = Packet(T.EVENT, "/ünï", ["héllo ✓", {"日本": "😀"}])
    wire = encode(packet)
    assert wire == ['2/ünï,["héllo ✓",{"日本":"😀"}]']
    assert decode_all(wire) == packet
    assert decode_all(['2["\\u00e9v\\ud83d\\ude00"]']).data == ["év😀"]


def test_decoder_is_reusable_across_packets():
    decoder = Decoder()
    assert decoder.feed('2["a"]') == Packet(T.EVENT, data=["a"])
    assert decoder.feed(f'61-5[{PH0}]') is None
    assert decoder.feed(b"x") == Packet(T.BINARY_ACK, data=[b"x"], id=5)
    assert decoder.feed("1") == Packet(T.DISCONNECT)


def test_decode_text_leaves_placeholders_and_reports_count():
    packet, count = decode_text(f'52-/a,9["ev",{PH0},{PH1}]')
    assert count == 2
    assert packet == Packet(
        T.BINARY_EVENT, "/a", ["ev", {"_placeholder": True, "num": 0}, {"_placeholder": True, "num": 1}], 9
    )
    assert decode_text('2["ev"]') == (Packet(T.EVENT, data=["ev"]), 0)


def test_namespace_may_end_the_message_without_comma():
    # The reference parser reads the namespace up to a comma or the end of the message.
    assert decode_all(["1/admin"]) == Packet(T.DISCONNECT, "/admin")
    assert decode_all(["0/admin"]) == Packet(T.CONNECT, "/admin")


def test_whitespace_around_json_is_allowed():
    assert decode_all(['2 ["a"] ']) == Packet(T.EVENT, data=["a"])


def test_max_attachments():
    decoder = Decoder(max_attachments=2)
    assert decoder.feed(f'52-["ev",{PH0},{PH1}]') is None
    with pytest.raises(ProtocolError):
        Decoder(max_attachments=2).feed(f'53-["ev",{PH0},{PH1}]')
    with pytest.raises(ProtocolError):
        Decoder().feed('511-["ev"]')


DEEP = "2" + "[" * 100_000 + "]" * 100_000

MALFORMED = {
    "empty": "",
    "type not a digit": 'x["a"]',
    "type 7": '7["a"]',
    "type 9": "9",
    "non-ascii digit type": '\u0662["a"]',
    "event namespace without comma or payload": "2/admin",
    "namespace running into payload": '2/admin["a"]',
    "bad json": '2["a"',
    "trailing garbage": '2["a"]x',
    "two json values": '2["a"]["b"]',
    "NaN": '2["a",NaN]',
    "Infinity": '2["a",Infinity]',
    "event without payload": "2",
    "event payload object": '2{"a":1}',
    "event payload string": '2"foo"',
    "event empty array": "2[]",
    "event name number": "2[1]",
    "event name null": "2[null]",
    "event name list": '2[["a"]]',
    "ack without id": '3["a"]',
    "ack payload object": "31{}",
    "ack without payload": "31",
    "connect payload array": "0[]",
    "connect payload string": '0"x"',
    "connect with id": "012",
    "disconnect with payload": '1["a"]',
    "disconnect with object": "1{}",
    "connect_error without payload": "4",
    "connect_error payload array": '4["x"]',
    "connect_error payload number": "4123",
    "attachment count on event": '21-["a"]',
    "attachment count on connect": "01-{}",
    "binary without count": '5["a"]',
    "binary with empty count": '5-["a"]',
    "binary with bad count": '5x-["a"]',
    "binary count without dash": '51["a"]',
    "binary count too long": '5' + "9" * 20 + '-["a"]',
    "binary ack without id": f"61-[{PH0}]",
    "id too long": '2' + "1" * 16 + '["a"]',
    "id way too long": '2' + "1" * 5000 + '["a"]',
    "non-ascii digit id": '2\u0661["a"]',
    "huge json integer": '2["a",' + "9" * 10_000 + "]",
    "deeply nested json": DEEP,
    "deeply nested object": '0{"a":' * 100_000 + "1" + "}" * 100_000,
    "placeholder out of range": '51-["a",{"_placeholder":true,"num":1}]',
    "placeholder negative": '51-["a",{"_placeholder":true,"num":-1}]',
    "placeholder num string": '51-["a",{"_placeholder":true,"num":"0"}]',
    "placeholder num bool": '51-["a",{"_placeholder":true,"num":true}]',
    "placeholder num float": '51-["a",{"_placeholder":true,"num":0.0}]',
    "placeholder num missing": '51-["a",{"_placeholder":true}]',
    "placeholder with zero attachments": f'50-["a",{PH0}]',
    "too many attachments": '511-["a"]',
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_text_is_rejected(text):
    with pytest.raises(ProtocolError):
        Decoder().feed(text)


def test_binary_frame_without_pending_packet():
    decoder = Decoder()
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x01")
    decoder.feed('2["a"]')
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x01")


def test_text_frame_while_attachments_pending():
    decoder = Decoder()
    assert decoder.feed(f'52-["a",{PH0},{PH1}]') is None
    assert decoder.feed(b"1") is None
    with pytest.raises(ProtocolError):
        decoder.feed('2["b"]')
    # The partial packet is dropped: the decoder starts clean.
    assert decoder.feed('2["c"]') == Packet(T.EVENT, data=["c"])
    with pytest.raises(ProtocolError):
        decoder.feed(b"2")


def test_decoder_rejects_other_frame_types():
    with pytest.raises(TypeError):
        Decoder().feed(42)


@pytest.mark.parametrize(
    "packet",
    [
        Packet(T.EVENT, "admin", ["a"]),
        Packet(T.EVENT, "/a,b", ["a"]),
        Packet(T.EVENT, "", ["a"]),
        Packet(T.EVENT, data=["a"], id=-1),
        Packet(T.EVENT, data=["a"], id=10**15),
        Packet(T.EVENT, data=["a"], id=True),
        Packet(T.EVENT, data=["a", float("nan")]),
        Packet(T.CONNECT, data={"blob": b"x"}),
        Packet(7, data=["a"]),
    ],
)
def test_encode_rejects_unrepresentable_packets(packet):
    with pytest.raises(ValueError):
        encode(packet)


def test_encode_rejects_non_json_data():
    with pytest.raises(TypeError):
        encode(Packet(T.EVENT, data=["a", object()]))
    with pytest.raises(TypeError):
        encode(Packet(T.EVENT, data=["a", b"x", {1, 2}]))


def test_encode_accepts_plain_int_type():
    assert encode(Packet(2, data=["a"])) == ['2["a"]']
    assert encode(Packet(2, data=["a", b"b"])) == [f'51-["a",{PH0}]', b"b"]


def test_packet_is_frozen():
    packet = Packet(T.EVENT, data=["a"])
    with pytest.raises(AttributeError):
        packet.id = 3
