"""The README's nginx configuration ("Several processes"), run for real in front of two processes.

The ```nginx block is read out of README.md and only its addresses are
changed (``listen 80`` and the two ``server 127.0.0.1:500x`` lines), so what
the README shows is what is tested. It runs inside an nginx of the test's own
(``nginx -p TMP -c TMP/nginx.conf -g 'daemon off; ...'``: its own port, logs,
temp paths and pid file; the Debian package's service plays no part), in front
of two processes on ports of their own serving tests/apps/sio_cluster.py
(tests/apps/serve_cluster_app.py), which share rooms through the Redis at
127.0.0.1:6379 on a channel key of this test.

Clients: official socket.io-client 4.x in Node (tests/interop/proxy_clients.mjs),
polling-only and polling-then-WebSocket, and python-socketio's client, both
ways. ``ip_hash`` keys on the first three octets of a client's IPv4 address:
clients that all come from 127.0.0.1 all reach one process. So clients bind
source addresses of their own: 127.0.0.2 (same /24 as 127.0.0.1, hence the
same process) and 127.0.1.1 / 127.0.2.1 (other /24s, which between them reach
both processes). nginx's access log records, per request, the client address
and the process it went to: one address, one process, and both processes used.

Every client echoes with acknowledgements and receives two broadcasts to a room
with members on both processes exactly once; the servers report what nginx
told them (Host with its port, X-Forwarded-Proto, X-Forwarded-For). Stopped,
neither server has logged a request for a session it does not hold (the
"Session ID unknown" answer) nor refused anything, and each counted exactly the
sessions its clients saw. A second test adds a TLS listener to the same server
block: python-socketio's WebSocket, from an ``https://`` origin, must get through.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import gevent
import pytest
import requests
import socketio
from node_support import require_npm_packages, skip_or_fail
from redis_support import REDIS_URL, WAIT, Inbox, require_redis, unique_key, wait_subscribers

import geventsio

ROOT = Path(__file__).resolve().parent.parent
INTEROP_DIR = ROOT / "tests" / "interop"
SERVE_APP = ROOT / "tests" / "apps" / "serve_cluster_app.py"
# Where the README's example runs its processes and nginx; replaced by the test's ports.
README_BACKENDS = ("127.0.0.1:5001", "127.0.0.1:5002")
README_LISTEN = "listen 80;"
# 127.0.0.2 shares 127.0.0.1's /24; 127.0.1.1 and 127.0.2.1 are /24s of their own.
SAME_NET = ("127.0.0.1", "127.0.0.2")
OTHER_NETS = ("127.0.1.1", "127.0.2.1")


def find_nginx() -> str | None:
    # Debian installs it in /usr/sbin, which is not on an unprivileged user's PATH.
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


NGINX = find_nginx()
if NGINX is None:
    skip_or_fail("nginx is not installed (Debian: apt-get install nginx; .ci/run does)")
REDIS = require_redis()


def readme_nginx_block() -> str:
    """The one ```nginx block of README.md, unindented."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^[ \t]*```nginx\n(.*?)^[ \t]*```", text, re.S | re.M)
    assert len(blocks) == 1, f"README.md should hold exactly one ```nginx block, has {len(blocks)}"
    return textwrap.dedent(blocks[0])


def render_block(block: str, backend_ports: tuple[int, int], port: int,
                 tls: tuple[int, str, str] | None = None) -> str:
    """The README's block with the test's addresses in place of the example's, nothing else changed.

    ``tls``: (port, certificate, key) of a second, TLS listener in the same server
    block, as a deployment ending TLS at nginx would add.
    """
    listen = f"listen 127.0.0.1:{port};"
    if tls is not None:
        tls_port, cert, key = tls
        listen += (f"\n    listen 127.0.0.1:{tls_port} ssl;"
                   f"\n    ssl_certificate {cert};\n    ssl_certificate_key {key};")
    replacements = [(f"server {addr};", f"server 127.0.0.1:{p};")
                    for addr, p in zip(README_BACKENDS, backend_ports)]
    replacements.append((README_LISTEN, listen))
    for old, new in replacements:
        assert block.count(old) == 1, f"the README's nginx block should contain {old!r} once:\n{block}"
        block = block.replace(old, new)
    return block


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    """One tests/apps/serve_cluster_app.py process: its port, and on stop its log and stats."""

    def __init__(self, name: str, key: str) -> None:
        self.name = name
        env = dict(os.environ, GEVENTSIO_TEST_REDIS_URL=REDIS_URL, GEVENTSIO_TEST_REDIS_KEY=key)
        self.proc = subprocess.Popen([sys.executable, str(SERVE_APP), name], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._reader = gevent.spawn(self._read_log)
        with gevent.Timeout(WAIT, AssertionError(f"server {name} never printed its port")):
            line = self.proc.stdout.readline()
        assert line.strip().isdigit(), f"server {name} failed to start: {line!r}\n{self.log_text()}"
        self.port = int(line)
        self.stats: dict | None = None

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)

    def log_text(self) -> str:
        return "".join(self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
            lines = self.proc.stdout.read().strip().splitlines()
            self.stats = json.loads(lines[-1]) if lines else None
        self._reader.join(timeout=WAIT)


class Nginx:
    """An nginx of this test only, serving the rendered README block on a free port of 127.0.0.1."""

    def __init__(self, tmp: Path, block: str, port: int) -> None:
        self.tmp = tmp
        self.port = port
        self.access_log = tmp / "access.log"
        self.error_log = tmp / "error.log"
        self.url = f"http://127.0.0.1:{self.port}"
        conf = tmp / "nginx.conf"
        conf.write_text(self.config(block), encoding="utf-8")
        # -e: the log nginx writes before it has read its configuration (Debian's is /var/log/nginx).
        self.proc = subprocess.Popen(
            [NGINX, "-e", str(self.error_log), "-p", str(tmp), "-c", str(conf),
             "-g", f"daemon off; pid {tmp / 'nginx.pid'};"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        # The master logs "start worker process" once its listening socket is open.
        started = False
        with gevent.Timeout(WAIT, AssertionError(f"nginx did not start: {self.stderr}")):
            for line in self.proc.stderr:
                self.stderr.append(line)
                if "start worker process" in line:
                    started = True
                    break
        if not started:
            self.proc.wait(timeout=WAIT)
            pytest.fail(f"nginx exited ({self.proc.returncode}): {''.join(self.stderr)}")
        self._reader = gevent.spawn(lambda: self.stderr.extend(self.proc.stderr))

    def config(self, block: str) -> str:
        tmp = self.tmp
        temp_paths = "\n".join(f"    {kind}_temp_path {tmp / kind};"
                               for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # As root, nginx would run its worker as "nobody", who may not enter the tmp dir;
        # as anyone else the directive is ignored with a warning, so it is left out.
        user = (f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
                if os.geteuid() == 0 else "")
        return f"""{user}
worker_processes 1;
error_log {self.error_log} notice;
error_log stderr notice;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '$remote_addr $upstream_addr $status "$request"';
    access_log {self.access_log} upstreams;
{temp_paths}

{textwrap.indent(block, "    ")}
}}
"""

    def requests(self) -> list[tuple[str, str, int, str]]:
        """(client address, upstream address, status, request line) of every logged request."""
        found = []
        for line in self.access_log.read_text().splitlines():
            addr, upstream, status, request = line.split(" ", 3)
            found.append((addr, upstream, int(status), request.strip('"')))
        return found

    def stop(self, graceful: bool = True) -> None:
        """Stop nginx; gracefully, it first finishes (and logs) the requests under way."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT if graceful else signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=WAIT)


class Deployment:
    """The README's deployment: two processes sharing rooms through Redis, nginx in front.

    ``certificate``: (certificate, key) for a second listener, on TLS, in nginx's server block.
    """

    def __init__(self, tmp: Path, certificate: tuple[str, str] | None = None) -> None:
        self.key = unique_key()
        self.backends: list[Backend] = []
        self.nginx: Nginx | None = None
        try:
            self.backends = [Backend(name, self.key) for name in ("A", "B")]
            wait_subscribers(REDIS, self.key, 2)
            port = free_port()
            self.tls_port = free_port() if certificate else None
            block = render_block(readme_nginx_block(), tuple(b.port for b in self.backends), port,
                                 (self.tls_port, *certificate) if certificate else None)
            self.nginx = Nginx(tmp, block, port)
        except BaseException:
            self.stop()
            raise
        self.url = self.nginx.url
        self.tls_url = f"https://127.0.0.1:{self.tls_port}" if certificate else None
        self.by_upstream = {f"127.0.0.1:{b.port}": b.name for b in self.backends}
        self.by_pid = {b.proc.pid: b.name for b in self.backends}

    def server_of(self, where: dict) -> str:
        """The name of the process that answered "where"."""
        return self.by_pid[where["pid"]]

    def server_logs(self) -> str:
        """What the servers logged so far, for failure messages."""
        return "".join(backend.log_text() for backend in self.backends)

    def stop(self, graceful: bool = True) -> None:
        """Stop nginx, then the servers; each one even when stopping another failed."""
        parts = ([lambda: self.nginx.stop(graceful)] if self.nginx is not None else []) + [
            backend.stop for backend in self.backends]
        failures = []
        for stop in parts:
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - raised below, once every part is stopped
                failures.append(exc)
        if failures:
            raise failures[0]

    def stop_and_check(self, sessions: list[tuple[str, dict]]) -> None:
        """Stop everything, then check nginx's and the servers' logs against the sessions seen.

        ``sessions``: (client address, the server's "where" answer) of every client.
        """
        self.stop()
        server_of: dict[str, set] = {}
        for address, where in sessions:
            server_of.setdefault(address, set()).add(self.server_of(where))
        # nginx: the upstream of every request is the one its client address maps to.
        logged = self.nginx.requests()
        assert logged, "nginx logged no request"
        upstream_of: dict[str, set] = {}
        for addr, upstream, status, request in logged:
            upstream_of.setdefault(addr, set()).add(self.by_upstream.get(upstream, upstream))
            # 499: a client that disconnects drops its waiting poll, and nginx logs that.
            assert status in (101, 200) or (status == 499 and "transport=polling" in request), (
                addr, upstream, status, request)
        assert upstream_of == server_of, (upstream_of, server_of)
        # Closing WebSockets included: python-engineio sends Engine.IO's close packet,
        # then a close frame, which the server (in its closing handshake) still reads.
        errors = [line for line in self.nginx.error_log.read_text().splitlines()
                  if re.search(r"\[(error|crit|alert|emerg)\]", line)]
        assert not errors, errors
        # The servers: no request for a session held elsewhere (or nowhere), nothing refused,
        # and exactly the sessions the clients saw.
        for backend in self.backends:
            log = backend.log_text()
            for bad in ("Session ID unknown", "unknown session", "refused", "Traceback"):
                assert bad not in log, f"{bad!r} in the log of server {backend.name}:\n{log}"
            held = sum(1 for _, where in sessions if self.server_of(where) == backend.name)
            assert backend.stats["connects_by_namespace"].get("/", 0) == held, (backend.name, backend.stats)


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path)
    yield d
    d.stop(graceful=False)  # after a failure, clients may still be connected


@pytest.fixture
def tls_deployment(tmp_path, certificate):
    d = Deployment(tmp_path, certificate)
    yield d
    d.stop(graceful=False)


class SourceAddress(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections leave from a given local address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def python_client(url: str, upgrade: bool, inbox: Inbox, address: str = "127.0.0.1",
                  ca: str | None = None) -> socketio.Client:
    """python-socketio's client, connected; one that stays on polling leaves from ``address``.

    ``ca``: the certificate that an https URL's server must present.

    Its WebSocket (websocket-client) takes no local address, so an upgrading one
    comes from 127.0.0.1. That WebSocket sends ``Origin: <scheme>://127.0.0.1:<port>``,
    as a browser does: the server's same-origin check sees what nginx forwards.
    """
    session = requests.Session()
    session.trust_env = False  # no proxy or CA bundle from the environment for a loopback test
    if ca is not None:
        session.verify = ca  # python-engineio gives it to websocket-client too
    if not upgrade:
        session.mount("http://", SourceAddress(address))
    client = socketio.Client(reconnection=False, http_session=session)
    client.on("msg", inbox.add)
    client.connect(url, transports=["polling", "websocket"] if upgrade else ["polling"],
                   wait_timeout=WAIT)
    return client


def test_readme_block_is_the_one_rendered():
    block = readme_nginx_block()
    rendered = render_block(block, (6001, 6002), 6000)
    changed = [(a, b) for a, b in zip(block.splitlines(), rendered.splitlines()) if a != b]
    assert [b.strip() for _, b in changed] == [
        "server 127.0.0.1:6001;", "server 127.0.0.1:6002;", "listen 127.0.0.1:6000;"]
    for directive in ("ip_hash;", "proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                      'proxy_set_header Connection "upgrade";'):
        assert directive in block


def test_readme_read_timeout_outlasts_the_servers_quiet_time():
    """nginx cuts a proxied connection that stays silent for proxy_read_timeout.

    A waiting polling GET is answered, and a WebSocket hears a ping, every
    ping_interval; the timeout must leave room for that and for a slow pong.
    """
    m = re.search(r"proxy_read_timeout (\d+)s;", readme_nginx_block())
    assert m, "the README's block should set proxy_read_timeout in seconds"
    engine = geventsio.Server().eio
    assert int(m.group(1)) > engine.ping_interval + engine.ping_timeout


def connect_python(d: Deployment, url: str, upgrade: bool, address: str = "127.0.0.1",
                   ca: str | None = None):
    """A python-socketio client and its inbox, on the transport it asked for."""
    inbox = Inbox()
    client = python_client(url, upgrade, inbox, address, ca)
    want, got = "websocket" if upgrade else "polling", client.transport()
    if got != want:
        client.disconnect()
        pytest.fail(f"python-socketio is on {got}, not {want}; the servers logged:\n{d.server_logs()}")
    return client, inbox


def check_where(where: dict, address: str, transport: str, scheme: str, port: int) -> None:
    """The server holds the session on ``transport`` and got nginx's headers right."""
    assert where["transport"] == transport, (address, where)
    assert where["peer"] == "127.0.0.1", where  # the server's peer is nginx
    assert where["forwarded_for"] == address, where
    assert where["forwarded_proto"] == scheme, where
    assert where["host"] == f"127.0.0.1:{port}", where


def test_clients_through_readme_nginx(deployment):
    d = deployment
    require_npm_packages(INTEROP_DIR)
    token_py, token_node = f"from python {uuid.uuid4()}", f"from node {uuid.uuid4()}"
    # Python: polling from two /24s, and an upgrading client (from 127.0.0.1).
    py_specs = [(False, SAME_NET[0]), (False, OTHER_NETS[0]), (True, SAME_NET[0])]
    # Node: from every address, one client on polling and one upgrading to WebSocket.
    node_spec = [{"localAddress": a, "upgrade": up} for a in SAME_NET + OTHER_NETS for up in (False, True)]
    py_clients, py_inboxes, py_where = [], [], []
    try:
        for upgrade, address in py_specs:
            client, inbox = connect_python(d, d.url, upgrade, address)
            py_clients.append(client)
            py_inboxes.append(inbox)
        for n, client in enumerate(py_clients):
            assert client.call("join", "all", timeout=WAIT) is True
            for i in range(5):
                assert client.call("echo", {"n": n, "i": i}, timeout=WAIT) == {"n": n, "i": i}
            py_where.append(client.call("where", timeout=WAIT))

        node = subprocess.Popen(["node", str(INTEROP_DIR / "proxy_clients.mjs"), d.url,
                                 json.dumps(node_spec), token_node],
                                cwd=INTEROP_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            with gevent.Timeout(20, AssertionError("the Node clients never got ready")):
                first = node.stdout.readline()
            assert json.loads(first or "{}").get("type") == "ready", (first, node.stderr.read()[-3000:])
            # Every client of both languages is in "all" now: each side broadcasts once.
            node.stdin.write(token_py + "\n")
            node.stdin.flush()
            assert py_clients[0].call("bcast", ("all", token_py), timeout=WAIT) is True
            for inbox in py_inboxes:
                inbox.wait_for(token_py)
                inbox.wait_for(token_node)
            out, err = node.communicate(timeout=20)
        finally:
            if node.poll() is None:
                node.kill()
                node.communicate()
        report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        assert report.get("ok") is True and node.returncode == 0, (report, err[-3000:])
    finally:
        for client in py_clients:
            client.disconnect()

    # Every client got each broadcast exactly once.
    for inbox in py_inboxes:
        assert sorted(inbox.messages) == sorted([token_py, token_node]), inbox.messages
    for c in report["clients"]:
        assert sorted(c["received"]) == sorted([token_py, token_node]), c
    sessions = []
    for (upgrade, address), where in zip(py_specs, py_where):
        check_where(where, address, "websocket" if upgrade else "polling", "http", d.nginx.port)
        sessions.append((address, where))
    for c in report["clients"]:
        assert c["transport"] == ("websocket" if c["upgrade"] else "polling"), c
        check_where(c["where"], c["localAddress"], c["transport"], "http", d.nginx.port)
        sessions.append((c["localAddress"], c["where"]))
    # ip_hash: one address, one process; a /24 shares one; the four addresses reach both.
    server_of: dict[str, set] = {}
    for address, where in sessions:
        server_of.setdefault(address, set()).add(d.server_of(where))
    assert all(len(names) == 1 for names in server_of.values()), server_of
    assert server_of[SAME_NET[0]] == server_of[SAME_NET[1]], f"ip_hash keys on the /24: {server_of}"
    assert set().union(*server_of.values()) == {"A", "B"}, f"one process got everybody: {server_of}"
    d.stop_and_check(sessions)


def test_tls_ended_at_nginx(tls_deployment, certificate):
    """The same block behind ``listen ... ssl``: a WebSocket from an https origin must pass."""
    d = tls_deployment
    clients = []
    try:
        for upgrade in (False, True):
            client, _ = connect_python(d, d.tls_url, upgrade, ca=certificate[0])
            clients.append(client)
        where = []
        for n, client in enumerate(clients):
            assert client.call("echo", {"n": n}, timeout=WAIT) == {"n": n}
            where.append(client.call("where", timeout=WAIT))
    finally:
        for client in clients:
            client.disconnect()
    for upgrade, w in zip((False, True), where):
        check_where(w, "127.0.0.1", "websocket" if upgrade else "polling", "https", d.tls_port)
    d.stop_and_check([("127.0.0.1", w) for w in where])
