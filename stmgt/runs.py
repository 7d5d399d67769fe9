"""Run folders: `checkpoint.pt`, `config.json`, `history.csv`, `metrics.json` — everything a
trained model's page in the dashboard reads. Every file is written atomically."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import pandas as pd

from stmgt.checkpoint import LoadedModel, load_checkpoint
from stmgt.errors import DataError
from stmgt.graph import RoadGraph
from stmgt.jsonfile import atomic_write_bytes, read_json, write_json

CHECKPOINT, CONFIG, HISTORY, METRICS = "checkpoint.pt", "config.json", "history.csv", "metrics.json"
BUNDLED_RUN = Path(__file__).resolve().parent.parent / "assets" / "model"


@dataclass(frozen=True)
class Run:
    """A run folder. Cheap to construct; files are read on demand."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def open(cls, path) -> Run:
        run = cls(path)
        if not (run.path / CHECKPOINT).is_file():
            raise DataError(f"no {CHECKPOINT} here: not a finished run", str(run.path))
        return run

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def config(self) -> dict:
        return read_json(self.path / CONFIG)

    @property
    def has_metrics(self) -> bool:
        return (self.path / METRICS).is_file()

    def metrics(self) -> dict:
        return read_json(self.path / METRICS)

    def history(self) -> pd.DataFrame:
        path = self.path / HISTORY
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def load(self, graph: RoadGraph | None = None, device="cpu") -> LoadedModel:
        return load_checkpoint(self.path / CHECKPOINT, graph, device)

    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / CONFIG, config)
        self.__dict__.pop("config", None)

    def write_history(self, history: pd.DataFrame) -> None:
        atomic_write_bytes(self.path / HISTORY, history.to_csv(index=False).encode())

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)


def list_runs(folder) -> list[Run]:
    """Finished runs under `folder`, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = [Run(p) for p in folder.iterdir() if (p / CHECKPOINT).is_file()]
    return sorted(runs, key=lambda r: (r.path / CHECKPOINT).stat().st_mtime, reverse=True)


def import_checkpoint(data: bytes, run_dir, graph: RoadGraph, data_spec: dict, origin: str = "uploaded") -> Run:
    """Save checkpoint bytes (e.g. an upload) as a new run folder for `graph`'s data.

    The bytes are validated first (`load_checkpoint` raises DataError for a damaged, foreign or
    other-graph file) and nothing is written unless they load. The config is written before the
    checkpoint, whose presence is what makes the folder a finished run."""
    loaded = load_checkpoint(bytes(data), graph)
    run = Run(run_dir)
    if run.path.exists():
        raise DataError("a run folder of this name already exists", str(run.path))
    run.write_config({
        "model": loaded.config.to_dict(), "data": data_spec, "graph_fingerprint": loaded.fingerprint,
        "num_nodes": len(loaded.node_ids), "parameters": loaded.model.count_parameters(),
        "source": origin, "checkpoint": loaded.meta, "device": "unknown", "device_name": f"{origin} checkpoint",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    atomic_write_bytes(run.path / CHECKPOINT, bytes(data))
    return run
