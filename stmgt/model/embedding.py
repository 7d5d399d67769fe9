"""Input embedding and the parameter-free / learned encodings added to it."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """The Transformer's sin/cos table [length, dim] (Vaswani et al. 2017); odd dims allowed."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table


class SinusoidalEncoding(nn.Module):
    """Adds the step-index sin/cos table along dim -2 of a [..., L, D] tensor. No parameters
    (the weather fix must not change the parameter count), and the table is a non-persistent
    buffer so it follows `.to(device)` without entering checkpoints."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[-2]
        if length > self.table.shape[0]:
            raise ValueError(f"sequence of {length} steps is longer than the {self.table.shape[0]} "
                             "the encoding was built for")
        return x + self.table[:length].to(x.dtype)


class InputEmbedding(nn.Module):
    """Linear + LayerNorm per node and step (spec §9.2.1). `in_dim` is 2 when the observed
    flag is a second channel, so the model can tell a filled-in 0 from a real value."""

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, T, N, in_dim] -> [B, T, N, D]
        return self.norm(self.linear(x))


class TimeEncoding(nn.Module):
    """Clock of each input step, added to the embedded input (traffic is periodic; the
    specification's input has no clock). Time of day as sin/cos (so 23:45 and 00:00 are
    neighbours) projected without bias (the embedding already has one); day of week as a
    learned vector per day, because weekday/weekend effects are categorical, not cyclic.

    The day vectors start at zero, not at nn.Embedding's N(0, 1): a day the training split never
    holds (a few days of imported data) gets no gradient and would otherwise add its random start,
    as large as the whole normalised embedding, to every forecast made on that day."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.time_of_day = nn.Linear(2, hidden_dim, bias=False)
        self.day_of_week = nn.Embedding(7, hidden_dim)
        nn.init.zeros_(self.day_of_week.weight)

    def forward(self, time_of_day: Tensor, day_of_week: Tensor) -> Tensor:
        # time_of_day [B, T] fraction of the day, day_of_week [B, T] 0=Monday -> [B, T, 1, D]
        angle = 2 * math.pi * time_of_day.to(self.time_of_day.weight.dtype)
        clock = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)
        return (self.time_of_day(clock) + self.day_of_week(day_of_week)).unsqueeze(2)
