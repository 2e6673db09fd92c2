"""Node.js packages for the interop and browser tests, installed on first use.

``python -m pytest`` on a fresh checkout runs ``npm ci`` in a package folder
whose node_modules is missing, so the README's one test command is enough.
Without Node the tests are skipped locally and fail under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> None:
    """Skip a test module locally; under CI a missing prerequisite is a failure."""
    if in_ci():
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_npm_packages(folder: Path) -> Path:
    """Make sure ``folder/node_modules`` matches its package-lock.json; returns node_modules."""
    modules = folder / "node_modules"
    if shutil.which("node") is None or shutil.which("npm") is None:
        skip_or_fail("node and npm are not on PATH")
    marker = modules / ".package-lock.json"
    lock = folder / "package-lock.json"
    if not marker.is_file() or marker.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            skip_or_fail(f"`npm ci` failed in {folder}: {done.stderr.strip()[-2000:]}")
    return modules


def run_node_report(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float,
                    summarize=lambda report: report) -> dict:
    """Run a Node script that prints one JSON report as its last line; return it, checked ok.

    ``summarize`` shortens the report quoted in a failure message.
    """
    proc = subprocess.run(cmd, cwd=cwd, env=dict(os.environ, **env), capture_output=True,
                          text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, (f"the client printed nothing (exit {proc.returncode}); "
                   f"stderr:\n{proc.stderr[-4000:]}")
    try:
        report = json.loads(lines[-1])
    except ValueError:
        pytest.fail(f"the client's last line is not JSON: {lines[-1][:500]!r}; "
                    f"stderr:\n{proc.stderr[-4000:]}")
    assert report.get("ok") is True and proc.returncode == 0, (
        f"the client failed (exit {proc.returncode}): {report.get('error')}\n"
        f"report: {json.dumps(summarize(report), ensure_ascii=False)[:6000]}\n"
        f"stderr:\n{proc.stderr[-4000:]}")
    return report
