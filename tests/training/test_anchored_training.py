"""A persistence-anchored run is validated before its first step (epoch 0, persistence itself) and
keeps that model unless an epoch beats it on validation MAE."""

import math

import pytest
import torch

from stmgt.data.dataset import Windows, split_anchors
from stmgt.data.simulate import simulate
from stmgt.evaluation.baselines import HistoricalAverage, persistence
from stmgt.forecasting.predict import predict
from stmgt.model import STMGTConfig
from stmgt.training.trainer import TrainConfig, fit

TINY = dict(hidden_dim=8, num_blocks=1, heads=2, num_mixtures=2)


@pytest.fixture(scope="module")
def week():
    return simulate(weeks=1, seed=5)


def quick(**more) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "max_batches": 2, "batch_size": 8, "compile": False, "calibrate": False,
                          **more})


def test_an_anchored_run_keeps_persistence_when_no_epoch_beats_it(week):
    """A learning rate that throws the weights away makes epoch 1 worse: the kept model is epoch 0,
    whose forecast mean on validation windows is the last observation."""
    result = fit(week, STMGTConfig(persistence_anchor=True, **TINY), quick(lr=1.0, grad_clip=100.0))
    first, wrecked = result.history.iloc[0], result.history.iloc[1]
    assert first.epoch == 0 and first.best and math.isnan(first.train_loss)
    assert wrecked.val_mae > first.val_mae and not wrecked.best
    assert result.best_epoch == 0 and result.best_val_mae == first.val_mae
    anchors = split_anchors(week)["val"][:16]
    windows = Windows(week, result.scaler)
    batch = windows.batch(anchors)
    mixture = predict(result.model, batch, week.graph.edge_index, result.scaler)
    held = persistence(batch, result.scaler, HistoricalAverage(week, week.splits()["train"]).predict(
        torch.from_numpy(anchors)[:, None] + torch.arange(1, 13)))
    torch.testing.assert_close(mixture.mean(), held, rtol=0, atol=1e-3)


def test_an_unanchored_run_starts_at_epoch_one(week):
    result = fit(week, STMGTConfig(**TINY), quick())
    assert list(result.history.epoch) == [1] and result.best_epoch == 1
