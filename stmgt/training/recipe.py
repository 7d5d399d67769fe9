"""The recipe `train` and the Train page start from on imported data, chosen from how much history
the training split holds.

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
form replaces it. The figures it reached are in benchmarks/RESULTS.md, *Real traffic*."""

from __future__ import annotations

import pandas as pd

from stmgt.data.dataset import TrafficDataset
from stmgt.settings import MODEL, TRAIN

SMALL_DAYS = 7.0            # under a week of training history: the smallest recipe
FULL_RECIPE_DAYS = 28.0     # four weeks and more: the specification's recipe

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
    folder whose provenance is not the simulator's. Training on it starts from `recipe_for` by
    default; the simulator's data, embedded or written to a folder, keeps the specification's."""
    return spec.get("kind") == "folder" and (dataset.provenance or {}).get("source") != "simulator"


def default_sections(spec: dict, dataset: TrafficDataset) -> dict[str, dict]:
    """What a new run on this data starts from before given settings are laid over it: `recipe_for`
    on imported data, nothing (the specification's defaults) otherwise."""
    return recipe_for(dataset) if imported(spec, dataset) else {MODEL: {}, TRAIN: {}}
