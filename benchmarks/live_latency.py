"""Live mode in a real browser (issue 30's figure: after a row is appended, the open page shows the
new forecast within 5 s on 2 cores). Prints one JSON object.

A feed is replayed into a temporary workspace (`stmgt replay --data sim:seed=1 --speed 0 --steps 2`),
the dashboard is served on it (`streamlit run app.py`) and Debian's Chromium opens the Forecast map
with that dataset selected, at "now". Then, `--appends` times: one step of the recording is appended
(`stmgt.data.live.append_rows`, what `stmgt ingest` runs) and the clock runs from the append's
return until the page shows the forecast made at the new step (the time slider reads the new time,
the headline's change is against it, and no script run is left), without a reload. The appends
come `SPACING_S` apart (a real feed's are 15 min apart) plus a share of the page's polling period
(`ui.state.LIVE_POLL_S`), as steps arriving at any moment would.

    .venv/bin/python benchmarks/live_latency.py [--appends 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from playwright.sync_api import sync_playwright

from stmgt.data.dataset import WEATHER_COLUMNS
from stmgt.data.live import append_rows, newest_step
from stmgt.data.sources import parse_data_arg, load_dataset
from stmgt.paths import CHECKOUT
from stmgt.training.trainer import device_name
from ui.state import LIVE_POLL_S, imported_label

TARGET_S = 5.0
SPACING_S = 3.0                 # at least this long between appends: the page and its background prefetch settle
DATA = "sim:seed=1"             # a week the bundled model never trained on
FEED = "feed"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
LOAD_MS, SHOW_MS = 180_000, 60_000
TIME_LABEL = "Forecast made at"
# True once the page shows the forecast made at `label` (the slider's text) and no script run is left.
SHOWN = """([label, clock]) => {
  const app = document.querySelector('[data-testid=stApp]');
  const sliders = [...document.querySelectorAll('[role=slider], input[type=range]')];
  const slider = sliders.find(s => s.getAttribute('aria-valuetext') === label);
  const deltas = [...document.querySelectorAll('[data-testid=stMetricDelta]')];
  const delta = deltas.some(d => d.innerText.includes('vs ' + clock));
  return app && app.getAttribute('data-test-script-state') === 'notRunning' && !!slider && delta;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(workspace: Path, log) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free local port, datasets from `workspace`; once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=CHECKOUT, env={**os.environ, "STMGT_WORKSPACE": str(workspace)}, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + LOAD_MS / 1000
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("streamlit did not start")


def slider_label(when: pd.Timestamp) -> str:
    """The time slider's text at `when` when it is the newest step (ui.state's labels)."""
    return f"{when:%a %d %b %H:%M} · now"


def open_feed(page, url: str, newest: pd.Timestamp) -> None:
    """The Forecast map with the feed selected, shown at its newest step."""
    page.goto(f"{url}/forecast_map")
    page.get_by_role("heading", name="Forecast map", exact=True).wait_for(timeout=LOAD_MS)
    page.get_by_test_id("stSidebar").get_by_role("combobox", name="Dataset").click()
    page.get_by_role("option", name=imported_label(FEED), exact=True).click()
    page.wait_for_function(SHOWN, arg=[slider_label(newest), f"{newest:%H:%M}"], polling=50, timeout=LOAD_MS)


def machine(load_before: float) -> dict:
    return {"processor": device_name(torch.device("cpu")), "cpus": os.cpu_count(), "platform": platform.platform(),
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=7, help="steps appended, one at a time")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    recording = load_dataset(parse_data_arg(DATA))
    spread = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        folder = workspace / "datasets" / FEED
        subprocess.run([sys.executable, "-m", "stmgt", "replay", "--data", DATA, "--into", str(folder),
                        "--speed", "0", "--steps", "2"], cwd=CHECKOUT, check=True, stdout=subprocess.DEVNULL)
        with open(Path(tmp) / "streamlit.log", "w") as log, sync_playwright() as playwright:
            server, url = serve(workspace, log)
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                open_feed(page, url, newest_step(folder))
                page.evaluate("window.stmgtNoReload = true")
                shown, appended = [], []
                for _ in range(args.appends):
                    time.sleep(SPACING_S + spread.uniform(0, LIVE_POLL_S))      # a step arrives at any moment
                    t = recording.timestamps.get_loc(newest_step(folder)) + 1
                    rows = pd.DataFrame(recording.speed[t:t + 1], index=recording.timestamps[t:t + 1],
                                        columns=recording.graph.node_ids)
                    rows[WEATHER_COLUMNS] = recording.weather[t:t + 1]
                    start = time.perf_counter()
                    append_rows(folder, rows)
                    done = time.perf_counter()
                    new = recording.timestamps[t]
                    page.wait_for_function(SHOWN, arg=[slider_label(new), f"{new:%H:%M}"], polling=50,
                                           timeout=SHOW_MS)
                    shown.append(time.perf_counter() - done)
                    appended.append(done - start)
                if not page.evaluate("window.stmgtNoReload === true"):
                    raise SystemExit("the page reloaded")
            finally:
                browser.close()
                server.terminate()
                server.wait(timeout=30)

    print(json.dumps({
        "what": "seconds from a row's append to the open Forecast map showing the forecast made at it",
        "target_s": TARGET_S, "poll_s": LIVE_POLL_S, "appends": args.appends,
        "seconds_to_new_forecast": {"median": round(float(np.median(shown)), 2), "max": round(max(shown), 2),
                                    "all": [round(s, 2) for s in shown]},
        "append_s": {"median": round(float(np.median(appended)), 2), "max": round(max(appended), 2)},
        "machine": machine(load_before), "date": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC"),
    }, indent=2))


if __name__ == "__main__":
    main()
