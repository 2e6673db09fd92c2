"""A small multi-room chat on geventsio's Flask-SocketIO API.

Run it with ``python app.py`` (HOST and PORT from the environment, default
127.0.0.1:5000) after ``npm ci`` in this folder, which brings the official
socket.io-client browser bundle that the page loads.

All state lives in this process's memory, in the four dicts below: restart
the server and it starts empty; the browsers reconnect on their own and log
back in with their nickname and rooms.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from flask import Flask, abort, render_template, request, send_from_directory  # noqa: E402

from geventsio.flask import SocketIO, disconnect, emit, join_room, leave_room, rooms  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIST = os.path.join(HERE, "node_modules", "socket.io-client", "dist")

LOBBY = "lobby"
NICK_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,19}")
ROOM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,23}")
MAX_TEXT = 2000
MAX_ROOMS_PER_USER = 20
HISTORY = 50  # messages a room remembers for people who join later

app = Flask(__name__)
socketio = SocketIO(app)


@dataclass
class User:
    nick: str
    token: str  # a random secret from the browser tab: lets it reclaim its nickname on reconnect


users: dict[str, User] = {}  # socket sid -> user
nicks: dict[str, str] = {}  # nickname.lower() -> socket sid
members: dict[str, set[str]] = {LOBBY: set()}  # room -> sids (the lobby always exists)
history: dict[str, deque] = {}  # room -> its last HISTORY messages


# -- HTTP --------------------------------------------------------------------


@app.route("/")
def index():
    return render_template("index.html")


@app.route("/vendor/socket.io-client/<path:filename>")
def socketio_client(filename):
    """The official browser bundle, from node_modules (never under /socket.io/: that is the endpoint)."""
    if not os.path.isdir(CLIENT_DIST):
        abort(500, description="socket.io-client is missing: run `npm ci` in examples/flask_chat")
    return send_from_directory(CLIENT_DIST, filename)


# -- helpers (called inside Socket.IO handlers) ------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def my_rooms() -> list[str]:
    """The chat rooms the current client is in (Socket.IO also puts each client in a room of its own)."""
    return sorted(r for r in rooms() if r in members)


def room_list() -> list[dict]:
    names = sorted(members, key=lambda r: (r != LOBBY, r))
    return [{"name": r, "count": len(members[r])} for r in names]


def member_nicks(room: str) -> list[str]:
    return sorted((users[s].nick for s in members.get(room, ()) if s in users), key=str.lower)


def room_state(room: str) -> dict:
    return {"name": room, "members": member_nicks(room), "history": list(history.get(room, ()))}


def post(room: str, text: str, sender: str | None = None) -> dict:
    """Send a message to a room (``sender`` None: a system notice) and remember it."""
    msg = {"id": secrets.token_hex(8), "room": room, "from": sender, "text": text, "ts": now_ms()}
    history.setdefault(room, deque(maxlen=HISTORY)).append(msg)
    socketio.emit("chat", msg, to=room)
    return msg


def members_changed(room: str) -> None:
    socketio.emit("members", {"room": room, "members": member_nicks(room)}, to=room)


def forget_empty(room: str) -> None:
    if room != LOBBY and not members.get(room):
        members.pop(room, None)
        history.pop(room, None)


def enter(room: str, quiet: bool = False) -> None:
    sid = request.sid
    join_room(room)
    members.setdefault(room, set()).add(sid)
    if not quiet:
        post(room, f"{users[sid].nick} joined #{room}")
    members_changed(room)


def drop(sid: str, room: str, notice: str | None) -> None:
    """Take ``sid`` out of ``room``'s member list (the caller leaves the Socket.IO room)."""
    members.get(room, set()).discard(sid)
    if notice:
        post(room, notice)
    members_changed(room)
    forget_empty(room)


def forget_user(sid: str, notice: str | None) -> None:
    user = users.pop(sid, None)
    if user is None:
        return
    if nicks.get(user.nick.lower()) == sid:
        del nicks[user.nick.lower()]
    for room in [r for r, sids in members.items() if sid in sids]:
        drop(sid, room, notice and notice.format(nick=user.nick, room=room))
    socketio.emit("rooms", room_list())


def current_user() -> User | None:
    return users.get(request.sid)


def error(text: str) -> dict:
    return {"ok": False, "error": text}


# -- Socket.IO handlers --------------------------------------------------------


@socketio.on("connect")
def on_connect():
    emit("rooms", room_list())


@socketio.on("login")
def on_login(data):
    """``{nick, token, rooms?, resume?}`` -> ``{ok, nick, joined: [room state], rooms}``.

    ``resume`` is a reconnecting tab: it joins its rooms again without notices,
    and may take its nickname back from its own stale connection (same token).
    """
    data = data if isinstance(data, dict) else {}
    nick = str(data.get("nick", "")).strip()
    token = str(data.get("token", ""))
    sid = request.sid
    if not NICK_RE.fullmatch(nick):
        return error("A nickname is 1-20 letters, digits, '_', '.' or '-' (starting with a letter or digit).")
    if len(token) < 16:
        return error("Missing session token; reload the page.")
    if sid in users:
        if users[sid].nick != nick:
            return error("Already logged in.")
    else:
        holder = nicks.get(nick.lower())
        if holder is not None:
            if users[holder].token != token:
                return error(f"“{nick}” is taken, pick another nickname.")
            forget_user(holder, None)  # our own previous connection, not yet timed out
            disconnect(holder)
        users[sid] = User(nick, token)
        nicks[nick.lower()] = sid

    wanted = [r for r in data.get("rooms") or [] if isinstance(r, str) and ROOM_RE.fullmatch(r)]
    for room in (wanted or [LOBBY])[:MAX_ROOMS_PER_USER]:
        if sid not in members.get(room, ()):
            enter(room, quiet=bool(data.get("resume")))
    socketio.emit("rooms", room_list())
    return {"ok": True, "nick": nick, "joined": [room_state(r) for r in my_rooms()], "rooms": room_list()}


@socketio.on("join")
def on_join(data):
    """``{room}`` -> ``{ok, room: room state}``; joining a room that does not exist creates it."""
    if current_user() is None:
        return error("Log in first.")
    room = str((data or {}).get("room", "")).strip().lstrip("#").lower()
    if not ROOM_RE.fullmatch(room):
        return error("A room name is 1-24 lowercase letters, digits, '_' or '-'.")
    if room not in my_rooms():
        if len(my_rooms()) >= MAX_ROOMS_PER_USER:
            return error(f"You can be in at most {MAX_ROOMS_PER_USER} rooms.")
        enter(room)
        socketio.emit("rooms", room_list())
    return {"ok": True, "room": room_state(room)}


@socketio.on("leave")
def on_leave(data):
    user = current_user()
    room = str((data or {}).get("room", ""))
    if user is None or room not in my_rooms():
        return error("You are not in that room.")
    leave_room(room)
    drop(request.sid, room, f"{user.nick} left #{room}")
    socketio.emit("rooms", room_list())
    return {"ok": True}


@socketio.on("chat")
def on_chat(data):
    """``{room, text}``: a message to everyone in the room, the sender included."""
    user = current_user()
    data = data if isinstance(data, dict) else {}
    room, text = str(data.get("room", "")), str(data.get("text", "")).strip()
    if user is None or room not in my_rooms():
        return error("Join the room first.")
    if not text or len(text) > MAX_TEXT:
        return error(f"A message is 1-{MAX_TEXT} characters.")
    post(room, text, sender=user.nick)
    return {"ok": True}


@socketio.on("dm")
def on_dm(data):
    """``{to, text}``: a direct message; the sender gets it back in the acknowledgement."""
    user = current_user()
    data = data if isinstance(data, dict) else {}
    to, text = str(data.get("to", "")), str(data.get("text", "")).strip()
    if user is None:
        return error("Log in first.")
    target = nicks.get(to.lower())
    if target is None:
        return error(f"{to} is offline.")
    if target == request.sid:
        return error("That's you.")
    if not text or len(text) > MAX_TEXT:
        return error(f"A message is 1-{MAX_TEXT} characters.")
    msg = {"id": secrets.token_hex(8), "from": user.nick, "to": users[target].nick, "text": text,
           "ts": now_ms()}
    emit("dm", msg, to=target)
    return {"ok": True, "message": msg}


@socketio.on("typing")
def on_typing(data):
    """``{room, typing}``: relayed to the others in the room."""
    user = current_user()
    data = data if isinstance(data, dict) else {}
    room = str(data.get("room", ""))
    if user is not None and room in my_rooms():
        emit("typing", {"room": room, "nick": user.nick, "typing": bool(data.get("typing"))},
             to=room, include_self=False)


@socketio.on("disconnect")
def on_disconnect(reason=None):
    forget_user(request.sid, "{nick} went offline")


if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    print(f"geventsio chat on http://{host}:{port}", flush=True)
    socketio.run(app, host=host, port=port)
