"""The recipes a new model starts from: the weather recipe (assets/model/recipe.json) on the simulator's
data with weather, the small-data recipe (chosen from the days of training history) on imported data,
under the settings a user gives; the specification's plain recipe one option away."""

import json
import shutil

import pandas as pd
import pytest

from samples import TINY_CONFIG, matrix_folder, small_dataset
from stmgt.cli import main
from stmgt.data.dataset import TrafficDataset
from stmgt.data.simulate import simulate
from stmgt.data.sources import EMBEDDED
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.paths import BUNDLED_RUN
from stmgt.settings import MODEL, TRAIN
from stmgt.storage.runs import Run
from stmgt.training import recipe
from stmgt.training.trainer import TrainConfig


def spanning(days: float, source: str = "imported") -> TrafficDataset:
    """A dataset whose training split (70 % of the steps) holds `days` of hourly history."""
    base = small_dataset(weather=False)
    steps = round(days * 24 / 0.7)
    ts = pd.date_range("2025-07-07", periods=steps, freq="1h", tz="UTC")
    speed = base.speed[[i % base.num_steps for i in range(steps)]]
    speed[:, :] = 30.0
    return TrafficDataset(ts, speed, None, base.graph, {"source": source})


@pytest.mark.parametrize("days, expected", [(3.5, recipe.SMALL), (6.9, recipe.SMALL), (7.0, recipe.MEDIUM),
                                            (27.9, recipe.MEDIUM), (28.0, None), (60.0, None)])
def test_the_rule_goes_by_days_of_training_history(days, expected):
    dataset = spanning(days)
    assert recipe.training_days(dataset) == pytest.approx(days, abs=1 / 24)
    chosen = recipe.recipe_for(dataset)
    assert chosen == (expected or {MODEL: {}, TRAIN: {}})
    STMGTConfig.from_dict(chosen[MODEL]), TrainConfig.from_dict(chosen[TRAIN])     # valid settings


def test_smaller_data_gets_a_smaller_more_regularised_model_that_stops_sooner():
    small, medium, spec = recipe.SMALL, recipe.MEDIUM, (STMGTConfig(), TrainConfig())
    assert small[MODEL]["hidden_dim"] < medium[MODEL]["hidden_dim"] < spec[0].hidden_dim
    assert small[MODEL]["dropout"] > medium[MODEL]["dropout"] > spec[0].dropout
    assert small[TRAIN]["weight_decay"] > medium[TRAIN]["weight_decay"] > spec[1].weight_decay
    assert small[TRAIN]["patience"] < medium[TRAIN]["patience"] < spec[1].patience
    assert small[TRAIN]["epochs"] < medium[TRAIN]["epochs"] < spec[1].epochs
    assert small[TRAIN]["lr"] < spec[1].lr        # gentle steps away from persistence


def test_each_kind_of_data_starts_from_its_recipe():
    short, folder, none = spanning(3.5), {"kind": "folder", "path": "x"}, {MODEL: {}, TRAIN: {}}
    assert recipe.default_sections(folder, short) == recipe.SMALL
    assert recipe.default_sections(folder, short, plain=True) == none
    assert recipe.default_sections(dict(EMBEDDED), short) == none                   # no weather to teach
    assert recipe.default_sections(folder, spanning(3.5, "simulator")) == none     # simulated data written out
    embedded = simulate(weeks=8, seed=0)
    assert recipe.recipe_for(embedded) == none     # eight simulated weeks: the specification's
    weather = recipe.default_sections(dict(EMBEDDED), embedded)
    assert weather == recipe.weather_recipe() and recipe.default_sections(dict(EMBEDDED), embedded, plain=True) == none
    assert STMGTConfig.from_dict(weather[MODEL]).to_dict() == weather[MODEL]         # every setting, all valid
    assert set(TrainConfig.from_dict(weather[TRAIN]).to_dict()) - set(weather[TRAIN]) == {"device"}


def test_the_weather_recipe_teaches_the_weather_response_and_chooses_on_it():
    train = recipe.weather_recipe()[TRAIN]
    assert train["whatif_weight"] > 0 and train["select"] == "both" and train["init_from"] is None


def test_a_damaged_weather_recipe_is_refused_in_words(tmp_path, monkeypatch):
    for text in ("{not json", '{"model": {}}', "[]", '{"model": {}, "train": {"epochs": "ten"}}',
                 '{"model": {"hidden_size": 16}, "train": {}}'):
        (tmp_path / "recipe.json").write_text(text)
        monkeypatch.setattr(recipe, "WEATHER_RECIPE", tmp_path / "recipe.json")
        recipe.weather_recipe.cache_clear()
        with pytest.raises(DataError, match="the weather recipe cannot be read") as raised:
            recipe.weather_recipe()
        assert raised.value.where == str(tmp_path / "recipe.json")
    recipe.weather_recipe.cache_clear()


def test_train_on_the_simulators_data_uses_the_weather_recipe_unless_told_the_specifications(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_CONFIG))      # laid over the recipe, as any --config
    quick = ["--data", "sim:seed=3,weeks=2", "--config", str(tmp_path / "tiny.json"), "--epochs", "1",
             "--batch-size", "4", "--max-batches", "1", "--device", "cpu", "--no-evaluate"]
    assert main(["train", *quick, "--out", str(tmp_path / "recipe")]) == 0
    config, file = Run(tmp_path / "recipe").config, recipe.weather_recipe()
    assert config["model"] == file[MODEL] | TINY_CONFIG[MODEL]
    given = TINY_CONFIG[TRAIN] | {"epochs": 1, "batch_size": 4, "max_batches": 1, "device": "cpu"}
    assert config["train"] == file[TRAIN] | given
    assert Run(tmp_path / "recipe").history().score.iloc[0] == pytest.approx(
        sum(Run(tmp_path / "recipe").history()[["val_mae", "val_whatif_error"]].iloc[0]))
    assert json.loads((tmp_path / "recipe" / "recipe.json").read_text()) == file      # what it started from
    assert main(["train", *quick, "--specification", "--out", str(tmp_path / "plain")]) == 0
    assert json.loads((tmp_path / "plain" / "recipe.json").read_text()) == {MODEL: {}, TRAIN: {}}
    plain = Run(tmp_path / "plain").config
    assert plain["train"] == TrainConfig().to_dict() | given
    assert plain["model"] == STMGTConfig().to_dict() | TINY_CONFIG[MODEL]


def test_train_on_imported_data_uses_the_recipe_under_the_given_options(tmp_path):
    folder = matrix_folder(tmp_path / "matrix")
    assert main(["import", "matrix", str(folder / "speed.csv"), str(folder / "adj.csv"), "--start",
                 "2012-03-01T00:00", "--units", "mph", "--out", str(tmp_path / "data")]) == 0
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--max-batches", "1", "--no-evaluate"]) == 0
    config = Run(tmp_path / "run").config
    assert {k: config["model"][k] for k in recipe.SMALL[MODEL]} == recipe.SMALL[MODEL]
    assert config["train"]["epochs"] == 1 and config["train"]["max_batches"] == 1        # given: kept
    assert config["train"]["weight_decay"] == recipe.SMALL[TRAIN]["weight_decay"]
    assert config["train"]["patience"] == recipe.SMALL[TRAIN]["patience"]


def test_rebuilding_the_bundled_model_in_place_keeps_its_recipe(tmp_path, monkeypatch):
    """`train --out assets/model --overwrite` (the rebuild): the folder's recipe.json is the recipe
    the new model starts from, and the new run records it again."""
    bundled = shutil.copytree(BUNDLED_RUN, tmp_path / "model")
    monkeypatch.setattr(recipe, "WEATHER_RECIPE", bundled / "recipe.json")
    recipe.weather_recipe.cache_clear()
    before = json.loads((bundled / "recipe.json").read_text())
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_CONFIG))
    try:
        assert main(["train", "--data", "sim:seed=3,weeks=2", "--config", str(tmp_path / "tiny.json"), "--epochs", "1",
                     "--batch-size", "4", "--max-batches", "1", "--device", "cpu", "--no-evaluate",
                     "--out", str(bundled), "--overwrite"]) == 0
    finally:
        recipe.weather_recipe.cache_clear()
    assert json.loads((bundled / "recipe.json").read_text()) == before
    assert Run(bundled).config["train"]["whatif_weight"] == before[TRAIN]["whatif_weight"]
