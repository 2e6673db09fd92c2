"""Exceptions shared by every layer of geventsio."""

from __future__ import annotations

from typing import Any


class GeventSIOError(Exception):
    """Base class of every error geventsio raises on purpose."""


class ProtocolError(GeventSIOError):
    """Bytes from the peer that the Engine.IO or Socket.IO protocol does not allow.

    Codecs raise it; the layer that owns the connection answers with the
    protocol's error (HTTP 400, a close) and drops only that connection.
    """


class ConnectionRefusedError(GeventSIOError):  # noqa: A001 - the name python-socketio apps use
    """Raised by a ``connect`` handler to refuse a client, with an optional payload.

    The client receives a CONNECT_ERROR packet ``{"message": message, "data": data}``.
    """

    def __init__(self, message: str = "Connection rejected by server", data: Any = None):
        super().__init__(message)
        self.message = message
        self.data = data


class TimeoutError(GeventSIOError):  # noqa: A001 - mirrors python-socketio's name
    """An acknowledgement did not arrive within its time limit."""


class DisconnectedError(GeventSIOError):
    """The client went away while an acknowledgement from it was awaited."""
