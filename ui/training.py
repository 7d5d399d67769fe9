"""Training in the background: a job runs `stmgt.train.fit` then `stmgt.evaluate.evaluate` in a
thread, records its progress and the run's lifecycle (`Run.mark_running` …, as the CLI does);
pages poll a snapshot. Cancel works in every phase, scoring included. The worker thread makes no st.* calls —
only `registry()` (one per server process, so jobs outlive reruns) and `evaluate_button` touch
Streamlit, from the script thread."""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import streamlit as st

from stmgt import evaluate as evaluation
from stmgt import train
from stmgt.data.dataset import TrafficDataset
from stmgt.errors import DataError
from stmgt.estimate import StepCost, measure_step_cost
from stmgt.model import STMGTConfig
from stmgt.runs import CHECKPOINT, Run

log = logging.getLogger(__name__)

ACTIVE = ("running", "evaluating")


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state for drawing; never changes under the reader."""

    id: str
    run_dir: Path
    data_spec: dict
    device: str
    epochs: int
    max_batches: int | None = None   # the cap on every pass (a quick look), if any
    status: str = "running"          # running | evaluating | finished | cancelled | failed
    phase: str = "starting"          # starting | training | validating | calibrating | scoring | scoring what-if | done
    phase_done: int = 0              # batches done and in all of the current phase after training
    phase_total: int = 0
    epoch: int = 0
    batch: int = 0
    num_batches: int = 0
    batch_losses: tuple[tuple[float, float], ...] = ()   # (fractional epoch, loss)
    history: tuple[dict, ...] = ()   # one EpochReport dict per finished epoch
    error: str | None = None
    stopped: str | None = None       # fit's reason: early_stopping | max_epochs | cancelled
    cancel_requested: bool = False
    started: float = field(default_factory=time.time)
    ended: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def has_checkpoint(self) -> bool:
        return (self.run_dir / CHECKPOINT).is_file()

    @property
    def elapsed(self) -> float:
        return (self.ended or time.time()) - self.started

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.history))

    def batches_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.batch_losses), columns=["epoch", "loss"])

    @property
    def best(self) -> dict | None:
        """The epoch with the lowest validation MAE so far (the one the checkpoint holds)."""
        return min((h for h in self.history if math.isfinite(h["val_mae"])), key=lambda h: h["val_mae"], default=None)


class TrainingJob:
    """One training run in a daemon thread. The thread only updates this object (under a lock);
    readers call `snapshot()`."""

    def __init__(self, dataset: TrafficDataset, model_config: STMGTConfig, train_config: train.TrainConfig,
                 run_dir: Path, data_spec: dict):
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._args = (dataset, model_config, train_config, Path(run_dir), data_spec)
        self._state = JobSnapshot(id=Path(run_dir).name, run_dir=Path(run_dir), data_spec=data_spec,
                                  device=train_config.device, epochs=train_config.epochs,
                                  max_batches=train_config.max_batches)
        self._losses: list[tuple[float, float]] = []   # appended to, copied only when read
        self._history: list[dict] = []
        self._thread = threading.Thread(target=self._work, name=f"train-{self._state.id}", daemon=True)

    @property
    def id(self) -> str:
        return self._state.id

    def start(self) -> TrainingJob:
        self._thread.start()
        return self

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return replace(self._state, batch_losses=tuple(self._losses), history=tuple(self._history))

    def cancel(self) -> None:
        """Stop after the current batch: in training the best checkpoint so far is kept, in
        calibration the uncalibrated one, in scoring the trained model without metrics."""
        self._cancel.set()
        self._update(cancel_requested=True)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _update(self, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    # ---- the worker thread (no st.* below) --------------------------------------------------
    def _on_batch(self, p: train.BatchProgress) -> None:
        with self._lock:
            if p.loss is not None:
                self._losses.append((p.epoch - 1 + p.batch / p.num_batches, p.loss))
            self._state = replace(self._state, phase="training", epoch=p.epoch, batch=p.batch,
                                  num_batches=p.num_batches)

    def _on_phase(self, p: train.PhaseProgress) -> None:
        self._update(phase=p.phase, phase_done=p.done, phase_total=p.total)

    def _on_epoch(self, report: train.EpochReport) -> None:
        with self._lock:
            self._history.append(asdict(report))
            self._state = replace(self._state, phase="training")

    def _work(self) -> None:
        dataset, model_config, train_config, run_dir, data_spec = self._args
        run = Run(run_dir)
        try:
            run.mark_running()
            result = train.fit(dataset, model_config, train_config, run_dir=run_dir, data_spec=data_spec,
                               on_batch=self._on_batch, on_epoch=self._on_epoch, on_phase=self._on_phase,
                               cancel=self._cancel)
        except Exception as exc:  # noqa: BLE001 - any failure must reach the page as a message
            self._fail("training failed", exc)
            return
        if result.stopped == "cancelled":
            self._finish("cancelled", result.stopped, reason="cancelled from the dashboard")
        elif result.best_epoch is None:
            self._finish("failed", result.stopped, "no epoch gave a finite validation error, so no model was kept")
        else:
            self._update(status="evaluating", phase="scoring", phase_done=0, phase_total=0, stopped=result.stopped)
            try:
                metrics = evaluation.evaluate(run, dataset, data_spec, device=train_config.device,
                                              max_batches=train_config.max_batches, on_progress=self._on_phase,
                                              cancel=self._cancel)
            except Exception as exc:  # noqa: BLE001
                self._fail("the model was saved but scoring it on the test split failed", exc)
                return
            if metrics is None:
                self._finish("cancelled", result.stopped, reason="scoring cancelled from the dashboard; "
                                                                 "the trained model has no test metrics")
            else:
                self._finish("finished", result.stopped, reason=result.stopped.replace("_", " "))

    def _fail(self, what: str, exc: Exception) -> None:
        if not isinstance(exc, DataError):
            log.exception("training job %s: %s", self.id, what)
        reason = exc if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
        self._finish("failed", self.snapshot().stopped, f"{what}: {reason}")

    def _finish(self, status: str, stopped: str | None, error: str | None = None, reason: str = "") -> None:
        """End the job, recording the run's lifecycle; a run that left no model is removed."""
        run = Run(self._state.run_dir)
        if not (run.path / CHECKPOINT).is_file():
            shutil.rmtree(run.path, ignore_errors=True)   # no model came of it: leave no empty run behind
        elif status == "failed":
            run.mark_failed(error)
        else:
            run.mark_finished("complete" if status == "finished" else "cancelled", reason)
        self._update(status=status, phase="done", stopped=stopped, error=error, ended=time.time())


class JobRegistry:
    """All training jobs of this server process, newest last; one may be active at a time
    (two trainings would only slow each other down on the same machine)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}

    def start(self, dataset: TrafficDataset, model_config: STMGTConfig, train_config: train.TrainConfig,
              run_dir: Path, data_spec: dict) -> TrainingJob:
        with self._lock:
            running = self._active()
            if running is not None:
                raise DataError(f"training '{running.id}' is still running: wait for it or cancel it first")
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True)      # claims the name, so a second start cannot reuse it
            job = TrainingJob(dataset, model_config, train_config, run_dir, data_spec)
            self._jobs[job.id] = job
        return job.start()

    def get(self, job_id: str) -> TrainingJob | None:
        return self._jobs.get(job_id)

    def latest(self) -> TrainingJob | None:
        with self._lock:
            return next(reversed(self._jobs.values()), None)

    def active(self) -> TrainingJob | None:
        with self._lock:
            return self._active()

    def _active(self) -> TrainingJob | None:
        return next((j for j in reversed(self._jobs.values()) if j.snapshot().active), None)


@st.cache_resource
def registry() -> JobRegistry:
    """The process-wide registry: jobs survive reruns, page switches and new browser tabs."""
    return JobRegistry()


@st.cache_resource
def _step_costs() -> dict[str, StepCost]:
    return {}


def step_cost(dataset: TrafficDataset, spec: dict, model_config: STMGTConfig, train_config: train.TrainConfig,
              measure: bool) -> StepCost | None:
    """The per-batch cost of this model on this dataset and device, measured once per server process
    (`measure=True` times it now if it is not known yet; otherwise None until it is)."""
    key = json.dumps([spec, model_config.to_dict(), train_config.batch_size, train_config.device], sort_keys=True)
    costs = _step_costs()
    if key not in costs and measure:
        costs[key] = measure_step_cost(dataset, model_config, train_config)
    return costs.get(key)


def evaluate_button(run: Run, dataset: TrafficDataset, spec: dict, device: str, key: str) -> None:
    """'Evaluate now' for a run without metrics: scores it on the test split of `dataset`, loaded
    from `spec` (with a spinner)."""
    if not st.button("Evaluate now", key=key, type="primary", icon=":material/analytics:",
                     help="Scores the model and both baselines on the test split and saves metrics.json "
                          "in the run folder. Takes a while on a CPU."):
        return
    with st.spinner("Scoring on the test split…"):
        try:
            evaluation.evaluate(run, dataset, spec, device=device)
        except DataError as exc:
            st.error(f"This run cannot be evaluated: {exc}")
            return
    st.rerun()
