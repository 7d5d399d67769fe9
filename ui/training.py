"""Training in the background. A `TrainingJob` runs `trainer.fit` then `evaluate.evaluate`
in a thread and records the run's lifecycle (`Run.mark_running` …, as the CLI does); a `ProcessJob`
runs the CLI itself under torchrun, one process per GPU, and follows its progress lines. Pages
poll either through the same snapshot. Cancel works in every phase, scoring included. The worker
threads make no st.* calls — only `registry()` (one per server process, so jobs outlive reruns) and
`evaluate_button` touch Streamlit, from the script thread.

A job writes its run folder as the CLI does, holding the folder's lock (`stmgt.storage.lock`): a thread job
for its whole life, a process job's CLI while it trains and the job itself while it records the
end; a command-line `train --resume` or `--overwrite` of that folder meanwhile is refused."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import streamlit as st

from stmgt.evaluation import evaluate as evaluation
from stmgt.training import trainer as train
from stmgt.data.dataset import TrafficDataset
from stmgt.data.sources import data_arg
from stmgt.errors import DataError
from stmgt.training.estimate import StepCost, measure_step_cost
from stmgt.storage.jsonfile import write_json
from stmgt.storage.lock import FolderLock
from stmgt.model import STMGTConfig
from stmgt.storage.outputs import remove_ours
from stmgt.storage.runs import CHECKPOINT, RUN, Run, RunStatus, kept_epoch
from ui.text import md

log = logging.getLogger(__name__)

ACTIVE = ("running", "evaluating")
LOG_TAIL = 16_000                                   # bytes of the processes' stderr read for a failure's reason
EXCEPTION = re.compile(r"^[\w.]*(Error|Exception): \S")   # a traceback's last line


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state for drawing; never changes under the reader."""

    id: str
    run_dir: Path
    data_spec: dict
    config: train.TrainConfig        # what the job trains with
    processes: int = 1               # training processes (one per GPU); >1 under torchrun
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
        """The epoch the checkpoint holds: the last one that improved the run's selection score
        (validation MAE, or the what-if error with `select` "whatif")."""
        best = kept_epoch(self.history_frame())
        return None if best is None else best.to_dict()


class Job(ABC):
    """What a job of either kind shares: the state under a lock that its progress callbacks fill
    in and readers copy with `snapshot()`, cancel, and the worker thread that ends it."""

    def __init__(self, run_dir: Path, data_spec: dict, train_config: train.TrainConfig, processes: int = 1):
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._state = JobSnapshot(id=Path(run_dir).name, run_dir=Path(run_dir), data_spec=data_spec,
                                  config=train_config, processes=processes)
        self._losses: list[tuple[float, float]] = []   # appended to, copied only when read
        self._history: list[dict] = []
        self._thread = threading.Thread(target=self._work, name=f"train-{self._state.id}", daemon=True)

    @property
    def id(self) -> str:
        return self._state.id

    def start(self) -> Job:
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

    @abstractmethod
    def _work(self) -> None:
        """The worker thread: run the training, feed the progress callbacks, end with `_end`."""

    def _update(self, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    # ---- progress, from the worker (no st.* below) ------------------------------------------
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

    def _scoring(self, stopped: str) -> None:
        """Training ended with a model: scoring on the test split begins."""
        self._update(status="evaluating", phase="scoring", phase_done=0, phase_total=0, stopped=stopped)

    def _keeps_model(self) -> bool:
        """False, removing the run's files, when no model came of the run: leave no empty run behind
        (a file someone else put in the folder stays, and the folder with it)."""
        if self.snapshot().has_checkpoint:
            return True
        with contextlib.suppress(OSError):
            remove_ours(self._state.run_dir, RUN)
        return False

    def _end(self, status: str, stopped: str | None, error: str | None = None) -> None:
        self._update(status=status, phase="done", stopped=stopped, error=error, ended=time.time())


class TrainingJob(Job):
    """One training run in a daemon thread of this process. The thread only updates this object
    (under a lock); readers call `snapshot()`."""

    def __init__(self, dataset: TrafficDataset, model_config: STMGTConfig, train_config: train.TrainConfig,
                 run_dir: Path, data_spec: dict):
        super().__init__(run_dir, data_spec, train_config)
        self._args = (dataset, model_config, train_config, Path(run_dir), data_spec)

    def _work(self) -> None:
        try:
            lock = FolderLock(self._state.run_dir, str(self._state.run_dir))
        except (DataError, OSError) as exc:    # another process writes the folder: it stays theirs
            self._end("failed", None, f"training did not start: {exc}")
            return
        with lock:
            self._train()

    def _train(self) -> None:
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
            self._scoring(result.stopped)
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
        """End the job, recording the run's lifecycle as the CLI does."""
        run = Run(self._state.run_dir)
        if self._keeps_model():
            if status == "failed":
                run.mark_failed(error)
            else:
                run.mark_finished("complete" if status == "finished" else "cancelled", reason)
        self._end(status, stopped, error)


class ProcessJob(Job):
    """One training run on several GPUs: `python -m stmgt.training.launch --nproc-per-node=N -m stmgt
    train --progress-json ...`, the command the README gives, in a session of its own. A thread
    reads rank 0's JSON progress lines into the snapshot and waits for the end, which rank 0
    records in the run's status.json as the CLI always does.

    Cancel sends SIGINT, which torchrun passes to every process: the CLI then stops after the
    current batch (`stmgt.training.stopping`), and torchrun kills any process not gone
    within its shutdown timeout (30 s). SIGTERM, then SIGKILL, follow only if torchrun itself hangs."""

    STOP_SIGNALS = ((signal.SIGINT, 45.0), (signal.SIGTERM, 15.0), (signal.SIGKILL, math.inf))
    POLL_S = 0.5
    DRAIN_S = 5.0

    def __init__(self, model_config: STMGTConfig, train_config: train.TrainConfig, run_dir: Path, data_spec: dict,
                 processes: int):
        super().__init__(run_dir, data_spec, train_config, processes)
        self._settings = {"model": model_config.to_dict(), "train": train_config.to_dict()}

    def _command(self, config_file: Path) -> list[str]:
        """torchrun as a module of this interpreter, so the processes import the same torch, with
        Ctrl-C's handler restored (`stmgt.training.launch`): cancel is a SIGINT."""
        snap = self._state
        return [sys.executable, "-m", "stmgt.training.launch", "--standalone", f"--nproc-per-node={snap.processes}",
                "-m", "stmgt", "train", "--data", data_arg(snap.data_spec), "--out", str(snap.run_dir.resolve()),
                "--config", str(config_file), "--progress-json"]

    def _work(self) -> None:
        try:
            with tempfile.TemporaryDirectory(prefix="stmgt-train-") as folder:
                config_file, log_file = Path(folder) / "config.json", Path(folder) / "stderr.log"
                write_json(config_file, self._settings)
                with open(log_file, "wb") as stderr:
                    code = self._run(self._command(config_file), stderr)
                log_text = log_file.read_bytes()[-LOG_TAIL:].decode(errors="replace")
            with FolderLock(self._state.run_dir, str(self._state.run_dir)):   # the processes have let it go
                self._conclude(code, log_text)
        except DataError as exc:   # a process of theirs lives on, or another writer took the folder: theirs now
            self._end("failed", self.snapshot().stopped, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure must reach the page as a message
            log.exception("training job %s", self.id)
            self._keeps_model()
            self._end("failed", self.snapshot().stopped,
                      f"the training processes could not be run: {type(exc).__name__}: {exc}")

    def _run(self, command: list[str], stderr) -> int:
        """Run `command` to its end, following its stdout; on cancel, signal its process group."""
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                start_new_session=True)
        reader = threading.Thread(target=self._follow, args=(proc.stdout,), name=f"{self._thread.name}-out",
                                  daemon=True)
        reader.start()
        stops, next_stop = iter(self.STOP_SIGNALS), None
        while True:
            try:
                code = proc.wait(self.POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if self._cancel.is_set() and (next_stop is None or time.monotonic() >= next_stop):
                sig, grace = next(stops)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                next_stop = time.monotonic() + grace
        reader.join(self.DRAIN_S)   # a process torchrun left behind may hold stdout open: do not wait for it
        return code

    def _follow(self, stdout) -> None:
        """Rank 0's --progress-json lines into the snapshot; a line that is not one is skipped."""
        handlers = {"batch": lambda r: self._on_batch(train.BatchProgress(**r)),
                    "phase": lambda r: self._on_phase(train.PhaseProgress(**r)),
                    "epoch": lambda r: self._on_epoch(train.EpochReport(**r)),
                    "trained": self._trained}
        for line in stdout:
            if self._state.ended is not None:
                return
            try:
                record = json.loads(line)
                handlers[record.pop("event")](record)
            except (ValueError, TypeError, KeyError, AttributeError):
                log.debug("training job %s: not a progress line: %r", self.id, line)

    def _trained(self, record: dict) -> None:
        if record["scoring"]:
            self._scoring(record["stopped"])
        else:
            self._update(stopped=record["stopped"])

    def _conclude(self, code: int, log_text: str) -> None:
        """End the job as rank 0 recorded it in status.json. A run left without a model is removed,
        and one whose processes died before recording their end is recorded here."""
        snap = self.snapshot()
        run = Run(snap.run_dir)
        status = run.status
        if not self._keeps_model():
            if snap.cancel_requested:
                self._end("cancelled", "cancelled")
            else:
                self._end("failed", snap.stopped, _failure(status, code, log_text))
        elif status.state == "complete":
            self._end("finished", snap.stopped)
        elif status.state == "cancelled" or snap.cancel_requested and status.state in ("running", "interrupted"):
            if status.state != "cancelled":
                run.mark_finished("cancelled", "cancelled from the dashboard")
            self._end("cancelled", snap.stopped or "cancelled")
        else:
            error = _failure(status, code, log_text)
            if status.state != "failed":
                run.mark_failed(error)
            self._end("failed", snap.stopped, error)


def _failure(status: RunStatus, code: int, log_text: str) -> str:
    """Why the training processes failed, in a line: rank 0's recorded reason, then the `error:`
    and exception lines of their stderr (another rank's included); else its last lines."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    said = [line.removeprefix("error: ") for line in lines if line.startswith("error: ") or EXCEPTION.match(line)]
    reasons = list(dict.fromkeys(([status.reason] if status.state == "failed" and status.reason else []) + said))
    return "; ".join(reasons[:3] or lines[-3:] or [f"the training processes ended with exit status {code}"])


class JobRegistry:
    """All training jobs of this server process, newest last; one may be active at a time
    (two trainings would only slow each other down on the same machine)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def start(self, dataset: TrafficDataset, model_config: STMGTConfig, train_config: train.TrainConfig,
              run_dir: Path, data_spec: dict, processes: int = 1) -> Job:
        """A TrainingJob in this process, or with `processes` > 1 a ProcessJob launching that many."""
        with self._lock:
            running = self._active()
            if running is not None:
                raise DataError(f"training '{running.id}' is still running: wait for it or cancel it first")
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True)      # claims the name, so a second start cannot reuse it
            job = (TrainingJob(dataset, model_config, train_config, run_dir, data_spec) if processes == 1
                   else ProcessJob(model_config, train_config, run_dir, data_spec, processes))
            self._jobs[job.id] = job
        return job.start()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self) -> Job | None:
        with self._lock:
            return next(reversed(self._jobs.values()), None)

    def active(self) -> Job | None:
        with self._lock:
            return self._active()

    def _active(self) -> Job | None:
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
    key = json.dumps([spec, model_config.to_dict(), train_config.batch_size, train_config.device,
                      train_config.whatif_weight > 0, train_config.tune], sort_keys=True)
    # the what-if loss adds a forward pass; tuning the weather response alone skips most of the backward
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
            with FolderLock(run.path, run.name):      # it writes metrics.json: one writer at a time
                evaluation.evaluate(run, dataset, spec, device=device)
        except DataError as exc:
            st.error(f"This run cannot be evaluated: {md(exc)}")
            return
    st.rerun()
