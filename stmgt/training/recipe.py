"""The recipe `train` and the Train page start a new model from, chosen from the data.

* The simulator's data with weather (the embedded default): the weather recipe, `WEATHER_RECIPE`
  (assets/model/recipe.json), every model and training setting in one file. It is the
  specification's architecture and optimiser plus a weather MLP (`weather_bend`), with the weather's
  effect taught from the first epoch: the what-if loss (`whatif_weight`) on every step, one cosine
  period of the learning rate over the run, and the epoch chosen on validation MAE plus the what-if
  error (`select: "both"`). The specification's plain recipe forecasts as well but answers few
  what-ifs within their targets (benchmarks/RESULTS.md, *One recipe*); the bundled model is this
  recipe's output, seed 0 (docs/bundled-model.md).
* Imported data: the small-data recipe below, from how much history the training split holds.
* Anything else (simulated data written to a folder, data without weather): the specification's.

The specification's recipe (§9.4: hidden 96, 3 blocks, dropout 0.2, weight decay 1e-4, up to 100
epochs, patience 10) was made for weeks of data. A few days of real loop-detector data hold each
time of day only a few times: that model learns the training days by heart within a few epochs
while its validation error rises, and its forecasts are worse than repeating the last reading. So
on less than `FULL_RECIPE_DAYS` of training history the recipe is smaller, more regularised and
stops sooner, and the model forecasts the change from the last reading (`persistence_anchor`).
The rule, by days of training history d (the training split's steps × the cadence):

* d < `SMALL_DAYS`: hidden 32, 2 blocks, dropout 0.3, DropEdge 0.1, learning rate 1e-4 (a tenth of
  the specification's: at 1e-3 the anchored model moved away from persistence and validated worse
  after each epoch), weight decay 1e-2, at most 20 epochs, patience 3, one cosine period over the run;
* `SMALL_DAYS` ≤ d < `FULL_RECIPE_DAYS`: hidden 64, 3 blocks, dropout 0.25, DropEdge 0.1, weight
  decay 1e-3, at most 50 epochs, patience 5;
* otherwise the specification's recipe, unchanged.

Each value is a starting point: a setting given on the command line, in a --config file or on the
form replaces it, and `plain` (`train --specification`, the Train page's *Specification* preset)
starts from the specification's instead. The figures it reached are in benchmarks/RESULTS.md,
*Real traffic*."""

from __future__ import annotations

import json
from functools import cache

import pandas as pd

from stmgt.data.dataset import TrafficDataset
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.paths import BUNDLED_RUN
from stmgt.settings import MODEL, TRAIN
from stmgt.storage.runs import RECIPE
from stmgt.training.trainer import TrainConfig

SMALL_DAYS = 7.0            # under a week of training history: the smallest recipe
FULL_RECIPE_DAYS = 28.0     # four weeks and more: the specification's recipe
WEATHER_RECIPE = BUNDLED_RUN / RECIPE          # the bundled model's recipe

SMALL = {MODEL: {"hidden_dim": 32, "num_blocks": 2, "dropout": 0.3, "drop_edge": 0.1, "persistence_anchor": True},
         TRAIN: {"lr": 1e-4, "weight_decay": 1e-2, "epochs": 20, "patience": 3, "restart_epochs": 20}}
MEDIUM = {MODEL: {"hidden_dim": 64, "num_blocks": 3, "dropout": 0.25, "drop_edge": 0.1, "persistence_anchor": True},
          TRAIN: {"weight_decay": 1e-3, "epochs": 50, "patience": 5}}


def training_days(dataset: TrafficDataset) -> float:
    """Days of history in the training split."""
    return len(dataset.splits()["train"]) * dataset.freq / pd.Timedelta(days=1)


def recipe_for(dataset: TrafficDataset) -> dict[str, dict]:
    """{"model": {...}, "train": {...}}: the settings that differ from the specification's for data
    of this size (both empty from `FULL_RECIPE_DAYS` of training history on), in the shape of a
    `train --config` file, so given settings can be laid over it."""
    days = training_days(dataset)
    chosen = SMALL if days < SMALL_DAYS else MEDIUM if days < FULL_RECIPE_DAYS else {MODEL: {}, TRAIN: {}}
    return {part: dict(values) for part, values in chosen.items()}


def imported(spec: dict, dataset: TrafficDataset) -> bool:
    """Whether `dataset`, loaded from `spec` (`stmgt.data.sources`), is imported data: a dataset
    folder whose provenance is not the simulator's."""
    return spec.get("kind") == "folder" and (dataset.provenance or {}).get("source") != "simulator"


def simulated_with_weather(spec: dict, dataset: TrafficDataset) -> bool:
    """Whether `dataset` is the simulator's own (built from a simulator spec, so every what-if has
    a true answer) and holds weather: where the weather recipe applies."""
    return spec.get("kind") == "simulator" and dataset.has_weather


@cache
def weather_recipe() -> dict[str, dict]:
    """{"model": {...}, "train": {...}} of `WEATHER_RECIPE`; a DataError if the file is unreadable or
    holds a setting that is unknown or out of its limits."""
    try:
        sections = json.loads(WEATHER_RECIPE.read_text())
        recipe = {part: dict(sections[part]) for part in (MODEL, TRAIN)}
        STMGTConfig.from_dict(recipe[MODEL])        # raise on a setting unknown or out of its limits
        TrainConfig.from_dict(recipe[TRAIN])
        return recipe
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"the weather recipe cannot be read ({type(exc).__name__}: {exc}); restore it with "
                        "`git checkout assets/model/recipe.json`", str(WEATHER_RECIPE)) from exc


WEATHER, SMALL_DATA, SPECIFICATION = "the weather recipe", "the small-data recipe", "the specification's recipe"


def recipe_name(spec: dict, dataset: TrafficDataset) -> str:
    """Which recipe a new model on this data starts from, in words (`default_sections` gives its settings)."""
    if imported(spec, dataset) and training_days(dataset) < FULL_RECIPE_DAYS:
        return SMALL_DATA
    return WEATHER if simulated_with_weather(spec, dataset) else SPECIFICATION


def default_sections(spec: dict, dataset: TrafficDataset, plain: bool = False) -> dict[str, dict]:
    """What a new run on this data starts from before given settings are laid over it, in the shape
    of a `train --config` file: `recipe_name`'s recipe or, with `plain`, nothing (the
    specification's defaults)."""
    name = SPECIFICATION if plain else recipe_name(spec, dataset)
    chosen = {WEATHER: weather_recipe, SMALL_DATA: lambda: recipe_for(dataset),
              SPECIFICATION: lambda: {MODEL: {}, TRAIN: {}}}[name]()
    return {part: dict(values) for part, values in chosen.items()}
