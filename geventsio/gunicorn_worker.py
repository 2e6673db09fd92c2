"""A gunicorn worker that serves geventsio with both transports.

    gunicorn -k geventsio.gunicorn_worker.GeventSocketIOWorker -w 1 module:app

(The stock ``geventwebsocket.gunicorn.workers.GeventWebSocketWorker`` works too;
this one adds TCP_NODELAY and the early notice of clients that leave a poll.)
"""

from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from .wsgi import Handler


class GunicornHandler(Handler, PyWSGIHandler):
    """geventsio's handler with gunicorn's access log and environ."""


class GeventSocketIOWorker(GeventPyWSGIWorker):
    wsgi_handler = GunicornHandler
