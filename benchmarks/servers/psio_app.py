"""The benchmark app on python-socketio in gevent mode: ``python benchmarks/servers/psio_app.py PORT``.

Served as python-socketio documents for gevent: ``gevent.pywsgi.WSGIServer``
with gevent-websocket's ``WebSocketHandler``. Only the access log is turned off
(``log=None``), as it is on the geventsio side; everything else is default.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from importlib.metadata import version  # noqa: E402

import socketio  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

from handlers import (MAX_HTTP_BUFFER_SIZE, cluster_config, install, install_diagnostics,  # noqa: E402
                      port_from_argv)


def subscribe_now(sio, url, channel, index):
    """Start python-socketio's Redis listener (it starts on the first connection otherwise) and
    wait until this member is subscribed: the members start in turn, so it is member ``index``."""
    import gevent
    import redis

    sio.manager_initialized = True
    sio.manager.initialize()
    probe = redis.Redis.from_url(url)
    with gevent.Timeout(10, SystemExit("no Redis subscription within 10 s")):
        while probe.pubsub_numsub(channel)[0][1] < index:
            gevent.sleep(0.02)
    probe.close()


def main():
    port = port_from_argv(sys.argv)
    cluster = cluster_config()
    manager = socketio.RedisManager(cluster[0], channel=cluster[1]) if cluster else None
    sio = install(socketio.Server(async_mode="gevent", client_manager=manager,
                                  max_http_buffer_size=MAX_HTTP_BUFFER_SIZE))
    if cluster:
        subscribe_now(sio, cluster[0], cluster[1], cluster[2])
    install_diagnostics(lambda: {"sessions": len(sio.eio.sockets),
                                 "sids": sum(len(v) for v in sio.manager.rooms.get("/", {}).values())})
    app = socketio.WSGIApp(sio)
    server = WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None)
    print(f"python-socketio {version('python-socketio')} listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
