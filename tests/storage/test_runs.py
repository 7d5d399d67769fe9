"""Runs on disk: which epoch a run kept."""

import pandas as pd

from stmgt.storage.runs import kept_epoch


def test_the_kept_epoch_is_the_last_that_improved_the_selection_score():
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_mae": [2.0, 1.5, 1.8], "best": [True, False, True]})
    assert kept_epoch(history)["epoch"] == 3                     # chosen on another score than val MAE
    assert kept_epoch(history.drop(columns="best"))["epoch"] == 2  # a history without the column
    assert kept_epoch(pd.DataFrame()) is None

