"""The Socket.IO client: reconnection with back-off, buffering while disconnected, acks with retries."""

from .client import BadNamespaceError, BufferFullError, Client, ConnectionError
from .namespace import ClientNamespace

__all__ = ["BadNamespaceError", "BufferFullError", "Client", "ClientNamespace", "ConnectionError"]
