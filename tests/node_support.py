"""Node.js packages for the interop and browser tests, installed on first use.

``python -m pytest`` on a fresh checkout runs ``npm ci`` in a package folder
whose node_modules is missing, so the README's one test command is enough.
Without Node the tests are skipped locally and fail under CI.
"""

from __future__ import annotations

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
