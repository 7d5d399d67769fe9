"""How long a training run will take here, from costs measured on this machine: one timed
optimiser step of the configured model and one timed forward pass, scaled by the batches and
windows every phase (training, validation, calibration, scoring) will go through.

Everything else (loading data, the simulator's what-if counterfactuals, writing files) is not
counted, and a compiled run (long runs on a CPU) steps faster than the eager step timed here.
The timed step includes the what-if loss's pass when the run has one."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, replace

import torch

from stmgt.evaluation import evaluate
from stmgt.forecasting.calibration import fit_sigma_scale
from stmgt.data.dataset import TrafficDataset
from stmgt.model import STMGTConfig
from stmgt.forecasting.predict import predict
from stmgt.routing.copula import ESTIMATION_WINDOWS
from stmgt.training.trainer import SELECT_ANCHORS, Trainer, TrainConfig, validate


def _default(func, name: str):
    """A keyword's default, so the estimate follows the batch sizes the phases really use."""
    return inspect.signature(func).parameters[name].default


@dataclass(frozen=True)
class StepCost:
    """Seconds per optimiser step on one batch, and per forecast window without gradients."""

    train_batch_s: float
    forward_window_s: float
    device: str


def measure_step_cost(dataset: TrafficDataset, model_config: STMGTConfig, train_config: TrainConfig) -> StepCost:
    """Time the second of two training steps (the first pays one-time allocation costs) and one
    forward pass over a batch of validation windows, without torch.compile."""
    config = replace(train_config, compile=False, max_batches=2, epochs=1, calibrate=False, weather_copies=0)
    trainer = Trainer(dataset, model_config, config)
    batches = trainer.windows.iterate(trainer.epoch_anchors(1), config.batch_size)
    trainer.model.train()
    trainer.step(next(batches))
    batch = next(batches, None) or next(trainer.windows.iterate(trainer.anchors["train"], config.batch_size))
    started = time.perf_counter()
    loss, _ = trainer.step(batch)
    loss.item()                                  # wait for the device
    train_s = time.perf_counter() - started
    trainer.model.eval()
    val = next(trainer.windows.iterate(trainer.anchors["val"], config.batch_size))
    with torch.no_grad():
        started = time.perf_counter()
        predict(trainer.model, val, trainer.edge_index, trainer.windows.scaler).mean().sum().item()
        forward_s = (time.perf_counter() - started) / len(val.y)
    return StepCost(train_s, forward_s, str(trainer.device))


@dataclass(frozen=True)
class Estimate:
    """Seconds per phase (an upper bound when early stopping ends the run sooner)."""

    phases: dict[str, float]
    train_batches: int              # training batches in all

    @property
    def total_s(self) -> float:
        return sum(self.phases.values())


def estimate(cost: StepCost, split_windows: dict[str, int], train_config: TrainConfig, use_weather: bool,
             simulated: bool) -> Estimate:
    """The run's duration from measured `cost`, for splits of `split_windows` windows each.
    `use_weather` and `simulated`: the what-if answers are scored too. Unless `select` is "val_mae"
    every epoch also forecasts the what-if grid at SELECT_ANCHORS validation anchors: one pass
    through the blocks per anchor, counted as one window (reading each under the grid's 12
    weathers costs a little more, not counted)."""
    cap = train_config.max_batches

    def windows(split: str, batch_size: int, count: int | None = None) -> int:
        n = split_windows[split] if count is None else min(count, split_windows[split])
        return min(n, cap * batch_size) if cap else n

    train_windows = split_windows["train"] * (1 + train_config.weather_copies)   # counterfactual copies too
    per_epoch = max(1, train_windows // train_config.batch_size)
    per_epoch = min(per_epoch, cap) if cap else per_epoch
    val = windows("val", _default(validate, "batch_size")) * cost.forward_window_s
    phases = {"training": train_config.epochs * per_epoch * cost.train_batch_s,
              "validating": train_config.epochs * val}
    if train_config.select != "val_mae":
        checked = min(SELECT_ANCHORS, split_windows["val"])
        phases["what-if checks"] = train_config.epochs * checked * cost.forward_window_s
    if train_config.calibrate:
        phases["calibrating"] = windows("val", _default(fit_sigma_scale, "batch_size")) * cost.forward_window_s
        phases["error correlations"] = min(ESTIMATION_WINDOWS, split_windows["train"]) * cost.forward_window_s
    # One pass per window: a second weather (perfect forecast, what-if) reuses the encoded past.
    phases["scoring"] = windows("test", _default(evaluate.score_split, "batch_size")) * cost.forward_window_s
    if use_weather and simulated:
        what_if = windows("test", _default(evaluate.what_if_error, "batch_size"),
                          _default(evaluate.what_if_error, "count"))
        phases["scoring"] += what_if * cost.forward_window_s
    return Estimate(phases, train_config.epochs * per_epoch)

