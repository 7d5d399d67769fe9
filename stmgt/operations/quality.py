"""Forecast-quality monitor: as the truth arrives, how well the forecasts made before a time (the
newest step, in live mode) did, per horizon step and per road, beside the model card's test figures
(the run's metrics.json) and two baselines scored on the same forecasts: persistence and the
historical average (fitted on the training split). Flags say where the forecasts have drifted.

Windows. The window of length W at step `now` holds the forecasts made at the steps now − W …
now − 1 (the one made at `now` has no truth yet), clipped to the test period: the model may have
learnt from the steps before it. A window scores the forecasts made every `Span.every` (every hour
over 24 h, every 3 hours over 7 days), not every step's: forecasts made minutes apart share most of
their inputs and truth, so the figures barely move, and the model's time drops to about a tenth. Only
truth that exists at `now` counts, so the forecast made k steps before `now` is scored on its first
k steps only, and step h on the forecasts made at least h steps before; every window says how many
forecasts and speeds each step holds.

Pooled figures (a road's, or the network's over the horizon) are the mean of the per-step figures
over the steps that hold truth, so they compare with the card's mean over the same steps whatever
share of the horizon has arrived. The scores are those of `stmgt.evaluation.metrics`: MAE of the
forecast mean, the mixture's CRPS, the share inside the central 80 % interval; a baseline is a point
forecast, so its CRPS is its MAE.

Flags (`flags`, the rules in one place): coverage outside COVERAGE_BAND, or an MAE more than
MAE_TOLERANCE above the card's at the same steps. The card holds network figures only, and roads
differ in how hard they are, so a road's MAE is compared with the card's scaled by how much harder
than the network the road was for persistence in the same window.

Work is split for caching: a block's forecasts (`Monitor.issued`, made with the weather forecast
issued at each anchor, `Forecaster.as_issued`) never change, and its errors (`Monitor.evidence`)
change only while truth arrives. `Monitor.forecast_key` and `evidence_key` change with what each
reads, so a caller caches both and, in live mode, rescores only the blocks still waiting for truth."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from stmgt.data.sources import describe
from stmgt.errors import DataError
from stmgt.evaluation.baselines import HistoricalAverage, persistence
from stmgt.evaluation.metrics import covered
from stmgt.forecasting.forecast import Forecaster
from stmgt.model.mixture import GaussianMixture
from stmgt.storage.runs import Run


@dataclass(frozen=True)
class Span:
    name: str
    length: pd.Timedelta
    every: pd.Timedelta | None = None   # score only the forecasts made this often (None: every one)


WINDOWS = (Span("24 h", pd.Timedelta(hours=24), pd.Timedelta(hours=1)),
           Span("7 days", pd.Timedelta(days=7), pd.Timedelta(hours=3)))
BLOCK_STEPS = 64                # steps per block of forecasts (and of errors) a caller caches
INTERVAL = 0.8                  # the central interval whose coverage is watched
COVERAGE_BAND = (0.7, 0.9)
MAE_TOLERANCE = 0.25
# Fewer observed speeds than this: too few to flag a subject. A road's errors within a day move together,
# so its last 24 h (about 280 speeds at a forecast an hour) is judged through the 7 days only.
MIN_SCORED = 500
SCORES = ("mae", "crps", "coverage", "persistence_mae", "historical_mae")
# Where each score stands in metrics.json: the model, and the keys down to its per-step list.
CARD_KEYS = {"mae": ("stmgt", "mae"), "crps": ("stmgt", "crps"), "coverage": ("stmgt", "coverage", "80"),
             "persistence_mae": ("persistence", "mae"), "historical_mae": ("historical_average", "mae")}


@dataclass(frozen=True)
class Block:
    """Anchors start … stop − 1 that are multiples of `every`."""

    start: int
    stop: int
    every: int = 1

    @property
    def anchors(self) -> np.ndarray:
        first = -(-self.start // self.every) * self.every
        return np.arange(first, self.stop, self.every, dtype=np.int64)


@dataclass
class Issued:
    """The forecasts made at `anchors`, as the model issued them, and the baselines' for the same steps."""

    anchors: np.ndarray
    mixture: GaussianMixture            # [A, H, N, K] km/h
    persistence: torch.Tensor           # [A, H, N] km/h
    historical: torch.Tensor            # [A, H, N] km/h


@dataclass
class Evidence:
    """The errors of the forecasts made at `anchors` (ascending), per score: [A, H, N] float32, NaN
    where the speed is not observed (missing, or not arrived yet)."""

    anchors: np.ndarray
    errors: dict[str, np.ndarray]

    @staticmethod
    def joined(parts: Sequence[Evidence], horizon: int, nodes: int) -> Evidence:
        """Blocks in anchor order as one."""
        if not parts:
            return Evidence(np.zeros(0, np.int64), {n: np.zeros((0, horizon, nodes), np.float32) for n in SCORES})
        return Evidence(np.concatenate([p.anchors for p in parts]),
                        {n: np.concatenate([p.errors[n] for p in parts]) for n in SCORES})


@dataclass(frozen=True)
class Window:
    """The forecasts made at the anchors first … stop − 1 that are multiples of `every`; `clipped`
    when the window is shorter than `length` (the test period, or the data, starts later)."""

    name: str
    length: pd.Timedelta
    first: int
    stop: int
    every: int
    clipped: bool

    @property
    def anchors(self) -> np.ndarray:
        return Block(self.first, self.stop, self.every).anchors


@dataclass
class Figures:
    """Per subject (the network, or each road) and horizon step: each score's mean and how many
    observed speeds it holds (the same for every score)."""

    means: dict[str, np.ndarray]        # score -> [S, H], NaN where the step holds no truth
    counts: np.ndarray                  # [S, H]

    @property
    def scored(self) -> np.ndarray:
        """[S] speeds scored over all steps."""
        return self.counts.sum(axis=1)

    def present(self, steps: np.ndarray | None = None) -> np.ndarray:
        """[S, H] the steps holding truth (and among `steps` [H] bool, when given)."""
        return (self.counts > 0) & (np.ones(self.counts.shape[1], bool) if steps is None else steps)[None, :]

    def pooled(self, name: str, steps: np.ndarray | None = None) -> np.ndarray:
        """[S] the mean over the steps holding truth (of `steps`, when given); NaN where none do."""
        return mean_over_steps(self.means[name], self.present(steps))


def mean_over_steps(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """[S] the mean of `values` ([S, H], or [H] for every subject) over each row's `present` steps."""
    values = np.broadcast_to(values, present.shape)
    count = present.sum(axis=1)
    total = np.where(present, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass
class WindowScores:
    window: Window
    forecasts: np.ndarray               # [H] forecasts scored at each step
    network: Figures                    # S = 1
    roads: Figures                      # S = N, in the graph's node order


@dataclass
class Card:
    """The model card's test figures per horizon step of this model (NaN at a step the card lacks;
    `figures` is empty without a card), and what to know about them, in words."""

    figures: dict[str, np.ndarray]
    notes: list[str]

    @property
    def available(self) -> bool:
        return bool(self.figures)

    def pooled(self, name: str, steps: np.ndarray | None = None) -> float:
        """The card's mean of `name` over its steps (of `steps` [H] bool, when given); NaN without one."""
        values = self.figures.get(name)
        if values is None:
            return float("nan")
        present = np.isfinite(values) & (True if steps is None else steps)
        return float(mean_over_steps(np.nan_to_num(values), present[None])[0])


@dataclass(frozen=True)
class Flag:
    window: str
    subject: str | None                 # a node id; None for the network
    measure: str                        # "coverage" or "mae"
    value: float
    reference: float                    # the band's edge crossed, or the MAE the card leads to expect

    def words(self) -> str:
        if self.measure == "coverage":
            low = self.value < self.reference
            return (f"the {percent(INTERVAL)} intervals held {percent(self.value)} of the observed speeds in the "
                    f"last {self.window}, {'below' if low else 'above'} {percent(self.reference)}: "
                    f"{'too narrow' if low else 'too wide'}")
        expected = "the model card's" if self.subject is None else "the model card's, scaled to this road,"
        return (f"the MAE in the last {self.window}, {self.value:.2f} km/h, is "
                f"{percent(self.value / self.reference - 1)} above {expected} {self.reference:.2f} km/h at the same "
                f"horizons (more than {percent(MAE_TOLERANCE)})")


@dataclass
class Quality:
    now: int
    time: pd.Timestamp
    horizon_minutes: list[int]
    windows: list[WindowScores]
    card: Card
    flags: list[Flag]


def percent(share: float, digits: int = 0) -> str:
    return f"{100 * share:.{digits}f} %"


def horizon_minutes(forecaster: Forecaster) -> list[int]:
    freq = forecaster.dataset.freq / pd.Timedelta(minutes=1)
    return [int(round((k + 1) * freq)) for k in range(forecaster.horizon)]


def read_card(run: Run, minutes: list[int], data: str | None = None) -> Card:
    """The run's test figures from its metrics.json, per step of `minutes` (this model's horizon);
    `data` describes the dataset monitored, for a note when the card was scored on another."""
    if not run.has_metrics:
        return Card({}, ["this model has no test figures yet (no metrics.json): evaluate it on the Evaluation "
                         "page to compare with them"])
    try:
        metrics = run.metrics()
        models, card_minutes = metrics["models"], [int(m) for m in metrics["horizon_minutes"]]
        if not isinstance(models["stmgt"]["mae"], list):
            raise TypeError("no per-horizon MAE")
    except DataError as exc:
        return Card({}, [f"the model's metrics.json cannot be read ({exc.problem}): evaluate it again"])
    except (KeyError, TypeError, ValueError):
        return Card({}, ["the model's metrics.json is in a layout this version does not read (no per-horizon "
                         "MAE of STMGT): evaluate it again"])
    position = {m: i for i, m in enumerate(card_minutes)}
    figures = {}
    for name, (model, *keys) in CARD_KEYS.items():
        values = models.get(model)
        for key in keys:
            values = values.get(key) if isinstance(values, dict) else None
        if isinstance(values, list) and len(values) == len(card_minutes):
            figures[name] = np.array([float(values[position[m]]) if m in position else np.nan for m in minutes])
    if "mae" not in figures or not np.isfinite(figures["mae"]).any():
        return Card({}, [f"the model card's horizons (+{card_minutes[0]}…+{card_minutes[-1]} min) share no step "
                         f"with this model's (+{minutes[0]}…+{minutes[-1]} min), so there is nothing to compare"
                         if card_minutes else "the model card holds no horizon: evaluate it again"])
    notes = []
    if "weather_forecast" not in metrics:
        notes.append("the card was scored by an older version, with the observed weather where the model reads "
                     "it (a perfect weather forecast): its figures are optimistic beside forecasts made at the time")
    if metrics.get("quick_look"):
        notes.append(f"the card is a quick look, on {metrics.get('windows', '?')} of "
                     f"{metrics.get('windows_in_split', '?')} test windows")
    scored_on = spec_words(metrics.get("data"))
    if data and scored_on and scored_on != data:
        notes.append(f"the card's figures come from the test split of {scored_on}, not of {data}")
    labels = {"coverage": f"{percent(INTERVAL)} coverage", "persistence_mae": "persistence",
              "historical_mae": "historical average"}
    missing = [label for name, label in labels.items() if name not in figures]
    if missing:
        notes.append(f"the card holds no {' or '.join(missing)} figures (an older layout): evaluate it again "
                     "to compare them")
    return Card(figures, notes)


def spec_words(spec) -> str | None:
    """A recorded dataset spec in words (`describe`); None for none or one this version does not know."""
    try:
        return describe(spec) if isinstance(spec, dict) else None
    except (KeyError, TypeError, DataError):
        return None


class Monitor:
    """The quality monitor of one forecaster (a model bound to a dataset)."""

    def __init__(self, forecaster: Forecaster, spans: Sequence[Span] = WINDOWS):
        self.forecaster, self.spans = forecaster, tuple(spans)
        self.dataset, self.horizon = forecaster.dataset, forecaster.horizon
        # Forecasts made from the test period's start on: every step they forecast is in the test period.
        self.first_anchor = max(self.dataset.splits()["test"].start, forecaster.seq_len - 1)

    def steps(self, span: pd.Timedelta | None) -> int:
        return 1 if span is None else max(int(span / self.dataset.freq), 1)

    def windows(self, now: int) -> list[Window]:
        """The windows of forecasts made before step `now`."""
        if not 0 <= now < self.dataset.num_steps:
            raise DataError(f"step {now} is outside the data (0…{self.dataset.num_steps - 1})")
        out = []
        for span in self.spans:
            wanted = now - self.steps(span.length)
            first = min(max(wanted, self.first_anchor), now)
            out.append(Window(span.name, span.length, first, now, self.steps(span.every), first > wanted))
        return out

    def blocks(self, now: int) -> list[Block]:
        """The blocks of anchors the windows at `now` read: the anchors of BLOCK_STEPS steps aligned on
        multiples of it, so the same blocks serve a later `now`, each at the finest spacing a window
        reads there. A block ends at its last anchor, so a live dataset's newest block changes only
        when a step brings a new anchor into it."""
        needed: dict[int, int] = {}
        for window in self.windows(now):
            for anchor in window.anchors:
                b = int(anchor) // BLOCK_STEPS
                needed[b] = math.gcd(needed.get(b, 0), window.every)
        out = []
        for b, every in sorted(needed.items()):
            anchors = Block(max(b * BLOCK_STEPS, self.first_anchor),
                            min((b + 1) * BLOCK_STEPS, self.dataset.num_steps), every).anchors
            out.append(Block(int(anchors[0]), int(anchors[-1]) + 1, every))
        return out

    @cached_property
    def historical(self) -> HistoricalAverage:
        return HistoricalAverage(self.dataset, self.dataset.splits()["train"])

    @cached_property
    def _base_key(self) -> str:
        """What every block reads besides its own steps: the training split (the historical average)."""
        train = self.dataset.splits()["train"]
        digest = hashlib.sha1(repr((train.start, train.stop, self.horizon, self.forecaster.seq_len,
                                    str(self.dataset.freq))).encode())
        digest.update(np.ascontiguousarray(self.dataset.speed[train.start:train.stop]).tobytes())
        return digest.hexdigest()

    def _key(self, block: Block, stop: int) -> str:
        lo = block.start - self.forecaster.seq_len + 1
        digest = hashlib.sha1(f"{self._base_key}|{block}|{stop}|{self.dataset.timestamps[lo]}".encode())
        digest.update(np.ascontiguousarray(self.dataset.speed[lo:stop]).tobytes())
        if self.dataset.weather is not None:
            digest.update(np.ascontiguousarray(self.dataset.weather[lo:stop]).tobytes())
        return digest.hexdigest()

    def forecast_key(self, block: Block) -> str:
        """Changes with what the block's forecasts read: their inputs, the weather then, the training split."""
        return self._key(block, block.stop)

    def evidence_key(self, block: Block) -> str:
        """Changes with what the block's errors read besides: the truth there is so far (so a block still
        waiting for truth gets a new key as it arrives)."""
        return self._key(block, min(block.stop - 1 + self.horizon, self.dataset.num_steps - 1) + 1)

    @torch.no_grad()
    def issued(self, block: Block) -> Issued:
        """The forecasts made at the block's anchors, with the weather forecast issued at each, and the
        baselines' for the same steps."""
        anchors = block.anchors
        mixtures = [m for _, m in self.forecaster.as_issued(anchors, batch_size=max(len(anchors), 1))]
        parts = ("means", "stds", "weights")
        mixture = GaussianMixture(*(torch.cat([getattr(m, p) for m in mixtures]) for p in parts)) if mixtures else None
        targets = torch.from_numpy(anchors)[:, None] + torch.arange(1, self.horizon + 1)
        usual = self.historical.predict(targets)
        held = persistence(self.forecaster.windows.batch(anchors), self.forecaster.loaded.scaler, usual)
        return Issued(anchors, mixture, held, usual)

    @torch.no_grad()
    def evidence(self, issued: Issued) -> Evidence:
        """The errors of `issued` against the truth there is."""
        if not len(issued.anchors):
            return Evidence.joined([], self.horizon, self.dataset.num_nodes)
        targets = issued.anchors[:, None] + np.arange(1, self.horizon + 1)
        speed = self.dataset.speed[np.minimum(targets, self.dataset.num_steps - 1)]
        y = torch.from_numpy(np.where((targets < self.dataset.num_steps)[..., None], speed, np.nan))
        observed, truth = ~torch.isnan(y), torch.nan_to_num(y)
        mixture = issued.mixture
        values = {"mae": (mixture.mean() - truth).abs(), "crps": mixture.crps(truth),
                  "coverage": covered(mixture.cdf(truth), INTERVAL),
                  "persistence_mae": (issued.persistence - truth).abs(),
                  "historical_mae": (issued.historical - truth).abs()}
        return Evidence(issued.anchors, {n: torch.where(observed, v.float(), torch.nan).numpy()
                                         for n, v in values.items()})

    def scores(self, evidence: Evidence, window: Window) -> WindowScores:
        """The window's figures from `evidence` (which holds its anchors): only the truth that has
        arrived by the window's end counts."""
        wanted = window.anchors
        rows = np.searchsorted(evidence.anchors, wanted)
        if len(wanted) and not np.array_equal(evidence.anchors[np.minimum(rows, len(evidence.anchors) - 1)], wanted):
            raise ValueError("the evidence does not hold the window's anchors")
        arrived = wanted[:, None] + np.arange(1, self.horizon + 1) <= window.stop           # [A, H]
        sums, counts = {}, None
        for name in SCORES:
            values = np.where(arrived[..., None], evidence.errors[name][rows], np.nan)
            seen = np.isfinite(values)
            counts = seen.sum(axis=0).T if counts is None else counts                     # [N, H]
            sums[name] = np.where(seen, values, 0.0).sum(axis=0, dtype=np.float64).T      # [N, H]
        roads = Figures({n: np.where(counts > 0, s / np.maximum(counts, 1), np.nan) for n, s in sums.items()}, counts)
        total = counts.sum(axis=0, keepdims=True)
        network = Figures({n: np.where(total > 0, s.sum(axis=0, keepdims=True) / np.maximum(total, 1), np.nan)
                           for n, s in sums.items()}, total)
        return WindowScores(window, arrived.sum(axis=0), network, roads)

    def assess(self, now: int, card: Card, fetch: Callable[[Block], Evidence] | None = None,
               on_block: Callable[[int, int], None] | None = None) -> Quality:
        """The figures and flags at step `now`. `fetch(block)` gives a block's evidence (a cached one;
        by default it is computed); `on_block(done, total)` reports progress."""
        fetch = fetch or (lambda block: self.evidence(self.issued(block)))
        blocks, parts = self.blocks(now), []
        for i, block in enumerate(blocks):
            parts.append(fetch(block))
            if on_block:
                on_block(i + 1, len(blocks))
        evidence = Evidence.joined(parts, self.horizon, self.dataset.num_nodes)
        windows = [self.scores(evidence, w) for w in self.windows(now)]
        return Quality(now, self.dataset.timestamps[now], horizon_minutes(self.forecaster), windows, card,
                       [f for w in windows for f in flags(w, card, self.dataset.graph.node_ids)])


def coverage_flag(coverage: float) -> float | None:
    """The edge of COVERAGE_BAND that `coverage` lies beyond; None inside it (edges included)."""
    low, high = COVERAGE_BAND
    return low if coverage < low else high if coverage > high else None


def mae_flag(mae: float, expected: float) -> bool:
    """Whether `mae` exceeds the `expected` one by more than MAE_TOLERANCE."""
    return bool(np.isfinite(expected) and mae > (1 + MAE_TOLERANCE) * expected)


def expected_mae(scores: WindowScores, card: Card) -> np.ndarray:
    """[1 + N] the MAE the card leads to expect of the network and of each road, at the steps each
    holds truth and the card has: the card's for the network; for a road, the card's scaled by the
    road's persistence MAE over the network's in this window (how much harder the road was to forecast)."""
    card_mae = card.figures.get("mae")
    if card_mae is None:
        return np.full(1 + scores.roads.counts.shape[0], np.nan)
    steps = np.isfinite(card_mae)
    network = mean_over_steps(np.nan_to_num(card_mae), scores.network.present(steps))
    present = scores.roads.present(steps)
    hardness = (mean_over_steps(scores.roads.means["persistence_mae"], present)
                / mean_over_steps(scores.network.means["persistence_mae"][0], present))
    return np.concatenate([network, mean_over_steps(np.nan_to_num(card_mae), present) * hardness])


def flags(scores: WindowScores, card: Card, node_ids: Sequence[str]) -> list[Flag]:
    """The window's flags, the network's first, then the roads' in the graph's order. A subject with
    fewer than MIN_SCORED observed speeds is not judged."""
    steps = np.isfinite(card.figures["mae"]) if "mae" in card.figures else None
    expected = expected_mae(scores, card)
    subjects = [(None, scores.network, 0), *((node, scores.roads, i) for i, node in enumerate(node_ids))]
    out = []
    for i, (subject, figures, row) in enumerate(subjects):
        if figures.scored[row] < MIN_SCORED:
            continue
        coverage = float(figures.pooled("coverage")[row])
        if (edge := coverage_flag(coverage)) is not None:
            out.append(Flag(scores.window.name, subject, "coverage", coverage, edge))
        mae = float(figures.pooled("mae", steps)[row])
        if mae_flag(mae, expected[i]):
            out.append(Flag(scores.window.name, subject, "mae", mae, float(expected[i])))
    return out
