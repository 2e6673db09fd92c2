"""A Socket.IO app for several gunicorn workers: Redis for broadcasts, session routing for polling.

Configured by the environment: ``GEVENTSIO_TEST_REDIS_URL`` and ``GEVENTSIO_TEST_REDIS_KEY``.
"""

import os

import geventsio

sio = geventsio.Server(
    client_manager=geventsio.RedisManager(os.environ["GEVENTSIO_TEST_REDIS_URL"],
                                          key=os.environ["GEVENTSIO_TEST_REDIS_KEY"],
                                          reconnect_delay=0.05, reconnect_delay_max=0.2),
    ping_interval=5, ping_timeout=5)
routers: list = []  # this worker's router, seen in the environ of its first connection


@sio.on("connect")
def connect(sid, environ, auth):
    router = environ.get("geventsio.router")
    if router is not None and not routers:
        routers.append(router)


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
    """Which worker owns this client's session, what its router did, and the client's transport."""
    stats = dict(routers[0].stats) if routers else {}
    return {"pid": os.getpid(), "tag": routers[0].tag if routers else "", "stats": stats,
            "transport": sio.transport(sid)}


app = geventsio.WSGIApp(sio)
