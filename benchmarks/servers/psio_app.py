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

from handlers import MAX_HTTP_BUFFER_SIZE, install, install_diagnostics, port_from_argv  # noqa: E402


def main():
    port = port_from_argv(sys.argv)
    sio = install(socketio.Server(async_mode="gevent", max_http_buffer_size=MAX_HTTP_BUFFER_SIZE))
    install_diagnostics(lambda: {"sessions": len(sio.eio.sockets),
                                 "sids": sum(len(v) for v in sio.manager.rooms.get("/", {}).values())})
    app = socketio.WSGIApp(sio)
    server = WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None)
    print(f"python-socketio {version('python-socketio')} listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
