"""tests/apps/sio_cluster.py served by one process on a port of its own (tests/test_nginx.py).

    GEVENTSIO_TEST_REDIS_URL=... GEVENTSIO_TEST_REDIS_KEY=... python serve_cluster_app.py NAME

Listens on 127.0.0.1 at a port the kernel picks and prints it on stdout once it
listens. Logs at INFO, access log included, on stderr, each line starting with
NAME. On SIGTERM it stops, prints ``sio.stats()`` as one JSON line on stdout
and exits.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import geventsio  # noqa: E402
from apps.sio_cluster import app, sio  # noqa: E402


def main() -> None:
    name = sys.argv[1]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"{name} %(levelname)s %(name)s: %(message)s")
    server = geventsio.make_server(app, "127.0.0.1", 0, log=sys.stderr)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    server.start()
    print(server.server_port, flush=True)
    server.serve_forever()
    print(json.dumps(sio.stats()), flush=True)
    sio.shutdown(timeout=0)


if __name__ == "__main__":
    main()
