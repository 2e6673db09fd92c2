"""The handlers every benchmark server registers, identical for geventsio and python-socketio.

Both servers take the same python-socketio style API, so one function installs
them on either:

- ``echo(data)``: the server emits ``echo`` with the same argument back to the sender;
- ``echoack(data)``: the handler returns its argument, which becomes the acknowledgement;
- ``join(room)``: the sender enters ``room``; acknowledged with ``"ok"`` so the
  client knows it is a member before a broadcast starts;
- ``bcast(room, data)``: the server emits ``msg`` with ``data`` to every member of ``room``.

Binary arguments (``bytes``) travel back as binary attachments, so ``echo``
also serves the 1 MB round trip.
"""

# Large enough for a 1 MiB binary attachment sent over long-polling, where it
# travels base64-encoded (~1.4 MB); the same limit is given to both servers.
MAX_HTTP_BUFFER_SIZE = 4_000_000


def install(sio):
    def echo(sid, data):
        sio.emit("echo", data, to=sid)

    def echoack(sid, data):
        return data

    def join(sid, room):
        sio.enter_room(sid, room)
        return "ok"

    def bcast(sid, room, data):
        sio.emit("msg", data, to=room)

    for fn in (echo, echoack, join, bcast):
        sio.on(fn.__name__, fn)
    return sio


def cluster_config():
    """``(redis_url, key, index)`` when run as member ``index`` (1, 2...) of a cluster scenario, else None.

    run.py starts the members one after the other and waits for each to listen:
    a member listens only once its Redis subscription is in place.
    """
    import os

    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        return None
    return url, os.environ["BENCH_REDIS_KEY"], int(os.environ.get("BENCH_CLUSTER_INDEX", "1"))


def port_from_argv(argv):
    if len(argv) != 2 or not argv[1].isdigit():
        raise SystemExit(f"usage: {argv[0]} PORT")
    return int(argv[1])


def install_diagnostics(sizes):
    """On SIGUSR1, append live-object counts to /tmp/bench-diag-PID.txt (a debugging aid).

    ``sizes()`` returns the server's own table sizes (sessions, sockets, ...).
    After a full collection, the most common live object types and the number
    of greenlets are written, to tell a leak from memory not yet reused.
    """
    import collections
    import gc
    import os
    import signal

    import gevent
    import greenlet

    def dump():
        gc.collect()
        objs = gc.get_objects()
        counts = collections.Counter(type(o).__name__ for o in objs)
        greenlets = sum(1 for o in objs if isinstance(o, greenlet.greenlet))
        with open(f"/tmp/bench-diag-{os.getpid()}.txt", "a") as f:
            f.write(f"sizes {sizes()} greenlets {greenlets} objects {len(objs)}\n")
            f.write("  " + ", ".join(f"{n}={c}" for n, c in counts.most_common(15)) + "\n")

    gevent.signal_handler(signal.SIGUSR1, dump)
