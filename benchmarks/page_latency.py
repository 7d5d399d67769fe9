"""Server time of every dashboard page and of each page's main move, on the embedded data with the
bundled model or on a dataset and run of a workspace (e.g. a generated 1,000-node graph, see
`stmgt.data.road_like`), so a big graph's times can be set against the embedded graph's on the same
machine and load: issue 29 asks for map scrub, node forecast, what-if and route within the 62-node
times × the node ratio. Prints one JSON object.

Each figure is one AppTest `run()`: "open" switches to the page (the first open of a page pays for
its forecasts, which later pages find cached), then the move is made `--repeats` times:
  forecast map       the horizon moves (forecast cached), then the forecast time jumps to an anchor
                     not forecast before (one new forward pass)
  node forecast      another road is picked
  route              another destination is picked (the first answer also estimates the error
                     copula, once per model and data; it is timed apart as "route_first")
  interpretability   another road is picked
  what-if            the precipitation shift moves (a new scenario forecast)

    .venv/bin/python benchmarks/page_latency.py [--workspace WS --dataset NAME] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from stmgt.paths import CHECKOUT
from ui import pages
from ui.state import ANCHOR_KEY, DATASET_KEY, HORIZON_KEY, NODE_KEY, widget_key

APP = str(CHECKOUT / "app.py")
OPEN_ONLY = (pages.OVERVIEW, pages.EVALUATION, pages.DATA, pages.TRAIN)
ANCHOR_JUMP = 17            # steps back per forecast-time jump: each lands on an anchor not forecast before


def timed(at: AppTest) -> float:
    """Seconds of one run; an exception on the page is an error, not a time."""
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError([e.message for e in at.exception])
    return elapsed


def open_page(at: AppTest, page: pages.Page) -> float:
    at.switch_page(page.path)
    return timed(at)


def ms(seconds: list[float]) -> dict:
    values = 1000 * np.asarray(seconds)
    return {"median_ms": round(float(np.median(values)), 1), "max_ms": round(float(values.max()), 1),
            "runs": len(values)}


def other_nodes(at: AppTest, key: str, repeats: int) -> list[str]:
    """`repeats` nodes of a select box's options, spread over it and none the one shown."""
    options = at.selectbox(key=key).options
    picks = np.linspace(1, len(options) - 1, repeats).round().astype(int)
    return [options[i] for i in picks]


def measure(at: AppTest, repeats: int) -> dict:
    figures = {}
    for page in OPEN_ONLY:
        figures[page.title] = {"open": ms([open_page(at, page)])}

    figures["Forecast map"] = {"open": ms([open_page(at, pages.FORECAST_MAP)])}
    horizon, jump = [], []
    start = int(at.select_slider(key=widget_key(ANCHOR_KEY)).value)    # the test period's middle
    for k in range(repeats):
        slider = at.select_slider(key=widget_key(HORIZON_KEY))
        slider.set_value(1 + (int(slider.value) + 4) % 12)
        horizon.append(timed(at))
        at.select_slider(key=widget_key(ANCHOR_KEY)).set_value(start - ANCHOR_JUMP * (k + 1))
        jump.append(timed(at))
    figures["Forecast map"].update(horizon=ms(horizon), anchor_jump=ms(jump))

    for page in (pages.NODE_FORECAST, pages.INTERPRETABILITY):
        figures[page.title] = {"open": ms([open_page(at, page)])}
        moves = []
        for node in other_nodes(at, widget_key(NODE_KEY), repeats):
            at.selectbox(key=widget_key(NODE_KEY)).set_value(node)
            moves.append(timed(at))
        figures[page.title]["pick_road"] = ms(moves)

    figures["Route"] = {"open": ms([open_page(at, pages.ROUTE)])}
    moves = []
    for node in other_nodes(at, "route_to", repeats + 1):
        at.selectbox(key="route_to").set_value(node)
        moves.append(timed(at))
    figures["Route"].update(route_first=ms(moves[:1]), pick_destination=ms(moves[1:]),
                            nodes=len(at.selectbox(key="route_to").options))

    figures["Weather what-if"] = {"open": ms([open_page(at, pages.WHAT_IF)])}
    moves = []
    for k in range(repeats):
        at.slider(key="whatif_precip").set_value(5.0 + 5 * k)
        moves.append(timed(at))
    figures["Weather what-if"]["precipitation"] = ms(moves)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="a workspace whose datasets/ and runs/ hold the data and model")
    parser.add_argument("--dataset", help="the dataset's folder name under the workspace's datasets/")
    parser.add_argument("--repeats", type=int, default=3, help="moves of each kind")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["STMGT_WORKSPACE"] = args.workspace or scratch   # never the user's workspace by default
        at = AppTest.from_file(APP, default_timeout=1800)
        at.run()
        if args.dataset:
            label = next((o for o in at.selectbox(key=DATASET_KEY).options if args.dataset in o), None)
            if label is None:
                parser.error(f"--dataset {args.dataset}: not among {at.selectbox(key=DATASET_KEY).options}")
            at.selectbox(key=DATASET_KEY).set_value(label)
            timed(at)
        figures = measure(at, args.repeats)
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)},
        "data": args.dataset or "embedded", "nodes": figures["Route"].pop("nodes"), "pages": figures}, indent=2))


if __name__ == "__main__":
    main()
