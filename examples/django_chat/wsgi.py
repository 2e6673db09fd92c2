"""The WSGI application: Django, with Socket.IO at /socket.io/ in front of it.

    gunicorn -k geventsio.gunicorn_worker.GeventSocketIOWorker -w 1 -b 127.0.0.1:8000 \
        examples.django_chat.wsgi:application

The geventsio worker monkey-patches the process with gevent before it imports
this module: Django's code runs unchanged, each request and each Socket.IO
handler on its own greenlet.
"""

import os
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_chat.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

import geventsio  # noqa: E402

django_application = get_wsgi_application()  # runs django.setup(): models can be imported after it

from .sockets import sio  # noqa: E402

# The official browser bundle, installed by `npm ci --prefix examples/django_chat`.
CLIENT_DIST = Path(__file__).resolve().parent / "node_modules" / "socket.io-client" / "dist"

application = geventsio.WSGIApp(
    sio, django_application, static_files={"/vendor/socket.io-client": str(CLIENT_DIST)})
