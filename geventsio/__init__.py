"""geventsio: a Socket.IO server and client for Python on gevent and WSGI."""

from . import engine
from .client import Client
from .client import ClientNamespace
from .exceptions import ConnectionRefusedError, DisconnectedError, ProtocolError, TimeoutError
from .namespace import Namespace
from .server import Server
from .wsgi import WSGIApp, make_server, serve

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ClientNamespace",
    "ConnectionRefusedError",
    "DisconnectedError",
    "Namespace",
    "Server",
    "ProtocolError",
    "TimeoutError",
    "WSGIApp",
    "engine",
    "make_server",
    "serve",
]
