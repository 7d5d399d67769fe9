"""What the model drew on for one road, in plain words: how far a block's output for it came from
its neighbours rather than its own recent past (the fusion gate α), and which upstream neighbours
its graph attention (GATv2) weighed most. Read from a forecast's `Diagnostics`, the same numbers
the Interpretability page draws as heatmaps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from stmgt.model import Diagnostics

EVEN_MIX = 0.05     # a gate α this close to 0.5 reads as an even mix of the two branches
NAMED = 2           # neighbours the sentence names; the rest are counted


@dataclass(frozen=True)
class RoadReading:
    alpha: float                                # gate α of the block for the road, mean over input steps
    itself: float                               # attention the road gives its own state (the self loop)
    neighbours: tuple[tuple[int, float], ...]   # (node index, attention) of each upstream neighbour, largest first


def road_reading(diag: Diagnostics, node: int, *, block: int, step: int, head: int | None = None,
                 sample: int = 0) -> RoadReading:
    """The reading for node index `node` in `block` at input step `step`, for attention head
    `head` (None: the mean over heads, as the page's 'mean'), of forecast `sample` in the batch."""
    alpha = float(diag.alpha[block, sample, :, node].double().mean())
    weights = diag.spatial_attention[block, sample, step].double().numpy()          # [E', heads]
    weights = weights.mean(-1) if head is None else weights[:, head]
    source, target = diag.attention_edge_index.numpy()
    into = target == node
    by_source = np.zeros(diag.alpha.shape[-1])
    np.add.at(by_source, source[into], weights[into])
    upstream = [int(j) for j in np.unique(source[into]) if j != node]
    ranked = sorted(upstream, key=lambda j: -by_source[j])
    return RoadReading(alpha, float(by_source[node]), tuple((j, float(by_source[j])) for j in ranked))


def describe_reading(reading: RoadReading, name: Callable[[int], str]) -> str:
    """One sentence: the road's lean between its own past and its neighbours, then the neighbours
    it listens to most. `name(index)` gives a neighbour's name as the sentence should show it."""
    alpha = reading.alpha
    if alpha < 0.5 - EVEN_MIX:
        lean = (f"Mostly its own recent past (gate α = {alpha:.2f}: about {100 * (1 - alpha):.0f} % from its "
                "own history)")
    elif alpha > 0.5 + EVEN_MIX:
        lean = f"Mostly its neighbours (gate α = {alpha:.2f}: about {100 * alpha:.0f} % from the roads around it)"
    else:
        lean = f"An even mix of its own recent past and its neighbours (gate α = {alpha:.2f})"
    if not reading.neighbours:
        return f"{lean}; it has no upstream neighbour, so its graph attention stays on itself."
    (first, weight), *rest = reading.neighbours
    if not rest:
        return f"{lean}; its one upstream neighbour, {name(first)}, gets attention {weight:.2f}."
    then = ", then ".join(f"{name(j)} ({w:.2f})" for j, w in rest[:NAMED - 1])
    more = len(rest) - (NAMED - 1)
    others = f" and {more} other{'s' if more > 1 else ''}" if more > 0 else ""
    return f"{lean}; of its neighbours it listens most to {name(first)} (attention {weight:.2f}), then {then}{others}."
