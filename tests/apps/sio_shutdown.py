"""A Socket.IO app for gunicorn tests: records each disconnect reason in $SHUTDOWN_LOG."""

import os

import geventsio

sio = geventsio.Server()


@sio.event
def connect(sid, environ):
    sio.emit("welcome", os.getpid(), to=sid)


@sio.event
def disconnect(sid, reason):
    with open(os.environ["SHUTDOWN_LOG"], "a") as log:
        log.write(f"{sid} {reason}\n")


app = geventsio.WSGIApp(sio)
