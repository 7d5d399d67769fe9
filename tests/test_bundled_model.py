"""The bundled model in assets/model: it beats both baselines by the promised margins, its
intervals are calibrated, and re-running the evaluation reproduces its saved metrics.json."""

import shutil

import pytest

from stmgt.data.simulate import simulate
from stmgt.evaluation.evaluate import evaluate
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run


@pytest.fixture(scope="module")
def metrics():
    return Run.open(BUNDLED_RUN).metrics()


def test_bundled_run_is_complete():
    run = Run.open(BUNDLED_RUN)
    assert {p.name for p in run.path.iterdir()} >= {"checkpoint.pt", "config.json", "history.csv", "metrics.json"}
    assert run.config["data"] == {"kind": "simulator", "seed": 0, "weeks": 8}
    loaded = run.load(simulate(weeks=1).graph)       # same graph whatever the span
    assert loaded.model.count_parameters() == run.config["parameters"]


def test_beats_baselines_at_one_hour(metrics):
    models = metrics["models"]
    step = metrics["horizon_minutes"].index(60)
    stmgt = models["stmgt"]["mae"][step]
    assert stmgt <= 0.85 * models["persistence"]["mae"][step]
    assert stmgt <= 0.75 * models["historical_average"]["mae"][step]


def test_intervals_are_calibrated_and_crps_beats_persistence(metrics):
    stmgt = metrics["models"]["stmgt"]
    assert all(0.78 <= c <= 0.82 for c in stmgt["coverage"]["80"])
    assert all(c < p for c, p in zip(stmgt["crps"], metrics["models"]["persistence"]["mae"]))


@pytest.mark.slow
def test_re_evaluating_reproduces_saved_metrics(metrics, tmp_path):
    copy = shutil.copytree(BUNDLED_RUN, tmp_path / "model")
    again = evaluate(Run(copy), simulate(weeks=8, seed=0), {"kind": "simulator", "seed": 0, "weeks": 8})
    for name, scores in metrics["models"].items():
        for key in ("mae", "rmse", "mape", "crps"):
            assert again["models"][name][key] == pytest.approx(scores[key], rel=1e-4), (name, key)
    for level, coverage in metrics["models"]["stmgt"]["coverage"].items():
        assert again["models"]["stmgt"]["coverage"][level] == pytest.approx(coverage, abs=1e-4)
    for key in ("mean_true_change_kmh", "mean_predicted_change_kmh", "mae_of_change_kmh"):
        assert again["what_if"][key] == pytest.approx(metrics["what_if"][key], rel=1e-3)
