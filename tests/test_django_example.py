"""End to end: examples/django_chat under real gunicorn with the geventsio worker.

The example's SQLite database lives in a temporary folder: it is migrated and
given two users by the example's own manage.py, then gunicorn serves
``examples.django_chat.wsgi:application`` on a free port. The tests log in
through Django's login form (CSRF token and all) with ``requests``, and connect
python-socketio clients carrying the session cookie, as a browser would; the
last test runs the page itself in headless Chromium (skipped without it, as in
tests/test_browser_chat.py).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import gevent
import pytest
import requests
import socketio
import websocket
from gevent.event import AsyncResult, Event
from node_support import require_npm_packages, run_node_report, skip_or_fail

pytest.register_assert_rewrite("sio_support")  # before its import below
from sio_support import TIMEOUT, Inbox, disconnect_flushed  # noqa: E402

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "django_chat"
MANAGE = EXAMPLE / "manage.py"
WORKER = "geventsio.gunicorn_worker.GeventSocketIOWorker"
USERS = {"alice": "alice-pass-4711", "bob": "bob-pass-4712"}
REFUSAL = "not logged in: log in at /login/ first"
START_S = 20  # until gunicorn listens
BROWSER_DIR = ROOT / "tests" / "browser"
CHROMIUM = "/usr/bin/chromium"


@dataclasses.dataclass
class Site:
    url: str
    worker_pid: int
    database: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """The example served by gunicorn (one worker)."""
    tmp = tmp_path_factory.mktemp("django_chat")
    env = dict(os.environ, DJANGO_CHAT_DB=str(tmp / "db.sqlite3"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    create_users = "; ".join(
        f"User.objects.create_user({name!r}, password={password!r})" for name, password in USERS.items())
    for args in (["migrate", "-v0"],
                 ["shell", "-c", f"from django.contrib.auth.models import User; {create_users}"]):
        subprocess.run([sys.executable, str(MANAGE), *args], env=env, cwd=ROOT, check=True,
                       capture_output=True, timeout=60)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", WORKER, "-w", "1", "-b", "127.0.0.1:0",
         "--graceful-timeout", "2", "examples.django_chat.wsgi:application"],
        env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    port = worker_pid = None
    with gevent.Timeout(START_S, AssertionError("gunicorn did not start")):
        for line in proc.stderr:
            seen.append(line)
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
            m = re.search(r"Booting worker with pid: (\d+)", line)
            if m:
                worker_pid = int(m.group(1))
                break
    assert port is not None and worker_pid is not None, "".join(seen)
    drain = gevent.spawn(lambda: seen.extend(proc.stderr))  # keep the pipe from filling up
    yield Site(f"http://127.0.0.1:{port}", worker_pid, tmp / "db.sqlite3")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a failed test left a client connected
        proc.kill()
        proc.wait()
    drain.join(timeout=5)
    # Nothing in the example may fail loudly while the tests pass.
    assert not [line for line in seen if "Traceback" in line], "".join(seen)


def log_in(site: Site, username: str) -> requests.Session:
    """Log in through Django's login form, as a browser does: GET it for the CSRF token, POST it."""
    http = requests.Session()
    page = http.get(f"{site.url}/login/", timeout=TIMEOUT)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = http.post(f"{site.url}/login/", timeout=TIMEOUT, allow_redirects=False,
                       data={"username": username, "password": USERS[username],
                             "csrfmiddlewaretoken": token})
    assert answer.status_code == 302 and answer.headers["Location"] == "/", answer.text
    assert "sessionid" in http.cookies
    return http


def cookie_header(http: requests.Session) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in http.cookies.items())}


@pytest.fixture
def clients() -> Iterator[list[socketio.Client]]:
    made: list[socketio.Client] = []
    yield made
    for client in made:
        try:
            disconnect_flushed(client)
        except Exception:  # pragma: no cover - best effort cleanup
            pass


def connect(site: Site, clients: list, http: requests.Session,
            transports: list[str] | None = None) -> socketio.Client:
    """A python-socketio client connected with ``http``'s cookies."""
    return connect_with(site, clients, cookie_header(http), transports)


def connect_with(site: Site, clients: list, headers: dict[str, str],
                 transports: list[str] | None = None) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    clients.append(client)
    client.connect(site.url, headers=headers, transports=transports, wait_timeout=TIMEOUT)
    return client


def test_logged_in_users_chat_under_their_django_names(site, clients):
    alice = connect(site, clients, log_in(site, "alice"), transports=["polling"])
    bob = connect(site, clients, log_in(site, "bob"), transports=["websocket"])
    alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)

    assert alice.call("chat", "  hello bob ", timeout=TIMEOUT) == {"ok": True}
    assert bob_inbox.wait_for("chat") == [("alice: hello bob",)]
    assert bob.call("chat", "hi alice", timeout=TIMEOUT) == {"ok": True}
    assert alice_inbox.wait_for("chat", 2) == [("alice: hello bob",), ("bob: hi alice",)]

    # A message the handler refuses is answered in the acknowledgement and never broadcast.
    assert "error" in bob.call("chat", "x" * 1001, timeout=TIMEOUT)
    assert bob.call("chat", "still here", timeout=TIMEOUT) == {"ok": True}
    assert [line for (line,) in alice_inbox.wait_for("chat", 3)][-1] == "bob: still here"


def refusal_of(site: Site, headers: dict[str, str]) -> dict:
    """Connect with ``headers`` and return the payload of the server's CONNECT_ERROR."""
    client = socketio.Client(reconnection=False)
    refused: AsyncResult = AsyncResult()
    client.on("connect_error", refused.set)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(site.url, headers=headers, wait_timeout=TIMEOUT)
    return refused.get(timeout=TIMEOUT)


def test_clients_without_a_valid_login_are_refused(site):
    assert refusal_of(site, {}) == {"message": REFUSAL}
    assert refusal_of(site, {"Cookie": "sessionid=not-a-session"}) == {"message": REFUSAL}
    assert refusal_of(site, {"Cookie": "sessionid=" + "a" * 32}) == {"message": REFUSAL}


def test_only_pages_of_the_same_origin_may_connect_with_the_cookie(site, clients):
    # A browser sends the cookie with a handshake from any site's page, and says which page in
    # Origin: another site's page must not get a connection in the user's name.
    http = log_in(site, "alice")
    same_site = connect_with(site, clients, {**cookie_header(http), "Origin": site.url})
    assert same_site.call("chat", "from the same origin", timeout=TIMEOUT) == {"ok": True}
    evil = "https://evil.example"

    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError, match="403"):
        client.connect(site.url, headers={**cookie_header(http), "Origin": evil}, transports=["polling"],
                       wait_timeout=TIMEOUT)
    # Over WebSocket the same 403, before any 101.
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://{site.url[7:]}/socket.io/?EIO=4&transport=websocket",
                                    origin=evil, cookie=cookie_header(http)["Cookie"], timeout=TIMEOUT)
    assert refused.value.status_code == 403


def test_django_views_work_beside_socketio(site, clients):
    http = log_in(site, "alice")
    alice = connect(site, clients, http)
    assert alice.call("chat", "saved by the ORM", timeout=TIMEOUT) == {"ok": True}

    listed = http.get(f"{site.url}/messages/", timeout=TIMEOUT)
    assert listed.status_code == 200
    assert listed.json()["user"] == "alice"
    assert listed.json()["messages"][-1] == "alice: saved by the ORM"

    page = http.get(f"{site.url}/", timeout=TIMEOUT)
    assert page.status_code == 200 and "<b>alice</b>" in page.text
    assert "alice: saved by the ORM" in page.text

    anonymous = requests.get(f"{site.url}/", timeout=TIMEOUT, allow_redirects=False)
    assert anonymous.status_code == 302 and anonymous.headers["Location"] == "/login/?next=/"


def test_chat_page_loads_the_official_client_bundle(site):
    require_npm_packages(EXAMPLE)  # skips without npm (fails under CI)
    page = log_in(site, "bob").get(f"{site.url}/", timeout=TIMEOUT).text
    src = re.search(r'<script src="([^"]+)"></script>', page).group(1)
    bundle = requests.get(site.url + src, timeout=TIMEOUT)
    assert bundle.status_code == 200, src
    assert "javascript" in bundle.headers["Content-Type"] and len(bundle.content) > 10_000


def test_logging_out_disconnects_the_sockets_of_that_session(site, clients):
    http = log_in(site, "bob")
    other = connect(site, clients, log_in(site, "bob"))  # bob in a second browser: stays connected
    tab1 = connect(site, clients, http, transports=["websocket"])
    tab2 = connect(site, clients, http, transports=["polling"])
    session_id = http.cookies["sessionid"]
    gone = {tab1: Event(), tab2: Event()}
    for tab, event in gone.items():
        tab.on("disconnect", event.set)

    out = http.post(f"{site.url}/logout/", timeout=TIMEOUT, allow_redirects=False,
                    data={"csrfmiddlewaretoken": http.cookies["csrftoken"]})
    assert out.status_code == 302 and out.headers["Location"] == "/login/"
    for event in gone.values():
        assert event.wait(TIMEOUT), "the logout did not disconnect the socket"

    assert other.connected and other.call("chat", "other browser", timeout=TIMEOUT) == {"ok": True}
    # The cookie of the ended session no longer opens a connection.
    assert "sessionid" not in http.cookies
    assert refusal_of(site, {"Cookie": f"sessionid={session_id}"}) == {"message": REFUSAL}


def open_database_files(pid: int, database: Path) -> list[str]:
    """The worker's open file descriptors on the SQLite database (its connections)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(database)):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_socketio_handlers_leave_no_database_connection_open(site, clients):
    # Each handler runs on a greenlet of its own, which Django sees as a thread
    # with its own connection: the example closes it when the handler returns.
    users = [connect(site, clients, log_in(site, name)) for name in USERS]
    for n in range(5):
        calls = [gevent.spawn(user.call, "chat", f"burst {n}", timeout=TIMEOUT) for user in users]
        assert [call.get(timeout=TIMEOUT) for call in calls] == [{"ok": True}] * len(users)
    assert open_database_files(site.worker_pid, site.database) == []


def test_two_browsers_chat_and_a_logout_ends_the_other_tab(site):
    """The page itself, in headless Chromium: tests/browser/django_chat_driver.mjs."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"the browser test needs {CHROMIUM} (apt-get install -y chromium)")
    require_npm_packages(BROWSER_DIR)
    require_npm_packages(EXAMPLE)
    users = [f"{name}:{password}" for name, password in USERS.items()]
    report = run_node_report(["node", "django_chat_driver.mjs", site.url + "/", *users], cwd=BROWSER_DIR,
                             env={}, timeout=60)
    assert report["otherUserStillConnected"] is True
