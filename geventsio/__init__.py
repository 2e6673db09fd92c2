"""geventsio: a Socket.IO server and client for Python on gevent and WSGI."""

from . import engine
from .client import Client
from .client import ClientNamespace
from .exceptions import ConnectionRefusedError, DisconnectedError, ProtocolError, TimeoutError
from .namespace import Namespace
from .server import Server
from .wsgi import WSGIApp, make_server, serve

__version__ = "0.1.0"


def __getattr__(name: str):
    # The Redis pieces need the ``redis`` extra (redis-py, msgpack): imported on first use.
    if name == "RedisManager":
        from .redis_manager import RedisManager
        return RedisManager
    if name == "RedisStreamsManager":
        from .redis_streams import RedisStreamsManager
        return RedisStreamsManager
    if name == "StreamsEmitter":
        from .stream_emitter import StreamsEmitter
        return StreamsEmitter
    if name == "Emitter":
        from .emitter import Emitter
        return Emitter
    raise AttributeError(f"module 'geventsio' has no attribute {name!r}")


__all__ = [
    "Client",
    "ClientNamespace",
    "ConnectionRefusedError",
    "DisconnectedError",
    "Emitter",
    "Namespace",
    "Server",
    "ProtocolError",
    "RedisManager",
    "RedisStreamsManager",
    "StreamsEmitter",
    "TimeoutError",
    "WSGIApp",
    "engine",
    "make_server",
    "serve",
]
