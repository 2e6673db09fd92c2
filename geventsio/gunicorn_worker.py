"""A gunicorn worker that serves geventsio with both transports.

    gunicorn -k geventsio.gunicorn_worker.GeventSocketIOWorker -w 1 module:app

(The stock ``geventwebsocket.gunicorn.workers.GeventWebSocketWorker`` works too;
this one adds TCP_NODELAY, the early notice of clients that leave a poll, and
a graceful shutdown on SIGTERM.)
"""

from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from .engine.server import shutdown_all
from .wsgi import Handler, close_idle_connections


class GunicornHandler(Handler, PyWSGIHandler):
    """geventsio's handler with gunicorn's access log and environ."""


class GeventSocketIOWorker(GeventPyWSGIWorker):
    """gunicorn's gevent worker with geventsio's handler.

    On SIGTERM (a restart or scale-down) gunicorn stops accepting and waits
    ``graceful_timeout`` for open requests; WebSocket and parked polling
    requests would only end when killed at that deadline. This worker also
    shuts down every geventsio server in the process: clients get what was
    queued for them and a close, ``disconnect`` handlers run with reason
    ``"server shutting down"``, and the worker exits as soon as that is done.
    """

    wsgi_handler = GunicornHandler

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # A signal handler must not block: the shutdown runs in its own greenlet.
        gevent.spawn(self._shut_down, max(0.0, self.cfg.graceful_timeout - 1))

    @staticmethod
    def _shut_down(timeout: float) -> None:
        shutdown_all(timeout)
        # Then the kept-alive connections, which would hold the worker until
        # their keepalive_timeout (polling clients collected their close first).
        close_idle_connections()
