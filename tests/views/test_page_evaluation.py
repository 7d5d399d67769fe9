"""Evaluation page: every number is the bundled run's metrics.json, the metric selector redraws the
chart, and a run without metrics offers 'Evaluate now', which scores it in the background with its
progress shown and a Cancel."""

import json
import threading

import pytest

from stmgt.data.dataset import TrafficDataset
from stmgt.data.folder import write_folder
from stmgt.data.simulate import simulate
from stmgt.data.graph import RoadGraph
from stmgt.model import STMGTConfig
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from stmgt.evaluation import evaluate as evaluation
from stmgt.training.jobs import EvaluationJob
from stmgt.training.trainer import TrainConfig, fit
from ui import training

PAGE = "views/evaluation.py"


@pytest.fixture
def unscored_run(isolated_workspace):
    """A tiny run on two simulated weeks (imported as a dataset), trained but not evaluated."""
    data = simulate(weeks=2, seed=3)
    folder = write_folder(data, isolated_workspace / "datasets" / "small")
    fit(data, STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3),
        TrainConfig(epochs=2, batch_size=8, max_batches=2, device="cpu"), isolated_workspace / "runs" / "tiny",
        {"kind": "folder", "path": str(folder)})
    return Run(isolated_workspace / "runs" / "tiny")


def test_the_bundled_models_numbers_are_its_saved_metrics(app):
    at = app(PAGE)
    metrics = json.loads((BUNDLED_RUN / "metrics.json").read_text())
    models, minutes = metrics["models"], metrics["horizon_minutes"]
    table = at.dataframe[0].value
    assert list(table.index) == [f"+{m} min" for m in minutes] + ["All horizons"]
    for column, key in (("STMGT", "stmgt"), ("Persistence", "persistence"),
                        ("Historical average", "historical_average")):
        assert list(table[column]) == models[key]["mae"] + [models[key]["overall"]["mae"]]
    headline = {m.label: m.value for m in at.metric}
    hour = minutes.index(60)
    assert headline["MAE at +60 min"] == f"{models['stmgt']['mae'][hour]:.2f} km/h"
    gain = 100 * (1 - models["stmgt"]["mae"][hour] / models["persistence"]["mae"][hour])
    assert headline["Gain vs persistence"] == f"{gain:.1f} %"
    assert headline["80 % interval coverage"] == f"{100 * models['stmgt']['overall']['coverage']['80']:.1f} %"
    assert headline["True mean change"] == f"{metrics['what_if']['mean_true_change_kmh']:+.2f} km/h"
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    reliability = next(f for f in figures if "Reliability" in f["layout"]["title"]["text"])
    stmgt_curve = next(t for t in reliability["data"] if t["name"] == "STMGT")
    assert stmgt_curve["y"] == pytest.approx([100 * v for v in models["stmgt"]["reliability"]["observed"]])
    pit = next(f for f in figures if "PIT" in f["layout"]["title"]["text"])
    assert pit["data"][0]["y"] == pytest.approx(models["stmgt"]["pit_histogram"]["density"])
    history = next(f for f in figures if f["layout"]["title"]["text"] == "")    # the training history
    kept = Run(BUNDLED_RUN).history().query("best").iloc[-1]                    # the epoch the checkpoint holds
    star = next(t for t in history["data"] if t["name"] == "best (kept)")
    assert star["x"] == [kept["epoch"]] and star["y"] == pytest.approx([kept["val_mae"]])
    weight = Run(BUNDLED_RUN).config["train"]["whatif_weight"]                 # the loss named as trained
    titles = [a["text"] for a in history["layout"]["annotations"]]
    assert f"Training loss (mixture NLL + regularisers + {weight:g} × what-if loss)" in titles
    caption = next(c.value for c in at.caption if "saved checkpoint" in c.value)
    on = {"whatif": "the what-if error", "both": "validation MAE + the what-if error"}[
        Run(BUNDLED_RUN).config["train"]["select"]]
    assert f"the saved checkpoint is epoch {kept['epoch']}, chosen on {on}" in caption
    assert (f"(what-if error {kept['val_whatif_error']:.2f} km/h; validation MAE {kept['val_mae']:.2f} km/h)"
            in caption)


def test_the_metric_selector_redraws_the_chart_and_table(app):
    at = app(PAGE)
    metrics = json.loads((BUNDLED_RUN / "metrics.json").read_text())

    def horizon_chart():
        return json.loads(at.get("plotly_chart")[0].proto.spec)

    assert horizon_chart()["data"][0]["y"] == pytest.approx(metrics["models"]["stmgt"]["mae"])
    at.get("button_group")[0].set_value("rmse").run()
    chart = horizon_chart()
    assert chart["data"][0]["y"] == pytest.approx(metrics["models"]["stmgt"]["rmse"])
    assert chart["layout"]["yaxis"]["title"]["text"] == "RMSE (km/h)"
    assert list(at.dataframe[0].value["Persistence"])[:12] == metrics["models"]["persistence"]["rmse"]


@pytest.mark.slow
def test_a_run_without_metrics_offers_evaluate_now(app, unscored_run):
    at = app(PAGE, dataset="Imported: small", model="Run: tiny")
    assert "no saved test metrics" in " ".join(i.value for i in at.info)
    assert not at.dataframe                                        # nothing to show yet...
    assert len(at.get("plotly_chart")) == 1                        # ...but the training history
    at.button(key="eval_now").click().run()
    finish_evaluation(at, unscored_run)
    assert not at.exception, [e.message for e in at.exception]
    assert unscored_run.has_metrics
    saved = unscored_run.metrics()
    assert list(at.dataframe[0].value["STMGT"])[:12] == saved["models"]["stmgt"]["mae"]
    # The imported folder holds the simulator's data verbatim, so its true what-if is known too.
    assert "what_if" in saved and any(m.label == "True mean change" for m in at.metric)
    assert "stmgt_perfect_weather" in saved["models"]


def finish_evaluation(at, run: Run) -> None:
    """Wait for the evaluation the page started in the background, then draw the page again."""
    job = training.registry().get(EvaluationJob.id_for(run.path))
    job.join(300)
    assert not job.snapshot().active
    at.run()


@pytest.fixture
def paused_scoring(monkeypatch):
    """Scoring that waits after each batch until the test sets the returned event."""
    go = threading.Event()
    scoring = threading.Event()           # set once the first batch has been reported
    score = evaluation.evaluate

    def paused(run, dataset, spec, **options):
        report = options["on_progress"]

        def on_progress(progress):
            report(progress)
            scoring.set()
            go.wait(120)

        return score(run, dataset, spec, **{**options, "on_progress": on_progress})

    monkeypatch.setattr(evaluation, "evaluate", paused)
    return scoring, go


def progress_texts(at) -> str:
    return " ".join(p.proto.text for p in at.get("progress"))


@pytest.mark.slow
def test_evaluate_now_runs_in_the_background_shows_its_progress_and_can_be_cancelled(app, unscored_run,
                                                                                      paused_scoring):
    scoring, go = paused_scoring
    at = app(PAGE, dataset="Imported: small", model="Run: tiny")
    at.button(key="eval_now").click().run()
    assert scoring.wait(120)
    at.run()                                            # the page is drawn while the scoring goes on
    assert not at.exception, [e.message for e in at.exception]
    assert "Scoring the model and the three baselines on the test split: batch 1 of " in progress_texts(at)
    assert "eval_now" not in [b.key for b in at.button] and not at.dataframe
    at.button(key="eval_now_cancel").click().run()
    assert at.button(key="eval_now_cancel").label == "Stopping…" and at.button(key="eval_now_cancel").disabled
    go.set()
    finish_evaluation(at, unscored_run)
    assert "last evaluation was cancelled" in " ".join(i.value for i in at.info)
    assert not unscored_run.has_metrics and not at.get("progress") and not at.dataframe
    at.button(key="eval_now").click().run()               # again, to the end
    finish_evaluation(at, unscored_run)
    assert unscored_run.has_metrics and not at.get("progress")
    assert list(at.dataframe[0].value["STMGT"])[:12] == unscored_run.metrics()["models"]["stmgt"]["mae"]


def test_a_dataset_without_a_model_points_to_train_and_load(app, isolated_workspace):
    """Three nodes of the simulated data: another road graph, so no saved model fits it."""
    data = simulate(weeks=1, seed=1)
    nodes = data.graph.nodes.iloc[:3]
    edges = data.graph.edges[data.graph.edges.source.isin(nodes.node_id) & data.graph.edges.target.isin(nodes.node_id)]
    three = TrafficDataset(data.timestamps, data.speed[:, :3], data.weather, RoadGraph(nodes, edges))
    write_folder(three, isolated_workspace / "datasets" / "three")
    at = app(PAGE, dataset="Imported: three")
    assert "no model for this dataset" in " ".join(w.value for w in at.warning)
    assert "Train or upload one" in at.get("page_link")[-1].value
    assert not at.get("plotly_chart") and not at.dataframe
