"""The Socket.IO side of the chat, authenticated by the Django session cookie.

Socket.IO handlers are not Django requests: no middleware runs for them. So
the ``connect`` handler does by hand what ``SessionMiddleware`` and
``AuthenticationMiddleware`` do for a view — load the session named by the
cookie the browser sent with the handshake, and the user it is logged in as —
with Django's own APIs, and refuses anonymous clients. Later handlers take
the user from the Socket.IO session instead of loading it again.

Import this module after ``django.setup()`` (``wsgi.py`` does).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import import_module
from typing import Any, Callable

from django.conf import settings
from django.contrib.auth import get_user, user_logged_out
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections, connections
from django.dispatch import receiver

import geventsio

from .chat.models import Message

ROOM = "lobby"
MAX_TEXT = 1000

# Same-origin only (geventsio's default; no cors_allowed_origins): the
# connection is authenticated by a cookie, so a page on another site must not
# be able to open it with the visitor's cookie (cross-site WebSocket hijacking).
sio = geventsio.Server()


def closes_db_connections(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Close the database connections ``handler`` opened, when it returns.

    Django keeps one connection per thread, and under gevent's monkey-patching
    (the gunicorn worker applies it) "thread" means greenlet. Around a view,
    Django's ``request_started``/``request_finished`` signals close it (with
    the default ``CONN_MAX_AGE = 0``); nothing does that for a Socket.IO
    handler, which runs on a greenlet geventsio reuses for other clients'
    handlers or lets go when the client is idle. Left open, every such
    greenlet would pin a connection (a file handle here; a server slot with
    PostgreSQL) until it is collected.
    """
    @functools.wraps(handler)
    def run(*args: Any) -> Any:
        close_old_connections()  # as at the start of a request: drop connections broken or too old
        try:
            return handler(*args)
        finally:
            connections.close_all()
    return run


def login_of_handshake(environ: dict) -> tuple[Any, str | None]:
    """The Django user logged in with the session cookie of this handshake, and that session's key.

    The user is ``AnonymousUser`` when there is no cookie or no valid login.
    The request is built from the handshake's environ, exactly as Django builds
    one for a view; ``get_user`` then applies Django's own checks (the session
    exists and has not expired, the user is active, the password has not
    changed since the login).
    """
    request = WSGIRequest(dict(environ))  # a copy: WSGIRequest rewrites some keys of the environ it gets
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(request), session_key


def session_room(session_key: str) -> str:
    """The room of every socket opened with one Django session (a digest: room names are not secret)."""
    return "session:" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


@sio.event
@closes_db_connections
def connect(sid: str, environ: dict, auth: Any) -> None:
    user, session_key = login_of_handshake(environ)
    if not user.is_authenticated:
        raise geventsio.ConnectionRefusedError("not logged in: log in at /login/ first")
    sio.save_session(sid, {"user_id": user.pk, "username": user.get_username()})
    sio.enter_room(sid, ROOM)
    sio.enter_room(sid, session_room(session_key))


@sio.event
@closes_db_connections
def chat(sid: str, text: Any) -> dict:
    """Save the message and send ``"user: text"`` to everyone in the room; the ack says if it went."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        return {"error": f"a message is 1 to {MAX_TEXT} characters"}
    me = sio.get_session(sid)
    message = Message.objects.create(user_id=me["user_id"], text=text.strip())
    sio.emit("chat", f"{me['username']}: {message.text}", to=ROOM)
    return {"ok": True}


@receiver(user_logged_out)
def disconnect_sockets_of_session(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out (in any tab) ends the Socket.IO connections opened with that session.

    Django sends this signal before it deletes the session, so its key is still known.
    """
    if request.session.session_key:
        sio.to(session_room(request.session.session_key)).disconnect_sockets()
