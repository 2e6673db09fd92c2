"""Two forked processes serving one listening socket, with session routing between them.

    python forked_servers.py WORKER_DIR

Prints the port once both processes serve, then serves an Engine.IO echo server at /engine.io/ from both
processes until SIGTERM; each child then prints its router's statistics as one
JSON line and exits (removing its Unix socket, and the last one the directory).
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

import geventsio  # noqa: E402
from geventsio import engine  # noqa: E402


def child(listener: socket.socket, directory: str, ready: int) -> None:
    server = engine.Server()
    server.on("message", lambda sid, data: server.send(sid, data))
    wsgi = geventsio.make_server(geventsio.WSGIApp(server, socketio_path="engine.io"),
                                 listener=listener, worker_dir=directory)
    gevent.signal_handler(signal.SIGTERM, wsgi.stop)
    wsgi.start()
    os.write(ready, b".")
    wsgi.serve_forever()
    server.shutdown(timeout=0)  # the WSGI server is stopped: no client can collect anything now
    print(json.dumps(wsgi.router.stats), flush=True)


def main() -> None:
    directory = sys.argv[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    ready_r, ready_w = os.pipe()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            child(listener, directory, ready_w)
            os._exit(0)
        children.append(pid)
    # The port is announced once both children are serving.
    started = b""
    while len(started) < 2:
        started += os.read(ready_r, 2)
    print(listener.getsockname()[1], flush=True)
    gevent.signal_handler(signal.SIGTERM, lambda: [os.kill(pid, signal.SIGTERM) for pid in children])
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
