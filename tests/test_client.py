"""geventsio.Client against the geventsio server: transports, namespaces, binary, acks, refusals.

Each test serves a real ``geventsio.Server`` on a loopback port and drives a
real ``geventsio.Client`` (polling only, WebSocket only, or polling with the
upgrade). Reconnection, buffering and retries are in test_client_reconnect.py;
the same scenarios against Node's socket.io server in test_client_node.py.
"""

from __future__ import annotations

import logging

import gevent
import pytest
from gevent.event import AsyncResult, Event

import geventsio
from geventsio.client import BadNamespaceError, ConnectionError

pytest.register_assert_rewrite("client_support")  # before its import below
from client_support import (  # noqa: E402
    TRANSPORT_IDS,
    TRANSPORTS,
    WAIT,
    Log,
    expected_transport,
    wait_event,
)

pytest_plugins = ["client_support"]  # its fixtures: make_client, restartable
from client_support import make_client  # noqa: E402,F401  (a module fixture: another plugin defines one too)

NESTED = {"label": "blob ✓", "raw": bytes(range(256)), "list": [b"", 7, None, {"deep": b"\x00" * 3000}]}


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORT_IDS)
def transports(request):
    return request.param


def new_server(**options):
    options.setdefault("ping_interval", 0.5)
    options.setdefault("ping_timeout", 2)
    return geventsio.Server(**options)


def open_client(client, running, transports, **kwargs):
    client.connect(running.url, transports=transports, **kwargs)
    if transports is None:
        wait_event(client.eio.upgrade_done, "the upgrade")
    assert client.transport() == expected_transport(transports)


def test_events_acks_and_binary_both_ways(serve_app, make_client, transports):
    sio = new_server()
    server_seen = Log()
    sids = AsyncResult()

    @sio.event
    def connect(sid, environ, auth):
        sids.set((sid, auth, environ.get("HTTP_X_TOKEN")))

    @sio.on("echo")
    def echo(sid, *args):
        server_seen.add(args)
        return args

    @sio.on("ask")
    def ask(sid, value):
        # The server calls the client back while handling the client's event.
        return sio.call("double", value, to=sid, timeout=WAIT)

    @sio.on("push")
    def push(sid):
        sio.emit("pushed", ("two", NESTED), to=sid)

    running = serve_app(sio, path="socket.io")
    client = make_client()
    order = Log()
    pushed = Log()
    client.on("connect", lambda: order.add("connect"))
    client.on("double", lambda v: v * 2)
    client.on("pushed", pushed)

    open_client(client, running, transports, auth={"token": "t"}, headers={"X-Token": "h"})
    # connect() returns after the connect handler ran, as python-socketio's does.
    assert order.items == ["connect"]
    sid, auth, header = sids.get(timeout=WAIT)
    assert client.sid == sid == client.get_sid("/") and auth == {"token": "t"} and header == "h"
    assert client.connected and client.namespaces == {"/": sid}

    assert client.call("echo", (1, NESTED, "ü")) == (1, NESTED, "ü")
    assert client.call("ask", 21) == 42
    acked = Log()
    client.emit("echo", b"\x01\x02", callback=acked)
    assert acked.wait_for(1) == [b"\x01\x02"]
    client.send("hello")  # a "message" event with no handler on the server: no ack expected
    client.emit("push")
    assert pushed.wait_for(1) == [("two", NESTED)]
    assert server_seen.items == [(1, NESTED, "ü"), (b"\x01\x02",)]
    assert sio.transport(sid) == expected_transport(transports)


def test_namespaces_class_based_handlers_and_catch_alls(serve_app, make_client, transports):
    sio = new_server()
    sids = {}

    def handlers_of(nsp):
        def on_connect(sid, environ):
            sids[nsp] = sid
            sio.emit("hi", nsp, to=sid, namespace=nsp)
            sio.emit("other", 1, to=sid, namespace=nsp)

        sio.on("connect", on_connect, namespace=nsp)
        sio.on("whoami", lambda sid: (nsp, sid), namespace=nsp)

    handlers_of("/")
    handlers_of("/chat")
    running = serve_app(sio, path="socket.io")

    class Chat(geventsio.ClientNamespace):
        def __init__(self):
            super().__init__("/chat")
            self.log = Log()

        def on_connect(self):
            self.log.add("connect")

        def on_hi(self, nsp):
            self.log.add(("hi", nsp))

        def on_disconnect(self, reason):
            self.log.add(("disconnect", reason))

    client = make_client()
    chat = Chat()
    client.register_namespace(chat)
    root = Log()

    @client.event
    def hi(nsp):
        root.add(("hi", nsp))

    client.on("*", lambda event, *args: root.add(("any", event, args)))
    open_client(client, running, transports)  # namespaces: those with handlers, "/" and "/chat"

    assert set(client.namespaces) == {"/", "/chat"}
    assert client.get_sid("/chat") == sids["/chat"] != client.get_sid("/") == sids["/"]
    assert chat.call("whoami") == ("/chat", sids["/chat"])
    assert client.call("whoami") == ("/", sids["/"])
    assert root.wait_for(2) == [("hi", "/"), ("any", "other", (1,))]
    assert chat.log.wait_for(2) == ["connect", ("hi", "/chat")]
    client.disconnect()
    assert chat.log.items[-1] == ("disconnect", "client disconnect")
    assert not client.connected and client.sid is None


def test_refused_connection_raises_and_reports_connect_error(serve_app, make_client, transports):
    sio = new_server()

    @sio.event
    def connect(sid, environ, auth):
        if (auth or {}).get("token") != "secret":
            raise geventsio.ConnectionRefusedError("unauthorized", {"retry": False})

    running = serve_app(sio, path="socket.io")
    client = make_client()
    errors = Log()
    client.on("connect_error", errors)
    with pytest.raises(ConnectionError) as info:
        client.connect(running.url, transports=transports, auth={"token": "wrong"})
    assert "unauthorized" in str(info.value)
    assert info.value.data == {"message": "unauthorized", "data": {"retry": False}}
    assert errors.items == [{"message": "unauthorized", "data": {"retry": False}}]
    assert not client.connected
    client.wait()  # returns at once: the client is disconnected for good

    # auth may be a callable, evaluated at every connection.
    client.connect(running.url, transports=transports, auth=lambda: {"token": "secret"})
    assert client.connected


def test_unreachable_server_raises_connection_error(make_client):
    probe = gevent.socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    client = make_client()
    errors = Log()
    client.on("connect_error", errors)
    with pytest.raises(ConnectionError):
        client.connect(f"http://127.0.0.1:{port}")
    assert len(errors.items) == 1 and isinstance(errors.items[0], str)
    assert client.greenlets() == []


def test_unknown_namespace_is_refused_by_the_server(serve_app, make_client):
    running = serve_app(new_server(), path="socket.io")
    client = make_client()
    with pytest.raises(ConnectionError) as info:
        client.connect(running.url, namespaces=["/", "/nope"])
    assert "/nope" in str(info.value)
    assert not client.connected


def test_ack_timeouts_both_ways(serve_app, make_client, transports):
    sio = new_server()
    release = Event()
    client_answers = AsyncResult()

    @sio.on("slow")
    def slow(sid):
        release.wait(WAIT)
        return "late"

    @sio.on("ask-slow-client")
    def ask_slow_client(sid):
        try:
            client_answers.set(sio.call("slow-question", to=sid, timeout=0.2))
        except geventsio.TimeoutError as exc:
            client_answers.set(exc)

    running = serve_app(sio, path="socket.io")
    client = make_client()
    client_release = Event()
    client.on("slow-question", lambda: client_release.wait(WAIT) and "too late")
    open_client(client, running, transports)

    outcome = Log()
    client.emit("slow", callback=outcome, timeout=0.2)
    [error] = outcome.wait_for(1)
    assert isinstance(error, geventsio.TimeoutError)
    with pytest.raises(geventsio.TimeoutError):
        client.call("slow", timeout=0.2)
    release.set()
    assert outcome.items == [error]  # the late acknowledgements are ignored

    client.emit("ask-slow-client")
    assert isinstance(client_answers.get(timeout=WAIT), geventsio.TimeoutError)
    client_release.set()
    # ack_timeout is the default timeout of emits with a callback.
    client2 = make_client(ack_timeout=0.2)
    release.clear()
    open_client(client2, running, transports)
    with pytest.raises(geventsio.TimeoutError):
        client2.call("slow", timeout=None)
    release.set()


def test_handlers_run_in_order_on_one_dispatcher_off_the_reader(serve_app, make_client, transports):
    sio = new_server()

    @sio.on("burst")
    def burst(sid, n):
        for i in range(n):
            sio.emit("item", i, to=sid)

    running = serve_app(sio, path="socket.io")
    client = make_client()
    seen = Log()
    greenlets = set()

    @client.on("item")
    def item(i):
        greenlets.add(gevent.getcurrent())
        if i == 0:
            # A handler may wait for the server: its ack is resolved by the reader at once.
            assert client.call("burst", 0) is None
        seen.add(i)

    open_client(client, running, transports)
    client.emit("burst", 50)
    assert seen.wait_for(50) == list(range(50))
    assert len(greenlets) == 1
    assert greenlets.isdisjoint(client.eio.greenlets())


def test_server_disconnect_ends_the_client_without_reconnecting(serve_app, make_client, transports):
    sio = new_server()
    sids = AsyncResult()
    sio.on("connect", lambda sid, environ: sids.set(sid))
    running = serve_app(sio, path="socket.io")
    client = make_client()
    events = Log()
    client.on("disconnect", lambda reason: events.add(("disconnect", reason)))
    client.on("reconnect_attempt", lambda n: events.add(("reconnect_attempt", n)))
    open_client(client, running, transports)

    sio.disconnect(sids.get(timeout=WAIT))
    with gevent.Timeout(WAIT):
        client.wait()
    assert events.items == [("disconnect", "server disconnect")]
    assert not client.connected and client.greenlets() == []
    with pytest.raises(BadNamespaceError):
        client.emit("anything")


def test_emit_checks(serve_app, make_client):
    running = serve_app(new_server(), path="socket.io")
    client = make_client()
    with pytest.raises(BadNamespaceError):
        client.emit("before connecting")
    client.connect(running.url)
    with pytest.raises(BadNamespaceError):
        client.emit("x", namespace="/elsewhere")
    with pytest.raises(ValueError):
        client.emit("connect")
    with pytest.raises(TypeError):
        client.emit("x", object())  # not JSON: fails at the emit, nothing is queued
    with pytest.raises(ConnectionError):
        client.connect(running.url)  # already connected


def test_disconnect_stops_every_greenlet_and_tells_the_server(serve_app, make_client, transports):
    sio = new_server()
    reasons = Log()
    sio.on("disconnect", lambda sid, reason: reasons.add(reason))
    running = serve_app(sio, path="socket.io")
    client = make_client()
    open_client(client, running, transports)
    engine_greenlets = client.eio.greenlets()
    assert engine_greenlets
    client.disconnect()
    assert all(g.dead for g in engine_greenlets)
    assert client.greenlets() == [] and client.transport() is None
    assert reasons.wait_for(1) in (["client disconnect"], ["transport close"])
    client.disconnect()  # idempotent


def test_logger_options(make_client):
    names = ("geventsio.client", "geventsio.client.engine")
    try:
        make_client(logger=True)
        assert [logging.getLogger(n).level for n in names] == [logging.INFO, logging.WARNING]
        make_client(logger=True, engineio_logger=True)
        assert [logging.getLogger(n).level for n in names] == [logging.INFO, logging.INFO]
    finally:
        for n in names:
            logging.getLogger(n).setLevel(logging.NOTSET)


@pytest.mark.parametrize("transports", [["polling"], None], ids=["polling", "default"])
def test_cookies_set_by_the_server_are_sent_back(make_client, transports):
    """Load balancers pin a client to a backend with a cookie: every later request carries it."""
    sio = new_server(cookie="io")
    cookies = Log()

    def app(environ, start_response):
        if "sid=" in environ.get("QUERY_STRING", ""):
            cookies.add(environ.get("HTTP_COOKIE"))
        return inner(environ, start_response)

    inner = geventsio.WSGIApp(sio)
    server = geventsio.make_server(app, "127.0.0.1", 0)
    server.start()
    try:
        client = make_client()
        client.connect(f"http://127.0.0.1:{server.server_port}", transports=transports)
        if transports is None:
            wait_event(client.eio.upgrade_done, "the upgrade")
        # Polling requests (and the upgrade's WebSocket request) after the handshake.
        assert set(cookies.wait_for(1)) == {f"io={client.eio_sid}"}
    finally:
        server.stop(timeout=0)
        sio.shutdown()
