"""A gunicorn worker that serves geventsio with both transports.

    gunicorn -k geventsio.gunicorn_worker.GeventSocketIOWorker -w 4 module:app

(The stock ``geventwebsocket.gunicorn.workers.GeventWebSocketWorker`` works too
with one worker; this one adds TCP_NODELAY, the early notice of clients that
leave a poll, a graceful shutdown on SIGTERM, and, with several workers, session
routing: a request that reaches a worker which does not own its session is
handed to the owner, so long-polling works without a sticky load balancer. See
``geventsio.worker_routing``.)

The workers of one master meet in ``$TMPDIR/geventsio-<uid>-<master pid>``,
or in ``$GEVENTSIO_WORKER_DIR``; ``GEVENTSIO_WORKER_ROUTING=0`` turns routing off.
"""

from __future__ import annotations

import os
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

from .engine.server import shutdown_all
from .worker_routing import WorkerRouter, default_directory
from .wsgi import Handler, close_idle_connections


class GunicornHandler(Handler, PyWSGIHandler):
    """geventsio's handler with gunicorn's access log and environ."""

    def get_environ(self) -> dict:
        # geventsio's handler builds the environ itself (not through
        # PyWSGIHandler.get_environ): gunicorn's two keys are added here.
        environ = super().get_environ()
        environ["gunicorn.sock"] = self.socket
        environ["RAW_URI"] = self.path
        return environ


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
    router: WorkerRouter | None = None

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

    def run(self) -> None:
        if os.environ.get("GEVENTSIO_WORKER_ROUTING", "1") != "0":
            if self.cfg.is_ssl:
                if self.cfg.workers > 1:
                    self.log.warning("geventsio: no session routing between workers under gunicorn's TLS; "
                                     "use a sticky load balancer (or terminate TLS in front)")
            else:
                self.router = WorkerRouter(default_directory(self.ppid))
                self.server_class = self._routed_server
        try:
            super().run()
        finally:
            if self.router is not None:
                self.router.close()

    def _routed_server(self, *args: Any, **kwargs: Any) -> PyWSGIServer:
        """Gunicorn's server for one listening socket, with this worker's router attached."""
        server = RoutedPyWSGIServer(*args, **kwargs)
        server.router = self.router
        self.router.start(server)  # the first listener serves the connections handed over
        return server


class RoutedPyWSGIServer(PyWSGIServer):
    """Gunicorn's gevent server; when it stops accepting, its worker stops taking hand-overs.

    Closing the router then (not when the worker exits) removes its socket before
    the graceful shutdown, which the master may end with SIGKILL.
    """

    router: WorkerRouter

    def close(self) -> None:
        self.router.close()
        super().close()
