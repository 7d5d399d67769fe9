"""The Train page on imported data: the form starts from the small-data recipe (stmgt.training.recipe),
and a start trains what the form shows."""

import pytest

from stmgt.data.dataset import TrafficDataset
from stmgt.data.folder import write_folder
from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.settings import MODEL, TRAIN
from stmgt.training.recipe import SMALL
from stmgt.training.trainer import TrainConfig
from ui import training

PAGE = "views/train.py"


@pytest.fixture
def recording(isolated_workspace):
    """Four simulated days written as a recording of another origin: imported data of under a week."""
    days = simulate(weeks=4 / 7, seed=2)
    write_folder(TrafficDataset(days.timestamps, days.speed, None, days.graph, {"source": "loop detectors"}),
                 isolated_workspace / "datasets" / "recording")
    return "Imported: recording"


def test_the_form_starts_from_the_small_data_recipe_on_imported_data(app, monkeypatch, recording):
    started = []

    def start(self, dataset, model_config, train_config, run_dir, data_spec, processes=1, plain=False):
        started.append((model_config, train_config))
        raise DataError("not started: the test only records what the page asked for")

    monkeypatch.setattr(training.JobRegistry, "start", start)
    at = app(PAGE, dataset=recording)
    assert at.session_state["train_preset"] == "Recipe"
    assert any("*Recipe* on this data is the small-data recipe" in c.value for c in at.caption)
    for name in ("hidden_dim", "num_blocks", "dropout", "drop_edge"):
        assert at.number_input(key=f"train_{name}").value == pytest.approx(SMALL[MODEL][name]), name
    assert at.checkbox(key="train_persistence_anchor").value is True
    for name in ("epochs", "patience", "lr", "weight_decay", "restart_epochs"):
        assert at.number_input(key=f"train_{name}").value == pytest.approx(SMALL[TRAIN][name]), name
    at.button(key="train_start").click().run()
    ((model, train),) = started
    assert (model.hidden_dim, model.persistence_anchor, train.patience) == (32, True, SMALL[TRAIN]["patience"])


def test_the_specification_preset_is_the_plain_recipe_on_imported_data_too(app, recording):
    at = app(PAGE, dataset=recording)
    at.segmented_control(key="train_preset").set_value("Specification").run()
    assert at.number_input(key="train_hidden_dim").value == STMGTConfig.hidden_dim
    assert at.checkbox(key="train_persistence_anchor").value is False
    assert at.number_input(key="train_weight_decay").value == pytest.approx(TrainConfig.weight_decay)
    at.segmented_control(key="train_preset").set_value("Recipe").run()
    assert at.number_input(key="train_hidden_dim").value == SMALL[MODEL]["hidden_dim"]
