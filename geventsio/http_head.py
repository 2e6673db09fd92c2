"""An HTTP/1.1 request head into a WSGI environ: the request line and header fields.

pywsgi parses headers with the ``email`` package (``http.client.parse_headers``),
which builds a MIME message per request; for a WebSocket handshake that was
about a tenth of the server's CPU. This reads the fields with one ``readline``
per line and fills the environ directly, following what pywsgi does with them
(so applications see the same environ), and is stricter where RFC 9112 asks a
server to refuse: whitespace before the colon, conflicting ``Content-Length``.
No I/O here beyond the ``readline`` the caller passes in.
"""

from __future__ import annotations

from typing import Callable, Iterator
from urllib.parse import unquote

# One header line, and header fields per request (http.client's limits).
MAX_LINE = 65536
MAX_FIELDS = 100

# Header fields that go into the environ without the HTTP_ prefix (PEP 3333).
_UNPREFIXED = {"CONTENT_TYPE", "CONTENT_LENGTH"}


class HeadError(ValueError):
    """The request head breaks HTTP/1.1; the connection gets 400 and is closed."""


class RequestHeaders:
    """A request's header fields in the order they arrived; names match without case.

    Offers what is read of a pywsgi handler's ``headers`` by pywsgi itself,
    gunicorn's access log and geventsio's worker routing.
    """

    __slots__ = ("_fields", "status")

    def __init__(self, fields: list[tuple[str, str]]):
        self._fields = fields
        self.status = ""  # pywsgi reads a parse problem from here; problems raise instead

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field called ``name``, or ``default``."""
        name = name.lower()
        for key, value in self._fields:
            if key.lower() == name:
                return value
        return default

    getheader = get

    def get_all(self, name: str) -> list[str]:
        """Every field called ``name``, in order."""
        name = name.lower()
        return [value for key, value in self._fields if key.lower() == name]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self._fields = [(k, v) for k, v in self._fields if k.lower() != name]

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")

    @property
    def headers(self) -> list[str]:
        """The fields as header lines (pywsgi's old ``mimetools`` shape)."""
        return [f"{key}: {value}\r\n" for key, value in self._fields]


def read_fields(readline: Callable[[int], bytes]) -> list[tuple[str, str]]:
    """Read header fields up to the empty line that ends the head.

    ``readline(limit)`` returns one line (with its line break), at most
    ``limit`` bytes, ``b""`` at end of stream. Obsolete line folding is
    joined with a space (RFC 9112 5.2).
    """
    fields: list[tuple[str, str]] = []
    while True:
        line = readline(MAX_LINE + 1)
        if line == b"\r\n" or line == b"\n":
            return fields
        if len(line) > MAX_LINE:
            raise HeadError(f"header line longer than {MAX_LINE} bytes")
        if not line.endswith(b"\n"):
            raise HeadError("connection closed inside the request head")
        if line[0] in b" \t":
            if not fields:
                raise HeadError("continuation line before the first header field")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1] in b" \t":
            raise HeadError(f"malformed header line {line[:60]!r}")
        fields.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        if len(fields) > MAX_FIELDS:
            raise HeadError(f"more than {MAX_FIELDS} header fields")


def content_length(fields: list[tuple[str, str]]) -> int | None:
    """The body length the fields announce, ``None`` for none; refuses ambiguous ones.

    Two different lengths, or one that is not a number, let a proxy and this
    server disagree on where the body ends (request smuggling): 400.
    """
    found: str | None = None
    for name, value in fields:
        if len(name) == 14 and name.lower() == "content-length":
            if found is not None and value != found:
                raise HeadError("conflicting Content-Length fields")
            found = value
    if found is None:
        return None
    if not found.isdigit():
        raise HeadError(f"invalid Content-Length {found[:40]!r}")
    return int(found)


def fill_environ(environ: dict, method: str, target: str, version: str,
                 fields: list[tuple[str, str]], client_address: object) -> dict:
    """Put one request's CGI variables into ``environ`` (the server's base environ, copied).

    As pywsgi does: names with ``_`` are dropped (they would be
    indistinguishable from ``-`` in the environ, a way to spoof a header a
    proxy set), repeated fields are joined with ``,`` (cookies with ``; ``).
    """
    environ["REQUEST_METHOD"] = method
    environ["SCRIPT_NAME"] = ""
    path, _, query = target.partition("?")
    environ["PATH_INFO"] = unquote(path, "latin-1") if "%" in path else path
    environ["QUERY_STRING"] = query
    environ["SERVER_PROTOCOL"] = version
    if isinstance(client_address, tuple):
        environ["REMOTE_ADDR"] = str(client_address[0])
        environ["REMOTE_PORT"] = str(client_address[1])
    for name, value in fields:
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key in _UNPREFIXED:
            environ.setdefault(key, value)
            continue
        key = "HTTP_" + key
        if key in environ:
            environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            environ[key] = value
    return environ
