"""An Engine.IO echo server as a WSGI module, for running under gunicorn in tests."""

import geventsio
from geventsio import engine

server = engine.Server(ping_interval=0.5, ping_timeout=0.5)


@server.on("message")
def echo(sid, data):
    server.send(sid, data)


app = geventsio.WSGIApp(server, socketio_path="engine.io")
