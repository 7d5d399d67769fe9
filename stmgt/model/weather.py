"""Weather cross-attention: each road's forecast steps query the forecast weather."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stmgt.model.attention import attend
from stmgt.model.embedding import SinusoidalEncoding


class WeatherCrossAttention(nn.Module):
    """Cross-attention from traffic to weather, with the specification's parameters
    (§9.2.5: weather_proj, 4-head MultiheadAttention, LayerNorm) but a working layout.

    As written, the specification broadcasts one weather vector to every key, so the
    softmax is uniform and the output ignores the traffic state. Here each node's 12 step
    features (queries) attend over the 12 forecast-step weather tokens (projected weather +
    a parameter-free step encoding, so identical weather at two steps is still told apart).
    The attention pattern therefore depends on the road's state, which is what the
    specification wants ("rain impacts congested roads more").

    The weather tokens, keys and values are computed once per sample and shared by all its
    nodes (every node reads the same forecast). With `causal`, horizon step h attends to the
    weather of steps ≤ h only: a forecast for 08:45 cannot depend on rain at 09:00.

    With `memory`, each step's token is a leaky running mean of the projected weather up to that
    step, one decay per channel (learnt, starting spread from ~15 min to ~3 h). A softmax
    average over identical rainy tokens cannot count how long it has rained, so without it an
    hour of rain reads like a quarter of an hour, and rain that stopped is forgotten the step it
    stops; traffic's answer to weather builds up and lingers. Given the observed weather of the
    input steps (`past`), the memory runs over it first, so rain already falling at the forecast
    time is told apart from rain that starts in the horizon.

    With `bend`, each step's weather also passes through a small MLP (its output layer starting at
    zero, so the module starts as the specification's) before the memory. Without it the values
    the attention mixes are linear in the weather and the mixture head after it is one linear
    layer, so the answer to more rain can only grow smoothly and saturate through the LayerNorm;
    traffic's slowdown does not (flat from light to moderate rain, then a jump to heavy rain), and
    models without the MLP overshot moderate rain and undershot heavy rain. It runs per step, before
    the memory, as rain's effect is set per step and then builds up."""

    def __init__(self, hidden_dim: int, heads: int, dropout: float, horizon: int, weather_dim: int = 3,
                 causal: bool = True, memory: bool = True, bend: bool = False):
        super().__init__()
        self.weather_proj = nn.Linear(weather_dim, hidden_dim)
        self.weather_bend = nn.Sequential(nn.Linear(weather_dim, hidden_dim), nn.GELU(),
                                          nn.Linear(hidden_dim, hidden_dim)) if bend else None
        if bend:
            nn.init.zeros_(self.weather_bend[-1].weight)
            nn.init.zeros_(self.weather_bend[-1].bias)
        # sigmoid(logit) is each channel's share of the previous step's memory it keeps.
        self.memory_logit = nn.Parameter(torch.linspace(-3.0, 2.5, hidden_dim)) if memory else None
        self.step_encoding = SinusoidalEncoding(hidden_dim, horizon)
        # Holds the projections (in_proj_*, out_proj) and their initialisation; the attention
        # itself is computed in `context`, with keys and values per sample instead of per node.
        self.cross_attn = nn.MultiheadAttention(hidden_dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(hidden_dim)
        self.causal = causal

    def forward(self, traffic: Tensor, weather: Tensor, need_weights: bool = False,
                past: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """traffic [B, T, N, D], weather [B, S, 3], past [B, P, 3] or None -> ([B, T, N, D],
        attention [B, N, H, T, S] when `need_weights`)."""
        query = traffic.transpose(1, 2)                                   # [B, N, T, D]
        context, weights = self.context(query, weather, need_weights, past)
        return self.norm(query + context).transpose(1, 2), weights

    def context(self, query: Tensor, weather: Tensor, need_weights: bool = False,
                past: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """What each node-step reads from the weather, before the residual and norm:
        query [B, N, T, D] -> ([B, N, T, D], attention [B, N, H, T, S] or None)."""
        B, N, T, D = query.shape
        attn = self.cross_attn
        H = attn.num_heads
        S = weather.shape[1]
        if past is not None and self.memory_logit is not None:
            weather = torch.cat([past, weather], 1)
        tokens = self.step_encoding(self.remembered(self.projected(weather))[:, -S:])      # [B, S, D]
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q).reshape(B, N * T, H, D // H).transpose(1, 2)  # [B, H, N·T, d]
        k = F.linear(tokens, w_k, b_k).view(B, S, H, D // H).transpose(1, 2)         # [B, H, S, d]
        v = F.linear(tokens, w_v, b_v).view(B, S, H, D // H).transpose(1, 2)
        allowed = self.allowed_steps(T, S, query.device).repeat(N, 1)                # [N·T, S]
        mixed, weights = attend(q, k, v, allowed, attn.dropout if self.training else 0.0, need_weights)
        if weights is not None:
            weights = weights.view(B, H, N, T, S).transpose(1, 2)
        mixed = mixed.transpose(1, 2).reshape(B, N, T, D)
        return attn.out_proj(mixed), weights

    def projected(self, weather: Tensor) -> Tensor:
        """[B, S, 3] -> [B, S, D]: the specification's linear projection, plus the bend's MLP."""
        projected = self.weather_proj(weather)
        return projected if self.weather_bend is None else projected + self.weather_bend(weather)

    def remembered(self, projected: Tensor) -> Tensor:
        """[B, S, D] -> m with m_h = a m_(h-1) + (1 - a) projected_h and m_0 = 0 (a per channel),
        as one product with the lower-triangular kernel (1 - a) a^(h-k), k ≤ h: causal."""
        if self.memory_logit is None:
            return projected
        keep = torch.sigmoid(self.memory_logit)                                      # [D]
        S = projected.shape[1]
        steps = torch.arange(S, device=projected.device)
        lag = steps[:, None] - steps[None, :]                                        # [S, S] h - k
        kernel = (1 - keep) * keep ** lag.clamp(min=0).unsqueeze(-1).to(keep.dtype)  # [S, S, D]
        kernel = kernel * (lag >= 0).unsqueeze(-1)
        return torch.einsum("hkd,bkd->bhd", kernel.to(projected.dtype), projected)

    def allowed_steps(self, steps: int, weather_steps: int, device) -> Tensor:
        """[steps, weather_steps] bool: which weather steps each output step may read."""
        allowed = torch.ones(steps, weather_steps, dtype=torch.bool, device=device)
        return allowed.tril() if self.causal else allowed
