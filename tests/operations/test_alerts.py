"""Incident alerts: the calibrated threshold's false-alarm rate, the corroboration, episodes, the
alerts CSV and the `monitor` command; for interactive use, the calibration computed once and
re-thresholded, evidence kept in pieces (equal to one pass, reused after an append), and alerts
over a window: current or history, followed back to where they opened."""

from __future__ import annotations

import io
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from stmgt.cli import main
from stmgt.data.dataset import TrafficDataset
from stmgt.data.folder import write_folder
from stmgt.data.graph import RoadGraph
from stmgt.data.simulate import SimulationConfig, TrafficSimulator, simulate
from stmgt.forecasting.forecast import Forecaster
from stmgt.operations.alerts import (ALERT_COLUMNS, EVIDENCE_PIECE, LEADS, LOOKBACK, EvidenceStore, IncidentMonitor,
                                     Surprise, alerts_frame, alerts_until, corroborate, earliest_step, episode_count,
                                     episodes, surprise, threshold_for_rate)
from stmgt.errors import DataError
from stmgt.storage.runs import Run
from stmgt.storage.exports import csv_bytes, restored
from tests.samples import count_scored_steps, small_dataset

STEPS_PER_DAY = 96


def ring(n: int) -> np.ndarray:
    """Neighbours on a ring of n roads."""
    joined = np.zeros((n, n), bool)
    for i in range(n):
        joined[i, (i + 1) % n] = joined[(i + 1) % n, i] = True
    return joined


def calibrated_evidence(days: int, nodes: int, seed: int) -> Surprise:
    """Forecasts that are exactly calibrated and data without incidents: each lead's tail probability
    is uniform, the three leads correlated (they forecast the same observation), with noise that
    persists a little from step to step and road to road, as traffic's does."""
    rng = np.random.default_rng(seed)
    T = days * STEPS_PER_DAY
    shared = rng.normal(size=(T, nodes))
    shared[1:] = 0.3 * shared[:-1] + np.sqrt(1 - 0.09) * shared[1:]
    shared = 0.8 * shared + 0.6 * np.roll(shared, 1, axis=1)
    z = (shared[..., None] + 0.5 * rng.normal(size=(T, nodes, len(LEADS)))) / np.sqrt(1.25)
    speed = np.full((T, nodes), 30.0)
    return Surprise(np.arange(T), norm.cdf(z), speed, speed)


@pytest.mark.parametrize("per_day", [1.0, 4.0])
def test_the_threshold_gives_the_asked_false_alarm_rate_on_data_without_incidents(per_day):
    """Calibrated on one period's mirror score, the lower-tail alerts of an independent period
    come at the asked rate: within 35 % (the two periods' counts each vary by about 1/√count)."""
    neighbours = ring(30)
    validation, later = calibrated_evidence(60, 30, seed=1), calibrated_evidence(60, 30, seed=2)
    threshold = threshold_for_rate(corroborate(validation.score(upper=True), neighbours), 60, per_day)
    assert episode_count(corroborate(validation.score(upper=True), neighbours), threshold) <= per_day * 60
    rate = episode_count(corroborate(later.score(), neighbours), threshold) / 60
    assert rate == pytest.approx(per_day, rel=0.35)


def test_a_rate_of_zero_or_less_is_refused():
    with pytest.raises(DataError, match="more than 0 per day, got 0"):
        threshold_for_rate(np.ones((10, 3)), 1.0, 0.0)


def evidence_with(drops: dict[tuple[int, int], float], steps: int = 40, nodes: int = 6) -> Surprise:
    """Every road at its forecasts' median (tail probability 0.5), but for {(step, road): p}."""
    tails = np.full((steps, nodes, len(LEADS)), 0.5)
    for (t, n), p in drops.items():
        tails[t, n] = p
    observed = np.full((steps, nodes), 30.0)
    for (t, n), p in drops.items():
        observed[t, n] = 12.0
    return Surprise(np.arange(steps), tails, observed, np.full((steps, nodes), 29.0))


def test_an_injected_slowdown_opens_an_alert_at_its_road_and_clears_after():
    """A slowdown over steps 10..15 at road 2: the alert fires at step 11 (the first step whose own
    step before confirms it), stays open through 15 and is over at 16; no other road alerts."""
    evidence = evidence_with({(t, 2): 1e-4 for t in range(10, 16)})
    found = episodes(corroborate(evidence.score(), ring(6)), threshold=3.0)
    assert [(e.node, e.start, e.end) for e in found] == [(2, 11, 15)]
    assert 11 <= found[0].peak <= 15


def test_a_neighbour_in_its_tail_confirms_the_first_step():
    evidence = evidence_with({(10, 2): 1e-4, (10, 3): 1e-3})
    found = episodes(corroborate(evidence.score(), ring(6)), threshold=3.0)
    assert [(e.node, e.start, e.end) for e in found] == [(2, 10, 10), (3, 10, 10)]


def test_a_single_noisy_step_without_support_does_not_alert():
    """One road far in its tail at one step, its neighbours and its next step as expected: no alert,
    however small the probability; the same drop at a road that is no neighbour does not help."""
    evidence = evidence_with({(10, 2): 1e-9, (10, 5): 1e-9})
    assert episodes(corroborate(evidence.score(), ring(6)), threshold=3.0) == []
    assert corroborate(evidence.score(), ring(6))[10, 2] == pytest.approx(-np.log(0.5))


def test_consecutive_steps_above_the_threshold_are_one_episode():
    score = np.zeros((12, 2))
    score[3:7, 0] = [5, 6, 9, 4]
    score[9, 0] = 5
    score[2:4, 1] = 7
    found = episodes(score, threshold=3.0)
    assert [(e.node, e.start, e.end, e.peak) for e in found] == [(1, 2, 3, 2), (0, 3, 6, 5), (0, 9, 9, 9)]
    assert episode_count(score, 3.0) == 3


def test_the_alerts_csv_has_its_columns_and_reads_back():
    dataset = small_dataset()                                   # 8 steps, 3 roads
    evidence = evidence_with({(t, 0): 1e-5 for t in range(2, 6)}, steps=8, nodes=3)
    neighbours = ~np.eye(3, dtype=bool)
    frame = alerts_frame(episodes(corroborate(evidence.score(), neighbours), 3.0), evidence, dataset)
    assert list(frame.columns) == ALERT_COLUMNS and len(frame) == 1
    text = csv_bytes(frame).decode()
    assert text.splitlines()[0] == ",".join(ALERT_COLUMNS)
    back = restored(pd.read_csv(io.StringIO(text), dtype={"node_id": str}))
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    row = back.iloc[0]
    assert row["node_id"] == "n1"
    assert pd.Timestamp(row["start"]) == dataset.timestamps[3] and pd.Timestamp(row["end"]) == dataset.timestamps[5]
    assert pd.Timestamp(row["start"]).utcoffset() == pd.Timedelta(hours=7)
    assert (row["peak_observed_kmh"], row["peak_expected_kmh"]) == (12.0, 29.0)
    assert row["probability"] == pytest.approx(1e-5, rel=1e-2)


def trained_ids() -> list[str]:
    return simulate(weeks=2, seed=2).graph.node_ids


@pytest.fixture(scope="module")
def small_run(trained):
    return str(trained[0].run.path)


@pytest.mark.slow
def test_monitor_writes_one_row_per_alert_and_refuses_to_overwrite_a_foreign_file(small_run, tmp_path, capsys):
    out = tmp_path / "alerts.csv"
    args = ["monitor", "--run", small_run, "--since", "2025-07-19T12:00+07:00", "--false-alarms-per-day", "300",
            "--out", str(out)]
    assert main(args) == 0
    frame = pd.read_csv(out, dtype={"node_id": str})
    assert list(frame.columns) == ALERT_COLUMNS and len(frame) > 0
    assert (pd.to_datetime(frame["start"], utc=True) >= pd.Timestamp("2025-07-19T12:00+07:00")).all()
    assert frame["start"].str.endswith("+07:00").all() and frame["node_id"].isin(trained_ids()).all()
    assert (frame["start"] <= frame["end"]).all() and frame["probability"].between(0, 1).all()
    assert "alert(s)" in capsys.readouterr().out
    assert main(args) == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    foreign = tmp_path / "mine.csv"
    foreign.write_text("a,b\n1,2\n")
    assert main([*args[:-1], str(foreign), "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err and foreign.read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("extra,message", [
    (["--false-alarms-per-day", "0"], "--false-alarms-per-day: must be more than 0, got 0"),
    (["--false-alarms-per-day", "-1"], "--false-alarms-per-day: must be more than 0, got -1"),
    (["--false-alarms-per-day", "nan"], "--false-alarms-per-day: must be a finite number"),
    (["--since", "2031-01-01T00:00+07:00"], "--since: 2031-01-01T00:00:00+07:00 is outside the data"),
    (["--until", "2020-01-01T00:00+07:00"], "--until: 2020-01-01T00:00:00+07:00 is outside the data"),
    (["--since", "yesterday-ish"], "--since: 'yesterday-ish' is not a time"),
    (["--since", "2025-07-19T12:00+07:00", "--until", "2025-07-19T11:00+07:00"], "no time step lies between"),
])
def test_monitor_refuses_bad_input_in_one_line(small_run, tmp_path, capsys, extra, message):
    out = tmp_path / "alerts.csv"
    try:
        code = main(["monitor", "--run", small_run, *extra, "--out", str(out)])
    except SystemExit as exit_:       # argparse's own checks
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not out.exists()


def test_monitor_refuses_an_unknown_run_and_a_run_of_another_graph(small_run, tmp_path, capsys):
    out = tmp_path / "alerts.csv"
    assert main(["monitor", "--run", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no checkpoint.pt here" in capsys.readouterr().err
    data = simulate(weeks=2, seed=2)
    nodes = data.graph.nodes.iloc[:3]
    edges = data.graph.edges[data.graph.edges.source.isin(nodes.node_id) & data.graph.edges.target.isin(nodes.node_id)]
    folder = tmp_path / "three"
    write_folder(TrafficDataset(data.timestamps, data.speed[:, :3], data.weather, RoadGraph(nodes, edges)), folder)
    assert main(["monitor", "--run", small_run, "--data", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "another road graph" in err and err.count("\n") == 1 and not out.exists()


def test_the_simulators_incident_log_is_the_slowdown_at_each_incidents_own_road():
    """The ground truth the incident benchmark scores against: every logged incident slows its own
    road by its severity over its steps (at least: another incident may overlap it)."""
    sim = TrafficSimulator(SimulationConfig(seed=3, weeks=1))
    assert len(sim.incident_log) > 3
    for incident in sim.incident_log:
        factor = sim.incidents[incident.start:incident.stop, incident.node]
        assert 0.3 <= incident.severity <= 0.6 and 2 <= incident.stop - incident.start <= 8
        assert (factor <= 1 - incident.severity + 1e-12).all()


@pytest.fixture(scope="module")
def small_forecaster(trained, data) -> Forecaster:
    """The shared small model on the data it was trained on (two simulated weeks)."""
    return Forecaster(Run(trained[0].run.path).load(), data)


def test_the_calibration_is_computed_once_and_another_rate_only_rethresholds(small_forecaster, monkeypatch):
    calls = count_scored_steps(monkeypatch)
    store = EvidenceStore()
    assert store.known_calibration(small_forecaster) is None and calls == []        # a look, no work
    monitor = IncidentMonitor(small_forecaster, 1.0, store=store)
    assert store.known_calibration(small_forecaster) is monitor.calibration
    val = small_forecaster.dataset.splits()["val"]
    assert calls == [(max(val.start, earliest_step(small_forecaster)), val.stop - 1)]
    busier = monitor.at_rate(20.0)
    again = IncidentMonitor(Forecaster(small_forecaster.loaded, small_forecaster.dataset), 20.0, store=monitor.store)
    assert len(calls) == 1 and busier.calibration is monitor.calibration is again.calibration
    fresh = IncidentMonitor(small_forecaster, 20.0)                 # its own store: calibrated anew
    assert len(calls) == 2
    assert busier.threshold == fresh.threshold == monitor.calibration.threshold(20.0) < monitor.threshold
    assert monitor.calibration.noise_per_day(busier.threshold) <= 20.0
    with pytest.raises(DataError, match="more than 0 per day"):
        monitor.at_rate(0.0)


def test_evidence_in_pieces_equals_evidence_in_one_pass(small_forecaster, monkeypatch):
    store, f = EvidenceStore(), small_forecaster
    first = earliest_step(f) + 5
    windows = [(first + 40, first + 90), (first, first + 50), (first + 3, f.dataset.num_steps - 1)]
    calls = count_scored_steps(monkeypatch)
    assert store.missing_steps(f, *windows[0]) == windows[0][1] - windows[0][0] + 1 + (windows[0][0] % EVIDENCE_PIECE) \
        + EVIDENCE_PIECE - 1 - windows[0][1] % EVIDENCE_PIECE and calls == []
    for a, b in windows:
        got, expected = store.evidence(f, a, b), surprise(f, a, b)
        np.testing.assert_array_equal(got.steps, np.arange(a, b + 1))
        for name in ("tails", "observed", "expected"):
            np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-5, atol=1e-9,
                                       equal_nan=True, err_msg=name)
    # The store scored each piece once, in one pass per run of missing pieces: the first window's,
    # the earlier ones the second window added, then the rest of the data.
    aligned = [(a - a % EVIDENCE_PIECE, b - b % EVIDENCE_PIECE + EVIDENCE_PIECE - 1) for a, b in windows]
    assert calls == [aligned[0], (aligned[1][0], aligned[0][0] - 1), (aligned[0][1] + 1, f.dataset.num_steps - 1)]
    store.evidence(f, first, f.dataset.num_steps - 1)
    assert len(calls) == 3 and store.missing_steps(f, first, f.dataset.num_steps - 1) == 0


def test_steps_appended_to_the_data_score_only_the_pieces_they_touch(small_forecaster, monkeypatch):
    """Evidence kept for the data before an append is reused after it, the last, partly filled
    piece included: only the new steps are scored."""
    full = replace(small_forecaster.dataset, provenance={"source": "a feed"})      # weather carried forward
    n = full.num_steps - 40
    before = replace(full, timestamps=full.timestamps[:n], speed=full.speed[:n], weather=full.weather[:n])
    store, loaded = EvidenceStore(), small_forecaster.loaded
    store.evidence(Forecaster(loaded, before), n - 100, n - 1)
    calls = count_scored_steps(monkeypatch)
    grown = Forecaster(loaded, full)
    got = store.evidence(grown, n - 100, full.num_steps - 1)
    assert calls == [(n, full.num_steps - 1)]
    assert store.missing_steps(grown, n - 100, full.num_steps - 1) == 0
    one_more = Forecaster(loaded, replace(full, timestamps=full.timestamps.append(
        full.timestamps[-1:] + full.freq), speed=np.vstack([full.speed, full.speed[-1:]]),
        weather=np.vstack([full.weather, full.weather[-1:]])))
    assert store.missing_steps(one_more, n - 100, full.num_steps) == 1
    store.evidence(one_more, n - 100, full.num_steps)
    assert calls[-1] == (full.num_steps, full.num_steps)
    np.testing.assert_allclose(got.tails, surprise(grown, n - 100, full.num_steps - 1).tails, rtol=1e-5, atol=1e-9)


class CraftedStore(EvidenceStore):
    """Evidence for every step of the data, made up: each road at its forecasts' median but for
    {(step, road): tail probability}."""

    def __init__(self, num_steps: int, num_nodes: int, drops: dict[tuple[int, int], float]):
        super().__init__()
        tails = np.full((num_steps, num_nodes, len(LEADS)), 0.5)
        for (t, n), p in drops.items():
            tails[t, n] = p
        speed = np.full((num_steps, num_nodes), 30.0)
        self.all = Surprise(np.arange(num_steps), tails, speed, speed)
        self.asked: list[tuple[int, int]] = []

    def evidence(self, forecaster, first, last, batch_size=64):
        self.asked.append((first, last))
        return self.all.between(first, last)


def test_alerts_in_a_window_are_current_or_history_and_start_where_they_opened(small_forecaster):
    f = small_forecaster
    dataset = f.dataset
    a, b = dataset.graph.index_of["n05"], dataset.graph.index_of["n30"]
    last = dataset.num_steps - 10
    first = last - 20
    # n05 slows from 45 steps before the window until its end (it opened long before `first`);
    # n30 slows for five steps inside it and recovers before `last`.
    drops = {(t, a): 1e-6 for t in range(first - 45, last + 1)}
    drops.update({(t, b): 1e-6 for t in range(first + 3, first + 8)})
    store = CraftedStore(dataset.num_steps, dataset.num_nodes, drops)
    frame = alerts_until(store, f, first, last, threshold=5.0)
    times = dataset.timestamps
    assert list(frame.columns) == [*ALERT_COLUMNS, "current", "start_cut"]
    rows = frame.set_index("node_id")
    assert rows.loc["n05", "current"] and not rows.loc["n05", "start_cut"]
    assert rows.loc["n05", "start"] == times[first - 44].isoformat()
    assert rows.loc["n05", "end"] == times[last].isoformat()
    assert not rows.loc["n30", "current"]
    assert (rows.loc["n30", "start"], rows.loc["n30", "end"]) == (times[first + 4].isoformat(),
                                                                   times[first + 7].isoformat())
    assert len(frame) == 2
    # An alert that cleared before the window is not in it; one open longer than LOOKBACK is cut there.
    assert alerts_until(store, f, last - 3, last, threshold=5.0)["node_id"].tolist() == ["n05"]
    long_ago = {(t, a): 1e-6 for t in range(earliest_step(f), last + 1)}
    cut = alerts_until(CraftedStore(dataset.num_steps, dataset.num_nodes, long_ago), f, first, last, threshold=5.0)
    assert cut["start_cut"].tolist() == [True] and cut["current"].tolist() == [True]
    assert pd.Timestamp(cut["start"].iloc[0]) == times[first] - LOOKBACK


def test_a_window_outside_the_scored_steps_or_a_model_too_short_sighted_is_refused_in_words(small_forecaster):
    with pytest.raises(DataError, match="cannot be scored: alerts need steps"):
        alerts_until(EvidenceStore(), small_forecaster, 2, 30, threshold=5.0)
    with pytest.raises(DataError, match="cannot be scored"):
        EvidenceStore().evidence(small_forecaster, 30, small_forecaster.dataset.num_steps)
    short_sighted = SimpleNamespace(horizon=2, seq_len=2, dataset=small_forecaster.dataset)
    with pytest.raises(DataError, match="the model forecasts 2 step\\(s\\) ahead; alerts need 3"):
        alerts_until(EvidenceStore(), short_sighted, 30, 40, threshold=5.0)
