"""The msgpack parser (geventsio/msgpack_parser.py) against the npm package it mirrors.

The expected bytes come from the real ``socket.io-msgpack-parser`` 3.x (and
its notepack.io) run by ``tests/msgpack/codec.mjs`` under Node: geventsio must
encode a packet to exactly the bytes the JavaScript Encoder produces for the
same object, decode what it produces (ArrayBuffer, undefined, Date included),
and produce what its Decoder accepts. Without Node those tests are skipped;
the pure-Python properties (round trips, arbitrary input gives a packet or a
``ProtocolError``, bounded work on hostile input) run anyway.
"""

from __future__ import annotations

import datetime
import json
import math
import random
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_support import require_npm_packages, run_node_report
from test_codec_properties import same

import geventsio
from geventsio import msgpack_parser as mp
from geventsio.exceptions import ProtocolError
from geventsio.parsers import DEFAULT_PARSER, resolve_parser
from geventsio.socketio_packet import Packet, PacketType

T = PacketType
UTC = datetime.timezone.utc
MSGPACK_DIR = Path(__file__).resolve().parent / "msgpack"
SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- running the npm parser ---------------------------------------------------------


@pytest.fixture(scope="module")
def node_codec(tmp_path_factory):
    """``run(encode=[js values], decode=[bytes]) -> (encoded bytes, decoded tagged values)``."""
    require_npm_packages(MSGPACK_DIR)
    folder = tmp_path_factory.mktemp("codec")
    calls = iter(range(1_000_000))

    def run(encode: list = (), decode: list = ()) -> tuple[list[bytes], list[Any]]:
        request = folder / f"request{next(calls)}.json"
        request.write_text(json.dumps({"encode": list(encode), "decode": [b.hex() for b in decode]}))
        report = run_node_report(["node", "codec.mjs", str(request)], MSGPACK_DIR, {}, 60)
        return [bytes.fromhex(h) for h in report["encoded"]], report["decoded"]
    return run


def to_js(value: Any) -> Any:
    """A Python value in codec.mjs's tagged JSON (bytes a Buffer, datetime a Date)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bin": bytes(value).hex()}
    if isinstance(value, datetime.datetime):
        return {"$date": (value - mp._EPOCH) // datetime.timedelta(milliseconds=1)}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$number": str(value).replace("inf", "Infinity").replace("nan", "NaN")}
    if isinstance(value, (list, tuple)):
        return [to_js(v) for v in value]
    if isinstance(value, dict):
        return {k: to_js(v) for k, v in value.items()}
    return value


def packet_to_js(packet: Packet) -> dict:
    """The object a JavaScript peer would build for ``packet``, keys in geventsio's order."""
    wire_type = {T.BINARY_EVENT: 2, T.BINARY_ACK: 3}.get(packet.type, int(packet.type))
    obj: dict[str, Any] = {"type": wire_type}
    if packet.data is not None:
        obj["data"] = to_js(packet.data)
    obj["nsp"] = packet.namespace
    if packet.id is not None:
        obj["id"] = packet.id
    return obj


# -- exact bytes --------------------------------------------------------------------

INT_EDGES = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1,
             -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53 - 1)]

EXACT_CASES = [
    Packet(T.CONNECT, "/"),
    Packet(T.CONNECT, "/admin", {"token": "abc", "n": 1}),
    Packet(T.CONNECT, "/", {"sid": "aGVsbG8gd29ybGQh"}),
    Packet(T.DISCONNECT, "/chat"),
    Packet(T.CONNECT_ERROR, "/", {"message": "not authorized", "data": {"code": 401}}),
    Packet(T.CONNECT_ERROR, "/x", "Invalid namespace"),
    Packet(T.EVENT, "/", ["ints", *INT_EDGES]),
    # (not 1e300: every float past 2**53 is integral, and notepack.io writes it as a
    # uint 64, which cannot hold it: geventsio sends a float 64, the number itself)
    Packet(T.EVENT, "/", ["floats", 0.5, -1.25, 123456.789, -2.5e-300, 3.141592653589793]),
    Packet(T.EVENT, "/", ["strings", "", "a" * 31, "b" * 32, "c" * 255, "d" * 256, "e" * 65535,
                          "f" * 65536, "é✓😀 mixed ünicode"]),
    Packet(T.EVENT, "/", ["bins", b"", b"\x00\xff", bytes(255), bytes(256), bytes(range(256)) * 256,
                          bytearray(b"ba"), memoryview(b"mv")]),
    Packet(T.EVENT, "/", ["containers", list(range(15)), list(range(16)), [0] * 65536,
                          {f"k{i}": i for i in range(15)}, {f"k{i}": i for i in range(16)},
                          {f"k{i}": None for i in range(65536)}, [], {}]),
    Packet(T.EVENT, "/room", ["misc", None, True, False, {"deep": [[{"x": [b"y"]}]]}], 0),
    Packet(T.EVENT, "/", ["date", datetime.datetime(2024, 2, 29, 12, 30, 15, 123000, tzinfo=UTC),
                          datetime.datetime(1960, 1, 1, tzinfo=UTC)]),
    Packet(T.ACK, "/", [], 2**32),
    Packet(T.ACK, "/admin", [{"ok": True}, b"\x01"], 7),
    Packet(T.BINARY_EVENT, "/", ["promoted", b"x"], 3),
]


def test_encoding_is_byte_for_byte_what_notepack_produces(node_codec):
    expected, _ = node_codec(encode=[packet_to_js(p) for p in EXACT_CASES])
    for packet, want in zip(EXACT_CASES, expected):
        got = mp.encode(packet)
        assert got == want, f"{packet!r:.200}: {got[:80].hex()} != {want[:80].hex()}"


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 4 else 7)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(INT_EDGES) + rng.choice([0, 0, 1, -1]) if rng.random() < 0.5 \
            else rng.randint(-(2**53 - 1), 2**53 - 1) >> rng.randrange(53)
    if kind == 2:
        value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-300, 300)
        return value if not value.is_integer() else 0.5  # notepack sends integral numbers as ints
    if kind in (3, 4):
        alphabet = "az09 é✓😀\x00\n\"'\\"
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 3, 31, 32, 40, 300])))
    if kind in (5, 6):
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 8, 12, 255, 256, 700])))
    if kind in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 5, 16, 20]))]
    return {f"k{rng.randrange(100)}_{i}": random_value(rng, depth + 1) for i in range(rng.choice([0, 2, 17]))}


def random_packet(rng: random.Random) -> Packet:
    nsp = rng.choice(["/", "/chat", "/a/b", "/ü"])
    ptype = rng.choice([T.CONNECT, T.DISCONNECT, T.EVENT, T.ACK, T.CONNECT_ERROR])
    if ptype is T.CONNECT:
        return Packet(ptype, nsp, rng.choice([None, {"token": random_value(rng)}]))
    if ptype is T.DISCONNECT:
        return Packet(ptype, nsp)
    if ptype is T.CONNECT_ERROR:
        return Packet(ptype, nsp, rng.choice(["refused", {"message": "no", "data": random_value(rng)}]))
    args = [random_value(rng) for _ in range(rng.randrange(4))]
    if ptype is T.EVENT:
        ack_id = rng.choice([None, rng.randrange(2**40)])
        return Packet(ptype, nsp, ["ev" + str(rng.randrange(9)), *args], ack_id)
    return Packet(ptype, nsp, args, rng.randrange(2**40))


def test_random_packets_both_ways(node_codec):
    """300 random packets: our bytes are notepack's, and the npm Decoder reads them back as sent."""
    rng = random.Random(20240229)
    packets = [random_packet(rng) for _ in range(300)]
    ours = [mp.encode(p) for p in packets]
    expected, decoded_by_js = node_codec(encode=[packet_to_js(p) for p in packets], decode=ours)
    for packet, got, want, seen in zip(packets, ours, expected, decoded_by_js):
        assert got == want, f"{packet!r:.300}"
        assert seen == json.loads(json.dumps(packet_to_js(packet))), f"{packet!r:.300}"
        assert same(mp.decode(want), packet)


# -- decoding what only JavaScript produces -----------------------------------------


def test_decodes_arraybuffers_undefined_dates_and_client_options(node_codec):
    ab = {n: bytes((i * 7 + 1) % 256 for i in range(n)) for n in (0, 1, 2, 3, 4, 8, 12, 16, 300, 70000)}
    js_packets = [
        # What socket.io-client sends for emit("ev", ...) with an ack: an "options" key too.
        {"type": 2, "data": ["ev", {"$arraybuffer": ab[n].hex()}], "options": {"compress": True},
         "id": 4, "nsp": "/"} for n in ab
    ] + [
        {"type": 2, "data": ["typed", {"$uint8": "0a0b0c0d0e0f1011"}], "nsp": "/"},
        {"type": 2, "data": ["undef", {"$undefined": True}, [1, {"$undefined": True}]], "nsp": "/"},
        {"type": 2, "data": ["date", {"$date": 1709209815123}, {"$date": -1000}], "nsp": "/"},
        {"type": 2, "data": ["mixed", {"$date": 0}, {"$arraybuffer": "0001020304050607"}], "nsp": "/"},
        {"type": 0, "data": {"$undefined": True}, "nsp": "/"},
        {"type": 3, "data": [{"$bin": "ff"}], "nsp": "/x", "id": 0},
    ]
    frames, _ = node_codec(encode=js_packets)
    decoded = [mp.decode(f) for f in frames]
    for n, packet in zip(ab, decoded):
        assert same(packet, Packet(T.EVENT, "/", ["ev", ab[n]], 4)), n
    assert same(decoded[len(ab):], [
        Packet(T.EVENT, "/", ["typed", bytes.fromhex("0a0b0c0d0e0f1011")]),
        Packet(T.EVENT, "/", ["undef", None, [1, None]]),
        Packet(T.EVENT, "/", ["date", datetime.datetime(2024, 2, 29, 12, 30, 15, 123000, tzinfo=UTC),
                              datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)]),
        Packet(T.EVENT, "/", ["mixed", datetime.datetime(1970, 1, 1, tzinfo=UTC), bytes(range(8))]),
        Packet(T.CONNECT, "/"),
        Packet(T.ACK, "/x", [b"\xff"], 0),
    ])


def test_other_extensions_decode_as_notepack_does(node_codec):
    """notepack.io reads an extension it does not know as [type, Buffer]; so do we."""
    p = msgpack.packb
    # (msgpack's ExtType takes no negative types: those are written by hand.)
    frame = (b"\x83" + p("type") + p(2) + p("nsp") + p("/") + p("data") + b"\x96" + p("ext")
             + p(msgpack.ExtType(5, b"abc")) + b"\xd6\xff" + bytes(4) + b"\xd7\xff" + bytes(8)
             + b"\xd5\x00ab" + b"\xd4\xfb\x07")
    _, seen = node_codec(decode=[frame])
    assert seen == [{"type": 2, "nsp": "/", "data": [
        "ext", [5, {"$bin": "616263"}], [-1, {"$bin": "00" * 4}], [-1, {"$bin": "00" * 8}],
        [0, {"$bin": "6162"}], [-5, {"$bin": "07"}]]}]
    assert same(mp.decode(frame), Packet(T.EVENT, "/", [
        "ext", [5, b"abc"], [-1, bytes(4)], [-1, bytes(8)], [0, b"ab"], [-5, b"\x07"]]))


INVALID = [
    {"type": 5, "data": ["ev"], "nsp": "/"},  # no binary types in this parser
    {"type": 6, "data": [], "nsp": "/", "id": 1},
    {"type": -1, "nsp": "/"},
    {"type": 2.5, "data": ["ev"], "nsp": "/"},
    {"type": "2", "data": ["ev"], "nsp": "/"},
    {"data": ["ev"], "nsp": "/"},
    {"type": 2, "data": ["ev"]},
    {"type": 2, "data": ["ev"], "nsp": 1},
    {"type": 2, "data": "ev", "nsp": "/"},
    {"type": 2, "data": {"0": "ev"}, "nsp": "/"},
    {"type": 3, "data": None, "nsp": "/", "id": 1},
    {"type": 1, "data": [], "nsp": "/"},
    {"type": 0, "data": [], "nsp": "/"},
    {"type": 0, "data": "token", "nsp": "/"},
    {"type": 4, "data": 1, "nsp": "/"},
    {"type": 2, "data": ["ev"], "nsp": "/", "id": "1"},
    {"type": 2, "data": ["ev"], "nsp": "/", "id": 1.5},
    ["type", 2],
    "a string",
]
# Rejected by geventsio only: what its server could not route or answer.
STRICTER = [
    {"type": 2, "data": [], "nsp": "/"},  # an event without a name
    {"type": 2, "data": [1], "nsp": "/"},
    {"type": 2, "data": ["ev"], "nsp": "chat"},  # a namespace not starting with "/"
    {"type": 2, "data": ["ev"], "nsp": "/", "id": -1},
    {"type": 2, "data": ["ev"], "nsp": "/", "id": 2**53},
    {"type": 3, "data": [], "nsp": "/"},  # an ack without an id
    {"type": 0, "nsp": "/", "id": 3},  # an id on a packet that takes none
]


def test_rejects_what_the_npm_decoder_rejects(node_codec):
    frames = [msgpack.packb(p) for p in INVALID]
    _, seen = node_codec(decode=frames)
    for packet, frame, js in zip(INVALID, frames, seen):
        assert "$throws" in js, (packet, js)
        with pytest.raises(ProtocolError):
            mp.decode(frame)


def test_rejects_more_than_the_npm_decoder_where_the_server_needs_it():
    for packet in STRICTER:
        with pytest.raises(ProtocolError):
            mp.decode(msgpack.packb(packet))


# -- properties (pure Python) -------------------------------------------------------

names = st.text(max_size=8).filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s))
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False), names, st.binary(max_size=40),
    st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30),
                 timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
)
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(names, inner, max_size=5)), max_leaves=30)
namespaces = st.sampled_from(["/", "/chat", "/ü/b,c"])
ack_ids = st.integers(0, 2**53 - 1)


@st.composite
def packets(draw) -> Packet:
    ptype = draw(st.sampled_from(list(T)))
    nsp = draw(namespaces)
    if ptype is T.CONNECT:
        return Packet(ptype, nsp, draw(st.one_of(st.none(), st.dictionaries(names, values, max_size=4))))
    if ptype is T.DISCONNECT:
        return Packet(ptype, nsp)
    if ptype is T.CONNECT_ERROR:
        return Packet(ptype, nsp, draw(st.one_of(names, st.dictionaries(names, values, max_size=4))))
    args = draw(st.lists(values, max_size=4))
    if ptype in (T.EVENT, T.BINARY_EVENT):
        return Packet(ptype, nsp, [draw(names), *args], draw(st.one_of(st.none(), ack_ids)))
    return Packet(ptype, nsp, args, draw(ack_ids))


@SETTINGS
@given(packets())
def test_round_trip(packet):
    frames = mp.MsgPackParser.to_frames(packet)
    assert len(frames) == 1 and type(frames[0]) is bytes
    back = mp.MsgPackParser.decoder().feed(frames[0])
    plain = {T.BINARY_EVENT: T.EVENT, T.BINARY_ACK: T.ACK}.get(packet.type, packet.type)
    assert same(back, Packet(plain, packet.namespace, packet.data, packet.id))


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_packet_or_a_protocol_error(frame):
    try:
        assert isinstance(mp.decode(frame), Packet)
    except ProtocolError:
        pass


wire_leaves = st.one_of(leaves, st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=20)))
wire_values = st.recursive(wire_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.one_of(names, st.integers(-9, 9)), inner, max_size=5)),
    max_leaves=30)


@SETTINGS
@given(st.fixed_dictionaries({}, optional={
    "type": st.one_of(st.integers(-1, 7), wire_values), "nsp": st.one_of(namespaces, wire_values),
    "data": wire_values, "id": st.one_of(ack_ids, wire_values)}), st.integers(0, 2**16))
def test_structured_hostile_input_gives_a_packet_or_a_protocol_error(obj, cut):
    frame = msgpack.packb(obj, datetime=True)
    for candidate in (frame, frame[:cut], frame + b"\xc0"):
        try:
            packet = mp.decode(candidate)
        except ProtocolError:
            continue
        assert candidate == frame and packet.type in (T.CONNECT, T.DISCONNECT, T.EVENT, T.ACK,
                                                      T.CONNECT_ERROR)


@st.composite
def raw_extension(draw) -> bytes:
    """One extension in any of msgpack's formats (which msgpack's packer would not all choose)."""
    code = draw(st.sampled_from([-1, 0, 0, 1, -128]))
    fmt = draw(st.sampled_from(["fixext", "ext8", "ext16", "ext32"]))
    if fmt == "fixext":
        size = draw(st.sampled_from([1, 2, 4, 8, 16]))
        head = bytes([{1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8}[size]])
    else:
        size = draw(st.sampled_from([0, 1, 2, 3, 4, 8, 12, 16, 17]))
        head = {"ext8": b"\xc7" + size.to_bytes(1, "big"), "ext16": b"\xc8" + size.to_bytes(2, "big"),
                "ext32": b"\xc9" + size.to_bytes(4, "big")}[fmt]
    return head + (code & 0xFF).to_bytes(1, "big") + draw(st.binary(min_size=size, max_size=size))


@SETTINGS
@given(st.lists(st.one_of(wire_values.map(lambda v: msgpack.packb(v, datetime=True)), raw_extension()),
                max_size=6))
def test_the_fast_path_reads_as_the_careful_one(items):
    """Whatever the fast path (C) decodes is what the careful walk, which reads every
    extension's own header, decodes; and they refuse the same messages."""
    frame = bytes([0x90 | len(items)]) + b"".join(items)
    try:
        chosen = mp._unpack(frame)
    except Exception as exc:
        chosen = type(exc)
    try:
        careful = mp._unpack_careful(frame)
    except Exception as exc:
        careful = type(exc)
    if isinstance(chosen, type) or isinstance(careful, type):
        assert isinstance(chosen, type) and isinstance(careful, type), (chosen, careful)
    else:
        assert same(chosen, careful)


# -- hostile input: bounded work, clear errors --------------------------------------


def test_text_messages_are_a_protocol_error():
    with pytest.raises(ProtocolError, match="text message"):
        mp.MsgPackDecoder().feed('2["ev"]')


@pytest.mark.parametrize("careful", [False, True])
def test_deep_nesting_is_refused(careful):
    tail = b"\xd6\xff" + bytes(4) if careful else b"\xc0"  # (a timestamp: the careful path) or nil
    frame = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa2ev" + b"\x91" * 5000 + tail
    with pytest.raises(ProtocolError, match="deep|StackError"):
        mp.decode(frame)


@pytest.mark.parametrize("careful", [False, True])
def test_lengths_beyond_the_message_are_refused_without_allocating(careful):
    header = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data" + (b"\x92\xd6\xff" + bytes(4) if careful else b"")
    for claim in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                  b"\xc6\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x00"):
        with pytest.raises(ProtocolError):
            mp.decode(header + claim)


def test_bad_utf8_trailing_bytes_and_non_maps_are_refused():
    good = mp.encode(Packet(T.EVENT, "/", ["ev", "é"]))
    for frame in (good.replace("é".encode(), b"\xff\xfe"), good + b"\x00", b"", b"\xc1",
                  msgpack.packb([2, "/"]), msgpack.packb({1: 2})):
        with pytest.raises(ProtocolError):
            mp.decode(frame)


def test_what_msgpack_cannot_carry_raises_on_encode():
    with pytest.raises(ValueError):
        mp.encode(Packet(T.EVENT, "/", ["big", 2**64]))
    with pytest.raises(ValueError):
        mp.encode(Packet(T.EVENT, "/", ["lone surrogate", "\ud800"]))
    with pytest.raises(TypeError):
        mp.encode(Packet(T.EVENT, "/", ["set", {1, 2}]))
    with pytest.raises(ValueError):
        mp.encode(Packet(T.EVENT, "chat", ["ev"]))
    with pytest.raises(ValueError):
        mp.encode(Packet(T.EVENT, "/", ["ev"], -1))
    # The shared packer is usable after a failure.
    assert mp.decode(mp.encode(Packet(T.EVENT, "/", ["ok"]))) == Packet(T.EVENT, "/", ["ok"])


def test_naive_datetimes_are_taken_as_utc():
    naive = datetime.datetime(2020, 5, 17, 10, 0, 0, 250000)
    back = mp.decode(mp.encode(Packet(T.EVENT, "/", ["d", naive])))
    assert back.data[1] == naive.replace(tzinfo=UTC)


# -- the serializer option ----------------------------------------------------------


def test_serializer_option_picks_the_parser():
    assert resolve_parser("default") is DEFAULT_PARSER and resolve_parser(None) is DEFAULT_PARSER
    assert resolve_parser("msgpack").name == "msgpack"
    custom = mp.MsgPackParser()
    assert resolve_parser(custom) is custom
    assert geventsio.Server(serializer="msgpack").parser.name == "msgpack"
    assert geventsio.Server().parser is DEFAULT_PARSER
    assert geventsio.Client(serializer="msgpack").parser.name == "msgpack"
    for bad in ("pickle", "json", Packet, object()):
        with pytest.raises(ValueError, match="unsupported serializer"):
            geventsio.Server(serializer=bad)
