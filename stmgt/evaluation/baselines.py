"""The two baselines every score stands beside, computed on the same windows as the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from stmgt.data.dataset import Batch, Scaler, TrafficDataset


def cadence_minutes(timestamps: pd.DatetimeIndex) -> int:
    return max(int((timestamps[1] - timestamps[0]) / pd.Timedelta(minutes=1)), 1)


def time_of_week_slot(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Slot index within the week at the data's cadence (672 slots at 15 minutes)."""
    minutes = timestamps.day_of_week * 1440 + timestamps.hour * 60 + timestamps.minute
    return (minutes // cadence_minutes(timestamps)).to_numpy().astype(np.int64)


class HistoricalAverage:
    """Mean speed per node and time-of-week slot over the training steps only. A slot never seen
    in training (common with under two weeks of training data) falls back to the node's mean at
    that time of day, then to the node's training mean: a node mean would ignore the rush hours."""

    def __init__(self, dataset: TrafficDataset, train_steps: range):
        slots = time_of_week_slot(dataset.timestamps)
        cadence = cadence_minutes(dataset.timestamps)
        week_slots, day_slots = (7 * 1440 - 1) // cadence + 1, (1440 - 1) // cadence + 1
        train = dataset.speed_frame().iloc[train_steps.start:train_steps.stop]
        train_slots = slots[train_steps.start:train_steps.stop]
        week = train.groupby(train_slots).mean().reindex(range(week_slots))
        # Slot k of the week is minute k·cadence of the week; its time of day is that minute mod 1440.
        of_day = (np.arange(week_slots) * cadence % 1440) // cadence
        day = train.groupby(train_slots * cadence % 1440 // cadence).mean().reindex(range(day_slots))
        table = week.fillna(day.iloc[of_day].set_index(week.index))
        table = table.fillna(train.mean()).fillna(np.nanmean(train.to_numpy()))
        self.table = torch.from_numpy(table.to_numpy(np.float32))     # [slots, N]
        self.slots = torch.from_numpy(slots)

    def predict(self, target_steps: torch.Tensor) -> torch.Tensor:
        """[B, H] step indices (may run past the data's end) -> [B, H, N] km/h."""
        last = len(self.slots) - 1
        step_slot = self.slots[target_steps.clamp(max=last)]
        overrun = (target_steps - last).clamp(min=0)
        cadence_slots = len(self.table)
        # Past the end of the data, continue the weekly clock from the last step.
        step_slot = torch.where(overrun > 0, (self.slots[last] + overrun) % cadence_slots, step_slot)
        return self.table[step_slot]


def persistence(batch: Batch, scaler: Scaler, fallback: torch.Tensor) -> torch.Tensor:
    """Last observed input speed per node, held over the horizon ([B, H, N] km/h). A node with no
    observation in the window falls back to `fallback` ([B, H, N], the historical average)."""
    steps = torch.arange(batch.x.shape[1], device=batch.x.device)[None, :, None]
    last = torch.where(batch.x_mask, steps, -1).amax(dim=1, keepdim=True)        # [B, 1, N]
    value = batch.x.gather(1, last.clamp(min=0)) * scaler.speed_std + scaler.speed_mean
    held = value.expand(-1, fallback.shape[1], -1)
    return torch.where(last >= 0, held, fallback)
