"""Run folders: `checkpoint.pt`, `config.json`, `history.csv`, `metrics.json` — everything a
trained model's page in the dashboard reads — and `status.json`, the run's lifecycle. Every file
is written atomically.

The lifecycle: `mark_running()` when training starts (with this process's id and host),
then `mark_finished("complete" | "cancelled")` or `mark_failed(reason)`. A run still marked
running whose process is gone on this host reads as "interrupted" (killed, power cut), so a
half-trained checkpoint is never taken for a finished one, unless another live process holds
the folder's lock (`stmgt.storage.lock`): then it is that process's run, being taken over (a resume
starting up), and reads as running.

`RUN` lists every file the tool writes in a run folder: `--overwrite` replaces those and refuses
a folder that holds anything else (`stmgt.storage.outputs`)."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import pandas as pd

from stmgt.storage.checkpoint import LoadedModel, load_checkpoint
from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph
from stmgt.storage.jsonfile import atomic_write_bytes, read_json, write_json
from stmgt.storage.lock import holder, process_alive, process_start
from stmgt.storage.outputs import MARKER, FolderKind, write_marker

CHECKPOINT, CONFIG, HISTORY, METRICS = "checkpoint.pt", "config.json", "history.csv", "metrics.json"
STATUS = "status.json"
TRAINING_STATE = "training_state.pt"     # while a run can still be resumed (stmgt.training.trainer)
FIDELITY = "whatif_fidelity.json"        # the what-if fidelity benchmark's result (stmgt.evaluation.fidelity)
COPULA = "error_copula.npz"              # the route answers' error copula, estimated once (stmgt.routing.copula)
RECIPE = "recipe.json"                   # the recipe a new model started from (stmgt.training.recipe)
RUN = FolderKind("run", frozenset({CHECKPOINT, CONFIG, HISTORY, METRICS, STATUS, TRAINING_STATE, FIDELITY, COPULA,
                                   RECIPE}))
RECORDED_STATES = ("running", "complete", "cancelled", "failed")
# What `RunStatus.state` may read: the recorded ones, "interrupted" (running, but its process is
# gone) and "unrecorded" (a run folder from before runs recorded their status).
USABLE_STATES = ("complete", "cancelled", "unrecorded")   # their checkpoint is a finished model


@dataclass(frozen=True)
class RunStatus:
    state: str                      # one of RECORDED_STATES, "interrupted" or "unrecorded"
    reason: str = ""                # why it failed or was cancelled, in words
    pid: int | None = None          # the training process, and the host it ran on
    host: str = ""
    process_start: int | None = None  # the process's start tick (tells a reused pid apart)
    started: str = ""
    ended: str = ""

    @property
    def usable(self) -> bool:
        """True when its checkpoint may be used for forecasts: training ended on purpose."""
        return self.state in USABLE_STATES

    def describe(self) -> str:
        """One line for listings, e.g. "interrupted: process 412 on gpu-1 ended without finishing"."""
        if self.state == "interrupted":
            return f"interrupted: process {self.pid} on {self.host} ended without finishing"
        if self.state == "running":
            return f"running (process {self.pid} on {self.host})"
        return f"{self.state}: {self.reason}" if self.reason else self.state


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
        status = run.status
        if not status.usable:
            raise DataError(f"the run is not finished ({status.describe()}); its checkpoint is not a "
                            "finished model. Resume it or train a new run", str(run.path))
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

    def write_recipe(self, sections: dict) -> None:
        """The recipe the run's settings were laid over ({"model": {...}, "train": {...}}; empty
        sections: the specification's). The bundled model's is the weather recipe new models start
        from, so rebuilding it with `train --out assets/model --overwrite` keeps that recipe."""
        write_json(self.path / RECIPE, sections)

    def write_history(self, history: pd.DataFrame) -> None:
        atomic_write_bytes(self.path / HISTORY, history.to_csv(index=False).encode())

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def status(self) -> RunStatus:
        """The recorded state; "interrupted" for a run marked running whose process has died and
        that no other live process has taken over."""
        try:
            record = read_json(self.path / STATUS)
            status = RunStatus(**{k: record[k] for k in RunStatus.__dataclass_fields__ if k in record})
        except (DataError, TypeError):
            return RunStatus("unrecorded")
        if status.state == "running" and status.host == socket.gethostname() \
                and not process_alive(status.pid, status.process_start):
            writer = holder(self.path)
            if writer is None:
                return RunStatus(**{**asdict(status), "state": "interrupted"})
            return RunStatus(**{**asdict(status), "pid": writer.pid, "process_start": writer.process_start})
        return status

    def mark_running(self) -> None:
        """Record that training starts now in this process (also marks the folder as ours)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / MARKER).is_file():
            write_marker(self.path, RUN)
        pid = os.getpid()
        self._write_status(RunStatus("running", pid=pid, host=socket.gethostname(),
                                     process_start=process_start(pid), started=_now()))

    def mark_finished(self, state: str = "complete", reason: str = "") -> None:
        """Training ended on purpose: "complete" or "cancelled" (its best checkpoint is kept)."""
        if state not in ("complete", "cancelled"):
            raise ValueError(f"a finished run is complete or cancelled, not {state!r}")
        self._end(state, reason)

    def mark_failed(self, reason: str) -> None:
        """Training stopped on an error; `reason` says which, in one line."""
        self._end("failed", reason)

    def _end(self, state: str, reason: str) -> None:
        previous = self.status
        if not (self.path / MARKER).is_file():
            self.path.mkdir(parents=True, exist_ok=True)
            write_marker(self.path, RUN)
        self._write_status(RunStatus(state, reason, previous.pid, previous.host, previous.process_start,
                                     previous.started or _now(), _now()))

    def _write_status(self, status: RunStatus) -> None:
        write_json(self.path / STATUS, asdict(status))


def list_runs(folder) -> list[Run]:
    """Finished runs under `folder`, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = [Run(p) for p in folder.iterdir() if not p.name.startswith(".") and (p / CHECKPOINT).is_file()]
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
    run.mark_finished("complete", f"{origin} checkpoint")
    return run


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def kept_epoch(history: pd.DataFrame) -> pd.Series | None:
    """The history row of the epoch whose weights the checkpoint holds: the last one that improved
    the run's selection score (validation MAE, or the what-if error with `select: "whatif"`)."""
    if history.empty:
        return None
    improved = history[history["best"].astype(bool)] if "best" in history else history.iloc[:0]
    return improved.iloc[-1] if len(improved) else history.loc[history["val_mae"].idxmin()]
