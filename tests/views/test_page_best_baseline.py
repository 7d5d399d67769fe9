"""Evaluation and Overview beside three baselines: the linear autoregression's scores in the table,
chart and headline, per horizon in words whether STMGT beats the best baseline, and metrics from
before the linear baseline existed saying so and offering Evaluate now."""

import copy
import json

import pytest

from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run

SAVED = json.loads((BUNDLED_RUN / "metrics.json").read_text())


def mixed() -> dict:
    """The bundled metrics with made-up MAEs: STMGT loses to persistence at +15 min, to the linear
    autoregression at +90 min and to the historical average at +180 min, and beats the linear
    autoregression, the best baseline, everywhere else."""
    metrics = copy.deepcopy(SAVED)
    models = metrics["models"]
    ours = models["stmgt"]["mae"]
    models["linear_autoregressive"] = copy.deepcopy(models["persistence"])
    models["persistence"]["mae"] = [v - 0.05 if k == 0 else v + 1.0 for k, v in enumerate(ours)]
    models["historical_average"]["mae"] = [v - 0.02 if k == 11 else v + 2.0 for k, v in enumerate(ours)]
    models["linear_autoregressive"]["mae"] = [v - 0.03 if k == 5 else v + 0.1 for k, v in enumerate(ours)]
    return metrics


def texts(at) -> str:
    return " ".join(m.value for m in at.markdown)


@pytest.fixture
def saved_metrics(monkeypatch):
    """Make every run's saved metrics the given dict."""
    def use(metrics: dict) -> dict:
        monkeypatch.setattr(Run, "metrics", lambda self: copy.deepcopy(metrics))
        return metrics
    return use


def test_the_evaluation_page_shows_the_linear_baseline_and_names_the_best_one_per_horizon(app, saved_metrics):
    metrics = saved_metrics(mixed())
    models = metrics["models"]
    at = app("views/evaluation.py")
    table = at.dataframe[0].value
    linear = models["linear_autoregressive"]
    assert list(table["Linear autoregression"]) == linear["mae"] + [linear["overall"]["mae"]]
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert next(t for t in chart["data"] if t["name"] == "Linear autoregression")["y"] == pytest.approx(linear["mae"])
    gain = 100 * (1 - models["stmgt"]["mae"][3] / linear["mae"][3])
    assert {m.label: m.value for m in at.metric}["Gain vs linear autoregression"] == f"{gain:.1f} %"
    words = texts(at)
    assert "STMGT beats the best of the three baselines at 9 of 12 horizons, not at +15, +90 and +180 min" in words
    ours = models["stmgt"]["mae"]
    assert (f"+15 min: STMGT {ours[0]:.2f} km/h does not beat the best baseline, persistence "
            f"({ours[0] - 0.05:.2f} km/h)") in words
    assert f"+60 min: STMGT {ours[3]:.2f} km/h beats the best baseline, the linear autoregression" in words
    assert f"+90 min: STMGT {ours[5]:.2f} km/h does not beat the best baseline, the linear autoregression" in words
    assert f"+180 min: STMGT {ours[11]:.2f} km/h does not beat the best baseline, the historical average" in words
    assert "scored before" not in " ".join(i.value for i in at.info)
    assert "eval_again" not in [b.key for b in at.button]


def test_the_model_card_says_it_for_the_horizons_it_shows(app, saved_metrics):
    metrics = saved_metrics(mixed())
    at = app("views/overview.py")
    card = at.dataframe[0].value
    assert card.loc["Linear autoregression", "MAE +60 min"] == metrics["models"]["linear_autoregressive"]["mae"][3]
    words = texts(at)
    assert "STMGT beats the best of the three baselines at 9 of 12 horizons" in words
    assert "+15 min: STMGT" in words and "does not beat the best baseline, persistence" in words
    assert "+60 min: STMGT" in words and "beats the best baseline, the linear autoregression" in words
    assert "+180 min: STMGT" in words and "does not beat the best baseline, the historical average" in words
    assert "+90 min" not in words                                       # not a horizon the card shows


def test_metrics_from_before_the_linear_baseline_say_so_and_offer_evaluate_now(app, saved_metrics):
    old = mixed()
    del old["models"]["linear_autoregressive"]
    saved_metrics(old)
    at = app("views/evaluation.py")
    assert "Linear autoregression" not in at.dataframe[0].value.columns
    notes = " ".join(i.value for i in at.info)
    assert "scored before the linear autoregression baseline existed" in notes
    assert at.button(key="eval_again").label == "Evaluate now"
    assert "STMGT beats the best of the two baselines at 10 of 12 horizons, not at +15 and +180 min" in texts(at)
    card = app("views/overview.py")
    assert "scored before the linear autoregression baseline existed" in " ".join(i.value for i in card.info)
    assert "the best of the two baselines" in texts(card)


def test_the_bundled_models_metrics_hold_the_linear_baseline_on_the_same_windows(app):
    models = SAVED["models"]
    assert models["linear_autoregressive"]["count"] == models["persistence"]["count"] == models["stmgt"]["count"]
    at = app("views/evaluation.py")
    assert list(at.dataframe[0].value["Linear autoregression"])[:12] == models["linear_autoregressive"]["mae"]
    assert "scored before" not in " ".join(i.value for i in at.info)
