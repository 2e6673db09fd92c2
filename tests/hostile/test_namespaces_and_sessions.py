"""CONNECT floods to many namespaces; unknown, stolen and concurrently used sids.

Documented answers:

- a CONNECT to a namespace the server does not accept gets a CONNECT_ERROR
  ``{"message": "Invalid namespace"}`` and changes no table;
- a request for an unknown sid gets HTTP 400 ``{"code": 1, "message":
  "Session ID unknown"}``, a WebSocket request too (refused before any 101);
- the sid is a bearer credential (120 random bits), as in Node's engine.io:
  whoever presents it speaks for the session. What a second client holding
  someone else's sid can do is pinned down below;
- two concurrent GETs (or POSTs) on one session are a protocol violation: the
  later one gets 400 ``{"code": 3, "message": "Bad request"}``, the session is
  closed (``transport error``) and a parked GET returns the close packet.
"""

from __future__ import annotations

import json
import random
import socket
import string

import gevent
import pytest

from .support import (
    TIMEOUT,
    SIOConn,
    WSConn,
    http_request,
    poll,
    polling_handshake,
    post,
    wait_until,
    websocket_request,
)

UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}
BAD_REQUEST = {"code": 3, "message": "Bad request"}
SECOND_WEBSOCKET = {"code": 3, "message": "session already has a websocket"}


def _random_namespaces(seed: int, count: int = 1000) -> list[str]:
    """``count`` distinct random namespace names."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "-_.~"
    return [f"/{i}" + "".join(rng.choices(alphabet, k=rng.randint(0, 40))) for i in range(count)]


# -- CONNECT floods ---------------------------------------------------------------------


@pytest.mark.parametrize("join_main", [True, False], ids=["joined", "no-namespace-yet"])
def test_connect_flood_to_unknown_namespaces_is_refused_without_growth(hostile, join_main):
    target = hostile()
    raw = SIOConn(target.rs)
    sid = raw.connect("/") if join_main else None
    namespaces = _random_namespaces(8)
    peak = dict(target.tables())

    def watch() -> None:
        while True:
            for key, value in target.tables().items():
                peak[key] = max(peak[key], value)
            gevent.sleep(0.005)

    watcher = gevent.spawn(watch)
    try:
        sender = gevent.spawn(lambda: [raw.send(f"40{nsp},") for nsp in namespaces])
        answers = [raw.recv() for _ in namespaces]
        sender.join(TIMEOUT)
    finally:
        watcher.kill()
    assert answers == [f'44{nsp},{{"message":"Invalid namespace"}}' for nsp in namespaces]
    # Nothing was created for the refused namespaces, not even for a moment.
    extra = 1 if join_main else 0
    limits = {key: value + extra for key, value in target.baseline.items()}
    limits["eio.sessions"] = limits["connections"] = target.baseline["eio.sessions"] + 1
    limits["adapters"] = target.baseline["adapters"]
    limits["acks"] = 0
    assert all(peak[key] <= limits[key] for key in limits), (peak, limits)
    assert len(target.sio.connections[raw.eio_sid].sockets) == extra
    if join_main:
        raw.send('421["echo","still connected"]')
        assert raw.recv() == '431["still connected"]'
    target.assert_healthy()
    raw.close()
    if join_main:
        assert target.recorder.reason(sid) == "transport close"
    target.finish()


def test_repeated_connect_to_the_same_namespace_keeps_one_socket(hostile):
    target = hostile()
    raw = SIOConn(target.rs)
    sid = raw.connect("/")
    for _ in range(500):
        raw.send("40")
    answers = [raw.recv() for _ in range(500)]
    assert set(answers) == {f'40{{"sid":"{sid}"}}'}
    assert target.tables()["sockets"] == target.baseline["sockets"] + 1
    raw.close()
    target.finish()


def test_connect_flood_to_accepted_namespaces_leaves_no_trace(hostile):
    target = hostile(namespaces="*")
    raw = SIOConn(target.rs)
    raw.connect("/")
    namespaces = _random_namespaces(9)
    sender = gevent.spawn(lambda: [raw.send(f"40{nsp},") for nsp in namespaces])
    answers = [raw.recv() for _ in namespaces]
    sender.join(TIMEOUT)
    assert all(a.startswith(f"40{nsp},") for a, nsp in zip(answers, namespaces))
    assert len(target.sio.connections[raw.eio_sid].sockets) == 1001
    target.assert_healthy()
    raw.close()
    wait_until(lambda: target.tables()["sockets"] == target.baseline["sockets"], what="sockets freed")
    target.finish()


# -- unknown sids -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("sid", ["unknown", "", "A" * 2000, "%00%ff", "../../etc/passwd"])
def test_unknown_sid_over_polling(hostile, method, sid):
    target = hostile()
    reply = http_request(target.rs, method, f"EIO=4&transport=polling&sid={sid}",
                         body=b"40" if method == "POST" else None)
    assert (reply.status, reply.json()) == (400, UNKNOWN_SID)
    target.finish()


def test_unknown_sid_over_websocket(hostile):
    target = hostile()
    reply = websocket_request(target.rs, "EIO=4&transport=websocket&sid=unknown")
    assert (reply.status, reply.json()) == (400, UNKNOWN_SID)
    target.finish()


def test_sid_of_a_closed_session_is_unknown(hostile):
    target = hostile()
    raw = SIOConn(target.rs)
    raw.connect("/")
    raw.close()
    wait_until(lambda: raw.eio_sid not in target.sio.eio.sessions, what="session forgotten")
    reply = post(target.rs, raw.eio_sid, "40")
    assert (reply.status, reply.json()) == (400, UNKNOWN_SID)
    target.finish()


# -- stolen sids (documented behaviour) --------------------------------------------------


def _polling_victim(target) -> tuple[str, str]:
    eio = polling_handshake(target.rs)
    assert post(target.rs, eio, "40").text == "ok"
    return eio, json.loads(poll(target.rs, eio).text[2:])["sid"]


def test_stolen_sid_post_speaks_for_the_victim(hostile):
    """A POST with someone else's sid is that client's message: the sid is the credential."""
    notes: list = []
    target = hostile(setup=lambda sio: sio.on("note", lambda sid, text: notes.append((sid, text))))
    eio, victim = _polling_victim(target)
    assert post(target.rs, eio, '42["note","from the thief"]').text == "ok"  # another TCP connection
    wait_until(lambda: notes, what="the note handled")
    assert notes == [(victim, "from the thief")]
    # The victim's session goes on as before.
    assert post(target.rs, eio, '421["echo","victim"]').text == "ok"
    assert poll(target.rs, eio).text == '431["victim"]'
    post(target.rs, eio, "1")
    target.finish()


def test_stolen_sid_get_while_the_victim_polls_closes_the_session(hostile):
    """A second GET while the victim's is parked: 400 to the thief, the close packet to the victim."""
    target = hostile()
    eio, victim = _polling_victim(target)
    session = target.session(eio)
    parked = gevent.spawn(poll, target.rs, eio)
    wait_until(lambda: session.polling_get_active, what="the victim's GET parked")
    thief = poll(target.rs, eio)
    assert (thief.status, thief.json()) == (400, BAD_REQUEST)
    victim_reply = parked.get(timeout=TIMEOUT)
    assert (victim_reply.status, victim_reply.text) == (200, "1")
    assert target.recorder.reason(victim) == "transport error"
    target.finish()


def test_stolen_sid_upgrade_takes_the_session_over(hostile):
    """A WebSocket upgrade with the victim's sid moves the session to the thief's connection."""
    target = hostile()
    eio, victim = _polling_victim(target)
    ws = WSConn(target.port, f"/socket.io/?EIO=4&transport=websocket&sid={eio}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    ws.send("5")
    wait_until(lambda: target.sio.transport(victim) == "websocket", what="upgraded")
    target.sio.emit("secret", "for the victim", to=victim)
    assert ws.recv() == '42["secret","for the victim"]'
    reply = poll(target.rs, eio)  # the victim's own polling is now refused
    assert (reply.status, reply.json()) == (400, BAD_REQUEST)
    # A third client cannot take it again: one WebSocket per session.
    other = websocket_request(target.rs, f"EIO=4&transport=websocket&sid={eio}")
    assert (other.status, other.json()) == (400, SECOND_WEBSOCKET)
    ws.close()
    assert target.recorder.reason(victim) == "transport close"
    target.finish()


def test_stolen_sid_of_a_websocket_session_gets_nothing(hostile):
    target = hostile()
    raw = SIOConn(target.rs)
    sid = raw.connect("/")
    for method in ("GET", "POST"):
        reply = http_request(target.rs, method, f"EIO=4&transport=polling&sid={raw.eio_sid}",
                             body=b'42["echo","x"]' if method == "POST" else None)
        assert (reply.status, reply.json()) == (400, BAD_REQUEST)
    other = websocket_request(target.rs, f"EIO=4&transport=websocket&sid={raw.eio_sid}")
    assert (other.status, other.json()) == (400, SECOND_WEBSOCKET)
    raw.send('421["echo","untouched"]')
    assert raw.recv() == '431["untouched"]'
    raw.close()
    assert target.recorder.reason(sid) == "transport close"
    target.finish()


# -- concurrent polls --------------------------------------------------------------------


def test_concurrent_gets_close_the_session(hostile):
    target = hostile()
    eio, sid = _polling_victim(target)
    session = target.session(eio)
    first = gevent.spawn(poll, target.rs, eio)
    wait_until(lambda: session.polling_get_active, what="first GET parked")
    second = poll(target.rs, eio)
    assert (second.status, second.json()) == (400, BAD_REQUEST)
    assert first.get(timeout=TIMEOUT).text == "1"
    assert target.recorder.reason(sid) == "transport error"
    target.finish()


def test_many_concurrent_gets(hostile):
    target = hostile()
    eio, sid = _polling_victim(target)
    replies = [g.get(timeout=TIMEOUT) for g in [gevent.spawn(poll, target.rs, eio) for _ in range(50)]]
    statuses = sorted(r.status for r in replies)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 400}, statuses
    assert all(r.text == "1" or r.json() in (BAD_REQUEST, UNKNOWN_SID) for r in replies)
    assert target.recorder.reason(sid) == "transport error"
    target.finish()


def test_concurrent_posts_close_the_session(hostile):
    target = hostile()
    eio, sid = _polling_victim(target)
    session = target.session(eio)
    body = b'42["echo","slow body"]'
    slow = socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT)
    slow.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={eio} HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
    wait_until(lambda: session.polling_post_active, what="first POST reading its body")
    second = post(target.rs, eio, '42["echo","second"]')
    assert (second.status, second.json()) == (400, BAD_REQUEST)
    assert target.recorder.reason(sid) == "transport error"
    slow.sendall(body[5:])
    assert slow.recv(4096).startswith(b"HTTP/1.1 200")  # read, and dropped: the session is closed
    slow.close()
    target.finish()
