"""Work in the background, for the dashboard (no Streamlit here). A `TrainingJob` runs a run's
lifecycle (`stmgt.training.lifecycle`: train, score, record) in a thread; a `ProcessJob` runs the
command line itself under torchrun, one process per GPU, and follows its progress lines; an
`EvaluationJob` scores a trained run on the test split in a thread. Readers poll each through the
same `JobSnapshot`; cancel works in every phase, scoring included. A `JobRegistry` holds them,
one active at a time.

A job writes its run folder as the command line does, holding the folder's lock
(`stmgt.storage.lock`): a thread job for its whole life, a process job's command while it trains
and the job itself while it records the end; a command-line `train --resume`, `--overwrite` or
`evaluate` of that folder meanwhile is refused."""

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

from stmgt.data.dataset import TrafficDataset
from stmgt.data.sources import data_arg
from stmgt.errors import DataError
from stmgt.evaluation import evaluate as evaluation
from stmgt.model import STMGTConfig
from stmgt.storage.jsonfile import write_json
from stmgt.storage.lock import FolderLock
from stmgt.storage.outputs import remove_ours
from stmgt.storage.runs import CHECKPOINT, RUN, Run, RunStatus, kept_epoch
from stmgt.training.recipe import default_sections
from stmgt.training import trainer as train
from stmgt.training.lifecycle import NO_FINITE_EPOCH, NO_MODEL, SCORING_FAILED, TRAINING_FAILED, train_and_score

log = logging.getLogger(__name__)

ACTIVE = ("running", "evaluating")
TRAINING, EVALUATION = "training", "evaluation"     # the kinds of job
LOG_TAIL = 16_000                                   # bytes of the processes' stderr read for a failure's reason
EXCEPTION = re.compile(r"^[\w.]*(Error|Exception): \S")   # a traceback's last line


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state for drawing; never changes under the reader."""

    id: str
    run_dir: Path
    data_spec: dict
    config: train.TrainConfig | None  # what a training job trains with; None for an evaluation
    kind: str = TRAINING             # training | evaluation
    processes: int = 1               # training processes (one per GPU); >1 under torchrun
    status: str = "running"          # running | evaluating | finished | cancelled | failed
    phase: str = "starting"          # starting | training | validating | calibrating | … (PhaseProgress names)
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
    def title(self) -> str:
        """The job in words, e.g. "training 'tiny'" or "evaluation of 'tiny'"."""
        return f"training '{self.id}'" if self.kind == TRAINING else f"evaluation of '{self.run_dir.name}'"

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
    """What every job shares: the state under a lock that its progress callbacks fill in and
    readers copy with `snapshot()`, cancel, and the worker thread that ends it."""

    def __init__(self, state: JobSnapshot):
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._state = state
        self._losses: list[tuple[float, float]] = []   # appended to, copied only when read
        self._history: list[dict] = []
        self._thread = threading.Thread(target=self._work, name=f"{state.kind}-{state.run_dir.name}", daemon=True)

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
        """The worker thread: do the work, feed the progress callbacks, end with `_end`."""

    def _update(self, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    # ---- progress, from the worker ----------------------------------------------------------
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

    def _trained(self, stopped: str, scoring: bool) -> None:
        """Training ended (`stopped` says why); with `scoring`, scoring on the test split begins."""
        if scoring:
            self._update(status="evaluating", phase="scoring", phase_done=0, phase_total=0, stopped=stopped)
        else:
            self._update(stopped=stopped)

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

    def _fail(self, what: str, exc: Exception) -> None:
        """End failed on `exc`, saying `what` failed; an unexpected exception is logged with its trace."""
        if not isinstance(exc, DataError):
            log.exception("%s: %s", self._state.title, what)
        self._end("failed", self.snapshot().stopped,
                  f"{what}: {exc if isinstance(exc, DataError) else f'{type(exc).__name__}: {exc}'}")


class TrainingJob(Job):
    """One training run in a daemon thread of this process: the run's lifecycle, with the
    trainer's progress in the snapshot."""

    def __init__(self, dataset: TrafficDataset, model_config: STMGTConfig, train_config: train.TrainConfig,
                 run_dir: Path, data_spec: dict, plain: bool = False):
        run_dir = Path(run_dir)
        super().__init__(JobSnapshot(id=run_dir.name, run_dir=run_dir, data_spec=data_spec, config=train_config))
        self._args = (dataset, model_config, train_config)
        self._recipe = None if train_config.init_from else default_sections(data_spec, dataset, plain)

    def _work(self) -> None:
        try:
            lock = FolderLock(self._state.run_dir, str(self._state.run_dir))
        except (DataError, OSError) as exc:    # another process writes the folder: it stays theirs
            self._end("failed", None, f"training did not start: {exc}")
            return
        with lock:
            self._train()

    def _train(self) -> None:
        dataset, model_config, train_config = self._args
        snap = self._state
        try:
            trainer = train.Trainer(dataset, model_config, train_config, run_dir=snap.run_dir,
                                    data_spec=snap.data_spec, on_batch=self._on_batch, on_epoch=self._on_epoch,
                                    on_phase=self._on_phase, cancel=self._cancel, recipe=self._recipe)
            outcome = train_and_score(trainer, on_trained=lambda result, scoring: self._trained(result.stopped,
                                                                                                  scoring))
        except Exception as exc:  # noqa: BLE001 - any failure must reach the page as a message
            scoring = self.snapshot().status == "evaluating"
            self._keeps_model()
            self._fail(SCORING_FAILED if scoring else TRAINING_FAILED, exc)
            return
        stopped = outcome.result.stopped
        if outcome.state != NO_MODEL:
            self._end("finished" if outcome.state == "complete" else "cancelled", stopped)
            return
        self._keeps_model()                     # none came of it: the run is removed
        if stopped == "cancelled":
            self._end("cancelled", stopped)
        else:
            self._end("failed", stopped, NO_FINITE_EPOCH)


class ProcessJob(Job):
    """One training run on several GPUs: `python -m stmgt.training.launch --nproc-per-node=N -m stmgt
    train --progress-json ...`, the command docs/training.md gives, in a session of its own. A thread
    reads rank 0's JSON progress lines into the snapshot and waits for the end, which rank 0
    records in the run's status.json as the command line always does.

    Cancel sends SIGINT, which torchrun passes to every process: the command then stops after the
    current batch (`stmgt.training.stopping`), and torchrun kills any process not gone
    within its shutdown timeout (30 s). SIGTERM, then SIGKILL, follow only if torchrun itself hangs."""

    STOP_SIGNALS = ((signal.SIGINT, 45.0), (signal.SIGTERM, 15.0), (signal.SIGKILL, math.inf))
    POLL_S = 0.5
    DRAIN_S = 5.0

    def __init__(self, model_config: STMGTConfig, train_config: train.TrainConfig, run_dir: Path, data_spec: dict,
                 processes: int, plain: bool = False):
        run_dir = Path(run_dir)
        super().__init__(JobSnapshot(id=run_dir.name, run_dir=run_dir, data_spec=data_spec, config=train_config,
                                     processes=processes))
        self._settings = {"model": model_config.to_dict(), "train": train_config.to_dict()}
        self._plain = plain

    def _command(self, config_file: Path) -> list[str]:
        """torchrun as a module of this interpreter, so the processes import the same torch, with
        Ctrl-C's handler restored (`stmgt.training.launch`): cancel is a SIGINT."""
        snap = self._state
        return [sys.executable, "-m", "stmgt.training.launch", "--standalone", f"--nproc-per-node={snap.processes}",
                "-m", "stmgt", "train", "--data", data_arg(snap.data_spec), "--out", str(snap.run_dir.resolve()),
                "--config", str(config_file), "--progress-json", *(["--specification"] if self._plain else [])]

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
                    "trained": lambda r: self._trained(r["stopped"], r["scoring"])}
        for line in stdout:
            if self._state.ended is not None:
                return
            try:
                record = json.loads(line)
                handlers[record.pop("event")](record)
            except (ValueError, TypeError, KeyError, AttributeError):
                log.debug("training job %s: not a progress line: %r", self.id, line)

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
                self._end("failed", snap.stopped, failure_reason(status, code, log_text))
        elif status.state == "complete":
            self._end("finished", snap.stopped)
        elif status.state == "cancelled" or snap.cancel_requested and status.state in ("running", "interrupted"):
            if status.state != "cancelled":
                run.mark_finished("cancelled", "cancelled from the dashboard")
            self._end("cancelled", snap.stopped or "cancelled")
        else:
            error = failure_reason(status, code, log_text)
            if status.state != "failed":
                run.mark_failed(error)
            self._end("failed", snap.stopped, error)


def failure_reason(status: RunStatus, code: int, log_text: str) -> str:
    """Why the training processes failed, in a line: rank 0's recorded reason, then the `error:`
    and exception lines of their stderr (another rank's included); else its last lines."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    said = [line.removeprefix("error: ") for line in lines if line.startswith("error: ") or EXCEPTION.match(line)]
    reasons = list(dict.fromkeys(([status.reason] if status.state == "failed" and status.reason else []) + said))
    return "; ".join(reasons[:3] or lines[-3:] or [f"the training processes ended with exit status {code}"])


class EvaluationJob(Job):
    """Scoring a trained run on the test split of `dataset` (loaded from `data_spec`) in a daemon
    thread, holding the run folder's lock: `evaluate` writes metrics.json when it is done, and
    nothing when cancelled. Its phases are scoring's: "scoring", then "scoring what-if"."""

    def __init__(self, run: Run, dataset: TrafficDataset, data_spec: dict, device: str):
        super().__init__(JobSnapshot(id=self.id_for(run.path), run_dir=run.path, data_spec=data_spec, config=None,
                                     kind=EVALUATION, status="evaluating"))
        self._run, self._dataset, self._device = run, dataset, device

    @staticmethod
    def id_for(run_dir: Path) -> str:
        """The id of a run's evaluation: one per run folder, the latest replacing the one before."""
        return f"{EVALUATION}:{Path(run_dir).resolve()}"

    def _work(self) -> None:
        try:
            with FolderLock(self._run.path, self._run.name):      # it writes metrics.json: one writer at a time
                metrics = evaluation.evaluate(self._run, self._dataset, self._state.data_spec, device=self._device,
                                              on_progress=self._on_phase, cancel=self._cancel)
        except Exception as exc:  # noqa: BLE001 - any failure must reach the page as a message
            self._fail("this run cannot be evaluated", exc)
            return
        self._end("cancelled" if metrics is None else "finished", None)


class JobRegistry:
    """All jobs of this server process, newest last; one may be active at a time (two would only
    slow each other down on the same machine)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def start(self, dataset: TrafficDataset, model_config: STMGTConfig, train_config: train.TrainConfig,
              run_dir: Path, data_spec: dict, processes: int = 1, plain: bool = False) -> Job:
        """A TrainingJob in this process, or with `processes` > 1 a ProcessJob launching that many.
        `plain`: the settings were laid over the specification's recipe, not the data's (recorded
        with a new model, `stmgt.training.recipe`)."""
        def make() -> Job:
            Path(run_dir).mkdir(parents=True)      # claims the name, so a second start cannot reuse it
            return (TrainingJob(dataset, model_config, train_config, run_dir, data_spec, plain) if processes == 1
                    else ProcessJob(model_config, train_config, run_dir, data_spec, processes, plain))
        return self._add(make)

    def start_evaluation(self, run: Run, dataset: TrafficDataset, data_spec: dict, device: str) -> Job:
        """An EvaluationJob scoring `run` on the test split of `dataset`."""
        return self._add(lambda: EvaluationJob(run, dataset, data_spec, device))

    def _add(self, make) -> Job:
        with self._lock:
            running = self._active(None)
            if running is not None:
                raise DataError(f"{running.snapshot().title} is still running: wait for it or cancel it first")
            job = make()
            self._jobs.pop(job.id, None)           # a run's evaluation again: the newest goes last
            self._jobs[job.id] = job
        return job.start()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self, kind: str = TRAINING) -> Job | None:
        """The newest job of `kind`."""
        with self._lock:
            return next((j for j in reversed(self._jobs.values()) if j.snapshot().kind == kind), None)

    def active(self, kind: str | None = None) -> Job | None:
        """The job running now (of `kind`, if given)."""
        with self._lock:
            return self._active(kind)

    def _active(self, kind: str | None) -> Job | None:
        return next((j for j in reversed(self._jobs.values())
                     if j.snapshot().active and kind in (None, j.snapshot().kind)), None)
