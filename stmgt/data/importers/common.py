"""What every importer shares: the result type, the report the Data page shows, unit guessing,
and the notes each import owes the user."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stmgt.data.dataset import TrafficDataset
from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph

MPH_TO_KMH = 1.609344


@dataclass
class ImportResult:
    dataset: TrafficDataset
    notes: list[str]


def validation_report(result: ImportResult) -> dict:
    """What the Data page shows before saving: the dataset's summary (span, cadence, nodes,
    edges, missing share, weather), the missing share per node, a guess of the speed unit,
    whether the map has real coordinates, and the importer's notes."""
    ds = result.dataset
    return {**ds.summary(),
            "missing_by_node": pd.Series(np.isnan(ds.speed).mean(axis=0), index=ds.graph.node_ids,
                                         name="missing_share"),
            "unit_guess": guess_units(ds.speed),
            "has_coordinates": ds.graph.has_coordinates,
            "notes": list(result.notes)}


def guess_units(speed) -> str:
    """'mph' when the speeds look like free-flowing roads measured in mph (median 40–70 and
    max < 90), else 'km/h'. A hint only: nothing is converted on the strength of it."""
    values = np.asarray(speed, dtype=float)
    values = values[~np.isnan(values)]
    return "mph" if len(values) and 40 <= np.median(values) <= 70 and values.max() < 90 else "km/h"


def units_note(speed, advice: str) -> list[str]:
    """A note when speeds read as km/h look like mph."""
    if guess_units(speed) != "mph":
        return []
    return [f"The speeds look like mph (median {np.nanmedian(speed):.0f}, max {np.nanmax(speed):.0f}) "
            f"although they were read as km/h; {advice}."]


def build_dataset(speed: pd.DataFrame, weather, graph: RoadGraph, provenance: dict, where: str) -> TrafficDataset:
    """The dataset from a time-indexed speed frame; its own checks' errors are placed at `where`."""
    try:
        return TrafficDataset(speed.index, speed.to_numpy(np.float32), weather, graph, provenance)
    except DataError as exc:
        raise DataError(exc.problem, where) from exc


def unobserved_note(node_ids: list[str]) -> str:
    """What a user must know before trusting the forecast of nodes never observed, in the same
    words wherever it shows (import notes, `forecast`, the Node forecast page)."""
    return (f"{len(node_ids)} node(s) have no speed reading anywhere in the data ({listing(node_ids, 10)}): their "
            "forecasts rest on their neighbours and the time of day only, and their bands are not a measured "
            "uncertainty.")


def finish(dataset: TrafficDataset, notes: list[str]) -> ImportResult:
    """Adds the remarks every import owes the user: nodes never observed, no map coordinates, no weather."""
    notes = list(notes)
    if dataset.unobserved_nodes:
        notes.append(unobserved_note(dataset.unobserved_nodes))
    if not dataset.graph.has_coordinates:
        notes.append("The data has no node locations: the map places the nodes by a layout of the graph, "
                     "not by geography.")
    if dataset.weather is None:
        notes.append("The data has no weather: forecasts are made without it and the weather what-if "
                     "has nothing to vary.")
    return ImportResult(dataset, notes)


def duration(value, name: str) -> pd.Timedelta:
    """A positive duration such as '15min'; `name` is the argument it came from."""
    try:
        step = pd.to_timedelta(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{value!r} is not a duration such as '5min' or '1h'", name) from exc
    if step <= pd.Timedelta(0):
        raise DataError(f"{value!r} must be a positive duration", name)
    return step


def listing(ids, limit: int = 5) -> str:
    ids = list(ids)
    shown = ", ".join(map(str, ids[:limit]))
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"
