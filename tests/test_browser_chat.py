"""End to end: the Flask chat example in headless Chromium, across a server restart.

The example app runs as a subprocess on a free port; ``tests/browser/chat_driver.mjs``
drives two browser pages through playwright-core. When the driver prints
READY_FOR_RESTART this test kills the server, starts it again on the same
port and answers RESTARTED on the driver's stdin; the pages must show their
reconnect banner, reconnect by themselves and keep chatting. A second scenario
checks that closing a tab drops that user from the others' member lists (the
app's Flask ``disconnect`` handler).

Needs Debian's chromium at /usr/bin/chromium (without it the test is skipped,
except under CI, where it fails); the npm packages of tests/browser and of the
example are installed on first use.
Screenshots go to pytest's tmp_path, or to $GEVENTSIO_BROWSER_OUTPUT if set.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from node_support import require_npm_packages, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "flask_chat" / "app.py"
BROWSER_DIR = ROOT / "tests" / "browser"
DRIVER = BROWSER_DIR / "chat_driver.mjs"
CHROMIUM = "/usr/bin/chromium"

SERVER_START_S = 15  # until a (re)started server accepts connections
DRIVER_S = 50        # the whole browser scenario (the driver's own watchdog is 45 s)


def _require_browser_pieces() -> None:
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"the browser test needs {CHROMIUM} (apt-get install -y chromium)")
    require_npm_packages(BROWSER_DIR)
    require_npm_packages(APP.parent)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChatServer:
    """examples/flask_chat/app.py in a subprocess; its output goes to ``log_path``."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(APP)], env=env, cwd=str(ROOT),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the chat server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the chat server did not listen on port {self.port} within "
                                f"{SERVER_START_S} s:\n{self.log_tail()}")
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture
def chat_server(tmp_path: Path):
    """The example app on a free port (after checking that the browser pieces are installed)."""
    _require_browser_pieces()
    server = ChatServer(_free_port(), tmp_path / "server.log")
    server.start()
    yield server
    server.kill()


def run_driver(server: ChatServer, out_dir: Path, scenario: str) -> list[str]:
    """Run the Node driver, restarting ``server`` when it asks; returns its output lines.

    Fails the test unless the driver ends with DONE.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{server.port}/"
    driver = subprocess.Popen(["node", str(DRIVER), url, str(out_dir), scenario], cwd=str(BROWSER_DIR),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(driver.stdout, lines), daemon=True).start()
    transcript: list[str] = []
    try:
        deadline = time.monotonic() + DRIVER_S
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the browser driver did not finish within {DRIVER_S} s:\n"
                            + "\n".join(transcript))
            if line is None:
                break
            transcript.append(line)
            print(f"[driver] {line}", flush=True)
            if line == "READY_FOR_RESTART":
                server.kill()
                print("[test] chat server killed; starting it again on the same port", flush=True)
                server.start()
                assert driver.stdin is not None
                driver.stdin.write("RESTARTED\n")
                driver.stdin.flush()
        returncode = driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=5)
        for line in transcript:
            if line.startswith("SCREENSHOT "):
                print(f"[test] screenshot: {line.split(' ', 1)[1]}", flush=True)
    if returncode != 0 or transcript[-1:] != ["DONE"]:
        pytest.fail("the browser driver failed:\n" + "\n".join(transcript)
                    + "\n--- server log ---\n" + server.log_tail())
    return transcript


def _out_dir(tmp_path: Path) -> Path:
    return Path(os.environ.get("GEVENTSIO_BROWSER_OUTPUT") or tmp_path)


def test_chat_in_chromium_survives_a_server_restart(chat_server: ChatServer, tmp_path: Path) -> None:
    transcript = run_driver(chat_server, _out_dir(tmp_path), "restart")
    assert "READY_FOR_RESTART" in transcript
    screenshots = [line.split(" ", 1)[1] for line in transcript if line.startswith("SCREENSHOT ")]
    assert any(p.endswith("chat-desktop.png") for p in screenshots)
    for path in screenshots:
        assert Path(path).stat().st_size > 0, path


def test_member_list_drops_a_user_who_closes_the_tab(chat_server: ChatServer, tmp_path: Path) -> None:
    run_driver(chat_server, _out_dir(tmp_path) / "close", "close")
