"""Engine.IO sessions across several worker processes on one port, without a sticky balancer.

Each worker has a short random *tag*; the sids of the sessions it opens start
with it. Each worker also listens on a private Unix socket named after its tag,
in a directory all the workers agree on. When a request names a session of
another worker (``...?EIO=4&sid=<tag>...``), the worker that accepted the
connection does not relay it: before running the application it passes the
client's socket itself to the owner over that Unix socket (``SCM_RIGHTS``),
together with the request line and headers it already read (and any bytes it
had buffered beyond them). The owner serves the connection from then on as if
it had accepted it: a long-polling GET parks there, a POST body is read (and
bounded) there, a WebSocket upgrade is answered there, and later requests on
the same keep-alive connection arrive there first. The worker that handed the
connection over keeps nothing of it.

Why a hand-over rather than a relay: nothing is copied twice, nothing waits in
the first worker for a parked poll, and the owner's own limits (body size,
time limits, the early notice of a client leaving a poll) apply unchanged.
It needs the client's plain TCP socket: with TLS terminated by gunicorn itself
there is nothing to hand over, and routing stays off.

When the owner is gone (or the tag names no worker), the request is served
where it arrived and gets the usual ``Session ID unknown``.
"""

from __future__ import annotations

import array
import errno
import io
import logging
import os
import re
import secrets
import socket as _stdlib_socket
import stat
import tempfile
from typing import Any
from urllib.parse import unquote

import gevent
from gevent import socket
from gevent.pywsgi import WSGIServer

logger = logging.getLogger("geventsio.routing")

TAG_LENGTH = 4
SID_PREFIX_KEY = "geventsio.sid_prefix"  # environ key the engine reads to prefix new sids
ROUTER_KEY = "geventsio.router"  # environ key: the router that served the request
DIRECTORY_ENV = "GEVENTSIO_WORKER_DIR"

_TAG = re.compile(r"[A-Za-z0-9_-]{%d}" % TAG_LENGTH)
_MAGIC = b"GSIO1\n"
# Request line + headers + bytes already buffered past them (gevent reads 8 KiB at a time).
_MAX_MESSAGE = 128 * 1024
_FD_SIZE = array.array("i").itemsize
_SUN_PATH_MAX = 107


def default_directory(group_id: int) -> str:
    """The directory the workers of one group (e.g. one gunicorn master, by its pid) share."""
    return os.environ.get(DIRECTORY_ENV) or os.path.join(
        tempfile.gettempdir(), f"geventsio-{os.getuid()}-{group_id}")


def _prepare_directory(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise RuntimeError(f"{path} must be a directory owned by this user (not a link)")


def _sid_of(query: str) -> str | None:
    """The ``sid`` of an Engine.IO query string, if it has one (cheap: runs for every request)."""
    if "EIO=" not in query:
        return None
    if query.startswith("sid="):
        start = 4
    else:
        start = query.find("&sid=") + 5
        if start == 4:
            return None
    end = query.find("&", start)
    return unquote(query[start:end if end >= 0 else len(query)])


class _PrefixedReader(io.RawIOBase):
    """A socket's bytes, after some that another process already read from it."""

    def __init__(self, prefix: bytes, sock: Any):
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._sock.recv_into(buffer)


class WorkerRouter:
    """One worker's side of the routing: its tag, its private socket, its peers.

    ``start(server)`` binds the private socket and makes ``server`` (the
    worker's public gevent ``WSGIServer``) serve the connections handed over
    to this worker; ``close()`` undoes it. ``stats`` counts connections handed
    out (``handed_off``), taken in (``received``), and hand-overs that found
    no owner (``no_owner``).
    """

    def __init__(self, directory: str):
        self.directory = directory
        self.tag = ""
        self.path = ""
        self.stats = {"handed_off": 0, "received": 0, "no_owner": 0}
        self._server: Any = None
        self._listener: Any = None
        self._peers: dict[str, Any] = {}
        self._greenlets: set[gevent.Greenlet] = set()
        self._environ_extras: dict = {}

    # -- life cycle ------------------------------------------------------------

    def start(self, server: Any) -> None:
        """Bind this worker's private socket and serve handed-over connections on ``server``."""
        if self._listener is not None:
            return
        _prepare_directory(self.directory)
        for _ in range(20):
            tag = secrets.token_urlsafe(3)
            path = os.path.join(self.directory, tag)
            if len(path.encode()) > _SUN_PATH_MAX:
                raise RuntimeError(f"worker directory path too long for a Unix socket: {self.directory}")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                listener.bind(path)  # fails if another worker has this tag: pick another
            except OSError as exc:
                listener.close()
                if exc.errno == errno.ENOENT:  # the last worker out just removed the directory
                    _prepare_directory(self.directory)
                elif exc.errno != errno.EADDRINUSE:
                    raise
                continue
            os.chmod(path, 0o600)
            listener.listen(64)
            break
        else:  # pragma: no cover - 20 collisions in 16M tags
            raise RuntimeError("no free worker tag")
        self.tag, self.path, self._listener, self._server = tag, path, listener, server
        self._environ_extras = {SID_PREFIX_KEY: tag, ROUTER_KEY: self}
        self._spawn(self._accept_forever)
        logger.info("worker %d routes sessions tagged %r via %s", os.getpid(), tag, path)

    def close(self) -> None:
        """Stop taking connections, forget the peers, remove this worker's socket."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        gevent.killall(list(self._greenlets), block=False)
        listener.close()
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            os.rmdir(self.directory)  # the last worker out removes the directory
        except OSError:
            pass

    def _spawn(self, fn: Any, *args: Any) -> None:
        g = gevent.spawn(fn, *args)
        self._greenlets.add(g)
        g.link(self._greenlets.discard)

    # -- the worker that accepted the connection ------------------------------

    def environ_extras(self) -> dict:
        """What the handler adds to each request's environ (the engine prefixes new sids with the tag)."""
        return self._environ_extras

    def hand_off(self, handler: Any) -> bool:
        """Give ``handler``'s connection to the owner of the session its request names.

        ``handler`` is a ``gevent.pywsgi.WSGIHandler`` that has read the
        request line and headers and not yet run the application. True when
        the connection now belongs to another worker (the handler must stop).
        """
        sid = _sid_of(handler.environ.get("QUERY_STRING", ""))
        if sid is None or not self.tag:
            return False
        tag = sid[:TAG_LENGTH]
        if tag == self.tag or not _TAG.fullmatch(tag):
            return False
        sock = handler.socket
        if not isinstance(sock, socket.socket) or hasattr(sock, "do_handshake"):
            return False  # TLS (or no socket): there is no plain connection to pass
        message = _MAGIC + _request_head(handler) + _buffered(handler.rfile, sock)
        if len(message) > _MAX_MESSAGE:
            return False
        if not self._send(tag, message, sock.fileno()):
            self.stats["no_owner"] += 1
            return False
        self.stats["handed_off"] += 1
        # Close this process's copy only: no shutdown, the owner's copy keeps the connection.
        handler.rfile.close()
        sock.close()
        handler.socket = None
        handler.close_connection = True
        return True

    def _send(self, tag: str, message: bytes, fd: int) -> bool:
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
        for attempt in range(2):  # a cached connection may be stale: one fresh try
            peer = self._peer(tag, fresh=attempt > 0)
            if peer is None:
                return False
            try:
                peer.sendmsg([message], fds)
                return True
            except OSError as exc:
                logger.debug("hand-over to worker %r failed (%s)", tag, exc)
                self._drop_peer(tag)
        return False

    def _peer(self, tag: str, fresh: bool) -> Any:
        peer = self._peers.get(tag)
        if peer is not None and not fresh:
            return peer
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            peer.connect(os.path.join(self.directory, tag))
        except OSError:
            peer.close()
            return None
        old = self._peers.get(tag)
        self._peers[tag] = peer
        if old is not None:
            old.close()
        return peer

    def _drop_peer(self, tag: str) -> None:
        peer = self._peers.pop(tag, None)
        if peer is not None:
            peer.close()

    # -- the owner ------------------------------------------------------------

    def _accept_forever(self) -> None:
        listener = self._listener
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self._spawn(self._read_peer, conn)

    def _read_peer(self, conn: Any) -> None:
        try:
            while True:
                try:
                    data, ancdata, flags, _ = conn.recvmsg(_MAX_MESSAGE, socket.CMSG_SPACE(_FD_SIZE))
                except OSError:
                    return
                fds = _received_fds(ancdata)
                if not data and not fds:
                    return  # the peer closed its end
                if (flags & (_stdlib_socket.MSG_TRUNC | _stdlib_socket.MSG_CTRUNC) or len(fds) != 1
                        or not data.startswith(_MAGIC)):
                    logger.warning("dropped a malformed connection hand-over (%d bytes, %d fds)",
                                   len(data), len(fds))
                    for fd in fds:
                        os.close(fd)
                    continue
                self._take(fds[0], data[len(_MAGIC):])
        finally:
            conn.close()

    def _take(self, fd: int, prefix: bytes) -> None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        try:
            address = sock.getpeername()
        except OSError:  # the client left meanwhile
            sock.close()
            return
        self.stats["received"] += 1
        server = self._server
        pool = getattr(server, "pool", None)
        if pool is not None:
            pool.spawn(self._serve, server, sock, address, prefix)
        else:
            self._spawn(self._serve, server, sock, address, prefix)

    @staticmethod
    def _serve(server: Any, sock: Any, address: Any, prefix: bytes) -> None:
        """Serve a handed-over connection exactly as ``server`` serves one it accepted."""
        # Without a prefix the reader is the socket's own makefile, as for an
        # accepted connection: a WebSocket can then be detached from the
        # handler (wsgi.Handler.detach_websocket), the makefile keeping the
        # descriptor open after the close() below.
        rfile = io.BufferedReader(_PrefixedReader(prefix, sock)) if prefix else sock.makefile("rb", -1)
        try:
            server.handler_class(sock, address, server, rfile).handle()
        finally:
            sock.close()


def _request_head(handler: Any) -> bytes:
    """The request line and headers ``handler`` parsed, as bytes again."""
    lines = [handler.requestline]
    lines += [f"{name}: {value}" for name, value in handler.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _buffered(rfile: Any, sock: Any) -> bytes:
    """Bytes ``rfile`` read past the headers but nobody consumed yet (never waits for more)."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return bytes(rfile.peek())
    except OSError:
        return b""
    finally:
        sock.settimeout(timeout)


def _received_fds(ancdata: list) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _FD_SIZE
            fds.extend(array.array("i", data[:usable]))
    return fds


class RoutedWSGIServer(WSGIServer):
    """A gevent ``WSGIServer`` that is one worker of a group routing sessions (see ``make_server``)."""

    def __init__(self, directory: str, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.router = WorkerRouter(directory)

    def start(self) -> None:
        self.router.start(self)
        super().start()

    def close(self) -> None:
        self.router.close()
        super().close()
