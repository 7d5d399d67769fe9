"""Load: 8 browser sessions against one server for 60 s, each scrubbing the forecast horizon and
switching pages as fast as the server answers. Every interaction must be answered (the app
settles with the new state) without an error element; the server's peak memory is reported in
test-results/load.json. `LOAD_SESSIONS` and `LOAD_SECONDS` change the size."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.async_api import async_playwright, expect

pytestmark = [pytest.mark.e2e, pytest.mark.load, pytest.mark.slow]

SESSIONS = int(os.environ.get("LOAD_SESSIONS", 8))
SECONDS = float(os.environ.get("LOAD_SECONDS", 60))
ANSWER_MS = 120_000          # one interaction, on a 2-core machine shared by 8 sessions
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
OTHER_PAGES = ["Overview", "Node forecast", "Weather what-if", "Evaluation", "Interpretability"]
REPORT = Path(__file__).resolve().parents[2] / "test-results" / "load.json"


def server_pid(url: str) -> int:
    """The streamlit process listening on `url`'s port (found by its command line)."""
    port = str(urlparse(url).port)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(args) and port.encode() in args:
                return int(entry.name)
    raise AssertionError(f"no streamlit process on port {port}")


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak resident set since start) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


async def settled(page) -> None:
    app = page.get_by_test_id("stApp")
    await expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=ANSWER_MS)
    await page.wait_for_timeout(300)      # a rerun may start just after; let it begin, then wait again
    await expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=ANSWER_MS)
    await expect(page.get_by_test_id("stSkeleton")).to_have_count(0, timeout=ANSWER_MS)
    await expect(page.get_by_test_id("stException")).to_have_count(0)
    await expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)


async def go_to(page, title: str) -> None:
    await page.get_by_test_id("stSidebar").get_by_role("link", name=title, exact=True).click()
    await expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=ANSWER_MS)
    await settled(page)


async def scrub(page, key: str) -> None:
    thumb = page.get_by_role("group", name="Forecast horizon", exact=True).get_by_role("slider")
    before = await thumb.get_attribute("aria-valuetext")
    await thumb.focus()
    await thumb.press(key)
    await expect(thumb).not_to_have_attribute("aria-valuetext", before or "", timeout=ANSWER_MS)
    await settled(page)


class Clock:
    """Starts the timed minute once every session has its first page drawn."""

    def __init__(self):
        self.ready, self.started, self.deadline = 0, asyncio.Event(), 0.0

    async def wait_for_all(self) -> None:
        self.ready += 1
        if self.ready == SESSIONS:
            self.deadline = time.monotonic() + SECONDS
            self.started.set()
        await self.started.wait()


async def session(browser, url: str, n: int, clock: Clock, log: list) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    await page.goto(f"{url}/forecast_map")
    await expect(page.get_by_role("heading", name="Forecast map", exact=True)).to_be_visible(timeout=ANSWER_MS)
    await settled(page)
    await clock.wait_for_all()
    i = 0
    while time.monotonic() < clock.deadline:
        steps = [("scrub", lambda: scrub(page, "ArrowRight")), ("scrub", lambda: scrub(page, "ArrowLeft")),
                 ("page", lambda: go_to(page, OTHER_PAGES[(n + i) % len(OTHER_PAGES)])),
                 ("page", lambda: go_to(page, "Forecast map"))]
        for kind, action in steps:
            began = time.monotonic()
            await action()
            log.append({"session": n, "kind": kind, "seconds": time.monotonic() - began})
        i += 1
    await context.close()


async def drive(url: str, log: list) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        clock = Clock()
        await asyncio.gather(*(session(browser, url, n, clock, log) for n in range(SESSIONS)))
        await browser.close()


def test_eight_sessions_for_a_minute(fresh_dashboard: str):
    pid = server_pid(fresh_dashboard)
    log: list[dict] = []
    outcome: dict = {}

    def run() -> None:       # playwright's async API in its own thread: the sync fixtures own this one
        try:
            asyncio.run(drive(fresh_dashboard, log))
        except BaseException as exc:   # reported below, in the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    peak, now = memory_kib(pid, "VmHWM"), memory_kib(pid, "VmRSS")
    report = {"sessions": SESSIONS, "seconds": SECONDS, "interactions": len(log),
              "scrubs": sum(e["kind"] == "scrub" for e in log), "page_switches": sum(e["kind"] == "page" for e in log),
              "slowest_answer_s": round(max((e["seconds"] for e in log), default=0), 2),
              "median_answer_s": round(sorted(e["seconds"] for e in log)[len(log) // 2], 2) if log else None,
              "server_peak_rss_mib": round(peak / 1024), "server_rss_after_mib": round(now / 1024),
              "error": None if "error" not in outcome else str(outcome["error"]).splitlines()[0]}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    if "error" in outcome:
        raise outcome["error"]
    assert {e["session"] for e in log} == set(range(SESSIONS)), "a session never got an answer"
    assert report["interactions"] >= SESSIONS * 4
