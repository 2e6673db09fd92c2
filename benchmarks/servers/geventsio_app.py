"""The benchmark app on geventsio: ``python benchmarks/servers/geventsio_app.py PORT``."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import geventsio  # noqa: E402

from handlers import MAX_HTTP_BUFFER_SIZE, install, install_diagnostics, port_from_argv  # noqa: E402


def main():
    port = port_from_argv(sys.argv)
    sio = install(geventsio.Server(max_http_buffer_size=MAX_HTTP_BUFFER_SIZE))
    install_diagnostics(lambda: {"sessions": len(sio.eio.sessions), "connections": len(sio.connections),
                                 "sockets": len(sio.sockets)})
    app = geventsio.WSGIApp(sio)
    server = geventsio.make_server(app, "127.0.0.1", port)
    print(f"geventsio {geventsio.__version__} from {geventsio.__file__} listening on 127.0.0.1:{port}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
