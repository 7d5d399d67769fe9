"""STMGT: the spatio-temporal multi-modal graph transformer (STMGT_SPEC.md §9.3)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from stmgt.model.config import STMGTConfig
from stmgt.model.embedding import InputEmbedding, TimeEncoding
from stmgt.model.fusion import STBlock
from stmgt.model.head import GaussianMixtureHead
from stmgt.model.recompute import checkpointed
from stmgt.model.spatial import StepGraph
from stmgt.model.weather import WeatherCrossAttention


@dataclass
class Diagnostics:
    """What the model attended to, detached. E' counts the per-step edges plus the one
    self loop per node that GATv2Conv adds; `attention_edge_index` [2, E'] names them."""

    alpha: Tensor                   # [blocks, B, T, N] fusion gate averaged over channels
    spatial_attention: Tensor       # [blocks, B, T, E', heads] weight of edge j→i for target i
    attention_edge_index: Tensor    # [2, E'] per-step (not batched) edges, self loops last
    temporal_attention: Tensor      # [blocks, B, N, heads, T, T] query step × key step
    weather_attention: Tensor | None  # [B, N, heads, T, horizon]; None without weather


def last_observed(x: Tensor, mask: Tensor | None) -> Tensor:
    """[B, T, N] z-scored inputs -> [B, N]: each node's last observed value in the window, 0 (the
    training mean) for a node with none. The anchor of `persistence_anchor`."""
    if mask is None:
        return x[:, -1]
    steps = torch.arange(x.shape[1], device=x.device)[None, :, None]
    last = torch.where(mask, steps, -1).amax(dim=1, keepdim=True)                    # [B, 1, N]
    value = x.gather(1, last.clamp(min=0)).squeeze(1)
    return torch.where(last.squeeze(1) >= 0, value, torch.zeros((), dtype=x.dtype, device=x.device))


class STMGT(nn.Module):
    """Embedding (+ observed flag, + clock) → num_blocks × STBlock → weather
    cross-attention → Gaussian-mixture head. Works for any number of nodes N.

    Inputs: x [B, T, N] z-scored speed (values where `mask` is False are ignored, NaN
    included), mask [B, T, N] bool True = observed (None = all observed), edge_index [2, E]
    long over the N nodes, weather [B, horizon, 3] z-scored forecast-step weather (unused and
    may be None without `use_weather`), time_of_day [B, T] fraction of the day in [0, 1),
    day_of_week [B, T] long 0=Monday (both may be None without `time_encoding`), past_weather
    [B, T, 3] z-scored observed weather of the input steps (read with `weather_past`; None = the
    weather memory starts from nothing).
    Outputs means, stds, weights each [B, horizon, N, K]; position i is horizon step i+1. With
    `persistence_anchor` the means are each node's last observed input value plus the head's output.

    `forward(..., futures=S)` forecasts each window under S weather futures at once (what-ifs):
    weather is [S·B, horizon, 3], future-major (rows s·B … s·B + B − 1 are future s), the past
    goes through the blocks once, which is nearly all the work, and the outputs have S·B rows."""

    def __init__(self, config: STMGTConfig | None = None):
        super().__init__()
        self.config = config = config or STMGTConfig()
        D = config.hidden_dim
        self.embedding = InputEmbedding(2 if config.use_mask else 1, D)
        self.time_encoding = TimeEncoding(D) if config.time_encoding else None
        self.blocks = nn.ModuleList(
            STBlock(D, config.heads, config.dropout, config.seq_len, config.gat_layout, config.gat_path)
            for _ in range(config.num_blocks)
        )
        self.weather_attn = (WeatherCrossAttention(D, config.heads, config.dropout, config.horizon,
                                                   causal=config.causal_weather, memory=config.weather_memory,
                                                   bend=config.weather_bend)
                             if config.use_weather else None)
        self.mixture_head = GaussianMixtureHead(D, config.num_mixtures, zero_means=config.persistence_anchor)
        # Per-horizon σ multiplier fitted on the validation split after training
        # (stmgt.forecasting.calibration); ones until then. A buffer, so checkpoints carry it.
        self.register_buffer("sigma_scale", torch.ones(config.horizon))
        self._graph: tuple[Tensor, int, StepGraph] | None = None
        # Memory, not the model: a training pass keeps each block's input only and recomputes the
        # block in the backward pass (the trainer turns it on where a step would not fit otherwise).
        self.recompute_blocks = False

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor, mask: Tensor | None, edge_index: Tensor, weather: Tensor | None = None,
                time_of_day: Tensor | None = None, day_of_week: Tensor | None = None,
                past_weather: Tensor | None = None, futures: int = 1):
        """-> (means, stds, weights), each [futures·B, horizon, N, K]. No attention weights are
        computed on this path."""
        means, stds, weights, _ = self._run(x, mask, edge_index, weather, time_of_day, day_of_week, past_weather,
                                            diagnose=False, futures=futures)
        return means, stds, weights

    def forward_with_diagnostics(self, x: Tensor, mask: Tensor | None, edge_index: Tensor,
                                 weather: Tensor | None = None, time_of_day: Tensor | None = None,
                                 day_of_week: Tensor | None = None, past_weather: Tensor | None = None):
        """-> (means, stds, weights, Diagnostics). Meant for eval mode: attention is reported
        on the full graph (no DropEdge here), and in train mode GATv2's weights would include
        its attention dropout."""
        return self._run(x, mask, edge_index, weather, time_of_day, day_of_week, past_weather, diagnose=True)

    def embed(self, x: Tensor, mask: Tensor | None, time_of_day: Tensor | None,
              day_of_week: Tensor | None) -> Tensor:
        """[B, T, N] inputs -> [B, T, N, D]. Values under a False mask are zeroed here, so
        whatever the caller left there (even NaN) cannot reach the output."""
        if mask is None:
            mask = torch.ones_like(x, dtype=torch.bool)
        x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
        features = [x, mask.to(x.dtype)] if self.config.use_mask else [x]
        h = self.embedding(torch.stack(features, dim=-1))
        if self.time_encoding is not None:
            if time_of_day is None or day_of_week is None:
                raise ValueError("time_of_day and day_of_week are required when time_encoding is on")
            h = h + self.time_encoding(time_of_day, day_of_week)
        return h

    def step_graph(self, edge_index: Tensor, num_nodes: int) -> StepGraph:
        """The per-step graph GATv2 attends over, cached while the caller passes the same,
        unmodified edge_index tensor (training and the dashboard reuse one graph)."""
        cached = self._graph
        if (cached is None or cached[0] is not edge_index or cached[1] != edge_index._version
                or cached[2].num_nodes != num_nodes):
            cached = self._graph = (edge_index, edge_index._version, StepGraph(edge_index, num_nodes))
        return cached[2]

    def drop_edge_mask(self, graph: StepGraph, copies: int, device) -> Tensor | None:
        """DropEdge (spec §9.1): in training each of the `copies` step-graphs keeps each real
        edge with probability 1 − drop_edge ([copies, E] bool); None (keep all) in eval."""
        if not self.training or self.config.drop_edge == 0:
            return None
        return torch.rand(copies, graph.num_real_edges, device=device) >= self.config.drop_edge

    def _check_inputs(self, x: Tensor, mask: Tensor | None, edge_index: Tensor,
                      weather: Tensor | None, past_weather: Tensor | None, futures: int) -> None:
        cfg = self.config
        if futures != 1 and not (cfg.use_weather and isinstance(futures, int) and futures > 1):
            raise ValueError(f"futures must be a whole number of at least 1, and more than 1 only with "
                             f"use_weather, got {futures!r}")
        if x.dim() != 3 or x.shape[1] != cfg.seq_len:
            raise ValueError(f"x must be [batch, {cfg.seq_len}, nodes], got {list(x.shape)}")
        if mask is not None and mask.shape != x.shape:
            raise ValueError(f"mask shape {list(mask.shape)} differs from x shape {list(x.shape)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be [2, edges], got {list(edge_index.shape)}")
        if cfg.use_weather:
            expected = [futures * x.shape[0], cfg.horizon, 3]
            if weather is None or list(weather.shape) != expected:
                got = None if weather is None else list(weather.shape)
                raise ValueError(f"weather must be {expected} when use_weather is on, got {got}")
            if past_weather is not None and list(past_weather.shape) != [x.shape[0], cfg.seq_len, 3]:
                raise ValueError(f"past_weather must be {[x.shape[0], cfg.seq_len, 3]}, got {list(past_weather.shape)}")

    def _run(self, x, mask, edge_index, weather, time_of_day, day_of_week, past_weather, diagnose: bool,
             futures: int = 1):
        self._check_inputs(x, mask, edge_index, weather, past_weather, futures)
        B, T, N = x.shape
        h = self.embed(x, mask, time_of_day, day_of_week)
        graph = self.step_graph(edge_index, N)
        keep = None if diagnose else self.drop_edge_mask(graph, B * T, x.device)

        alphas, spatial, temporal = [], [], []
        recompute = self.recompute_blocks and torch.is_grad_enabled() and not diagnose
        for block in self.blocks:
            run = partial(checkpointed, nn.Module.__call__, block) if recompute else block
            h, alpha, spatial_attention, temporal_attention = run(h, graph, keep, diagnose)
            if diagnose:
                alphas.append(alpha.mean(dim=-1))
                spatial.append(spatial_attention)
                temporal.append(temporal_attention)

        weather_attention = None
        if self.weather_attn is not None:
            past = past_weather if self.config.weather_past else None
            if futures > 1:                 # the one encoded past, read under each future
                h = h.repeat(futures, 1, 1, 1)
                past = None if past is None else past.repeat(futures, 1, 1)
            h, weather_attention = self.weather_attn(h, weather, diagnose, past)

        means, stds, weights = self.mixture_head(h)
        if self.config.persistence_anchor:
            means = means + last_observed(x, mask).repeat(futures, 1)[:, None, :, None]
        stds = stds * self.sigma_scale.view(1, -1, 1, 1)
        if not diagnose:
            return means, stds, weights, None

        diagnostics = Diagnostics(
            alpha=torch.stack(alphas).detach(),
            spatial_attention=torch.stack(spatial).view(len(spatial), B, T, *spatial[0].shape[1:]).detach(),
            attention_edge_index=graph.edge_index,
            temporal_attention=torch.stack(temporal).detach(),
            weather_attention=None if weather_attention is None else weather_attention.detach(),
        )
        return means, stds, weights, diagnostics
