"""HTTP details of the Engine.IO endpoint: error bodies, CORS, keep-alive, request bodies,
compression of long-polling responses."""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

import gevent

logger = logging.getLogger("geventsio.engine")

Headers = list[tuple[str, str]]
StartResponse = Callable[..., Any]

# The reference server's error codes, with its messages.
UNKNOWN_TRANSPORT = 0
UNKNOWN_SID = 1
BAD_HANDSHAKE_METHOD = 2
BAD_REQUEST = 3
FORBIDDEN = 4
UNSUPPORTED_PROTOCOL_VERSION = 5

ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}

_STATUS_TEXT = {
    200: "200 OK",
    204: "204 No Content",
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    413: "413 Payload Too Large",
    503: "503 Service Unavailable",
}


class Request:
    """The parts of a WSGI environ the Engine.IO endpoint looks at."""

    __slots__ = ("environ", "method", "query", "origin")

    def __init__(self, environ: dict):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and "," in origin:
            # Two Origin headers, joined by the WSGI server: python-engineio's
            # WebSocket client sends one of its own beside the caller's. The
            # same origin twice is that origin; different ones stay refused.
            parts = {part.strip() for part in origin.split(",")}
            if len(parts) == 1:
                origin = parts.pop()
        self.origin = origin

    @property
    def client_wants_close(self) -> bool:
        return "close" in self.environ.get("HTTP_CONNECTION", "").lower()


class Cors:
    """Which origins may talk to the server, and the headers that tell browsers so.

    ``allowed`` is None (same origin only), ``"*"`` (any), or a list of origins.
    """

    def __init__(self, allowed: str | Iterable[str] | None, credentials: bool):
        if allowed is None or allowed == "*":
            self.allowed: frozenset[str] | str | None = allowed
        elif isinstance(allowed, str):
            self.allowed = frozenset([allowed])
        else:
            self.allowed = frozenset(allowed)
        self.credentials = credentials

    def _describe(self) -> str:
        if self.allowed is None:
            return "same origin only"
        return ", ".join(sorted(self.allowed)) if self.allowed != "*" else "*"

    def check(self, request: Request) -> bool:
        """True if the request's origin is allowed; logs the refusal otherwise."""
        origin = request.origin
        if origin is None or self.allowed == "*":
            return True
        if self.allowed is None:
            env = request.environ
            scheme = env.get("HTTP_X_FORWARDED_PROTO") or env.get("wsgi.url_scheme", "http")
            ok = origin == f"{scheme}://{env.get('HTTP_HOST', '')}"
        else:
            ok = origin in self.allowed
        if not ok:
            logger.warning(
                "refused a request from origin %r: it is not in cors_allowed_origins "
                "(now: %s); pass cors_allowed_origins=[%r] (or '*') to allow it",
                origin, self._describe(), origin)
        return ok

    def headers(self, request: Request) -> Headers:
        if request.origin is None:
            return []
        h = [("Access-Control-Allow-Origin", request.origin), ("Vary", "Origin")]
        if self.credentials:
            h.append(("Access-Control-Allow-Credentials", "true"))
        return h

    def preflight_headers(self, request: Request) -> Headers:
        h = self.headers(request) + [
            ("Access-Control-Allow-Methods", "OPTIONS, GET, POST"),
            ("Access-Control-Max-Age", "86400"),
        ]
        asked = request.environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
        if asked:
            h.append(("Access-Control-Allow-Headers", asked))
        return h


def respond(
    start_response: StartResponse,
    request: Request,
    status: int,
    body: bytes,
    headers: Headers,
    content_type: str = "text/plain; charset=UTF-8",
) -> list[bytes]:
    """Send a complete response with an exact Content-Length.

    When the connection will not be reused (the client asked, or ``headers``
    already say so) the response says ``Connection: close``: gevent.pywsgi closes
    such connections without telling the client, and a client that reuses the
    dead socket then fails its next request.
    """
    if status == 204:
        out = list(headers)  # a 204 carries neither a body nor its length
    else:
        out = [("Content-Type", content_type), ("Content-Length", str(len(body)))] + headers
    if request.client_wants_close and not any(k == "Connection" for k, _ in headers):
        out.append(("Connection", "close"))
    start_response(_STATUS_TEXT.get(status, f"{status} Error"), out)
    return [body]


def error(
    start_response: StartResponse,
    request: Request,
    code: int,
    headers: Headers,
    status: int = 400,
    message: str | None = None,
) -> list[bytes]:
    """The reference server's JSON error: ``{"code": N, "message": "..."}``."""
    body = json.dumps({"code": code, "message": message or ERROR_MESSAGES[code]}).encode()
    if request.method == "POST":
        headers = headers + skip_request_body(request.environ)
    return respond(start_response, request, status, body, headers, "application/json")


def skip_request_body(environ: dict) -> Headers:
    """Leave an unread request body unread, and close the connection after the response.

    gevent.pywsgi would otherwise read and discard the whole body (of any size,
    or without end if chunked) before answering the next request.
    """
    stream = environ.get("wsgi.input")
    if stream is not None and hasattr(stream, "chunked_input") and hasattr(stream, "content_length"):
        try:
            stream.chunked_input = False
            stream.content_length = 0
        except AttributeError:  # pragma: no cover - another server's input object
            pass
    return [("Connection", "close")]


class BodyTooLarge(Exception):
    pass


def read_body(environ: dict, limit: int) -> bytes:
    """Read a request body of at most ``limit`` bytes, or raise ``BodyTooLarge`` unread."""
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        try:
            n = int(length)
        except ValueError:
            raise BodyTooLarge from None
        if n > limit or n < 0:
            raise BodyTooLarge
        return stream.read(n)
    # Chunked or unknown length: read one byte past the limit to know.
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise BodyTooLarge
    return data


# -- compression of long-polling responses ----------------------------------

# Level 1: 2.7-4x faster than zlib's default (6) on polling bodies of JSON
# events (measured 45 vs 119 us per 10 KB, 694 vs 2,732 us per 100 KB; level 9:
# 174 and 8,736 us) for bodies ~20-30% larger (0.25 vs 0.21 of the size). A body
# is compressed for one client and sent once: the server's CPU is what counts.
COMPRESSION_LEVEL = 1

# Bodies this large are compressed on the hub's thread pool (zlib lets go of
# the GIL) so that the event loop keeps serving everyone else: 64 KiB of
# base64 (binary) takes ~1.5 ms, 1 MiB ~20 ms. The hop costs ~80-100 us, too
# much for the small bodies that are most of the traffic.
COMPRESS_OFF_LOOP_BYTES = 64 * 1024

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # deflate: RFC 1950 (zlib) format
_CODINGS = ("gzip", "deflate")  # preferred first, on equal q


def _qvalue(params: str) -> float | None:
    """The q of one Accept-Encoding entry's parameters (1 if absent, None if malformed)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            return q if 0 <= q <= 1 else None
    return 1.0


def choose_encoding(accept_encoding: str | None) -> str | None:
    """``"gzip"``, ``"deflate"`` or None: what to compress with for this ``Accept-Encoding``.

    The coding with the highest q wins, gzip on a tie; a coding named with
    ``q=0`` is refused even if ``*`` would allow it; an ``identity`` rated
    higher than both means the client prefers the body as is.
    """
    if not accept_encoding:
        return None
    named: dict[str, float] = {}
    star: float | None = None
    for entry in accept_encoding.split(","):
        coding, _, params = entry.partition(";")
        coding = coding.strip().lower()
        q = _qvalue(params) if params else 1.0
        if q is None or not coding:
            continue
        if coding == "x-gzip":  # RFC 9110 8.4.1.3: the same as gzip
            coding = "gzip"
        if coding == "*":
            star = q
        else:
            named[coding] = max(q, named.get(coding, 0.0))
    best, best_q = None, 0.0
    for coding in _CODINGS:
        q = named.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    if best is not None and named.get("identity", 0.0) > best_q:
        return None
    return best


def compress(body: bytes, encoding: str, level: int = COMPRESSION_LEVEL) -> bytes:
    """``body`` in ``encoding`` (``"gzip"`` or ``"deflate"``)."""
    return zlib.compress(body, level, _WBITS[encoding])


def compress_for(body: bytes, accept_encoding: str | None, threshold: int,
                 level: int = COMPRESSION_LEVEL) -> tuple[bytes, str | None]:
    """The body to send and its ``Content-Encoding`` (None: sent as is).

    Compressed only when it is at least ``threshold`` bytes and the client's
    ``Accept-Encoding`` takes gzip or deflate; from ``COMPRESS_OFF_LOOP_BYTES``
    on the hub's thread pool.
    """
    if len(body) < threshold:
        return body, None
    encoding = choose_encoding(accept_encoding)
    if encoding is None:
        return body, None
    if len(body) >= COMPRESS_OFF_LOOP_BYTES:
        return gevent.get_hub().threadpool.apply(compress, (body, encoding, level)), encoding
    return compress(body, encoding, level), encoding


def respond_payload(
    start_response: StartResponse,
    request: Request,
    body: bytes,
    headers: Headers,
    content_type: str,
    threshold: int | None,
) -> list[bytes]:
    """A 200 carrying a long-polling payload, compressed when it is worth it and the client asks.

    ``threshold`` None turns compression off. A body at or above the threshold
    says ``Vary: Accept-Encoding`` whether or not it was compressed, since
    another ``Accept-Encoding`` would have been answered differently.
    """
    if threshold is None or len(body) < threshold:
        return respond(start_response, request, 200, body, headers, content_type)
    body, encoding = compress_for(body, request.environ.get("HTTP_ACCEPT_ENCODING"), threshold)
    headers = headers + [("Vary", "Accept-Encoding")]
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
    return respond(start_response, request, 200, body, headers, content_type)
