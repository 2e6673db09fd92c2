"""A gunicorn worker that serves geventsio with both transports.

    gunicorn -k geventsio.gunicorn_worker.GeventSocketIOWorker -w 4 module:app

(The stock ``geventwebsocket.gunicorn.workers.GeventWebSocketWorker`` works too
with one worker; this one adds TCP_NODELAY, the early notice of clients that
leave a poll, and, with several workers, session routing: a request that
reaches a worker which does not own its session is handed to the owner, so
long-polling works without a sticky load balancer. See ``geventsio.worker_routing``.)

The workers of one master meet in ``$TMPDIR/geventsio-<uid>-<master pid>``,
or in ``$GEVENTSIO_WORKER_DIR``; ``GEVENTSIO_WORKER_ROUTING=0`` turns routing off.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

from .worker_routing import WorkerRouter, default_directory
from .wsgi import Handler


class GunicornHandler(Handler, PyWSGIHandler):
    """geventsio's handler with gunicorn's access log and environ."""


class GeventSocketIOWorker(GeventPyWSGIWorker):
    wsgi_handler = GunicornHandler
    router: WorkerRouter | None = None

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
