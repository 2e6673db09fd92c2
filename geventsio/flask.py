"""Flask extension: Flask-SocketIO's API on geventsio.

A Flask-SocketIO app ports by changing ``from flask_socketio import ...`` to
``from geventsio.flask import ...``. The extension only defers registration
until ``init_app`` and runs each handler inside a request context built from
the connection's handshake environ; everything else is ``geventsio.Server``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import flask
from flask.globals import request_ctx

from . import namespace as _namespace
from .broadcast import as_rooms
from .exceptions import ConnectionRefusedError
from .server import Server
from .wsgi import WSGIApp, make_server

if TYPE_CHECKING:  # pragma: no cover
    from .flask_testing import SocketIOTestClient

ErrorHandler = Callable[[Exception], Any]
__all__ = [
    "ConnectionRefusedError", "Namespace", "SocketIO", "close_room", "disconnect",
    "emit", "join_room", "leave_room", "rooms", "send",
]

logger = logging.getLogger("geventsio")

_SESSION_KEY = "geventsio.flask_session"


class _ManagedSession(dict, flask.sessions.SessionMixin):
    """The per-connection copy of the Flask session (``manage_session=True``)."""


def _set_request_session(session: flask.sessions.SessionMixin) -> None:
    ctx = request_ctx._get_current_object()
    if isinstance(getattr(type(ctx), "session", None), property):
        ctx._session = session  # Flask >= 3.1 keeps it behind a read-only property
    else:
        ctx.session = session


class SocketIO:
    """Socket.IO for a Flask app: ``socketio = SocketIO(app)`` or ``socketio.init_app(app)`` later.

    Keyword options go to ``geventsio.Server`` (``cors_allowed_origins``,
    ``ping_interval``, ...), except ``manage_session`` (default True: each
    connection works on its own copy of the Flask session), ``path``
    (default ``"socket.io"``), ``message_queue`` (a Redis URL: the servers of a
    cluster share it) and ``channel`` (the cluster's key, default
    ``"socket.io"``). Without an app, ``SocketIO(message_queue=url)`` is an
    emitter for processes that serve no clients (a Celery task): ``emit``
    reaches the clients of every server of the cluster.
    """

    def __init__(self, app: flask.Flask | None = None, **options: Any):
        self.server: Server | None = None
        self.server_options: dict[str, Any] = {}
        self.manage_session = True
        self.path = "socket.io"
        self._registrations: list[tuple[str, Callable[..., Any], str]] = []
        self._class_namespaces: list["Namespace"] = []
        self.exception_handlers: dict[str, ErrorHandler] = {}
        self.default_exception_handler: ErrorHandler | None = None
        self.app: flask.Flask | None = None
        self._wsgi_server: Any = None  # the server run() started
        self._emitter: Any = None  # SocketIO(message_queue=url) without an app
        if app is not None or options:
            self.init_app(app, **options)

    def init_app(self, app: flask.Flask | None, **options: Any) -> None:
        """Attach to ``app`` (app factories call this once the app exists)."""
        self.server_options.update(options)
        opts = dict(self.server_options)
        self.manage_session = opts.pop("manage_session", self.manage_session)
        self.path = opts.pop("path", self.path).strip("/")
        message_queue = opts.pop("message_queue", None)
        channel = opts.pop("channel", None) or "socket.io"
        for unused in ("async_mode", "write_only", "async_handlers"):
            opts.pop(unused, None)
        if app is None:
            if isinstance(message_queue, str):
                from .emitter import Emitter
                self._emitter = Emitter(message_queue, key=channel)
            return
        if isinstance(message_queue, str):
            from .redis_manager import RedisManager
            opts["client_manager"] = RedisManager(message_queue, key=channel)
        self.server = Server(**opts)
        for event, handler, nsp in self._registrations:
            self.server.on(event, self._wrap(event, nsp, handler), namespace=nsp)
        for ns in self._class_namespaces:
            self.server.register_namespace(ns)
        app.extensions["socketio"] = self
        app.wsgi_app = WSGIApp(  # type: ignore[method-assign]
            self.server, app.wsgi_app, socketio_path=self.path)
        self.app = app

    # -- registration ---------------------------------------------------

    def on(self, message: str, namespace: str | None = None) -> Callable[..., Any]:
        """Decorator: ``@socketio.on("chat", namespace="/room")``; handlers take the event's arguments."""
        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.on_event(message, handler, namespace)
            return handler
        return decorator

    def event(self, *args: Any, **kwargs: Any) -> Any:
        """``@socketio.event`` or ``@socketio.event(namespace=...)``: the function's name is the event."""
        if len(args) == 1 and not kwargs and callable(args[0]):
            self.on_event(args[0].__name__, args[0])
            return args[0]

        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.on_event(handler.__name__, handler, **kwargs)
            return handler
        return decorator

    def on_event(self, message: str, handler: Callable[..., Any], namespace: str | None = None) -> None:
        nsp = namespace or "/"
        self._registrations.append((message, handler, nsp))
        if self.server is not None:
            self.server.on(message, self._wrap(message, nsp, handler), namespace=nsp)

    def on_error(self, namespace: str | None = None) -> Callable[[ErrorHandler], ErrorHandler]:
        """Decorator for the handler of exceptions raised by this namespace's handlers."""
        def decorator(handler: ErrorHandler) -> ErrorHandler:
            self.exception_handlers[namespace or "/"] = handler
            return handler
        return decorator

    def on_error_default(self, handler: ErrorHandler) -> ErrorHandler:
        """Decorator for the handler of exceptions from namespaces without their own."""
        self.default_exception_handler = handler
        return handler

    def on_namespace(self, namespace_handler: "Namespace") -> None:
        """Register a class-based ``geventsio.flask.Namespace``."""
        if not isinstance(namespace_handler, Namespace):
            raise ValueError("not a geventsio.flask.Namespace instance")
        namespace_handler.socketio = self
        self._class_namespaces.append(namespace_handler)
        if self.server is not None:
            self.server.register_namespace(namespace_handler)

    def _wrap(self, event: str, namespace: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """The core-facing handler: the core passes sid (and namespace for ``"*"``) first."""
        takes_extra = _namespace.positional_arity(handler)
        any_nsp = namespace == "*"

        if event == "connect":
            def on_connect(*a: Any) -> Any:
                nsp, sid, environ, auth = (a if any_nsp else (namespace, *a))
                lead = (nsp,) if any_nsp else ()
                args = (*lead, auth) if takes_extra > len(lead) else lead
                return self._handle_event(handler, "connect", nsp, sid, args)
            return on_connect
        if event == "disconnect":
            def on_disconnect(*a: Any) -> Any:
                nsp, sid, reason = (a if any_nsp else (namespace, *a))
                lead = (nsp,) if any_nsp else ()
                args = (*lead, reason) if takes_extra > len(lead) else lead
                return self._handle_event(handler, "disconnect", nsp, sid, args)
            return on_disconnect
        if event == "*":
            def on_any(name: str, *a: Any) -> Any:
                nsp, sid, *args = (a if any_nsp else (namespace, *a))
                lead = (name, nsp) if any_nsp else (name,)
                return self._handle_event(handler, name, nsp, sid, (*lead, *args))
            return on_any

        def on_message(*a: Any) -> Any:
            nsp, sid, *args = (a if any_nsp else (namespace, *a))
            lead = (nsp,) if any_nsp else ()
            return self._handle_event(handler, event, nsp, sid, (*lead, *args))
        return on_message

    def _handle_event(self, handler: Callable[..., Any], event: str, namespace: str, sid: str,
                      args: tuple) -> Any:
        """Run ``handler`` inside a request context built from the connection's handshake."""
        assert self.server is not None and self.app is not None
        environ = self.server.get_environ(sid)
        if environ is None:
            return None
        with self.app.request_context(environ):
            if self.manage_session:
                saved = environ.get(_SESSION_KEY)
                if saved is None:
                    saved = environ[_SESSION_KEY] = _ManagedSession(flask.session)
                _set_request_session(saved)
            flask.request.sid = sid  # type: ignore[attr-defined]
            flask.request.namespace = namespace  # type: ignore[attr-defined]
            flask.request.event = {"message": event, "args": args}  # type: ignore[attr-defined]
            try:
                return handler(*args)
            except ConnectionRefusedError:
                raise
            except Exception as exc:
                # As in Flask-SocketIO, the error handler's value stands in for the
                # handler's: the ack of an event, or False to refuse a connection.
                error_handler = self.exception_handlers.get(namespace, self.default_exception_handler)
                if error_handler is None:
                    raise
                return error_handler(exc)

    # -- outside handlers -----------------------------------------------

    def _srv(self) -> Server:
        if self.server is None:
            raise RuntimeError("SocketIO.init_app(app) has not been called")
        return self.server

    def emit(self, event: str, *args: Any, to: Any = None, room: Any = None, include_self: bool = True,
             skip_sid: Any = None, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, **kwargs: Any) -> None:
        """Emit to all clients of a namespace, or to ``to``/``room``; usable anywhere."""
        skip = as_rooms(skip_sid)
        if not include_self and flask.has_request_context() and hasattr(flask.request, "sid"):
            skip = skip | {flask.request.sid}
        data = args[0] if len(args) == 1 else (tuple(args) if args else None)
        if self.server is None and self._emitter is not None:
            if callback is not None:
                raise ValueError("an emit through the message queue alone cannot take a callback")
            target = to if to is not None else room
            emitter = self._emitter.of(namespace or "/")
            emitter = emitter.to(target) if target is not None else emitter
            emitter = emitter.except_(list(skip)) if skip else emitter
            emitter.emit(event, *args)
            return
        if callback is not None and flask.has_request_context() and hasattr(flask.request, "sid"):
            callback = self._in_context_of_sender(callback)
        self._srv().emit(event, data, to=to if to is not None else room, skip_sid=list(skip) or None,
                         namespace=namespace or "/", callback=callback)

    def _in_context_of_sender(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """An ack callback that runs in the request context of the handler that emitted."""
        sid, namespace = flask.request.sid, flask.request.namespace

        def run(*args: Any) -> Any:
            return self._handle_event(callback, "ack", namespace, sid, args)
        return run

    def send(self, data: Any, json: bool = False, namespace: str | None = None, to: Any = None,
             callback: Callable[..., Any] | None = None, include_self: bool = True,
             skip_sid: Any = None, **kwargs: Any) -> None:
        """Emit a ``message`` event (``json`` is accepted for compatibility)."""
        self.emit("message", data, namespace=namespace, to=to, callback=callback,
                  include_self=include_self, skip_sid=skip_sid, **kwargs)

    def call(self, event: str, *args: Any, to: Any = None, namespace: str | None = None,
             timeout: float = 60, **kwargs: Any) -> Any:
        """Emit to one client and return its acknowledgement (raises ``TimeoutError``)."""
        data = args[0] if len(args) == 1 else (tuple(args) if args else None)
        return self._srv().call(event, data, to=to, namespace=namespace or "/", timeout=timeout)

    def close_room(self, room: str, namespace: str | None = None) -> None:
        self._srv().close_room(room, namespace or "/")

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._srv().start_background_task(target, *args, **kwargs)

    def sleep(self, seconds: float = 0) -> None:
        self._srv().sleep(seconds)

    def run(self, app: flask.Flask, host: str = "127.0.0.1", port: int = 5000, debug: bool = False,
            use_reloader: bool | None = None, log_output: bool | None = None, **kwargs: Any) -> None:
        """Serve ``app`` with gevent and WebSocket support (and Werkzeug's reloader when debugging)."""
        if self.server is None:
            self.init_app(app)
        app.debug = debug
        if use_reloader is None:
            use_reloader = debug
        if log_output or (log_output is None and debug):
            logging.basicConfig(level=logging.INFO)
            kwargs.setdefault("log", "default")

        def run_server() -> None:
            self._wsgi_server = make_server(app, host, port, **kwargs)
            logger.info("geventsio serving on http://%s:%d", host, self._wsgi_server.server_port)
            self._wsgi_server.serve_forever()

        if use_reloader:
            from werkzeug._reloader import run_with_reloader
            run_with_reloader(run_server)
        else:
            run_server()

    def stop(self) -> None:
        """Disconnect every client and stop the server started by ``run``."""
        self._srv().shutdown()
        if self._wsgi_server is not None:
            self._wsgi_server.stop(timeout=1)
            self._wsgi_server = None

    def test_client(self, app: flask.Flask, namespace: str | None = None, query_string: str | None = None,
                    headers: dict | None = None, auth: Any = None,
                    flask_test_client: Any = None) -> "SocketIOTestClient":
        """A client that drives the real Engine.IO and Socket.IO layers through ``app``'s WSGI stack."""
        from .flask_testing import SocketIOTestClient
        return SocketIOTestClient(app, self, namespace=namespace, query_string=query_string,
                                  headers=headers, auth=auth, flask_test_client=flask_test_client)


class Namespace(_namespace.Namespace):
    """Class-based Flask handlers: ``on_<event>(self, *args)`` methods, run in a request context."""

    def __init__(self, namespace: str | None = None):
        super().__init__(namespace)
        self.socketio: SocketIO | None = None

    def trigger_event(self, event: str, *args: Any) -> Any:
        fn, _ = self.handler_for(event)
        if fn is None or self.socketio is None:
            return _namespace.NOT_HANDLED
        return self.socketio._wrap(event, self.namespace, fn)(*args)

    def emit(self, event: str, data: Any = None, room: Any = None,  # type: ignore[override]
             include_self: bool = True, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, **kwargs: Any) -> None:
        assert self.socketio is not None
        args = () if data is None else (data,)
        self.socketio.emit(event, *args, to=kwargs.pop("to", room), include_self=include_self,
                           namespace=namespace or self.namespace, callback=callback, **kwargs)

    def send(self, data: Any, room: Any = None, include_self: bool = True,  # type: ignore[override]
             namespace: str | None = None, callback: Callable[..., Any] | None = None,
             **kwargs: Any) -> None:
        assert self.socketio is not None
        self.socketio.send(data, to=kwargs.pop("to", room), include_self=include_self,
                           namespace=namespace or self.namespace, callback=callback)

    def close_room(self, room: str, namespace: str | None = None) -> None:
        assert self.socketio is not None
        self.socketio.close_room(room, namespace or self.namespace)


# -- context helpers, for use inside handlers -------------------------------


def _context() -> tuple[SocketIO, str, str]:
    if not flask.has_request_context() or not hasattr(flask.request, "sid"):
        raise RuntimeError("this helper works inside a Socket.IO handler; use socketio.emit elsewhere")
    return flask.current_app.extensions["socketio"], flask.request.sid, flask.request.namespace


def emit(event: str, *args: Any, to: Any = None, room: Any = None, include_self: bool = True,
         skip_sid: Any = None, namespace: str | None = None, callback: Callable[..., Any] | None = None,
         broadcast: bool = False, **kwargs: Any) -> None:
    """Emit from a handler: to the sender by default; ``broadcast=True`` or ``to=`` for others."""
    socketio, sid, nsp = _context()
    target = to if to is not None else room
    if target is None and not broadcast:
        target = sid
    socketio.emit(event, *args, to=target, include_self=include_self, skip_sid=skip_sid,
                  namespace=namespace or nsp, callback=callback)


def send(message: Any, json: bool = False, to: Any = None, room: Any = None, include_self: bool = True,
         skip_sid: Any = None, namespace: str | None = None, callback: Callable[..., Any] | None = None,
         broadcast: bool = False, **kwargs: Any) -> None:
    """Send a ``message`` event from a handler (to the sender unless ``broadcast`` or ``to``)."""
    emit("message", message, to=to, room=room, include_self=include_self, skip_sid=skip_sid,
         namespace=namespace, callback=callback, broadcast=broadcast)


def join_room(room: str, sid: str | None = None, namespace: str | None = None) -> None:
    socketio, req_sid, nsp = _context()
    socketio._srv().enter_room(sid or req_sid, room, namespace or nsp)


def leave_room(room: str, sid: str | None = None, namespace: str | None = None) -> None:
    socketio, req_sid, nsp = _context()
    socketio._srv().leave_room(sid or req_sid, room, namespace or nsp)


def close_room(room: str, namespace: str | None = None) -> None:
    socketio, _, nsp = _context()
    socketio.close_room(room, namespace or nsp)


def rooms(sid: str | None = None, namespace: str | None = None) -> list[str]:
    socketio, req_sid, nsp = _context()
    return socketio._srv().rooms(sid or req_sid, namespace or nsp)


def disconnect(sid: str | None = None, namespace: str | None = None, silent: bool = False) -> None:
    """Disconnect the sender (or ``sid``) from its namespace."""
    socketio, req_sid, nsp = _context()
    socketio._srv().disconnect(sid or req_sid, namespace or nsp)


def __getattr__(name: str) -> Any:
    # The test client imports werkzeug's test tools; load it only when asked for.
    if name == "SocketIOTestClient":
        from .flask_testing import SocketIOTestClient
        return SocketIOTestClient
    raise AttributeError(name)
