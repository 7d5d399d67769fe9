"""Every size a user can ask for, with its bounds, in one table.

The model and training configs, the checkpoint loader, the command line and the Train page's form
all read `LIMITS`, so a model the trainer accepts is one the loader loads, and a value over a
limit is refused before any work, in words that name the limit and why it is there. Where the
cost of sizes multiplies (route draws, training activations), an estimate of the memory is
checked against the machine's (`check_memory`) before anything is allocated.
"""

from __future__ import annotations

import numbers
import os
import resource
from dataclasses import dataclass

import torch

from stmgt.errors import DataError


@dataclass(frozen=True)
class Limit:
    name: str
    low: int
    high: int
    why: str

    def check(self, value) -> None:
        """DataError (a ValueError) for anything but a whole number from `low` to `high`."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < self.low:
            raise DataError(f"{self.name} must be a whole number of at least {self.low}, got {value!r}")
        if value > self.high:
            raise DataError(f"{self.name} = {value!r} is over the limit of {self.high:,}: {self.why}")

    @property
    def accepted(self) -> str:
        return f"whole numbers from {self.low:,} to {self.high:,} ({self.why})"


LIMITS = {limit.name: limit for limit in (
    # the model (STMGTConfig); a checkpoint asking for more is refused before anything is allocated
    Limit("hidden_dim", 1, 512, "five times the specification's 96; memory grows with it times the heads"),
    Limit("num_blocks", 1, 8, "the specification stacks 3 blocks"),
    Limit("heads", 1, 16, "the specification uses 4; each head adds a hidden_dim-wide copy of every edge"),
    Limit("num_mixtures", 1, 16, "the specification's forecast mixes 5 Gaussians"),
    Limit("seq_len", 1, 96, "a day of 15-minute steps; the temporal attention grows with its square"),
    Limit("horizon", 1, 96, "a day of 15-minute steps ahead"),
    Limit("nodes", 1, 20_000, "the road graph's size a model is trained and checked on"),
    # training (TrainConfig)
    Limit("epochs", 1, 1000, "ten times the specification's 100; early stopping ends runs long before"),
    Limit("patience", 1, 1000, "no run has more epochs"),
    Limit("batch_size", 1, 1024, "memory grows with it; the specification's is 32"),
    Limit("max_batches", 1, 10_000_000, "a cap above any epoch's number of batches"),
    Limit("restart_epochs", 1, 1000, "no run has more epochs"),
    Limit("restart_mult", 1, 10, "the learning-rate period grows by this factor at every restart"),
    Limit("weather_copies", 0, 10, "each copy re-simulates the training weeks and holds their windows in memory"),
    Limit("seed", 0, 2**32 - 1, "NumPy's random seeds are 32-bit"),
    # routes and trips
    Limit("samples", 1, 50_000, "Monte Carlo draws of a travel time; its P10–P90 settle long before, "
                                "and every draw holds a speed for each node and step"),
)}


def memory_budget(device: torch.device | str = "cpu") -> int:
    """Bytes a computation on `device` may use at most: the GPU's memory, or the machine's,
    lowered by a memory limit the process runs under (`ulimit -v`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    return budget if limit == resource.RLIM_INFINITY else min(budget, limit)


def check_memory(need: int, budget: int, what: str, remedy: str) -> None:
    """Refuse work whose estimated memory `need` (bytes) is over `budget`, with both figures."""
    if need > budget:
        raise DataError(f"{what} would need about {_gb(need)} of memory, more than the {_gb(budget)} there is; "
                        f"{remedy}")


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB"
