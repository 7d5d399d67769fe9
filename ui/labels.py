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


def scoring_weather(metrics: dict) -> str:
    """Which weather the saved STMGT scores read: a model that reads the weather gets a realistic
    forecast for its headline score and the observed weather only in the row that says so."""
    if "weather_forecast" not in metrics:
        return ("Scored by an older version: if this model reads the weather, its scores used the observed "
                "weather (a perfect weather forecast). Evaluate again for realistic ones.")
    if "stmgt_perfect_weather" not in metrics["models"]:
        return "This model reads no weather."
    return (f"STMGT reads {metrics['weather_forecast']}, as it would in use; the row “STMGT (perfect weather "
            "forecast)” reads the observed weather instead, an upper bound no deployment reaches. "
            "The baselines read no weather.")
