"""Train & load page: the form's defaults, a tiny training run to the end and into the sidebar,
refused settings, and uploads (damaged, another graph, valid) through the page and the saving
function, which must write nothing unless the checkpoint loads."""

import json
import shutil
import time
from types import SimpleNamespace

import pytest
import torch

from stmgt.storage.checkpoint import save_checkpoint
from stmgt.data.dataset import Scaler, split_anchors, split_ranges
from stmgt.data.folder import write_folder
from stmgt.data.simulate import simulate
from stmgt.training.estimate import StepCost
from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph
from stmgt.model import STMGT, STMGTConfig
from stmgt.paths import BUNDLED_RUN
from stmgt.settings import MODEL, SETTINGS, TRAIN
from stmgt.storage.runs import Run, import_checkpoint
from stmgt.training import recipe
from stmgt.training.recipe import weather_recipe
from stmgt.training.trainer import TrainConfig
from ui import training
from tests.views.page_helpers import tiny_run

PAGE = "views/train.py"
TINY = {"epochs": 1, "batch_size": 8, "max_batches": 2, "hidden_dim": 16, "num_blocks": 1, "heads": 2,
        "num_mixtures": 3}
SPEC = {"kind": "simulator", "seed": 3, "weeks": 2}


@pytest.fixture(scope="module")
def small():
    return simulate(weeks=2, seed=3)


@pytest.fixture
def small_dataset(isolated_workspace, small):
    """Two simulated weeks as an imported dataset, so training and scoring take seconds."""
    write_folder(small, isolated_workspace / "datasets" / "small")
    return "Imported: small"


@pytest.fixture(scope="module")
def other_graph_checkpoint(tmp_path_factory, small) -> bytes:
    """A valid STMGT checkpoint for a 3-node graph, not the HCMC one."""
    graph = RoadGraph.hcmc()
    keep = graph.node_ids[:3]
    small_graph = RoadGraph(graph.nodes[graph.nodes.node_id.isin(keep)],
                            graph.edges[graph.edges.source.isin(keep) & graph.edges.target.isin(keep)])
    path = tmp_path_factory.mktemp("other") / "checkpoint.pt"
    save_checkpoint(path, STMGT(STMGTConfig(hidden_dim=8, num_blocks=1, heads=2)),
                    Scaler.fit(small, split_ranges(small.num_steps)["train"]), small_graph)
    return path.read_bytes()


def runs_in(workspace):
    """Run folders in the workspace (not the hidden lock file beside a run being written)."""
    folder = workspace / "runs"
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def messages(elements):
    return " ".join(e.value for e in elements)


# ---- the form ------------------------------------------------------------------------------------
def test_the_form_starts_from_the_weather_recipe_and_offers_the_specifications(app):
    """On the embedded data the form's defaults are the weather recipe (assets/model/recipe.json);
    the specification's plain recipe is one preset away; Quick look caps the recipe's schedule."""
    at = app(PAGE)
    recipe = weather_recipe()
    anchors = split_anchors(simulate())
    assert (f"{len(anchors['train']):,} training windows ({len(anchors['train']) // 32} batches of 32 per epoch); "
            f"the epoch kept is chosen on {len(anchors['val']):,} validation windows, then scored on "
            f"{len(anchors['test']):,} test windows") in at.markdown[0].value
    assert at.session_state["train_preset"] == "Recipe"
    assert any("*Recipe* on this data is the weather recipe: the weather's effect" in c.value for c in at.caption)
    shown, settings = form_values(at), recipe[MODEL] | recipe[TRAIN]
    assert set(shown) - set(settings) == {"device"}            # the machine's choice, not the recipe's
    assert shown == {name: settings.get(name, shown[name]) for name in shown}
    assert len(shown) >= 25 and at.radio(key="train_select").value == "both"
    at.segmented_control(key="train_preset").set_value("Specification").run()
    train, model = TrainConfig(), STMGTConfig()
    assert form_values(at) == {name: getattr(model if SETTINGS[name].config == MODEL else train, name)
                               for name in form_values(at) if name != "device"} | {"device": "cpu"}
    at.segmented_control(key="train_preset").set_value("Quick look").run()
    assert (at.number_input(key="train_epochs").value, at.number_input(key="train_max_batches").value) == (2, 3)
    assert at.number_input(key="train_whatif_weight").value == recipe[TRAIN]["whatif_weight"]
    assert at.radio(key="train_device").options == (["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"])
    assert "No saved runs yet" in messages(at.info)


def test_an_unreadable_weather_recipe_is_said_and_the_form_falls_back_to_the_specifications(app, tmp_path,
                                                                                           monkeypatch):
    (tmp_path / "recipe.json").write_text('{"model": {}, "train": {"epochs": "ten"}}')
    monkeypatch.setattr(recipe, "WEATHER_RECIPE", tmp_path / "recipe.json")
    recipe.weather_recipe.cache_clear()
    try:
        at = app(PAGE)
    finally:
        recipe.weather_recipe.cache_clear()
    assert "the weather recipe cannot be read" in messages(at.error) and "recipe.json" in messages(at.error)
    assert at.number_input(key="train_epochs").value == TrainConfig.epochs
    assert at.number_input(key="train_whatif_weight").value == 0


def form_values(at) -> dict:
    """The value of every setting on the Train form, by name."""
    widgets = [*at.number_input, *at.checkbox, *at.radio]
    return {w.key.removeprefix("train_"): w.value for w in widgets
            if w.key and w.key.startswith("train_") and w.key.removeprefix("train_") in SETTINGS}


def test_start_trains_the_weather_recipe_as_the_file_says(app, monkeypatch):
    started = recording_starts(monkeypatch)
    at = app(PAGE)
    at.button(key="train_start").click().run()
    ((train, _, model),) = started
    recipe = weather_recipe()
    assert model.to_dict() == recipe[MODEL]
    assert {k: v for k, v in train.to_dict().items() if k != "device"} == recipe[TRAIN]
    at.segmented_control(key="train_preset").set_value("Specification").run()
    at.button(key="train_start").click().run()
    assert started[-1][0] == TrainConfig(device=started[-1][0].device) and started.plain == [False, True]


def test_settings_that_do_not_fit_together_start_nothing(app, isolated_workspace):
    at = app(PAGE)
    at.number_input(key="train_hidden_dim").set_value(18)
    at.button(key="train_start").click().run()
    assert "do not fit together" in messages(at.error) and "divisible" in messages(at.error)
    assert runs_in(isolated_workspace) == [] and not at.get("progress")


def gpus(monkeypatch, count: int) -> None:
    """Pretend this machine has `count` CUDA GPUs (the page asks torch when it draws the form)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_properties",            # an 80 GB card, for the memory check
                        lambda device=None: SimpleNamespace(total_memory=80 * 2**30))


@pytest.mark.parametrize("count", [0, 1])
def test_processes_are_not_offered_without_several_gpus(app, monkeypatch, count):
    gpus(monkeypatch, count)
    at = app(PAGE, device="cpu")
    assert at.radio(key="train_device").options == (["cuda", "cpu"] if count else ["cpu"])
    assert "train_processes" not in [n.key for n in at.number_input]


class Starts(list):
    """(train config, processes, model config) of every start the page asks for; in `plain`,
    whether each was laid over the specification's recipe."""

    def __init__(self):
        super().__init__()
        self.plain = []


def recording_starts(monkeypatch) -> Starts:
    """Every start the page asks for (`Starts`); nothing is started."""
    started = Starts()

    def start(self, dataset, model_config, train_config, run_dir, data_spec, processes=1, plain=False):
        started.append((train_config, processes, model_config))
        started.plain.append(plain)
        raise DataError("not started: the test only records what the page asked for")

    monkeypatch.setattr(training.JobRegistry, "start", start)
    return started


def test_several_gpus_offer_processes_and_start_that_many_on_cuda(app, monkeypatch):
    gpus(monkeypatch, 2)
    started = recording_starts(monkeypatch)
    at = app(PAGE, device="cpu")
    processes = at.number_input(key="train_processes")
    assert (processes.value, processes.min, processes.max) == (1, 1, 2)
    assert "one per GPU" in processes.help and "batch size × processes" in processes.help
    processes.set_value(2)
    at.radio(key="train_device").set_value("cuda")
    at.button(key="train_start").click().run()
    assert [(c.device, n) for c, n, _ in started] == [("cuda", 2)] and "not started" in messages(at.error)
    at.radio(key="train_device").set_value("cpu")
    at.button(key="train_start").click().run()
    assert (started[-1][0].device, started[-1][1]) == ("cpu", 1)     # on the CPU it trains in this process


def test_the_weather_response_is_taught_and_checked_on_the_simulators_data(app, monkeypatch):
    started = recording_starts(monkeypatch)
    at = app(PAGE)
    at.segmented_control(key="train_preset").set_value("Quick look").run()
    select = at.radio(key="train_select")
    assert (select.options, select.value, select.disabled) == (
        ["validation MAE", "what-if error", "validation MAE + what-if error"], "both", False)
    assert at.number_input(key="train_weather_copies").value == TrainConfig.weather_copies == 0
    select.set_value("whatif")
    at.number_input(key="train_whatif_weight").set_value(3.0)
    at.number_input(key="train_weather_copies").set_value(1)
    at.button(key="train_start").click().run()
    ((config, _, _),) = started
    assert (config.select, config.whatif_weight, config.weather_copies) == ("whatif", 3.0, 1)
    monkeypatch.setattr(training, "step_cost", lambda *a, **k: StepCost(1.0, 0.1, "cpu"))
    at.button(key="train_estimate").click().run()
    (estimate,) = [m.value for m in at.info if "Expected" in m.value]
    assert "what-if checks 10 s" in estimate             # 2 epochs × 50 validation anchors × 0.1 s


def test_a_weather_response_the_model_cannot_give_is_refused_in_words(app, isolated_workspace):
    at = app(PAGE)
    at.checkbox(key="train_use_weather").uncheck()
    at.radio(key="train_select").set_value("whatif")
    for button in ("train_estimate", "train_start"):
        at.button(key=button).click().run()
        assert not at.exception, [e.message for e in at.exception]
        assert "cannot train on this dataset: select: choosing the best epoch on the what-if error" in \
            messages(at.error) and "a model that reads the weather" in messages(at.error)
        assert "Expected" not in messages(at.info) and runs_in(isolated_workspace) == []


def test_the_weather_response_is_not_offered_on_imported_data(app, monkeypatch, small_dataset):
    started = recording_starts(monkeypatch)
    at = app(PAGE, dataset=small_dataset)
    assert at.radio(key="train_select").disabled and at.number_input(key="train_whatif_weight").disabled
    assert "need the simulator's own data" in messages(at.caption)
    at.session_state["train_whatif_weight"] = 3.0            # left from the simulated dataset
    at.button(key="train_start").click().run()
    ((config, _, _),) = started
    assert (config.select, config.whatif_weight, config.weather_copies) == ("val_mae", 0.0, 0)


# ---- fine-tuning ---------------------------------------------------------------------------------
ARCHITECTURE_KEYS = ("hidden_dim", "num_blocks", "heads", "num_mixtures")


def test_a_fine_tune_starts_from_the_chosen_models_weights_and_architecture(app, monkeypatch):
    started = recording_starts(monkeypatch)
    at = app(PAGE)
    start = at.selectbox(key="train_start_from")
    assert start.value == "New model (random weights)" and "Bundled model" in start.options
    assert at.radio(key="train_tune").disabled and not at.number_input(key="train_hidden_dim").disabled
    start.set_value("Bundled model").run()
    bundled = Run(BUNDLED_RUN).config["model"]
    for name in ARCHITECTURE_KEYS:
        field = at.number_input(key=f"train_{name}")
        assert field.disabled and field.value == bundled[name], name
    assert at.radio(key="train_gat_layout").disabled and at.radio(key="train_gat_layout").value == bundled["gat_layout"]
    assert at.checkbox(key="train_use_weather").disabled
    assert not at.number_input(key="train_dropout").disabled          # regularisers stay the user's
    assert at.number_input(key="train_lr").value == pytest.approx(3e-4)
    assert "Fine-tunes **Bundled model**" in messages(at.caption)
    at.radio(key="train_tune").set_value("weather")
    at.number_input(key="train_dropout").set_value(0.1)
    at.button(key="train_start").click().run()
    (config, _, model), = started
    assert (config.init_from, config.tune, config.lr) == (str(BUNDLED_RUN), "weather", pytest.approx(3e-4))
    # every architecture setting, hidden ones too (a setting newer than the bundled model: as it loads, off)
    assert model.to_dict() == {"persistence_anchor": False, "weather_bend": False} | bundled | {"dropout": 0.1}

    at.selectbox(key="train_start_from").set_value("New model (random weights)").run()
    assert not at.number_input(key="train_hidden_dim").disabled and at.radio(key="train_tune").disabled
    at.button(key="train_start").click().run()
    assert (started[-1][0].init_from, started[-1][0].tune) == (None, "all")


def wait_for_the_result(at, seconds: float = 240) -> bool:
    """Rerun the page until its job has finished -> whether progress bars were seen on the way."""
    seen_progress, deadline = False, time.time() + seconds
    while "Finished" not in messages(at.success) and time.time() < deadline:
        seen_progress |= bool(at.get("progress"))
        assert not at.error, messages(at.error)
        time.sleep(2)                                   # leave the CPU to the worker between polls
        at.run()
    assert "Finished" in messages(at.success), "the job did not finish in time"
    return seen_progress or bool(at.get("progress"))


@pytest.mark.slow
def test_a_tiny_training_runs_in_the_background_and_joins_the_model_list(app, small_dataset, isolated_workspace):
    at = app(PAGE, dataset=small_dataset)
    for name, value in TINY.items():
        at.number_input(key=f"train_{name}").set_value(value)
    at.text_input(key="train_name").input("tiny")
    at.button(key="train_start").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (name,) = runs_in(isolated_workspace)
    assert name.startswith("tiny-")
    assert wait_for_the_result(at)                      # progress bars while running (kept in the result)
    assert f"Run: {name}" in messages(at.success)
    assert "MAE at +1 h" in messages(at.success) and "than persistence (" in messages(at.success)
    assert "quick look" in messages(at.success)                        # its scoring was capped too
    assert f"Run: {name}" in at.selectbox(key="model").options          # the sidebar lists it
    assert name in list(at.dataframe[0].value["Run"])                    # and the Saved runs table
    at.button(key="train_job_use").click().run()
    assert at.session_state["model"] == f"Run: {name}" and at.selectbox(key="model").value == f"Run: {name}"
    assert Run(isolated_workspace / "runs" / name).has_metrics


@pytest.mark.slow
def test_a_run_choosing_its_epoch_on_the_whatif_error_reports_that_score(app, isolated_workspace):
    at = app(PAGE)
    for name, value in TINY.items():
        at.number_input(key=f"train_{name}").set_value(value)
    at.radio(key="train_select").set_value("whatif")
    at.number_input(key="train_whatif_weight").set_value(2.0)
    at.button(key="train_start").click().run()
    wait_for_the_result(at, seconds=420)
    (name,) = runs_in(isolated_workspace)
    error = Run(isolated_workspace / "runs" / name).history().val_whatif_error.iloc[0]
    assert f"Best what-if error **{error:.2f} km/h** at epoch 1" in messages(at.success)
    assert at.metric[1].label == "Best what-if error" and at.metric[1].value == f"{error:.2f} km/h"
    curves = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"][0]["text"]
    assert curves == "Training loss (mixture NLL + regularisers + 2 × what-if loss)"


def test_a_model_reading_the_weather_is_not_fine_tuned_on_data_without_it(app, monkeypatch, isolated_workspace, small):
    started = recording_starts(monkeypatch)
    folder = write_folder(small, isolated_workspace / "datasets" / "dry")
    (folder / "weather.csv").unlink()
    at = app(PAGE, dataset="Imported: dry")
    at.selectbox(key="train_start_from").set_value("Bundled model").run()
    assert at.radio(key="train_tune").disabled
    at.button(key="train_start").click().run()
    assert not at.exception and started == []
    assert "The starting model, the bundled model, reads the weather and this dataset has none" in messages(at.error)


def test_a_start_with_the_chosen_model_gone_starts_nothing_and_says_so(app, monkeypatch, isolated_workspace):
    started = recording_starts(monkeypatch)
    base = tiny_run(isolated_workspace / "runs" / "base")
    at = app(PAGE)
    at.selectbox(key="train_start_from").set_value("Run: base").run()
    shutil.rmtree(base)                                   # deleted in another tab or by hand
    at.button(key="train_start").click().run()
    assert not at.exception and started == []
    assert "**Run: base** is no longer offered to start from" in messages(at.warning)
    assert at.selectbox(key="train_start_from").value == "New model (random weights)"
    at.button(key="train_start").click().run()           # now knowingly a new model
    assert [(c.init_from, c.tune) for c, _, _ in started] == [(None, "all")]


@pytest.mark.slow
def test_a_fine_tune_of_the_weather_response_keeps_every_other_weight(app, small_dataset, isolated_workspace):
    base = Run(tiny_run(isolated_workspace / "runs" / "base"))
    at = app(PAGE, dataset=small_dataset)
    at.selectbox(key="train_start_from").set_value("Run: base").run()
    at.radio(key="train_tune").set_value("weather")
    for name in ("epochs", "batch_size", "max_batches"):
        at.number_input(key=f"train_{name}").set_value(TINY[name])
    at.text_input(key="train_name").input("tuned")
    at.button(key="train_start").click().run()
    assert not at.exception, [e.message for e in at.exception]
    wait_for_the_result(at)
    (name,) = [n for n in runs_in(isolated_workspace) if n.startswith("tuned-")]
    tuned = Run(isolated_workspace / "runs" / name)
    assert (tuned.config["train"]["init_from"], tuned.config["train"]["tune"]) == (str(base.path), "weather")
    before, after = base.load().model.state_dict(), tuned.load().model.state_dict()
    learnt = {k for k in after if not torch.equal(before[k], after[k])}
    assert learnt and all(k.startswith(("weather_attn.", "mixture_head.", "sigma_scale")) for k in learnt), learnt
    table = at.dataframe[0].value
    assert table.set_index("Run").loc[name, "Source"] == "fine-tuned from run base"


def test_estimate_duration_times_the_configured_model_once(app, small_dataset, isolated_workspace):
    at = app(PAGE, dataset=small_dataset)
    assert "Estimate duration" in messages(at.caption) and "Expected" not in messages(at.info)
    for name, value in TINY.items():
        at.number_input(key=f"train_{name}").set_value(value)
    at.button(key="train_estimate").click().run()
    assert not at.exception and not at.error
    (estimate,) = [m for m in at.info if "Expected" in m.value]
    assert "s per batch of 8 on CPU" in estimate.value and "2 batches in all" in estimate.value
    assert "scoring" in estimate.value and runs_in(isolated_workspace) == []   # estimating starts nothing
    at.number_input(key="train_epochs").set_value(3)
    at.button(key="train_estimate").click().run()      # same model: no new timing; the plan follows
    assert "6 batches in all" in messages(at.info) and runs_in(isolated_workspace) == []


# ---- uploads -------------------------------------------------------------------------------------
def test_import_checkpoint_writes_nothing_unless_it_loads(tmp_path, other_graph_checkpoint):
    graph = RoadGraph.hcmc()
    for data, reason in ((b"not a checkpoint", "damaged"), (other_graph_checkpoint, "another road graph")):
        with pytest.raises(DataError, match=reason):
            import_checkpoint(data, tmp_path / "run", graph, SPEC)
        assert not (tmp_path / "run").exists()
    good = (BUNDLED_RUN / "checkpoint.pt").read_bytes()
    run = import_checkpoint(good, tmp_path / "run", graph, SPEC)
    assert (run.path / "checkpoint.pt").read_bytes() == good
    config = run.config
    assert config["source"] == "uploaded" and config["data"] == SPEC
    assert config["graph_fingerprint"] == graph.fingerprint() and config["model"] == run.load().config.to_dict()
    with pytest.raises(DataError, match="already exists"):
        import_checkpoint(good, tmp_path / "run", graph, SPEC)


@pytest.mark.parametrize("damage, reason", [("garbage", "damaged or is not a PyTorch checkpoint"),
                                            ("other graph", "another road graph")])
def test_a_bad_upload_shows_why_and_writes_nothing(app, isolated_workspace, other_graph_checkpoint, damage, reason):
    at = app(PAGE)
    data = b"\x00garbage" * 100 if damage == "garbage" else other_graph_checkpoint
    at.file_uploader(key="train_upload").set_value(("checkpoint.pt", data, "application/octet-stream")).run()
    assert not at.exception
    assert "checkpoint.pt** cannot be used" in messages(at.error) and reason in messages(at.error)
    assert runs_in(isolated_workspace) == []


def test_a_valid_upload_becomes_a_selectable_run_once(app, isolated_workspace):
    at = app(PAGE)
    data = (BUNDLED_RUN / "checkpoint.pt").read_bytes()
    at.file_uploader(key="train_upload").set_value(("hcmc-mean.pt", data, "application/octet-stream")).run()
    assert not at.exception and not at.error
    (name,) = runs_in(isolated_workspace)
    assert name.startswith("hcmc-mean-") and f"Run: {name}" in messages(at.success)
    assert f"Run: {name}" in at.selectbox(key="model").options
    at.run()                                              # a rerun must not save the same upload again
    assert runs_in(isolated_workspace) == [name]
    at.button(key="train_upload_use").click().run()
    assert at.session_state["model"] == f"Run: {name}"
    assert at.button(key="train_upload_evaluate")         # no metrics yet: offered
