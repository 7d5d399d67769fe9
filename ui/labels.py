"""How a run's recorded facts read for people: times without ISO punctuation, architecture choices in
words rather than config keys."""

from __future__ import annotations

import pandas as pd


def moment(iso: str | None) -> str:
    """'27 Nov 2026 07:16 UTC' from a saved ISO 8601 time; '?' where none was saved."""
    try:
        return f"{pd.Timestamp(iso):%d %b %Y %H:%M %Z}".strip()
    except (TypeError, ValueError):
        return "?"


def attention_heads(model: dict) -> str:
    """The GATv2 layout in words, e.g. '4 attention heads of 96, averaged'."""
    heads, hidden = model.get("heads"), model.get("hidden_dim")
    if model.get("gat_layout") == "concat" and heads and hidden:
        return f"{heads} attention heads of {hidden // heads}, concatenated"
    if model.get("gat_layout") == "mean" and heads and hidden:
        return f"{heads} attention heads of {hidden}, averaged"
    return f"GATv2 layout {model.get('gat_layout', '?')}"
