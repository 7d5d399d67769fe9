"""Every number a user can ask for, with its bounds, in one table, and the memory check of sizes
whose costs multiply.

The bounds of a model's and a training run's settings are those of `stmgt.settings`, which the
configs, the checkpoint loader, the command line and the Train page's form all read, so a model the
trainer accepts is one the loader loads; here they join the bounds of the data and of a route
request. A value over a limit is refused before any work, in words that name the limit and why it
is there. Where the cost of sizes multiplies (route draws, training activations), an estimate of
the memory is checked against the machine's (`check_memory`) before anything is allocated.
"""

from __future__ import annotations

import os
import resource

import torch

from stmgt.errors import DataError
from stmgt.settings import SETTINGS, Limit

LIMITS = {limit.name: limit for limit in (
    *(s.limit for s in SETTINGS.values() if s.limit is not None),
    Limit("nodes", 1, 20_000, "the road graph's size a model is trained and checked on"),
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
