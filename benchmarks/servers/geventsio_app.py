"""The benchmark app on geventsio: ``python benchmarks/servers/geventsio_app.py PORT``."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import geventsio  # noqa: E402

from handlers import (MAX_HTTP_BUFFER_SIZE, cluster_config, install, install_diagnostics,  # noqa: E402
                      port_from_argv)


def main():
    port = port_from_argv(sys.argv)
    cluster = cluster_config()
    manager = geventsio.RedisManager(cluster[0], key=cluster[1]) if cluster else None
    sio = install(geventsio.Server(client_manager=manager, max_http_buffer_size=MAX_HTTP_BUFFER_SIZE))
    if manager is not None and not manager.subscribed.wait(10):
        raise SystemExit("no Redis subscription within 10 s")
    install_diagnostics(lambda: {"sessions": len(sio.eio.sessions), "connections": len(sio.connections),
                                 "sockets": len(sio.sockets)})
    app = geventsio.WSGIApp(sio)
    server = geventsio.make_server(app, "127.0.0.1", port)
    print(f"geventsio {geventsio.__version__} from {geventsio.__file__} listening on 127.0.0.1:{port}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
