"""A Socket.IO app for several processes: Redis for broadcasts, session routing for polling.

Served by gunicorn workers (tests/test_gunicorn_workers.py), or one process a
port behind nginx (tests/apps/serve_cluster_app.py). Configured by the
environment: ``GEVENTSIO_TEST_REDIS_URL`` and ``GEVENTSIO_TEST_REDIS_KEY``, and
``GEVENTSIO_TEST_STREAM`` (a stream name: ``RedisStreamsManager`` on it instead
of ``RedisManager``). Built at import, so ``gunicorn --preload`` builds it in the
master, before the workers fork.
"""

import os

import geventsio

_options = dict(key=os.environ["GEVENTSIO_TEST_REDIS_KEY"], reconnect_delay=0.05, reconnect_delay_max=0.2)
if os.environ.get("GEVENTSIO_TEST_STREAM"):
    manager = geventsio.RedisStreamsManager(os.environ["GEVENTSIO_TEST_REDIS_URL"],
                                            stream_name=os.environ["GEVENTSIO_TEST_STREAM"], **_options)
else:
    manager = geventsio.RedisManager(os.environ["GEVENTSIO_TEST_REDIS_URL"], **_options)
sio = geventsio.Server(client_manager=manager, ping_interval=5, ping_timeout=5)
routers: list = []  # this worker's router, seen in the environ of its first connection


@sio.on("connect")
def connect(sid, environ, auth):
    router = environ.get("geventsio.router")
    if router is not None and not routers:
        routers.append(router)
    # Behind a proxy, the proxy is the peer: the client's address and scheme come in its headers.
    sio.save_session(sid, {"peer": environ.get("REMOTE_ADDR"), "host": environ.get("HTTP_HOST"),
                           "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
                           "forwarded_proto": environ.get("HTTP_X_FORWARDED_PROTO")})


@sio.on("join")
def join(sid, room):
    sio.enter_room(sid, room)
    return True


@sio.on("echo")
def echo(sid, data):
    return data


@sio.on("bcast")
def bcast(sid, room, data):
    sio.emit("msg", data, to=room)
    return True


@sio.on("where")
def where(sid):
    """Which worker owns this client's session, what its router did, the client's transport,
    what the connection's HTTP request said (``connect``), and the cluster uid of its adapter."""
    stats = dict(routers[0].stats) if routers else {}
    return dict(sio.get_session(sid), pid=os.getpid(), tag=routers[0].tag if routers else "",
                stats=stats, transport=sio.transport(sid), uid=sio.adapters["/"].uid)


app = geventsio.WSGIApp(sio)
