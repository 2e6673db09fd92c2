"""Shared fixtures: real servers on port 0 inside the test process.

gevent patches the standard library first, so blocking clients used by the tests
(http.client, websocket-client, subprocess) cooperate with the server greenlets.
"""

from gevent import monkey

monkey.patch_all()

import dataclasses  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import pytest  # noqa: E402

import geventsio  # noqa: E402
from geventsio import engine  # noqa: E402


@dataclasses.dataclass
class RunningServer:
    """A geventsio app served on 127.0.0.1 at an ephemeral port."""

    server: Any  # the engine.Server (or Socket.IO Server) behind the app
    wsgi_server: Any
    port: int
    path: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def endpoint(self, query: str = "EIO=4&transport=polling") -> str:
        """The path and query of one Engine.IO request, for example ``/engine.io/?EIO=4&...``."""
        return f"/{self.path}/?{query}"


@pytest.fixture
def serve_app() -> Iterator[Callable[..., RunningServer]]:
    """Factory: serve_app(server, path="engine.io", **wsgi_app_options) -> RunningServer."""
    running: list[RunningServer] = []

    def start(server: Any, path: str = "engine.io", **options: Any) -> RunningServer:
        app = geventsio.WSGIApp(server, socketio_path=path, **options)
        wsgi_server = geventsio.make_server(app, "127.0.0.1", 0)
        wsgi_server.start()
        r = RunningServer(server, wsgi_server, wsgi_server.server_port, path)
        running.append(r)
        return r

    yield start
    for r in running:
        r.wsgi_server.stop(timeout=1)
        r.server.shutdown(timeout=0.5)


@pytest.fixture
def engine_server(serve_app) -> Callable[..., RunningServer]:
    """Factory: engine_server(**engine.Server options) -> RunningServer on path /engine.io/.

    By default the server echoes every message back to its sender, as the
    official conformance suite expects.
    """

    def start(echo: bool = True, **options: Any) -> RunningServer:
        srv = engine.Server(**options)
        if echo:
            srv.on("message", lambda sid, data: srv.send(sid, data))
        return serve_app(srv, path="engine.io")

    return start


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """(certificate, key) PEM files of a self-signed certificate for 127.0.0.1, valid for a day."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)
