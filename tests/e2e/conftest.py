"""Real-browser end-to-end tests: the dashboard served by `streamlit run app.py` on a free port, with
an empty workspace, driven by pytest-playwright in Debian's Chromium (`playwright install` cannot
download browsers here). Run with `python -m pytest tests/e2e -m e2e`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2e_helpers import open_page
from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# No sandbox (containers), no GPU (WebGL falls back to software), and nothing that phones home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@contextmanager
def serve(workspace: Path, log: Path) -> Iterator[str]:
    """Run `streamlit run app.py` on a free port until the block ends; yields its base URL. The server
    binds to localhost only (which also skips Streamlit's external-IP lookup), sends no usage
    statistics and watches no files; datasets and runs go to `workspace`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "STMGT_WORKSPACE": str(workspace)},
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(url):
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with code {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer {url}/_stcore/health within {START_TIMEOUT_S} s:\n"
                            f"{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory, browser: Browser) -> Iterator[str]:
    """The dashboard every test shares (caches stay warm between tests); its base URL. Its home page
    is opened once first, which loads the data and the model, so that the tests' timings are about
    their pages."""
    root = tmp_path_factory.mktemp("e2e")
    with serve(root / "workspace", root / "streamlit.log") as url:
        page = browser.new_page()
        try:
            open_page(page, url, "", "Overview")
        finally:
            page.close()
        yield url


@pytest.fixture
def fresh_dashboard(tmp_path) -> Iterator[str]:
    """A dashboard no browser has visited yet, for what happens on a server's first session."""
    with serve(tmp_path / "workspace", tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}
