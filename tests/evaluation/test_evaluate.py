"""Scoring a trained run: metrics with the baselines, a capped quick look, a cancel, the summary in
words and the data the metrics name."""

import shutil
import threading

import pytest

from stmgt.data.simulate import simulate
from stmgt.evaluation.baselines import RIDGE_PENALTIES
from stmgt.evaluation.evaluate import (best_baseline_summary, best_baseline_verdicts, evaluate, missing_baselines,
                                      versus_baselines)
from stmgt.storage.runs import Run
from tests.samples import SPEC


def test_evaluate_writes_metrics_with_baselines(trained, data, tmp_path):
    run = Run(shutil.copytree(trained[0].run.path, tmp_path / "scored"))   # the shared run stays unscored
    metrics = evaluate(run, data, SPEC)
    assert run.metrics()["models"]["stmgt"]["mae"] == pytest.approx(metrics["models"]["stmgt"]["mae"])
    assert set(metrics["models"]) == {"stmgt", "stmgt_perfect_weather", "persistence", "historical_average",
                                      "linear_autoregressive"}
    assert not missing_baselines(metrics) and metrics["linear_autoregressive_penalty"] in RIDGE_PENALTIES
    linear, persistence = metrics["models"]["linear_autoregressive"], metrics["models"]["persistence"]
    assert linear["count"] == persistence["count"]                 # the same windows and observed targets
    assert linear["mae"][-1] < persistence["mae"][-1] and linear["crps"] == linear["mae"]
    assert "simulator's weather forecast" in metrics["weather_forecast"]
    assert metrics["models"]["stmgt"]["mae"] != metrics["models"]["stmgt_perfect_weather"]["mae"]
    assert metrics["horizon_minutes"] == [15 * k for k in range(1, 13)]
    stmgt = metrics["models"]["stmgt"]
    assert len(stmgt["mae"]) == 12 and all(v > 0 for v in stmgt["crps"])
    assert all(0 <= c <= 1 for c in stmgt["coverage"]["80"])
    widths = stmgt["overall"]["width"]
    assert widths["50"] < widths["80"] < widths["90"]
    assert sum(stmgt["pit_histogram"]["density"]) == pytest.approx(10)
    assert metrics["models"]["persistence"]["mae"][0] < metrics["models"]["persistence"]["mae"][-1]
    assert "what_if" in metrics and metrics["what_if"]["mean_true_change_kmh"] < -2
    again = evaluate(run, data, SPEC)              # deterministic: re-running reproduces it
    assert again["models"] == metrics["models"]


def test_a_capped_evaluation_says_it_is_a_quick_look_and_reports_each_phase(trained, data, tmp_path):
    run = Run(shutil.copytree(trained[0].run.path, tmp_path / "capped"))
    seen = []
    metrics = evaluate(run, data, SPEC, max_batches=1, on_progress=seen.append)
    assert metrics["quick_look"] and metrics["windows"] == 64 < metrics["windows_in_split"]
    assert metrics["what_if"]["anchors"] == 16                    # one batch of 16 what-if anchors
    assert [(p.phase, p.done, p.total) for p in seen] == [("scoring", 1, 1), ("scoring what-if", 1, 1)]
    assert run.metrics()["windows"] == 64
    full = evaluate(run, data, SPEC)
    assert not full["quick_look"] and full["windows"] == full["windows_in_split"]
    assert "quick look" in versus_baselines(metrics) and "quick look" not in versus_baselines(full)


def test_a_cancelled_evaluation_writes_no_metrics(trained, data, tmp_path):
    run = Run(shutil.copytree(trained[0].run.path, tmp_path / "cancelled"))
    (run.path / "metrics.json").unlink(missing_ok=True)
    cancel = threading.Event()

    def on_progress(p):
        cancel.set()                                              # cancel as soon as one batch is done

    assert evaluate(run, data, SPEC, on_progress=on_progress, cancel=cancel) is None
    assert not run.has_metrics


def test_versus_baselines_says_better_or_worse_in_words():
    scores = lambda mae: {"mae": [0.0, mae, 9.0]}          # noqa: E731
    metrics = {"horizon_minutes": [30, 60, 90], "windows": 10, "windows_in_split": 10,
               "models": {"stmgt": scores(3.29), "persistence": scores(2.70), "historical_average": scores(4.1)}}
    assert versus_baselines(metrics) == ("MAE at +1 h 3.29 km/h — worse than persistence (2.70), "
                                         "better than the historical average (4.10)")


def test_metrics_name_the_data_they_were_scored_on(trained, data, tmp_path):
    run = Run(shutil.copytree(trained[0].run.path, tmp_path / "copy"))
    other = {"kind": "simulator", "seed": 3, "weeks": 2}
    metrics = evaluate(run, simulate(weeks=2, seed=3), other)
    assert run.config["data"] == SPEC                       # trained on seed 2 ...
    assert metrics["data"] == other == run.metrics()["data"]  # ... scored on seed 3, and said so
    assert metrics["models"]["stmgt"]["mae"] != evaluate(run, data, SPEC)["models"]["stmgt"]["mae"]



def mixed_metrics():
    """STMGT beats every baseline at +15 min, loses to the linear autoregression at +30 min, to
    persistence at +45 min, and ties the historical average at +60 min."""
    scores = lambda *mae: {"mae": list(mae)}          # noqa: E731
    return {"horizon_minutes": [15, 30, 45, 60], "windows": 10, "windows_in_split": 10,
            "models": {"stmgt": scores(1.0, 2.0, 3.0, 4.0), "persistence": scores(1.5, 2.5, 2.4, 4.5),
                       "historical_average": scores(3.0, 3.0, 3.0, 4.0),
                       "linear_autoregressive": scores(1.2, 1.6, 2.6, 4.2)}}


def test_per_horizon_verdicts_name_the_best_baseline():
    assert best_baseline_verdicts(mixed_metrics()) == [
        "+15 min: STMGT 1.00 km/h beats the best baseline, the linear autoregression (1.20 km/h), by 16.7 %",
        "+30 min: STMGT 2.00 km/h does not beat the best baseline, the linear autoregression (1.60 km/h): "
        "25.0 % worse",
        "+45 min: STMGT 3.00 km/h does not beat the best baseline, persistence (2.40 km/h): 25.0 % worse",
        "+60 min: STMGT 4.00 km/h is level with the best baseline, the historical average (4.00 km/h)"]
    assert best_baseline_summary(mixed_metrics()) == ("STMGT beats the best of the three baselines at 1 of 4 "
                                                      "horizons, not at +30, +45 and +60 min")


def test_metrics_from_before_the_linear_baseline_are_judged_on_the_two_they_hold():
    metrics = mixed_metrics()
    del metrics["models"]["linear_autoregressive"]
    assert missing_baselines(metrics) == ["linear_autoregressive"]
    assert best_baseline_summary(metrics) == ("STMGT beats the best of the two baselines at 2 of 4 horizons, "
                                              "not at +45 and +60 min")
    assert "persistence (1.50 km/h)" in best_baseline_verdicts(metrics)[0]
    metrics["models"]["stmgt"]["mae"][0] = 1.4999
    assert best_baseline_verdicts(metrics)[0].endswith("persistence (1.50 km/h), by less than 0.1 %")
    assert "linear" not in versus_baselines(metrics)
    for case in ([1.0] * 4, [9.0] * 4):
        metrics["models"]["stmgt"]["mae"] = case
        assert best_baseline_summary(metrics).endswith("at every horizon" if case[0] < 2 else "at no horizon")
