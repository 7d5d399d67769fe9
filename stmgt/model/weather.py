"""Weather cross-attention: each road's forecast steps query the forecast weather."""

from __future__ import annotations

from torch import Tensor, nn

from stmgt.model.embedding import SinusoidalEncoding


class WeatherCrossAttention(nn.Module):
    """Cross-attention from traffic to weather, with the specification's parameters
    (§9.2.5: weather_proj, 4-head MultiheadAttention, LayerNorm) but a working layout.

    As written, the specification broadcasts one weather vector to every key, so the
    softmax is uniform and the output ignores the traffic state. Here, for each node, its
    12 step features (queries, [B·N, 12, D]) attend over the 12 forecast-step weather
    tokens (projected weather + a parameter-free step encoding, so identical weather at two
    steps is still told apart). The attention pattern therefore depends on the road's state,
    which is what the specification wants ("rain impacts congested roads more")."""

    def __init__(self, hidden_dim: int, heads: int, dropout: float, horizon: int, weather_dim: int = 3):
        super().__init__()
        self.weather_proj = nn.Linear(weather_dim, hidden_dim)
        self.step_encoding = SinusoidalEncoding(hidden_dim, horizon)
        self.cross_attn = nn.MultiheadAttention(hidden_dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, traffic: Tensor, weather: Tensor,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """traffic [B, T, N, D], weather [B, S, 3] -> ([B, T, N, D], attention [B, N, H, T, S]
        when `need_weights`)."""
        B, T, N, D = traffic.shape
        tokens = self.step_encoding(self.weather_proj(weather))  # [B, S, D]
        S = tokens.shape[1]
        query = traffic.transpose(1, 2).reshape(B * N, T, D)
        key_value = tokens.unsqueeze(1).expand(B, N, S, D).reshape(B * N, S, D)
        attn_out, weights = self.cross_attn(query, key_value, key_value, need_weights=need_weights,
                                            average_attn_weights=False)
        out = self.norm(query + attn_out).reshape(B, N, T, D).transpose(1, 2)
        if weights is not None:
            weights = weights.reshape(B, N, -1, T, S)
        return out, weights
