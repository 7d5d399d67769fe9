"""Incident alerts: an observed speed far in the lower tail of what the model expected, at a
false-alarm rate the user chooses and the validation split calibrates.

Evidence per road and step t (`Surprise`): the observed speed's lower-tail probability
p_h = P(speed ≤ observed) under each forecast issued h = 1, 2 and 3 steps before t (the
mixture's cdf). The road's own score is the mean of −log p_h over the leads it has: a mean,
not the largest, so one unlucky forecast cannot raise an alert alone, while a drop that all
three forecasts missed (an incident: none of them could see it coming) scores high. exp(−score)
is the geometric mean of the three tail probabilities, the `probability` an alert reports.

Corroboration (`corroborate`): a sensor glitch or a lone driver is one road at one step; an
incident lasts and backs up into the roads feeding it. So the alert score is
min(own[t], max(own[t−1], max over the road's in- and out-neighbours m of own_m[t])): the road
must be in its own tail *and* either have been so the step before or have a neighbour in its
tail now. Both supports are known at t, so an alert fires at the step its evidence arrives
(typically one step after an incident's onset, when its first step is confirmed or its queue
reaches an upstream road) and never waits for the future.

Threshold (`threshold_for_rate`): the lowest score whose alert episodes (runs of steps above it
at one road, counted once however long) number at most R per day over the network on the
validation split. Real validation data holds incidents too, and counting them as false alarms
would set the threshold too high wherever incidents are more frequent than R. So the count is
taken on the mirror score, the same statistic on the *upper*-tail probabilities
P(speed ≥ observed): incidents only ever slow traffic, so the mirror's episodes are noise
alone, and a model whose tails are calibrated raises as many noise alerts in its lower tail. One
whose upper tail is heavier than its lower raises fewer: the rate asked is then an upper bound.
`benchmarks/incident_detection.py` checks the delivered rate against the simulator's truth.

Episodes (`episodes`): an alert opens at the step the score crosses the threshold, stays open
while it stays above, and clears at the first step below; it reports its road, first and last
step, and at its peak step the observed speed, the expected one (the median of the forecast
issued one step before) and the probability.

Interactive use (`EvidenceStore`, `alerts_until`): the calibration is computed once per model and
validation data (`Calibration`), and another false-alarm rate only re-reads its threshold. The
evidence for a step never changes once its truth has arrived, so it is kept in aligned pieces keyed
by what each is computed from (`data_digest`): a window of alerts ending at the newest step of a
live dataset computes only the steps that arrived since. An alert still above the threshold at the
window's last step is *current*; one that cleared is history."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from stmgt.data.dataset import TrafficDataset
from stmgt.errors import DataError
from stmgt.forecasting.forecast import Forecaster

LEADS = (1, 2, 3)                 # steps between a forecast and the step it is scored at
ALERT_COLUMNS = ["node_id", "start", "end", "peak_observed_kmh", "peak_expected_kmh", "probability"]
SMALLEST_P = 1e-12                # a tail probability of 0 (float rounding) would score infinity
STEPS_PER_BATCH = 64
EVIDENCE_PIECE = 16               # steps per piece of evidence an `EvidenceStore` keeps (aligned to multiples of it)
STORED_PIECES = 1024              # pieces an `EvidenceStore` holds before it forgets the least recently used
LOOKBACK = pd.Timedelta(days=1)   # how far before a window `alerts_until` follows an alert back to its opening


@dataclass
class Surprise:
    """The evidence at steps `steps` (dataset indices) × N roads."""

    steps: np.ndarray             # [T]
    tails: np.ndarray             # [T, N, L] P(speed ≤ observed) under the forecast issued LEADS[l] steps before
    observed: np.ndarray          # [T, N] km/h, NaN = no reading
    expected: np.ndarray          # [T, N] median of the forecast issued one step before, km/h

    def score(self, upper: bool = False) -> np.ndarray:
        """[T, N] mean −log tail probability over the leads (the upper tail with `upper`: the
        mirror score); 0 where the road has no reading."""
        p = 1.0 - self.tails if upper else self.tails
        logs = -np.log(np.clip(p, SMALLEST_P, 1.0))
        observed = np.isfinite(p)
        total = np.where(observed, logs, 0.0).sum(-1)
        return np.where(observed.any(-1), total / np.maximum(observed.sum(-1), 1), 0.0)

    def between(self, first: int, last: int) -> Surprise:
        """The evidence at steps first..last, which it must hold."""
        rows = slice(first - int(self.steps[0]), last - int(self.steps[0]) + 1)
        return Surprise(self.steps[rows], self.tails[rows], self.observed[rows], self.expected[rows])


def joined(parts: list[Surprise]) -> Surprise:
    """Evidence at consecutive steps, one after another, as one."""
    return Surprise(*(np.concatenate([getattr(p, name) for p in parts])
                      for name in ("steps", "tails", "observed", "expected")))


def earliest_step(forecaster: Forecaster) -> int:
    """The first step every lead's forecast exists for (a full input window LEADS[-1] steps before)."""
    return forecaster.seq_len - 1 + max(LEADS)


def check_steps(forecaster: Forecaster, first: int, last: int) -> None:
    """Refuse in words a model that forecasts too few steps ahead, or steps first..last that are
    not all ones alerts can be computed for."""
    if forecaster.horizon < max(LEADS):
        raise DataError(f"the model forecasts {forecaster.horizon} step(s) ahead; alerts need {max(LEADS)}")
    if not earliest_step(forecaster) <= first <= last < forecaster.dataset.num_steps:
        raise DataError(f"steps {first}..{last} cannot be scored: alerts need steps "
                        f"{earliest_step(forecaster)}..{forecaster.dataset.num_steps - 1}")


@torch.no_grad()
def surprise(forecaster: Forecaster, first: int, last: int, batch_size: int = STEPS_PER_BATCH) -> Surprise:
    """The evidence at steps first..last: the forecasts are made in batches of anchors (as
    `evaluate` does), each read at its leads, with the weather forecast a forecaster would have
    had at the anchor (`Forecaster.as_issued`)."""
    dataset = forecaster.dataset
    check_steps(forecaster, first, last)
    lead = np.asarray(LEADS)
    anchors = np.arange(first - lead.max(), last)
    tails, medians = [], []
    for chunk, forecast in forecaster.as_issued(anchors, batch_size):
        mixture = forecast[:, :lead.max()]
        targets = np.minimum(chunk[:, None] + np.arange(1, lead.max() + 1), dataset.num_steps - 1)
        tails.append(mixture.cdf(torch.from_numpy(dataset.speed[targets])).numpy())     # [B, 3, N]
        medians.append(mixture[:, 0].quantiles([0.5])[..., 0].numpy())                 # [B, N]
    tails, medians = np.concatenate(tails), np.concatenate(medians)
    count = last - first + 1
    offset = lead.max()
    # The forecast for step first+j made h steps before it is anchor row j + offset − h.
    by_lead = np.stack([tails[offset - h:offset - h + count, h - 1] for h in LEADS], axis=-1)
    steps = np.arange(first, last + 1)
    return Surprise(steps, by_lead, dataset.speed[steps].astype(np.float64), medians[offset - 1:offset - 1 + count])


def neighbour_matrix(dataset: TrafficDataset) -> np.ndarray:
    """[N, N] True where two roads are joined by an edge either way (in- and out-neighbours)."""
    src, dst = dataset.graph.edge_index.numpy()
    joined = np.zeros((dataset.num_nodes, dataset.num_nodes), dtype=bool)
    joined[src, dst] = joined[dst, src] = True
    np.fill_diagonal(joined, False)
    return joined


def corroborate(own: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """[T, N] alert score: a road's own score, capped by its best support (its own score the
    step before, or a neighbour's now). The first step has no step before it in `own`."""
    before = np.vstack([np.zeros((1, own.shape[1])), own[:-1]])
    beside = np.where(neighbours[None], own[:, None, :], 0.0).max(-1)
    return np.minimum(own, np.maximum(before, beside))


def episode_count(score: np.ndarray, threshold: float) -> int:
    """How many alerts open in [T, N] `score` at `threshold` (runs of steps above it per road)."""
    above = score > threshold
    return int((above[0].sum() + (above[1:] & ~above[:-1]).sum()))


def threshold_for_rate(score: np.ndarray, days: float, per_day: float) -> float:
    """The lowest threshold at which `score` ([T, N] over `days` days) opens at most `per_day`
    alerts per day over the network; at a rate too small for the period (under one alert in it)
    the highest score, above which nothing in the period alerts."""
    if not per_day > 0:
        raise DataError(f"the false-alarm rate must be more than 0 per day, got {per_day:g}")
    allowed = per_day * days
    candidates = np.unique(score[score > 0])
    if len(candidates) == 0:
        return 0.0
    lo, hi = 0, len(candidates) - 1          # episode counts fall (nearly monotonically) as the threshold rises
    if episode_count(score, candidates[hi]) > allowed:
        return float(candidates[hi])
    while lo < hi:
        mid = (lo + hi) // 2
        if episode_count(score, candidates[mid]) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


@dataclass(frozen=True)
class Episode:
    """An alert at road `node` (index) over steps start..end (indices into the scored steps)."""

    node: int
    start: int
    end: int
    peak: int


def episodes(score: np.ndarray, threshold: float) -> list[Episode]:
    """Every alert in [T, N] `score`: opened where it crosses `threshold`, cleared where it falls
    back; an alert still open at the last step ends there. Sorted by start, then road."""
    above = score > threshold
    padded = np.vstack([np.zeros((1, above.shape[1]), bool), above, np.zeros((1, above.shape[1]), bool)])
    change = np.diff(padded.astype(np.int8), axis=0)
    found = []
    for node in range(above.shape[1]):
        starts = np.flatnonzero(change[:, node] == 1)
        stops = np.flatnonzero(change[:, node] == -1)
        for a, b in zip(starts, stops):
            found.append(Episode(node, int(a), int(b - 1), int(a + np.argmax(score[a:b, node]))))
    return sorted(found, key=lambda e: (e.start, e.node))


def alerts_frame(found: list[Episode], evidence: Surprise, dataset: TrafficDataset) -> pd.DataFrame:
    """One row per alert, ALERT_COLUMNS; times as ISO 8601 with the data's offset."""
    own = evidence.score()
    times = dataset.timestamps[evidence.steps]
    ids = dataset.graph.node_ids
    return pd.DataFrame({
        "node_id": pd.Series([ids[e.node] for e in found], dtype=object),
        "start": [times[e.start].isoformat() for e in found],
        "end": [times[e.end].isoformat() for e in found],
        "peak_observed_kmh": [round(float(evidence.observed[e.peak, e.node]), 2) for e in found],
        "peak_expected_kmh": [round(float(evidence.expected[e.peak, e.node]), 2) for e in found],
        "probability": [float(f"{np.exp(-own[e.peak, e.node]):.3g}") for e in found],
    }, columns=ALERT_COLUMNS)


def steps_between(forecaster: Forecaster, since: pd.Timestamp | None,
                  until: pd.Timestamp | None) -> tuple[int, int]:
    """The first and last step in since..until (default: the test split's start, the data's end),
    refused in words outside the steps alerts can be computed for."""
    dataset = forecaster.dataset
    times = dataset.timestamps
    earliest = earliest_step(forecaster)
    first = dataset.splits()["test"].start if since is None else int(times.searchsorted(since))
    last = dataset.num_steps - 1 if until is None else int(times.searchsorted(until, side="right")) - 1
    span = f"alerts can be computed from {times[earliest].isoformat()} to {times[-1].isoformat()}"
    if since is not None and not times[earliest] <= since <= times[-1]:
        raise DataError(f"{since.isoformat()} is outside the data: {span}", "--since")
    if until is not None and not times[earliest] <= until <= times[-1]:
        raise DataError(f"{until.isoformat()} is outside the data: {span}", "--until")
    if first > last:
        raise DataError(f"no time step lies between --since and --until; {span}")
    return max(first, earliest), last


def calibration_steps(forecaster: Forecaster) -> tuple[int, int]:
    """The first and last validation step the threshold is calibrated on, refused in words when the
    validation split leaves none."""
    val = forecaster.dataset.splits()["val"]
    first = max(val.start, earliest_step(forecaster))
    if first >= val.stop:
        raise DataError("the data is too short: its validation split leaves no step to calibrate alerts on")
    return first, val.stop - 1


@dataclass(frozen=True)
class Calibration:
    """The corroborated mirror score over the validation split: every false-alarm rate's
    threshold is read from it without the model."""

    mirror: np.ndarray            # [T, N]
    days: float                   # how long the T steps last
    first: pd.Timestamp           # the first and last step calibrated on
    last: pd.Timestamp

    def threshold(self, per_day: float) -> float:
        """The threshold for `per_day` false alarms per day over the network (`threshold_for_rate`)."""
        return threshold_for_rate(self.mirror, self.days, per_day)

    def noise_per_day(self, threshold: float) -> float:
        """The mirror's alerts per day over the network at `threshold`: at most the rate asked."""
        return episode_count(self.mirror, threshold) / self.days


def calibrate(forecaster: Forecaster, batch_size: int = STEPS_PER_BATCH) -> Calibration:
    """The mirror score over the validation split (the model's work: a forecast per step)."""
    dataset = forecaster.dataset
    first, last = calibration_steps(forecaster)
    mirror = corroborate(surprise(forecaster, first, last, batch_size).score(upper=True), neighbour_matrix(dataset))
    return Calibration(mirror, (last + 1 - first) * dataset.freq / pd.Timedelta(days=1),
                       dataset.timestamps[first], dataset.timestamps[last])


def data_digest(forecaster: Forecaster, first: int, last: int) -> str:
    """What the evidence at steps first..last is computed from, hashed: the steps themselves, the
    rows their forecasts read (from the input window of the earliest lead's forecast to `last`), the
    graph, and where the issued weather forecasts come from. Equal digests give equal evidence
    under one model, whatever the dataset object: rows appended to a live dataset leave the digest
    of earlier steps as it was, and a replaced dataset changes it."""
    dataset = forecaster.dataset
    rows = slice(max(first - earliest_step(forecaster), 0), last + 1)
    simulator = forecaster.simulator
    digest = hashlib.sha256(f"{first},{last},{dataset.graph.fingerprint()},"
                            f"{None if simulator is None else simulator.config}".encode())
    digest.update(np.ascontiguousarray(dataset.timestamps[rows].asi8).tobytes())
    for values in (dataset.speed, dataset.weather):
        if values is not None:
            digest.update(np.ascontiguousarray(values[rows]).tobytes())
    return digest.hexdigest()


def pieces(forecaster: Forecaster, first: int, last: int) -> list[tuple[int, int]]:
    """The aligned pieces (steps k·EVIDENCE_PIECE … (k+1)·EVIDENCE_PIECE − 1, within the steps
    alerts can be computed for) that cover steps first..last."""
    earliest, end = earliest_step(forecaster), forecaster.dataset.num_steps - 1
    start = first - first % EVIDENCE_PIECE
    return [(max(a, earliest), min(a + EVIDENCE_PIECE - 1, end)) for a in range(start, last + 1, EVIDENCE_PIECE)]


class EvidenceStore:
    """One model's calibrations and evidence, kept for reuse across calls, rates, windows and the
    steps a live dataset appends: each keyed by its `data_digest`, the evidence in aligned pieces
    (`pieces`), the least recently used forgotten past STORED_PIECES. Missing pieces next to each
    other are computed in one pass, and a piece that ended the data before steps were appended
    scores only the new steps. Safe to share between threads; use one store per model."""

    def __init__(self, capacity: int = STORED_PIECES):
        self.capacity = capacity
        self._pieces: OrderedDict[str, Surprise] = OrderedDict()
        self._calibrations: dict[str, Calibration] = {}
        self._lock = threading.Lock()

    def calibration(self, forecaster: Forecaster, batch_size: int = STEPS_PER_BATCH) -> Calibration:
        """The calibration on the forecaster's validation split, computed once for its data."""
        key = data_digest(forecaster, *calibration_steps(forecaster))
        found = self._calibrations.get(key)
        if found is None:
            found = self._calibrations[key] = calibrate(forecaster, batch_size)
        return found

    def known_calibration(self, forecaster: Forecaster) -> Calibration | None:
        """The calibration for the forecaster's validation data if it is kept, without computing it."""
        return self._calibrations.get(data_digest(forecaster, *calibration_steps(forecaster)))

    def missing_steps(self, forecaster: Forecaster, first: int, last: int) -> int:
        """How many steps `evidence(forecaster, first, last)` would score: those of its pieces not
        kept, less the part of a piece kept before the data grew."""
        check_steps(forecaster, first, last)
        count = 0
        for a, b in pieces(forecaster, first, last):
            with self._lock:
                if data_digest(forecaster, a, b) in self._pieces:
                    continue
            before = self.kept_start(forecaster, a, b)
            count += b + 1 - (a if before is None else int(before.steps[-1]) + 1)
        return count

    def kept_start(self, forecaster: Forecaster, a: int, b: int) -> Surprise | None:
        """The longest start a..e (e < b) of piece a..b that is kept: the piece as it was when it
        ended the data, before steps were appended (so that only the new steps need scoring)."""
        with self._lock:
            for end in range(b - 1, a - 1, -1):
                found = self._pieces.get(data_digest(forecaster, a, end))
                if found is not None:
                    return found
        return None

    def evidence(self, forecaster: Forecaster, first: int, last: int,
                 batch_size: int = STEPS_PER_BATCH) -> Surprise:
        """The evidence at steps first..last (`surprise`), from the pieces kept and those computed now."""
        check_steps(forecaster, first, last)
        spans = pieces(forecaster, first, last)
        keys = [data_digest(forecaster, a, b) for a, b in spans]
        with self._lock:
            found = {k: self._pieces[k] for k in keys if k in self._pieces}
        missing = [i for i, k in enumerate(keys) if k not in found]
        runs = np.split(np.asarray(missing, int), np.flatnonzero(np.diff(missing) > 1) + 1) if missing else []
        for run in runs:
            before = self.kept_start(forecaster, *spans[run[0]])
            start = spans[run[0]][0] if before is None else int(before.steps[-1]) + 1
            computed = surprise(forecaster, start, spans[run[-1]][1], batch_size)
            if before is not None:
                computed = joined([before, computed])
            found.update({keys[i]: computed.between(*spans[i]) for i in run})
        with self._lock:
            for key in keys:
                self._pieces[key] = found[key]
                self._pieces.move_to_end(key)
            while len(self._pieces) > self.capacity:
                self._pieces.popitem(last=False)
        return joined([found[k] for k in keys]).between(first, last)


def alerts_until(store: EvidenceStore, forecaster: Forecaster, first: int, last: int, threshold: float,
                 batch_size: int = STEPS_PER_BATCH) -> pd.DataFrame:
    """Every alert open at some step of first..last: ALERT_COLUMNS, then `current` (still above the
    threshold at `last`) and `start_cut`. An alert already open at `first` is followed back, a piece
    at a time, to the step it opened; where it was still open LOOKBACK before `first` (or at the
    data's earliest step) the search stops and `start_cut` says its start is that step or earlier."""
    dataset = forecaster.dataset
    check_steps(forecaster, first, last)
    earliest = earliest_step(forecaster)
    limit = max(earliest, first - int(LOOKBACK / dataset.freq))
    neighbours = neighbour_matrix(dataset)
    begin = first
    while True:
        scored = max(begin - 1, earliest)          # a step's score needs the step before it
        evidence = store.evidence(forecaster, scored, last, batch_size)
        score = corroborate(evidence.score(), neighbours)[begin - scored:]
        if begin <= limit or not (score[0] > threshold).any():
            break
        begin = max(limit, begin - EVIDENCE_PIECE)
    found = [e for e in episodes(score, threshold) if e.end >= first - begin]
    frame = alerts_frame(found, evidence.between(begin, last), dataset)
    frame["current"] = [e.end == len(score) - 1 for e in found]
    frame["start_cut"] = [e.start == 0 for e in found]
    return frame


class IncidentMonitor:
    """A forecaster with its alert threshold, calibrated on the dataset's validation split for
    `per_day` false alarms per day over the network. Its `store` keeps the calibration and the
    evidence: `at_rate` and `on` reuse them."""

    def __init__(self, forecaster: Forecaster, per_day: float, batch_size: int = STEPS_PER_BATCH,
                 store: EvidenceStore | None = None):
        if not per_day > 0:
            raise DataError(f"the false-alarm rate must be more than 0 per day, got {per_day:g}")
        self.forecaster, self.per_day, self.batch_size = forecaster, per_day, batch_size
        self.store = store or EvidenceStore()
        self.neighbours = neighbour_matrix(forecaster.dataset)
        self.calibration = self.store.calibration(forecaster, batch_size)
        self.calibration_days = self.calibration.days
        self.threshold = self.calibration.threshold(per_day)

    def at_rate(self, per_day: float) -> IncidentMonitor:
        """The same monitor at another false-alarm rate: a new threshold, no new forecasts."""
        return IncidentMonitor(self.forecaster, per_day, self.batch_size, self.store)

    def on(self, forecaster: Forecaster) -> IncidentMonitor:
        """This monitor on `forecaster`, the same model on grown data (a live dataset after an
        append): the calibration and the evidence already computed are reused where the data they
        came from is unchanged."""
        if forecaster.loaded is not self.forecaster.loaded:
            raise DataError("a monitor follows its own model; make a new monitor for another model")
        return IncidentMonitor(forecaster, self.per_day, self.batch_size, self.store)

    def alerts(self, first: int, last: int) -> pd.DataFrame:
        """The alerts over steps first..last (ALERT_COLUMNS); one open at `first` starts there."""
        evidence = self.store.evidence(self.forecaster, first, last, self.batch_size)
        score = corroborate(evidence.score(), self.neighbours)
        return alerts_frame(episodes(score, self.threshold), evidence, self.forecaster.dataset)
