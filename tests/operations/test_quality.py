"""The forecast-quality monitor: its figures against a direct computation with the evaluation's
scores, truth counted only where it has arrived, the flags at their boundaries and the model card
read from metrics.json in every layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from stmgt.data.dataset import TrafficDataset
from stmgt.evaluation.evaluate import evaluate
from stmgt.evaluation.baselines import HistoricalAverage, persistence
from stmgt.evaluation.metrics import HorizonScores
from stmgt.forecasting.forecast import Forecaster
from stmgt.operations.quality import (BLOCK_STEPS, COVERAGE_BAND, MIN_SCORED, Card, Figures, Monitor, Span, Window,
                                      WindowScores, coverage_flag, expected_mae, flags, horizon_minutes, mae_flag,
                                      read_card)
from stmgt.storage.runs import Run
from tests.samples import SPEC

SHORT = (Span("3 h", pd.Timedelta(hours=3)), Span("6 h", pd.Timedelta(hours=6), pd.Timedelta(hours=1)))


def as_feed(data: TrafficDataset, steps: int | None = None) -> TrafficDataset:
    """`data` as a live feed would hold it: its first `steps` steps, the splits of the whole recorded,
    the weather carried forward (not the simulator's forecast)."""
    steps = steps or data.num_steps
    splits = {name: [r.start, r.stop] for name, r in data.splits().items()}
    splits["test"][1] = None
    weather = None if data.weather is None else data.weather[:steps]
    return TrafficDataset(data.timestamps[:steps], data.speed[:steps], weather, data.graph,
                          {"source": "test", "splits": splits})


@pytest.fixture(scope="module")
def forecaster(trained, data):
    return Forecaster(trained[0].run.load(data.graph), data)


def direct(forecaster: Forecaster, anchors: np.ndarray, now: int, road: slice = slice(None)) -> dict:
    """The evaluation's scores (HorizonScores) of the forecasts made at `anchors`, on the truth up to
    step `now` only, for the roads `road`."""
    dataset = forecaster.dataset
    model, held, usual = HorizonScores(forecaster.horizon, True), HorizonScores(forecaster.horizon, False), \
        HorizonScores(forecaster.horizon, False)
    historical = HistoricalAverage(dataset, dataset.splits()["train"])
    for chunk, mixture in forecaster.as_issued(anchors):
        batch = forecaster.windows.batch(chunk)
        targets = torch.from_numpy(chunk)[:, None] + torch.arange(1, forecaster.horizon + 1)
        y = batch.y.masked_fill((targets > now)[..., None], float("nan"))[..., road]
        ha = historical.predict(targets)
        model.update(y, mixture.mean()[..., road], mixture[..., road])
        held.update(y, persistence(batch, forecaster.loaded.scaler, ha)[..., road])
        usual.update(y, ha[..., road])
    return {"model": model.result(), "persistence": held.result(), "historical": usual.result()}


def assert_figures_match(figures: Figures, row: int, expected: dict) -> None:
    model = expected["model"]
    np.testing.assert_array_equal(figures.counts[row], model["count"])
    for name, values in (("mae", model["mae"]), ("crps", model["crps"]), ("coverage", model["coverage"]["80"]),
                         ("persistence_mae", expected["persistence"]["mae"]),
                         ("historical_mae", expected["historical"]["mae"])):
        np.testing.assert_allclose(figures.means[name][row], values, rtol=1e-4, err_msg=name)


def test_figures_equal_the_evaluation_scores_of_the_same_forecasts(forecaster):
    """Network and road figures per step are HorizonScores' on the window's forecasts, with the truth
    after `now` left out; the long window reads only the forecasts made on the hour."""
    monitor = Monitor(forecaster, SHORT)
    now = monitor.first_anchor + 40
    quality = monitor.assess(now, Card({}, []))
    short, hourly = quality.windows
    assert (short.window.first, short.window.stop, short.window.clipped) == (now - 12, now, False)
    assert (hourly.window.first, hourly.window.every) == (now - 24, 4)
    assert set(hourly.window.anchors % 4) == {0} and len(hourly.window.anchors) == 6
    assert_figures_match(short.network, 0, direct(forecaster, np.arange(now - 12, now), now))
    assert_figures_match(hourly.network, 0, direct(forecaster, hourly.window.anchors, now))
    assert_figures_match(short.roads, 5, direct(forecaster, np.arange(now - 12, now), now, slice(5, 6)))
    # Step h is scored on the forecasts made at least h steps before now.
    np.testing.assert_array_equal(short.forecasts, [12 - h + 1 for h in range(1, 13)])
    means = short.network.means["mae"][0]
    assert short.network.pooled("mae")[0] == pytest.approx(means.mean())


def test_only_the_truth_that_has_arrived_counts(forecaster, data):
    """On a feed whose newest step is `now`, a forecast made k steps before is scored on its first k
    steps; the figures equal those at the same time on the whole data (where later truth exists
    but is left out), and a block whose horizon has all arrived keeps its cache key as the feed grows."""
    whole = Forecaster(forecaster.loaded, as_feed(data))
    first = Monitor(whole, SHORT).first_anchor
    now = (first // BLOCK_STEPS + 2) * BLOCK_STEPS + 12        # the 6 h window spans a settled block and a waiting one
    feed = Forecaster(forecaster.loaded, as_feed(data, now + 1))
    hour = (Span("1 h", pd.Timedelta(hours=1)),)
    live, later = Monitor(feed, hour).assess(now, Card({}, [])), Monitor(whole, hour).assess(now, Card({}, []))
    (scores,), (same,) = live.windows, later.windows
    np.testing.assert_array_equal(scores.forecasts, [4, 3, 2, 1] + [0] * 8)
    observed = np.isfinite(data.speed[now - 3:now + 1]).sum(axis=1)        # the steps that have arrived
    np.testing.assert_array_equal(scores.network.counts[0][:4], [observed[i:].sum() for i in range(4)])
    assert not scores.network.counts[0][4:].any() and np.isnan(scores.network.means["mae"][0][4:]).all()
    for name in ("mae", "crps", "coverage", "persistence_mae"):
        np.testing.assert_allclose(scores.network.means[name], same.network.means[name], rtol=1e-5)
    live_monitor, whole_monitor = Monitor(feed, SHORT), Monitor(whole, SHORT)
    blocks = live_monitor.blocks(now)
    settled = [b for b in blocks if b.stop - 1 + feed.horizon < feed.dataset.num_steps]
    waiting = [b for b in blocks if b not in settled]
    assert settled and waiting
    for block in settled:
        assert live_monitor.evidence_key(block) == whole_monitor.evidence_key(block)
    for block in waiting:       # rescored as truth arrives, from the same forecasts
        assert live_monitor.evidence_key(block) != whole_monitor.evidence_key(block)
        assert live_monitor.forecast_key(block) == whole_monitor.forecast_key(block)


def test_a_window_before_the_test_period_is_empty_and_clipped(forecaster):
    monitor = Monitor(forecaster, SHORT)
    quality = monitor.assess(monitor.first_anchor, Card({}, []))
    for scores in quality.windows:
        assert scores.window.clipped and not len(scores.window.anchors)
        assert not scores.network.counts.any() and np.isnan(scores.network.pooled("mae")).all()
    assert quality.flags == [] and monitor.blocks(monitor.first_anchor) == []


def scores_of(coverage: float, mae: float, count: int = MIN_SCORED, roads: int = 2) -> WindowScores:
    """A window whose network and roads all have this coverage and MAE at every one of 4 steps."""
    def figures(subjects):
        full = np.ones((subjects, 4))
        return Figures({"mae": mae * full, "crps": mae * full, "coverage": coverage * full,
                        "persistence_mae": 2 * full, "historical_mae": 3 * full}, np.full((subjects, 4), count // 4))
    return WindowScores(Window("24 h", pd.Timedelta(hours=24), 0, 96, 1, False), np.full(4, 96), figures(1),
                        figures(roads))


CARD = Card({"mae": np.full(4, 1.0)}, [])


@pytest.mark.parametrize("coverage, flagged", [(COVERAGE_BAND[0], False), (COVERAGE_BAND[0] - 1e-6, True),
                                               (COVERAGE_BAND[1], False), (COVERAGE_BAND[1] + 1e-6, True)])
def test_the_coverage_flag_at_the_edges_of_the_band(coverage, flagged):
    found = [f for f in flags(scores_of(coverage, 1.0), CARD, ["a", "b"]) if f.measure == "coverage"]
    assert [f.subject for f in found] == ([None, "a", "b"] if flagged else [])
    assert (coverage_flag(coverage) is not None) == flagged
    if flagged:
        assert ("too narrow" if coverage < 0.8 else "too wide") in found[0].words()


@pytest.mark.parametrize("mae, flagged", [(1.25, False), (1.25 + 1e-6, True), (0.5, False)])
def test_the_mae_flag_at_a_quarter_above_the_card(mae, flagged):
    found = [f for f in flags(scores_of(0.8, mae), CARD, ["a", "b"]) if f.measure == "mae"]
    assert [f.subject for f in found] == ([None, "a", "b"] if flagged else [])
    assert mae_flag(mae, 1.0) == flagged
    if flagged:
        assert found[0].reference == 1.0 and "25 %" in found[0].words()


def test_no_flag_without_enough_speeds_or_without_a_card():
    assert flags(scores_of(0.5, 9.0, count=MIN_SCORED - 4), CARD, ["a", "b"]) == []
    assert [f.measure for f in flags(scores_of(0.5, 9.0), Card({}, []), ["a", "b"])] == ["coverage"] * 3


def test_a_road_harder_for_persistence_is_expected_a_larger_mae():
    """The card holds network figures only: a road twice as hard for persistence as the network is
    expected twice the card's MAE, and flagged only above 1.25 times that."""
    scores = scores_of(0.8, 2.4)
    scores.roads.means["persistence_mae"][1] = 4.0
    scores.network.means["persistence_mae"][0] = 3.0             # the network's, road b's included
    scores.roads.means["mae"][1] = 1.6                            # above the card's 1.0 by 60 %, not above 4/3 by 25 %
    np.testing.assert_allclose(expected_mae(scores, CARD), [1.0, 2 / 3, 4 / 3])
    assert [f.subject for f in flags(scores, CARD, ["a", "b"]) if f.measure == "mae"] == [None, "a"]


@pytest.fixture(scope="module")
def evaluated(trained, data, tmp_path_factory) -> Run:
    """A copy of the small run with a metrics.json as `evaluate` writes it (a quick look)."""
    run = Run(shutil.copytree(trained[0].run.path, tmp_path_factory.mktemp("evaluated") / "run"))
    evaluate(run, data, SPEC, max_batches=1)
    return run


def card_of(tmp_path, evaluated, edit) -> Card:
    run = Run(shutil.copytree(evaluated.path, tmp_path / "run"))
    metrics = run.metrics()
    edit(metrics)
    run.write_metrics(metrics)
    return read_card(run, [15 * k for k in range(1, 13)])


def test_the_card_is_read_per_step_in_every_layout(tmp_path, evaluated, forecaster):
    minutes = horizon_minutes(forecaster)
    run = evaluated
    card = read_card(run, minutes, "another dataset")
    metrics = run.metrics()
    np.testing.assert_allclose(card.figures["mae"], metrics["models"]["stmgt"]["mae"])
    np.testing.assert_allclose(card.figures["coverage"], metrics["models"]["stmgt"]["coverage"]["80"])
    np.testing.assert_allclose(card.figures["historical_mae"], metrics["models"]["historical_average"]["mae"])
    assert any("not of another dataset" in note for note in card.notes)
    assert any("quick look" in note for note in card.notes)

    def older(m):          # before the weather forecast and the historical average were scored
        del m["weather_forecast"], m["models"]["historical_average"]
        m["models"]["stmgt"].pop("coverage")
    old = card_of(tmp_path / "old", evaluated, older)
    assert "historical_mae" not in old.figures and "coverage" not in old.figures and old.available
    assert any("older version" in n for n in old.notes) and any("no 80 % coverage or historical" in n
                                                                 for n in old.notes)

    def half_hourly(m):    # a card of 30-minute steps fills this model's even steps only
        m["horizon_minutes"] = [30 * k for k in range(1, 13)]
    coarse = card_of(tmp_path / "coarse", evaluated, half_hourly)
    assert np.isfinite(coarse.figures["mae"]).tolist() == [k % 2 == 1 for k in range(12)]
    assert coarse.pooled("mae") == pytest.approx(np.mean(metrics["models"]["stmgt"]["mae"][:6]))


def test_a_missing_or_unreadable_card_says_so(tmp_path, evaluated):
    run = Run(shutil.copytree(evaluated.path, tmp_path / "run"))
    (run.path / "metrics.json").write_text("{not json")
    broken = read_card(run, [15, 30])
    assert not broken.available and "cannot be read" in broken.notes[0]
    (run.path / "metrics.json").write_text(json.dumps({"models": {"stmgt": {"mae": 1.2}}, "horizon_minutes": [15]}))
    assert "layout" in read_card(run, [15, 30]).notes[0]
    (run.path / "metrics.json").unlink()
    missing = read_card(run, [15, 30])
    assert not missing.available and "no test figures yet" in missing.notes[0]
