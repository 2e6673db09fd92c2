"""tests/apps/sio_cluster.py in a process whose Redis reader already runs, and then forks twice.

    python forked_cluster.py   (configured by the environment, as sio_cluster.py)

The parent waits until its reader is subscribed (its pub/sub connection, and
with streams its blocked XREAD, are in use when it forks), queues one
broadcast for its publisher (``before-fork`` to room ``nobody``, not sent yet
at the fork), then forks two children, each serving a port of its own, and
serves a third. Prints the three ports (the children's first) once all
serve; SIGTERM ends them.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.os  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import geventsio  # noqa: E402
from apps.sio_cluster import app, manager, sio  # noqa: E402


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def serve(sock: socket.socket, ready: int | None = None) -> None:
    wsgi = geventsio.make_server(app, listener=sock)
    gevent.signal_handler(signal.SIGTERM, wsgi.stop)
    wsgi.start()
    if ready is not None:
        os.write(ready, b".")
    wsgi.serve_forever()
    sio.shutdown(timeout=0)


def main() -> None:
    if not manager.subscribed.wait(10):
        raise SystemExit("never subscribed")
    *theirs, own = listener(), listener(), listener()
    ready_r, ready_w = os.pipe()
    sio.emit("msg", "before-fork", to="nobody")  # queued: the publisher has not run yet
    children = []
    for sock in theirs:
        pid = os.fork()
        if pid == 0:
            serve(sock, ready_w)
            os._exit(0)
        children.append(pid)
    gevent.os.make_nonblocking(ready_r)
    started = b""
    while len(started) < 2:
        started += gevent.os.nb_read(ready_r, 2)
    wsgi = geventsio.make_server(app, listener=own)
    wsgi.start()
    print(*(sock.getsockname()[1] for sock in (*theirs, own)), flush=True)

    def stop() -> None:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        wsgi.stop()

    gevent.signal_handler(signal.SIGTERM, stop)
    for pid in children:
        os.waitpid(pid, 0)
    sio.shutdown(timeout=0)


if __name__ == "__main__":
    main()
