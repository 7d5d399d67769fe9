"""Dropout whose mask comes from random bits, because drawing the mask is most of dropout's cost
on a CPU.

`F.dropout` draws one float per element, and so does torch.compile's generated code (a scalar
Philox loop): over the millions of elements STMGT drops per batch, a large share of a CPU training
step (benchmarks/RESULTS.md, *Training speed*). Here one 64-bit integer from ATen's generator (63
random bits) gives four elements 15 random bits each, several times cheaper per element, and an
element is kept when its 15 bits clear a threshold: the same Bernoulli keep-mask, with the drop
probability rounded to a multiple of 1/32768 (0.2 becomes 0.20001). On CUDA, where dropout's
random numbers are generated inside fused kernels at no real cost, `F.dropout` is used as is.

Inside `torch.compile` the bits must come from ATen, not from the generated code: compile with
`options={"fallback_random": True}` (the trainer does on a CPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 15


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element of `x` with probability p and scale the rest by 1 / (1 − p)."""
    if not training or p == 0:
        return x
    if x.is_cuda or p == 1:
        return F.dropout(x, p, True)
    n = x.numel()
    bits = torch.randint(0, (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    uniform15 = bits.view(torch.int16)[:n].view(x.shape) & (LEVELS - 1)     # uniform on [0, 32767]
    dropped = round(p * LEVELS)
    keep = uniform15 >= dropped
    return x * keep * (LEVELS / (LEVELS - dropped))


class Dropout(nn.Module):
    """`nn.Dropout`'s drop-in with the mask from random bits (`dropout`)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
