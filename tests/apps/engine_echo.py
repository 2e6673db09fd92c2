"""An Engine.IO echo server as a WSGI module, for running under gunicorn in tests.

Beside it, an app of its own: ``/environ`` answers with what it was given,
``/ws-echo`` is a plain WebSocket (gevent-websocket's ``wsgi.websocket``).
"""

import json

import geventsio
from geventsio import engine

server = engine.Server(ping_interval=0.5, ping_timeout=0.5)


@server.on("message")
def echo(sid, data):
    server.send(sid, data)


def beside(environ, start_response):
    if environ["PATH_INFO"] == "/ws-echo":
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"not a websocket"]
        while True:
            message = ws.receive()
            if message is None:
                return []
            ws.send(message)
    seen = {key: environ.get(key) for key in ("RAW_URI", "PATH_INFO", "QUERY_STRING", "HTTP_X_MULTI")}
    seen["has_gunicorn_sock"] = "gunicorn.sock" in environ
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


app = geventsio.WSGIApp(server, beside, socketio_path="engine.io")
