"""The server's side of the WebSocket opening handshake (RFC 6455 4.2): checks and the 101.

Pure: an environ in, a reason or the bytes of the answer out. geventsio's WSGI
handler checks an Engine.IO upgrade request with these before the application
runs, and the engine sends the answer only once it has accepted the request,
in the same write as its first frame (see ``wsgi.Handler``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Versions whose framing is RFC 6455's (8 was the last draft; browsers send 13).
SUPPORTED_VERSIONS = ("13", "8")


def is_upgrade_request(environ: dict) -> bool:
    """Whether the request asks to switch to WebSocket at all."""
    return environ.get("HTTP_UPGRADE", "").lower() == "websocket"


def handshake_problem(environ: dict) -> str | None:
    """Why this upgrade request cannot be answered with 101 (it gets 400), or ``None``."""
    if environ.get("REQUEST_METHOD") != "GET":
        return "a WebSocket handshake must be a GET"
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return "a WebSocket handshake needs HTTP/1.1"
    if "upgrade" not in environ.get("HTTP_CONNECTION", "").lower():
        return "Connection header without upgrade"
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") not in SUPPORTED_VERSIONS:
        return "unsupported Sec-WebSocket-Version (13 is)"
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return "Sec-WebSocket-Key is not 16 bytes"
    except (binascii.Error, ValueError):
        return "Sec-WebSocket-Key is not base64"
    return None


def accept_value(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` that proves the server read ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + _GUID).digest()).decode("ascii")


def switching_protocols(environ: dict) -> bytes:
    """The whole 101 answer to a request ``handshake_problem`` found nothing wrong with."""
    accept = accept_value(environ["HTTP_SEC_WEBSOCKET_KEY"])
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode("latin-1")
