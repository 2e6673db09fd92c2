"""WebSocket frames (RFC 6455) over an upgraded connection.

The upgrade is geventsio's handler's (``wsgi.Handler``, see ws_handshake.py)
or gevent-websocket's (its own handler and gunicorn worker). gevent-websocket's
frame layer validates UTF-8 and unmasks in pure Python and reads a frame of
any announced size into memory; geventsio reads and writes frames itself on
the connection either way: the message size limit is checked
against the frame header before any payload is read, UTF-8 is validated by
``bytes.decode``, unmasking is one big-integer XOR, and a batch of outgoing
packets leaves in one ``sendall``.
"""

from __future__ import annotations

import io
import socket
from typing import Any, Callable

import gevent
import gevent.socket
from gevent.lock import Semaphore

from ..exceptions import ProtocolError
from ..metrics import Counters
from .ws_frames import (
    U16,
    U64,
    CLOSE_INVALID_DATA,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    MessageTooBig,
    encode_frame,
    frame_header,
    unmask,
    valid_close_code,
)

# How long a connection this side closed waits for the client's close frame
# (or the end of its stream) before it is shut both ways anyway.
LINGER = 2.0

# Bytes asked of the socket per read: several small frames arrive in one
# read; the buffer lives only until they are parsed.
RECV_SIZE = 16384


def _take_buffered(rfile: Any, sock: Any) -> bytes | None:
    """What the request's buffered reader holds past the upgrade request, its buffer given back.

    A client may send its first frames right behind the upgrade request; they
    sit in ``rfile``'s buffer. They are read without waiting (the socket is
    made non-blocking for that one read), then the reader is re-initialised
    with a 1-byte buffer, which frees its 8 KB for the life of the connection.
    ``None`` when ``rfile`` is not a standard buffered reader.
    """
    if not isinstance(rfile, io.BufferedReader):
        return None
    try:
        timeout = sock.gettimeout()
    except (AttributeError, OSError):
        return None
    sock.settimeout(0.0)
    try:
        data = rfile.read1(io.DEFAULT_BUFFER_SIZE)  # only what is buffered, or what the kernel has now
    except OSError:
        data = b""  # the socket's next read reports the error
    finally:
        sock.settimeout(timeout)
    try:
        rfile.__init__(rfile.raw, 1)  # nothing reads through it again
    except (TypeError, ValueError, OSError):
        pass
    return data or b""


class WebSocket:
    """A server-side WebSocket connection that speaks frames on a byte stream.

    ``read(n)`` returns between 1 and ``n`` bytes, ``b""`` only at end of
    stream (a socket's ``recv``); ``buffered`` is what was received before.
    ``write(data)`` must send all of ``data``. Sends are serialised by one lock
    because the reader answers pings and closes while a writer sends data.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        write: Callable[[bytes], Any],
        max_message_size: int,
        shutdown: Callable[[int], Any] | None = None,
        send_nowait: Callable[[bytes], int] | None = None,
        counters: Counters | None = None,
        buffered: bytes = b"",
    ):
        self._read = read
        # Received bytes not parsed yet: self._buf[self._pos:]; empty between messages.
        self._buf = buffered
        self._pos = 0
        # The last non-blocking read returned less than it asked for: the
        # kernel had nothing more then (see take_available).
        self._drained = False
        self._write = write
        self._send_nowait = send_nowait
        self._shutdown = shutdown
        self._write_lock = Semaphore()
        self.max_message_size = max_message_size
        self.closed = False
        # Closed by this side, waiting for the client's close (see close()).
        self.lingering = False
        self._linger_timer: Any = None
        self.counters = counters if counters is not None else Counters()
        # Set by from_environ when the WSGI handler can let go of the connection.
        self.detach: Callable[[], tuple[Any, Any] | None] | None = None
        self.reader: Any = None  # the event-driven reader, once detached (ws_reader.py)

    @classmethod
    def from_environ(cls, environ: dict, max_message_size: int,
                     counters: Counters | None = None) -> "WebSocket | None":
        """Take over the connection gevent-websocket upgraded for this request, if any."""
        ws = environ.get("wsgi.websocket")
        stream = getattr(ws, "stream", None)
        handler = getattr(stream, "handler", None)
        if ws is None or stream is None or handler is None:
            return None
        # gevent-websocket would send a close frame of its own when the request
        # ends; this object owns the connection from now on.
        ws.closed = True
        return cls.from_handler(handler, max_message_size, counters, stream.read)

    @classmethod
    def from_handler(cls, handler: Any, max_message_size: int, counters: Counters | None = None,
                     stream_read: Callable[[int], bytes] | None = None) -> "WebSocket":
        """Take over the connection of a pywsgi ``handler`` whose request became a WebSocket.

        ``stream_read`` reads the connection when the handler's ``rfile`` is
        not a standard buffered reader (what was buffered cannot be taken out).
        """
        sock = handler.socket
        rfile = getattr(handler, "rfile", None)
        buffered = _take_buffered(rfile, sock)
        if buffered is not None:
            # The 101 answer is decided, so the parsed request and response
            # headers are not read again (the environ has the request's).
            # An idle connection should not carry them (~1.5 KB).
            handler.headers = None
            handler.response_headers = []

        def shutdown(how: int) -> None:
            try:
                sock.shutdown(how)
            except OSError:
                pass

        # gevent keeps the OS socket non-blocking: its own send() returns what
        # the kernel took, or raises BlockingIOError, and never waits. Not under
        # TLS: the OS socket there carries records, not our bytes; every write
        # then goes through the TLS socket, on a greenlet (see write_nowait).
        raw = getattr(sock, "_sock", None)
        send_nowait = raw.send if raw is not None and type(sock) is gevent.socket.socket else None
        if buffered is None:  # not pywsgi's reader: keep reading through it
            read = stream_read or getattr(rfile, "read1", None) or rfile.read
            return cls(read, sock.sendall, max_message_size, shutdown, send_nowait, counters)
        self = cls(sock.recv, sock.sendall, max_message_size, shutdown, send_nowait, counters, buffered)
        self.detach = getattr(handler, "detach_websocket", None)
        return self

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet."""
        return len(self._buf) - self._pos

    def take_available(self, recv_nowait: Callable[[int], bytes]) -> bool:
        """Whether ``receive`` has bytes to work on without waiting for the client.

        ``recv_nowait`` is the socket's non-blocking receive; it raises
        ``BlockingIOError`` when nothing arrived. End of stream and errors
        count as available: ``receive`` meets them again and reports them.
        False also right after a read that got less than it asked for, without
        asking again: the caller waits on a level-triggered watcher, which
        reports bytes that came in since as soon as it is armed.
        """
        if self._pos < len(self._buf):
            return True
        if self._drained:
            # The last read emptied the kernel's buffer; asking again would
            # mostly cost a system call that fails with EAGAIN. Whatever
            # arrived since wakes the (level-triggered) watcher at once.
            self._drained = False
            return False
        try:
            data = recv_nowait(RECV_SIZE)
        except BlockingIOError:
            return False
        except OSError:
            return True
        self._buf = data
        self._pos = 0
        self._drained = len(data) < RECV_SIZE
        return True

    def _fill(self, n: int) -> bytes:
        """Make ``n`` unparsed bytes available; returns the buffer, parsed from 0.

        Raises ``ConnectionError`` at end of stream.
        """
        rest = self._buf[self._pos:]
        self._drained = False  # what the kernel holds after these reads is not known
        # Nothing is held while waiting for the client: an idle connection's buffer is empty.
        self._buf = b""
        self._pos = 0
        if self.reader is not None:
            self.reader.before_wait()
        data = self._read(max(n - len(rest), RECV_SIZE))
        if not data:
            raise ConnectionError("connection closed")
        buf = rest + data if rest else data
        if len(buf) < n:
            # A frame larger than one read: grow one buffer (bounded by n,
            # which the size limit bounds) instead of keeping many small pieces.
            acc = bytearray(buf)
            while len(acc) < n:
                data = self._read(max(n - len(acc), RECV_SIZE))
                if not data:
                    raise ConnectionError("connection closed mid-frame")
                acc += data
            buf = bytes(acc)
        self._buf = buf
        return buf

    def receive(self) -> str | bytes | None:
        """The next whole message: ``str`` (text) or ``bytes`` (binary); ``None`` once closed.

        Raises ``ProtocolError`` (or ``MessageTooBig``) for a frame that breaks
        RFC 6455 or the size limit, after sending the matching close frame.
        """
        try:
            return self._receive()
        # A stream that broke the protocol cannot be read on: no closing handshake.
        except MessageTooBig as exc:
            self.close(CLOSE_TOO_BIG, "message too big", linger=False)
            raise exc
        except UnicodeDecodeError:
            self.close(CLOSE_INVALID_DATA, "invalid UTF-8", linger=False)
            raise ProtocolError("text frame is not valid UTF-8") from None
        except ProtocolError:
            self.close(CLOSE_PROTOCOL_ERROR, "protocol error", linger=False)
            raise
        except (OSError, ConnectionError):
            self.closed = True
            self.abort()  # the client's stream ended: nothing to wait for
            return None

    def _receive(self) -> str | bytes | None:
        opcode = None
        parts: list[bytes] = []
        size = 0
        wire = 0  # the message's bytes on the wire, frame headers included (for the counters)
        while True:
            if self.closed:
                return None
            buf = self._buf
            pos = self._pos
            if len(buf) - pos < 2:
                buf = self._fill(2)
                pos = 0
            b0, b1 = buf[pos], buf[pos + 1]
            pos += 2
            fin, op, length = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if b0 & 0x70:
                raise ProtocolError("reserved bits set without an extension")
            if not b1 & 0x80:
                raise ProtocolError("client frames must be masked")
            if length >= 126:
                extra = 2 if length == 126 else 8
                if len(buf) - pos < extra:
                    self._pos = pos
                    buf = self._fill(extra)
                    pos = 0
                length = (U16 if extra == 2 else U64).unpack_from(buf, pos)[0]
                pos += extra
                wire += extra
            if op >= 0x8:
                if not fin or length > 125:
                    raise ProtocolError("invalid control frame")
            elif op == OP_CONTINUATION:
                if opcode is None:
                    raise ProtocolError("continuation frame without a message")
            elif op in (OP_TEXT, OP_BINARY):
                if opcode is not None:
                    raise ProtocolError("new message before the previous one ended")
                opcode = op
            else:
                raise ProtocolError(f"unknown opcode {op}")
            if op < 0x8:
                size += length
                if size > self.max_message_size:
                    raise MessageTooBig(f"message of more than {self.max_message_size} bytes")
            end = pos + length + 4
            if end > len(buf):
                self._pos = pos
                buf = self._fill(length + 4)
                pos = 0
                end = length + 4
            payload = unmask(buf[pos + 4:end], buf[pos:pos + 4])
            if end == len(buf):
                self._buf = b""
                self._pos = 0
            else:
                self._pos = end
            if op >= 0x8:
                if self._handle_control(op, payload):
                    return None
                continue
            parts.append(payload)
            wire += length + 6
            if fin:
                counters = self.counters
                counters.packets_in += 1
                counters.bytes_in += wire
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                return data.decode("utf-8") if opcode == OP_TEXT else data

    def _handle_control(self, op: int, payload: bytes) -> bool:
        """Answer a control frame; True when the peer closed the connection."""
        if op == OP_PING:
            if self.reader is not None:
                self.reader.before_wait()  # the write may wait for a client that does not read
            self._send_raw(frame_header(OP_PONG, len(payload)) + payload)
            return False
        if op == OP_PONG:
            return False
        if op == OP_CLOSE:
            if len(payload) == 1:
                code = CLOSE_PROTOCOL_ERROR
            elif not payload:
                code = CLOSE_NORMAL
            else:
                code = U16.unpack(payload[:2])[0]
                if not valid_close_code(code):
                    code = CLOSE_PROTOCOL_ERROR
            # The answer (unless this side closed first), then this side's end
            # of stream: the server ends the TCP connection first. Whatever the
            # client still sends is drained (see close()).
            self.close(code)
            return True
        raise ProtocolError(f"unknown control opcode {op}")

    def _send_raw(self, data: bytes) -> None:
        with self._write_lock:
            self._write(data)

    def send(self, data: str | bytes) -> None:
        """Send one message. Raises ``OSError`` when the connection is gone."""
        self.write_all(encode_frame(data))

    def write_all(self, data: bytes) -> None:
        """Write encoded frames, waiting for the socket as long as it takes."""
        if self.closed:
            raise ConnectionError("websocket is closed")
        self._send_raw(data)

    def write_nowait(self, data: bytes) -> int:
        """Write what the socket takes now, without waiting; returns how many bytes that was.

        Safe on the event loop itself. 0 while another greenlet holds the
        connection for a write.
        """
        if self.closed:
            raise ConnectionError("websocket is closed")
        if self._write_lock.locked() or self._send_nowait is None:
            return 0  # the caller's writer greenlet does it (blocking writes)
        try:
            return self._send_nowait(data)
        except BlockingIOError:
            return 0

    def close(self, code: int = CLOSE_NORMAL, reason: str = "", linger: bool = True) -> None:
        """Send a close frame (once, if the socket takes it now) and end this side's stream.

        The connection is half-closed (the client sees the end of our stream)
        and stays open while the reader drains what the client still sends
        (its close frame, data it sent before it saw ours) up to its end of
        stream, at most ``LINGER`` seconds (then ``abort``). Closing the
        socket with those bytes unread would make the kernel answer them with
        a reset, which a proxy in between logs as an error. ``linger=False``
        shuts it down both ways at once (a broken stream, a client that does
        not read).

        Never waits, so it is safe on the event loop and while another
        greenlet is stuck writing to a client that does not read: the
        shutdown is what unblocks that writer.
        """
        if self.closed:
            return
        self.closed = True
        frame = U16.pack(code) + reason.encode("utf-8")[:123]
        frame = frame_header(OP_CLOSE, len(frame)) + frame
        try:
            if self._send_nowait is None:
                if gevent.getcurrent() is not gevent.get_hub() and not self._write_lock.locked():
                    self._send_raw(frame)  # a TLS write may wait: never on the event loop
            elif not self._write_lock.locked():
                self._send_nowait(frame)  # best effort: a partial close frame is harmless at the end
        except OSError:
            pass
        if not linger:
            self.abort()
        elif self._shutdown is not None:
            self.lingering = True
            self._shutdown(socket.SHUT_WR)
            self._linger_timer = gevent.get_hub().loop.timer(LINGER)
            self._linger_timer.start(self.abort)

    def drain(self) -> None:
        """Read and drop what the client still sends after a close, until its end of stream.

        Blocking (for a greenlet reader); ``LINGER`` bounds it: ``abort`` ends
        the stream. Ends with ``abort``.
        """
        self._buf = b""
        self._pos = 0
        try:
            while self.lingering and self._read(RECV_SIZE):
                pass
        except OSError:
            pass
        self.abort()

    def abort(self) -> None:
        """Shut the connection down both ways now: the reader meets its end at once."""
        self.closed = True
        self.lingering = False
        timer, self._linger_timer = self._linger_timer, None
        if timer is not None:
            timer.stop()
            timer.close()
        if self._shutdown is not None:
            self._shutdown(socket.SHUT_RDWR)
