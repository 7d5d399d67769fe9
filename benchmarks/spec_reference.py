"""The specification's own STMGT code (STMGT_SPEC.md §9.2–9.4), kept as the yardstick the
training-speed benchmark compares against. Copied as written; what the specification leaves out
is filled in the plainest way and marked "not shown":

* PositionalEncoding: the Transformer's sinusoidal table (not shown).
* STBlock: spatial and temporal branches in parallel on the same input, then the gate (not shown).
* The spatial branch takes `x: [batch * seq_len * num_nodes, hidden_dim]`, so the per-step graph
  is repeated once per batch item and step (the disjoint union) and DropEdge is PyG's
  `dropout_edge` on it (not shown).

It is not used by the product (which has the weather fix, the mask and clock inputs, and a
faster spatial path); it only measures what the plain code costs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATv2Conv
from torch_geometric.utils import dropout_edge


class PositionalEncoding(nn.Module):  # not shown in the specification
    def __init__(self, d_model, max_len=64):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return x + self.pe[: x.size(1)]


class InputEmbedding(nn.Module):
    def __init__(self, in_dim=1, hidden_dim=96):
        super().__init__()
        self.linear = nn.Linear(in_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, x):
        return self.norm(self.linear(x))


class SpatialBranch(nn.Module):
    def __init__(self, hidden_dim=96, heads=4, dropout=0.2):
        super().__init__()
        self.gat = GATv2Conv(in_channels=hidden_dim, out_channels=hidden_dim // heads, heads=heads,
                             dropout=dropout, concat=True)
        self.norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, edge_index):
        h = self.gat(x, edge_index)
        h = self.dropout(h)
        h = self.norm(h + x)
        return h


class TemporalBranch(nn.Module):
    def __init__(self, hidden_dim=96, heads=4, dropout=0.2):
        super().__init__()
        self.pos_encoding = PositionalEncoding(hidden_dim)
        self.attention = nn.MultiheadAttention(embed_dim=hidden_dim, num_heads=heads, dropout=dropout,
                                               batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(hidden_dim, hidden_dim * 4), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim * 4, hidden_dim))
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.norm2 = nn.LayerNorm(hidden_dim)

    def forward(self, x):
        B, T, N, D = x.shape
        x = x.transpose(1, 2).reshape(B * N, T, D)
        x = self.pos_encoding(x)
        attn_out, _ = self.attention(x, x, x)
        x = self.norm1(x + attn_out)
        ffn_out = self.ffn(x)
        x = self.norm2(x + ffn_out)
        x = x.reshape(B, N, T, D).transpose(1, 2)
        return x


class GatedFusion(nn.Module):
    def __init__(self, hidden_dim=96):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(hidden_dim * 2, hidden_dim), nn.Sigmoid())

    def forward(self, spatial, temporal):
        concat = torch.cat([spatial, temporal], dim=-1)
        alpha = self.gate(concat)
        beta = 1 - alpha
        fused = alpha * spatial + beta * temporal
        return fused, alpha


class STBlock(nn.Module):  # not shown in the specification
    def __init__(self, hidden_dim=96, heads=4, dropout=0.2):
        super().__init__()
        self.spatial = SpatialBranch(hidden_dim, heads, dropout)
        self.temporal = TemporalBranch(hidden_dim, heads, dropout)
        self.fusion = GatedFusion(hidden_dim)

    def forward(self, h, edge_index):
        B, T, N, D = h.shape
        spatial = self.spatial(h.reshape(B * T * N, D), edge_index).reshape(B, T, N, D)
        fused, _ = self.fusion(spatial, self.temporal(h))
        return fused


class WeatherCrossAttention(nn.Module):
    def __init__(self, hidden_dim=96, weather_dim=3, dropout=0.2):
        super().__init__()
        self.weather_proj = nn.Linear(weather_dim, hidden_dim)
        self.cross_attn = nn.MultiheadAttention(embed_dim=hidden_dim, num_heads=4, dropout=dropout,
                                                batch_first=True)
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, traffic_features, weather):
        B, T, N, D = traffic_features.shape
        weather_encoded = self.weather_proj(weather)
        weather_encoded = weather_encoded.unsqueeze(2).expand(B, T, N, D)
        query = traffic_features.reshape(B * T, N, D)
        key_value = weather_encoded.reshape(B * T, N, D)
        attn_out, _ = self.cross_attn(query, key_value, key_value)
        attn_out = attn_out.reshape(B, T, N, D)
        output = self.norm(traffic_features + attn_out)
        return output


class GaussianMixtureHead(nn.Module):
    def __init__(self, hidden_dim=96, num_mixtures=5):
        super().__init__()
        self.num_mixtures = num_mixtures
        self.output_layer = nn.Linear(hidden_dim, num_mixtures * 3)

    def forward(self, x):
        B, T, N, D = x.shape
        out = self.output_layer(x)
        out = out.reshape(B, T, N, self.num_mixtures, 3)
        means = out[..., 0]
        log_stds = out[..., 1]
        logits = out[..., 2]
        stds = torch.exp(log_stds) + 0.01
        weights = F.softmax(logits, dim=-1)
        return means, stds, weights


class STMGT(nn.Module):
    def __init__(self, drop_edge=0.05):
        super().__init__()
        self.embedding = InputEmbedding(in_dim=1, hidden_dim=96)
        self.blocks = nn.ModuleList([STBlock(hidden_dim=96, heads=4, dropout=0.2) for _ in range(3)])
        self.weather_attn = WeatherCrossAttention(hidden_dim=96)
        self.mixture_head = GaussianMixtureHead(hidden_dim=96, num_mixtures=5)
        self.drop_edge = drop_edge

    def forward(self, x, edge_index, weather):
        B, T, N, _ = x.shape
        offsets = torch.arange(B * T, device=x.device).repeat_interleave(edge_index.shape[1]) * N
        edges = edge_index.repeat(1, B * T) + offsets          # not shown: one graph per step
        edges = dropout_edge(edges, p=self.drop_edge, training=self.training)[0]
        h = self.embedding(x)
        for block in self.blocks:
            h = block(h, edges)
        h = self.weather_attn(h, weather)
        means, stds, weights = self.mixture_head(h)
        return means, stds, weights


def mixture_nll_loss(y_true, means, stds, weights, K=5):
    log_probs = []
    for k in range(K):
        log_prob_k = -0.5 * ((y_true - means[..., k]) / stds[..., k]) ** 2
        log_prob_k -= torch.log(stds[..., k])
        log_prob_k -= 0.5 * np.log(2 * np.pi)
        log_probs.append(log_prob_k + torch.log(weights[..., k]))
    log_probs = torch.stack(log_probs, dim=-1)
    nll = -torch.logsumexp(log_probs, dim=-1)
    return nll.mean()


def variance_reg(stds):
    return -torch.log(stds).mean()


def entropy_reg(weights):
    entropy = -(weights * torch.log(weights + 1e-8)).sum(dim=-1).mean()
    return -entropy


class SpecTraining:
    """§9.4's loop body: forward, loss + regularisers, backward, clip 1.0, AdamW."""

    def __init__(self, device):
        self.model = STMGT().to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-4, betas=(0.9, 0.999))

    def step(self, x, y, edge_index, weather):
        means, stds, weights = self.model(x, edge_index, weather)
        loss = mixture_nll_loss(y, means, stds, weights)
        loss += 0.01 * variance_reg(stds)
        loss += 0.001 * entropy_reg(weights)
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss
