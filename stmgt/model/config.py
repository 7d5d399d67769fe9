"""STMGT hyper-parameters as one JSON-able dataclass, saved beside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from stmgt.model.spatial import slice_bytes
from stmgt.settings import MODEL, SETTINGS, check, default

GAT_LAYOUTS = SETTINGS["gat_layout"].choices


# `training_bytes`' fit: per-token [B·T, N, hidden] tensors a block keeps for its backward pass
# (the temporal FFN's four-times-wider ones among them, and the allocator's leftovers: refitted to
# the 5,000-node step at batch 8 in cache-sized slices, benchmarks/RESULTS.md, *Training memory*),
# and per-edge tensors of one slice alive at once while a sliced table-path block runs or is recomputed.
TOKEN_COPIES = 30
SLICES_AT_ONCE = 6
RECOMPUTED_BLOCK = 1.3      # a recomputed block's activations and their gradients, alive together


# Settings added after checkpoints had been written: a run whose config lacks one was trained without it.
OFF_IN_OLDER_RUNS = {"causal_weather": False, "weather_memory": False, "weather_past": False,
                     "weather_bend": False, "persistence_anchor": False}


@dataclass(frozen=True)
class STMGTConfig:
    """Hyper-parameters of STMGT (STMGT_SPEC.md §9.1; defaults are the specification's values).

    `gat_layout` picks how the 4 GATv2 heads are combined:

    * ``"concat"`` — the specification's code: ``GATv2Conv(out=hidden//heads, heads,
      concat=True)``. With ``use_mask=False, time_encoding=False, weather_memory=False`` the
      model has exactly the spec code's 487,791 parameters.
    * ``"mean"`` (default) — every head is ``hidden`` wide and the heads are averaged
      (``concat=False``): 656,271 parameters without extras, closer to the "680K" the
      specification's prose claims (that figure is not reproducible from its code). It is the
      default because it forecast better in our runs on the embedded data (same recipe,
      H200, 30 epochs), at the same training speed on a GPU (benchmarks/RESULTS.md, *Head
      layout on a GPU*).

    Extras the default adds on top of the specification (1,056 parameters, so the default
    "mean" model has 657,327 and "concat" 488,847):

    * ``use_mask`` — the input gets a second channel, the observed flag, so a filled-in 0
      is distinguishable from a real speed at the mean: ``Linear(2, D)`` instead of
      ``Linear(1, D)``, +96.
    * ``time_encoding`` — the specification's input has no clock although traffic is
      periodic: time of day as sin/cos through ``Linear(2, D, bias=False)`` (+192) and day
      of week as ``Embedding(7, D)`` (+672; weekday/weekend effects are categorical, so a
      learned vector per day fits better than a smooth sin/cos cycle; the vectors start at zero,
      so a weekday a few days of training never held adds nothing).
    * ``weather_memory`` — each weather token carries a leaky running mean of the forecast
      weather up to its step (one learnt decay per channel, +96), so the weather's effect can
      build up and linger as traffic's does (`stmgt.model.weather`). Checkpoints written before
      it existed load with it off; `train --init` from one starts the decays fresh.
    * ``weather_past`` — the memory starts from the observed weather of the input window instead
      of from nothing, so rain that has been falling for an hour is told apart from rain that
      starts now. Without it the two read the same, and a model fitted mostly on rain that was
      already falling (its slowdown already in the input speeds) answers a dry morning's
      rain onset with a fraction of its effect. No parameters; needs ``weather_memory``.
      Checkpoints written before it existed load with it off.

    * ``weather_bend`` — a small MLP (Linear(3, D), GELU, Linear(D, D), the last starting at zero;
      +9,696 parameters) beside the weather projection, so the weather's effect can bend with the
      intensity (`stmgt.model.weather`). The weather recipe's (assets/model/recipe.json); off by
      default and for every checkpoint written before it existed.

    * ``persistence_anchor`` — every component mean is the node's last observed (z-scored) speed in
      the input window plus what the head outputs, and the head's mean outputs start at zero: an
      untrained model forecasts persistence, and training learns the change from it, which on real
      5-minute data is small next to the level. A node with no reading in the window is anchored
      at the training mean (z = 0); the observed-flag channel tells the model so. No parameters;
      off by default and for every checkpoint written before it existed.

    How it runs (no effect on the parameters, so a checkpoint loads with either):

    * ``gat_path`` — ``"dense"`` runs GATv2 over a masked N×N attention matrix, ``"table"`` over
      a padded table of each node's incoming edges (linear in the edges), ``"pyg"`` through PyG's
      `GATv2Conv` message passing, the reference both are tested against; ``"auto"`` (default)
      picks dense or table by a measured cost model (`stmgt.model.spatial`).
    * ``causal_weather`` — horizon step h reads the weather of steps ≤ h only, so rain at
      09:00 cannot slow traffic at 08:45 (a clarification of spec §9.2.5, which attends over
      the whole horizon). Checkpoints written before it existed were trained without it and
      load with it off (`stmgt.storage.checkpoint`).

    ``horizon`` must equal ``seq_len``: like the specification, output position i of the
    final sequence is read as horizon step i+1.
    """

    # Each setting's default, limits and meaning are in `stmgt.settings`.
    hidden_dim: int = default("hidden_dim")
    num_blocks: int = default("num_blocks")
    heads: int = default("heads")
    dropout: float = default("dropout")
    drop_edge: float = default("drop_edge")
    num_mixtures: int = default("num_mixtures")
    seq_len: int = default("seq_len")
    horizon: int = default("horizon")
    gat_layout: str = default("gat_layout")
    use_mask: bool = default("use_mask")
    time_encoding: bool = default("time_encoding")
    use_weather: bool = default("use_weather")
    causal_weather: bool = default("causal_weather")
    weather_memory: bool = default("weather_memory")
    weather_past: bool = default("weather_past")
    weather_bend: bool = default("weather_bend")
    gat_path: str = default("gat_path")
    persistence_anchor: bool = default("persistence_anchor")

    def __post_init__(self):
        # A hand-written config (`train --config`) must fail here in words, not in torch after
        # gigabytes, and within the limits the checkpoint loader accepts (the same records).
        check(self, MODEL)
        if self.hidden_dim % self.heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be divisible by heads ({self.heads})")
        if self.horizon != self.seq_len:
            raise ValueError(f"horizon ({self.horizon}) must equal seq_len ({self.seq_len}): "
                             "each output position is read as one horizon step")

    def training_bytes(self, batch_size: int, num_nodes: int, num_edges: int, path: str = "dense",
                       recompute_blocks: bool = False, device: str = "cpu") -> int:
        """About the memory (fp32) one training step keeps for its backward pass. Most of it is per
        edge: GATv2 scores every edge and self loop of the B·T step-graphs in every head's width;
        then the per-token features of the blocks and the temporal attention. Fitted to the peak
        memory of a step on a CPU (resident memory during the step over that before it; the
        measurements in benchmarks/RESULTS.md, *Training memory*); an estimate, not a bound. On the
        `table` path (`path`: the one the step takes) a CPU keeps no per-edge features but both
        projections of every node and one attention weight and dropout scale per edge and head
        (`stmgt.model.row_parts`; in a compiled step its slices need less); elsewhere per-edge tensors
        beyond one slice on `device` (`spatial.slice_bytes`) are recomputed slice by slice, not kept:
        then a few slices' worth at a time instead. With `recompute_blocks` (`STMGT.recompute_blocks`)
        every block keeps its input only and one block's activations are alive at a time, in its
        recomputation."""
        graphs = batch_size * self.seq_len
        width = self.hidden_dim * (self.heads if self.gat_layout == "mean" else 1)
        per_edge = graphs * (num_edges + num_nodes) * width
        cap = slice_bytes(device)
        rows = path == "table" and torch.device(device).type == "cpu"
        sliced = path == "table" and not rows and 4 * per_edge > cap
        tokens = graphs * num_nodes * self.hidden_dim
        edge_work = (2 * graphs * (num_nodes * width + (num_edges + num_nodes) * self.heads) if rows
                     else 0 if sliced else 3 * per_edge)
        per_block = edge_work + TOKEN_COPIES * tokens + 3 * batch_size * num_nodes * self.heads * self.seq_len ** 2
        kept = (self.num_blocks * tokens + RECOMPUTED_BLOCK * per_block if recompute_blocks
                else self.num_blocks * per_block)
        return int(4 * kept) + (SLICES_AT_ONCE * cap if sliced else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> STMGTConfig:
        """Build from `to_dict()` output; unknown keys are an error (e.g. a config from
        another model version), missing keys take the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown STMGT config key(s): {', '.join(unknown)}; "
                             f"known keys are {', '.join(sorted(known))}")
        return cls(**values)
