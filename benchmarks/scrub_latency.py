"""Server time of moving the Forecast map's scrubbers with the bundled model (targets: <= 150 ms per
move, cold start <= 8 s). Prints one JSON object.

Each move is an AppTest `run()` after one scrubber moved:
  horizon      the horizon slider moves; the forecast comes from the cache.
  anchor_jump  the forecast time jumps to an anchor not seen before: one new model forward pass.
  anchor_step  the forecast time steps to the next anchor, which the page prefetched in the
               background after the jump (the benchmark waits for that, as a user's pause would).
"app" times the whole run (sidebar + page). In the browser a scrubber reruns only the page's
fragment, so "fragment" (the fragment function alone, timed by wrapping `st.fragment`) is what a
move costs there. The baseline makes the same moves with caching off (`st.cache_data.clear()`
before each run); "forward_pass" times `Forecaster.forecast` alone (in a worker thread, as
Streamlit runs scripts) to show where an anchor jump's time goes, with the allocator settings the app
makes (stmgt/allocator.py) and, as their baseline, with glibc's defaults. Cold start is a new Python
process opening the dashboard straight onto the map, until the map is drawn (and how much of that
is importing torch, PyG and streamlit).

    .venv/bin/python benchmarks/scrub_latency.py [--repeats 7] [--cold-starts 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from stmgt.data.sources import EMBEDDED, load_dataset
from stmgt.forecasting.forecast import Forecaster
from stmgt.paths import BUNDLED_RUN, CHECKOUT
from stmgt.storage.runs import Run
from ui import pages
from ui.state import ANCHOR_KEY, HORIZON_KEY, widget_key

ROOT = CHECKOUT
PREFETCH_THREAD = "stmgt-prefetch"      # the name views/forecast_map.py gives its prefetch thread
APP, PAGE = str(ROOT / "app.py"), pages.FORECAST_MAP.path
TARGET_MOVE_MS, TARGET_COLD_S = 150, 8
WARM_UP = 2                             # forward passes left out of the statistics: a fresh process warms up
COLD_START = """
import sys, time
import ui.state                      # what app.py imports first: torch, PyG, streamlit, pydeck, plotly
imported = time.time()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=600)
at.switch_page(sys.argv[2])
at.run()
assert not at.exception and at.get("deck_gl_json_chart"), [e.message for e in at.exception]
print(imported, time.time())
"""


FRAGMENT_SECONDS: list[float] = []


def timing_fragment(func=None, **kwargs):
    """`st.fragment` that also records how long each call of the fragment function takes."""
    def decorate(f):
        @functools.wraps(f)
        def timed(*args, **kw):
            start = time.perf_counter()
            try:
                return f(*args, **kw)
            finally:
                FRAGMENT_SECONDS.append(time.perf_counter() - start)
        return REAL_FRAGMENT(timed, **kwargs)
    return decorate(func) if func is not None else decorate


REAL_FRAGMENT, st.fragment = st.fragment, timing_fragment


def stats(seconds: list[float]) -> dict:
    ms = 1000 * np.asarray(seconds)
    return {"median_ms": round(float(np.median(ms)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)}


def settle() -> None:
    """Wait for the page's background prefetch, as a user's pause between moves would."""
    for thread in threading.enumerate():
        if thread.name == PREFETCH_THREAD:
            thread.join()


def timed_run(at: AppTest, clear_cache: bool) -> tuple[float, float]:
    """(whole run, fragment) seconds of one AppTest run."""
    settle()
    if clear_cache:
        st.cache_data.clear()
    FRAGMENT_SECONDS.clear()
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError([e.message for e in at.exception])
    return elapsed, sum(FRAGMENT_SECONDS)


def moves(at: AppTest, anchors: list[tuple[int, int]], clear_cache: bool) -> dict:
    """Per repetition: move the horizon; jump the forecast time to an anchor never forecast (nor
    prefetched) before; then step it to the next anchor, which the page prefetched meanwhile."""
    times = {"horizon": [], "anchor_jump": [], "anchor_step": []}
    for jump, step in anchors:
        horizon = at.select_slider(key=widget_key(HORIZON_KEY))
        horizon.set_value(1 + (horizon.value + 4) % 12)
        times["horizon"].append(timed_run(at, clear_cache))
        for move, anchor in (("anchor_jump", jump), ("anchor_step", step)):
            at.select_slider(key=widget_key(ANCHOR_KEY)).set_value(anchor)
            times[move].append(timed_run(at, clear_cache))
            assert at.session_state[ANCHOR_KEY] == anchor
    return {move: {"app": stats([t[0] for t in runs]), "fragment": stats([t[1] for t in runs]), "runs": len(runs)}
            for move, runs in times.items()}


FORWARD_PASS = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from stmgt.allocator import reuse_freed_memory
from stmgt.data.sources import EMBEDDED, load_dataset
from stmgt.forecasting.forecast import Forecaster
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
if sys.argv[1] == "tuned":
    reuse_freed_memory()
forecaster = Forecaster(Run(BUNDLED_RUN).load(), load_dataset(dict(EMBEDDED)))

def one(anchor):
    start = time.perf_counter()
    forecaster.forecast(anchor)
    return time.perf_counter() - start

with ThreadPoolExecutor(1) as worker:       # a worker thread, as Streamlit runs scripts
    print(json.dumps(list(worker.map(one, map(int, sys.argv[2:])))))
"""


def forward_pass(anchors: list[int], allocator: str) -> list[float]:
    """Seconds per `Forecaster.forecast` in a fresh process, with the app's allocator settings
    ("tuned") or glibc's defaults ("default")."""
    out = subprocess.run([sys.executable, "-c", FORWARD_PASS, allocator, *map(str, anchors)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


def cold_start(workspace: str) -> tuple[float, float]:
    """(imports done, map drawn) seconds after the process was started."""
    start = time.time()
    out = subprocess.run([sys.executable, "-c", COLD_START, APP, PAGE], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "STMGT_WORKSPACE": workspace})
    imported, drawn = map(float, out.stdout.split()[-2:])
    return imported - start, drawn - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="moves of each kind per mode")
    parser.add_argument("--cold-starts", type=int, default=2)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as workspace:
        os.environ["STMGT_WORKSPACE"] = workspace     # the benchmark never touches the user's workspace
        dataset = load_dataset(dict(EMBEDDED))
        forecaster = Forecaster(Run(BUNDLED_RUN).load(), dataset)
        test = forecaster.test_anchors()
        # (jump, step) anchor pairs, never forecast or prefetched before: every 7th of the test period.
        fresh = ((int(test[i]), int(test[i + 1])) for i in range(0, len(test) - 1, 7))
        cached_anchors = [next(fresh) for _ in range(args.repeats)]
        baseline_anchors = [next(fresh) for _ in range(args.repeats)]
        forward_anchors = [next(fresh) for _ in range(WARM_UP + max(20, args.repeats))]

        at = AppTest.from_file(APP, default_timeout=600)
        at.switch_page(PAGE)
        at.run()
        cached = moves(at, cached_anchors, clear_cache=False)
        baseline = moves(at, baseline_anchors, clear_cache=True)
        settle()                        # no prefetch left running to compete with what follows
        forward = {allocator: forward_pass([jump for jump, _ in forward_anchors], allocator)
                   for allocator in ("tuned", "default")}
        cold = [cold_start(workspace) for _ in range(args.cold_starts)]

    model = Run(BUNDLED_RUN).config["model"]
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)},
        "model": {k: model[k] for k in ("hidden_dim", "num_blocks", "heads", "gat_layout")},
        "cached": cached,
        "baseline_no_cache": baseline,
        "forward_pass": stats(forward["tuned"][WARM_UP:]),
        "forward_pass_default_allocator (baseline)": stats(forward["default"][WARM_UP:]),
        "cold_start_s": {"median": round(float(np.median([c[1] for c in cold])), 2),
                         "runs": [round(c[1], 2) for c in cold], "of_which_imports": [round(c[0], 2) for c in cold]},
        "targets": {"move_ms": TARGET_MOVE_MS, "cold_start_s": TARGET_COLD_S,
                    **{f"{move}_met": cached[move]["fragment"]["median_ms"] <= TARGET_MOVE_MS
                       for move in ("horizon", "anchor_jump", "anchor_step")},
                    "cold_start_met": float(np.median([c[1] for c in cold])) <= TARGET_COLD_S},
    }, indent=2))


if __name__ == "__main__":
    main()
