"""The background jobs and their registry (stmgt.training.jobs), without Streamlit: a tiny model on two
simulated weeks, so each job takes seconds; in this process's thread, and as the CLI under torchrun
with 2 CPU processes."""

import shutil
import signal
import time
from pathlib import Path

import pytest

from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.storage.lock import FolderLock
from stmgt.storage.runs import Run, RunStatus
from stmgt.evaluation import evaluate as evaluation
from stmgt.training.jobs import EvaluationJob, JobRegistry, ProcessJob, failure_reason
from stmgt.training.trainer import TrainConfig, Trainer, fit

TINY = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3)
SPEC = {"kind": "simulator", "seed": 3, "weeks": 2}


@pytest.fixture(scope="module")
def data():
    return simulate(weeks=2, seed=3)


def quick(**changes) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 8, "max_batches": 2, "device": "cpu", **changes})


def wait(job, timeout=300):
    job.join(timeout)
    snap = job.snapshot()
    assert not snap.active, f"job still {snap.status} after {timeout} s"
    return snap


@pytest.mark.slow
def test_a_job_trains_evaluates_and_records_its_progress(data, tmp_path):
    jobs = JobRegistry()
    job = jobs.start(data, TINY, quick(epochs=2), tmp_path / "runs" / "tiny", SPEC)
    assert jobs.active() is job and jobs.latest() is job and jobs.get("tiny") is job
    snap = wait(job)
    assert snap.status == "finished" and snap.error is None and snap.stopped == "max_epochs"
    assert jobs.active() is None
    # The loss is read back every Trainer.LOG_EVERY batches and at each epoch's end: (epoch - 1) + batch / 2
    assert [round(x, 2) for x, _ in snap.batch_losses] == [1.0, 2.0]
    assert (snap.epoch, snap.batch, snap.num_batches) == (2, 2, 2)
    assert [h["epoch"] for h in snap.history] == [1, 2]
    assert snap.best["val_mae"] == min(h["val_mae"] for h in snap.history)
    run = Run(tmp_path / "runs" / "tiny")
    assert run.has_metrics and run.config["data"] == SPEC and run.config["model"]["hidden_dim"] == 16
    metrics = run.metrics()
    assert set(metrics["models"]) == {"stmgt", "stmgt_perfect_weather", "persistence", "historical_average",
                                      "linear_autoregressive"}
    assert list(run.history()["val_mae"]) == pytest.approx([h["val_mae"] for h in snap.history])
    assert metrics["quick_look"] and metrics["windows"] == 2 * 64       # scoring is capped like training
    assert run.status.state == "complete" and run.status.reason == "max epochs"


def test_every_phase_after_training_reports_progress_and_scoring_can_be_cancelled(data, tmp_path):
    job = JobRegistry().start(data, TINY, quick(max_batches=3), tmp_path / "scoring", SPEC)
    seen = set()
    while job.snapshot().phase != "scoring" or job.snapshot().phase_done < 1:
        snap = job.snapshot()
        assert snap.active, snap.error
        seen.add((snap.phase, snap.phase_total))
        time.sleep(0.01)
    job.cancel()
    snap = wait(job)
    assert {"validating", "calibrating"} <= {phase for phase, _ in seen}
    assert snap.status == "cancelled" and snap.stopped == "max_epochs"  # training ended; scoring was cut short
    run = Run(tmp_path / "scoring")
    assert snap.has_checkpoint and not run.has_metrics
    assert run.status.state == "cancelled" and "scoring cancelled" in run.status.reason


def test_only_one_job_runs_at_a_time(data, tmp_path):
    jobs = JobRegistry()
    first = jobs.start(data, TINY, quick(epochs=50, max_batches=None), tmp_path / "a", SPEC)
    with pytest.raises(DataError, match="still running"):
        jobs.start(data, TINY, quick(), tmp_path / "b", SPEC)
    assert not (tmp_path / "b").exists()
    first.cancel()
    wait(first)


def test_cancel_before_the_first_epoch_ends_keeps_nothing(data, tmp_path):
    job = JobRegistry().start(data, TINY, quick(epochs=50, max_batches=None), tmp_path / "cancelled", SPEC)
    job.cancel()
    assert job.snapshot().cancel_requested
    snap = wait(job)
    assert snap.status == "cancelled" and snap.stopped == "cancelled" and snap.error is None
    assert snap.batch <= 1 and not snap.history          # stopped before or after the batch under way
    assert not (tmp_path / "cancelled").exists()         # no model came of it: no empty run folder


def test_cancel_after_an_epoch_keeps_the_best_checkpoint_without_metrics(data, tmp_path):
    job = JobRegistry().start(data, TINY, quick(epochs=50), tmp_path / "kept", SPEC)
    deadline = time.time() + 60
    while not job.snapshot().history and time.time() < deadline:
        time.sleep(0.05)
    job.cancel()
    snap = wait(job)
    assert snap.status == "cancelled" and snap.has_checkpoint
    assert snap.epoch < 50
    run = Run(tmp_path / "kept")
    assert run.load().meta["epoch"] == snap.best["epoch"]
    assert not run.has_metrics                           # evaluation is skipped when cancelled
    assert run.status.state == "cancelled"


def test_a_failing_fit_reports_its_error(data, tmp_path, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(Trainer, "fit", broken_fit)
    snap = wait(JobRegistry().start(data, TINY, quick(), tmp_path / "broken", SPEC))
    assert snap.status == "failed" and snap.error == "training failed: RuntimeError: CUDA out of memory"
    assert not (tmp_path / "broken").exists()


def test_a_failing_evaluation_keeps_the_trained_run(data, tmp_path, monkeypatch):
    def broken_evaluate(run, dataset, spec, **options):
        raise DataError("the test split holds no observed speeds")

    monkeypatch.setattr(evaluation, "evaluate", broken_evaluate)
    snap = wait(JobRegistry().start(data, TINY, quick(), tmp_path / "unscored", SPEC))
    assert snap.status == "failed" and "scoring it on the test split failed" in snap.error
    assert "no observed speeds" in snap.error
    run = Run(tmp_path / "unscored")
    assert snap.has_checkpoint and not run.has_metrics
    assert run.status.state == "failed" and "no observed speeds" in run.status.reason   # as the CLI records it


# ---- on several processes: the CLI under torchrun, 2 CPU processes on gloo ----------------------
def processes_of(run_dir) -> list[int]:
    """Live processes whose command line names `run_dir`: torchrun and its workers (`--out RUN`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(run_dir).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:              # ended meanwhile
            pass
    return pids


@pytest.mark.slow
def test_a_process_job_trains_on_two_processes_and_reports_like_a_thread_job(data, tmp_path):
    jobs = JobRegistry()
    job = jobs.start(data, TINY, quick(epochs=2, compile=False), tmp_path / "runs" / "ddp", SPEC, processes=2)
    assert isinstance(job, ProcessJob) and jobs.active() is job and jobs.get("ddp") is job
    phases = set()
    while job.snapshot().active:
        phases.add(job.snapshot().phase)
        time.sleep(0.02)
    snap = wait(job)
    assert snap.status == "finished" and snap.error is None and snap.stopped == "max_epochs" and snap.processes == 2
    assert {"training", "scoring"} <= phases
    assert [round(x, 2) for x, _ in snap.batch_losses] == [1.0, 2.0]
    assert (snap.epoch, snap.batch, snap.num_batches) == (2, 2, 2) and [h["epoch"] for h in snap.history] == [1, 2]
    run = Run.open(tmp_path / "runs" / "ddp")
    assert run.status.state == "complete" and run.status.reason == "max epochs"
    assert run.config["distributed"]["ranks"] == 2 and run.config["data"] == SPEC
    assert run.config["model"] == TINY.to_dict() and run.config["train"]["batch_size"] == 8
    assert list(run.history()["val_mae"]) == pytest.approx([h["val_mae"] for h in snap.history])
    assert run.metrics()["quick_look"] and run.load(data.graph).meta["epoch"] == snap.best["epoch"]
    assert processes_of(run.path) == []


@pytest.mark.slow
def test_cancelling_a_process_job_stops_every_process_and_keeps_the_best_checkpoint(data, tmp_path):
    run_dir = tmp_path / "kept"
    job = JobRegistry().start(data, TINY, quick(epochs=50, compile=False), run_dir, SPEC, processes=2)
    deadline = time.time() + 120
    while not job.snapshot().history and time.time() < deadline:
        assert job.snapshot().active, job.snapshot().error
        time.sleep(0.05)
    assert len(processes_of(run_dir.resolve())) == 3          # torchrun and one worker per process
    job.cancel()
    snap = wait(job, 120)
    assert snap.status == "cancelled" and snap.stopped == "cancelled" and snap.error is None
    assert snap.has_checkpoint and snap.epoch < 50
    run = Run(run_dir)
    assert run.status.state == "cancelled" and not run.has_metrics
    assert run.load().meta["epoch"] == snap.best["epoch"]
    assert processes_of(run_dir.resolve()) == []


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_a_process_job_cancelled_at_once_keeps_nothing(data, tmp_path, sigint):
    """Also from a dashboard started in the background by a shell without job control, whose
    children inherit SIGINT ignored (cancel is a SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        job = JobRegistry().start(data, TINY, quick(epochs=50, compile=False), tmp_path / "early", SPEC, processes=2)
        job.cancel()
        snap = wait(job, 120)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert snap.status == "cancelled" and snap.stopped == "cancelled" and not snap.history
    assert not (tmp_path / "early").exists() and processes_of((tmp_path / "early").resolve()) == []


@pytest.mark.slow
def test_a_failing_process_job_reports_the_processes_error_once(data, tmp_path):
    missing = {"kind": "folder", "path": str(tmp_path / "no-such-data")}
    snap = wait(JobRegistry().start(data, TINY, quick(), tmp_path / "broken", missing, processes=2), 120)
    assert snap.status == "failed" and snap.error == f"{tmp_path / 'no-such-data'}: folder not found"
    assert not (tmp_path / "broken").exists()


def test_a_failure_reason_comes_from_the_run_and_every_rank():
    stderr = """\
*****************************************
Setting OMP_NUM_THREADS environment variable for each process to be 1 in default
Traceback (most recent call last):
  File "stmgt/training/trainer.py", line 9, in step
    raise RuntimeError("CUDA out of memory")
RuntimeError: CUDA out of memory
error: training stopped: another training process failed or the launcher was stopped
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
stmgt FAILED
"""
    status = RunStatus("failed", "training stopped: another training process failed or the launcher was stopped")
    assert failure_reason(status, 1, stderr) == ("training stopped: another training process failed or the "
                                                 "launcher was stopped; RuntimeError: CUDA out of memory")
    assert failure_reason(RunStatus("unrecorded"), 1, "a\nb\n\nc\nd\n") == "b; c; d"
    assert failure_reason(RunStatus("unrecorded"), -9, "") == "the training processes ended with exit status -9"


# ---- evaluation: scoring a trained run in the background ---------------------------------------
@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A tiny run trained for one epoch and not scored."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    fit(data, TINY, quick(), run_dir, SPEC)
    return run_dir


@pytest.fixture
def unscored(trained, tmp_path):
    return Run(shutil.copytree(trained, tmp_path / "unscored"))


@pytest.mark.slow
def test_an_evaluation_job_scores_a_run_in_the_background_through_its_phases(data, unscored):
    jobs = JobRegistry()
    job = jobs.start_evaluation(unscored, data, SPEC, "cpu")
    assert jobs.active() is job and jobs.latest("evaluation") is job and jobs.latest() is None   # no training
    assert jobs.get(EvaluationJob.id_for(unscored.path)) is job
    seen = set()
    while job.snapshot().active:
        snap = job.snapshot()
        seen.add((snap.phase, snap.phase_done, snap.phase_total))
        time.sleep(0.005)
    snap = wait(job)
    assert snap.kind == "evaluation" and snap.config is None and snap.title == "evaluation of 'unscored'"
    assert snap.status == "finished" and snap.error is None and not snap.cancel_requested
    scoring = sorted((done, total) for phase, done, total in seen if phase == "scoring")
    assert scoring and all(0 < done <= total for done, total in scoring) and len({t for _, t in scoring}) == 1
    assert {"scoring what-if"} <= {phase for phase, _, _ in seen}          # the simulator's data: what-if too
    metrics = unscored.metrics()
    assert metrics["data"] == SPEC and not metrics.get("quick_look") and "what_if" in metrics
    assert jobs.active() is None


def test_a_cancelled_evaluation_writes_no_metrics_and_another_may_follow(data, unscored):
    jobs = JobRegistry()
    first = jobs.start_evaluation(unscored, data, SPEC, "cpu")
    first.cancel()
    assert first.snapshot().cancel_requested
    snap = wait(first)
    assert snap.status == "cancelled" and snap.error is None and snap.phase == "done"
    assert not unscored.has_metrics and snap.has_checkpoint        # the model is untouched
    second = jobs.start_evaluation(unscored, data, SPEC, "cpu")
    assert jobs.get(first.id) is second                          # one evaluation per run: the newest
    second.cancel()
    assert wait(second).status == "cancelled" and not unscored.has_metrics


def test_an_evaluation_and_a_training_do_not_run_together(data, unscored, tmp_path):
    jobs = JobRegistry()
    training = jobs.start(data, TINY, quick(epochs=50, max_batches=None), tmp_path / "a", SPEC)
    with pytest.raises(DataError, match="training 'a' is still running"):
        jobs.start_evaluation(unscored, data, SPEC, "cpu")
    training.cancel()
    wait(training)
    scoring = jobs.start_evaluation(unscored, data, SPEC, "cpu")
    with pytest.raises(DataError, match="evaluation of 'unscored' is still running"):
        jobs.start(data, TINY, quick(), tmp_path / "b", SPEC)
    assert not (tmp_path / "b").exists()
    scoring.cancel()
    wait(scoring)


def test_an_evaluation_that_fails_says_why(data, unscored, monkeypatch):
    def broken_evaluate(run, dataset, spec, **options):
        raise DataError("the test split holds no observed speeds")

    monkeypatch.setattr(evaluation, "evaluate", broken_evaluate)
    before = unscored.status
    snap = wait(JobRegistry().start_evaluation(unscored, data, SPEC, "cpu"))
    assert snap.status == "failed"
    assert snap.error == "this run cannot be evaluated: the test split holds no observed speeds"
    assert not unscored.has_metrics and unscored.status == before     # the run's own record is untouched


def test_an_evaluation_is_refused_while_another_process_writes_the_run(data, unscored):
    with FolderLock(unscored.path, "another writer"):
        snap = wait(JobRegistry().start_evaluation(unscored, data, SPEC, "cpu"))
    assert snap.status == "failed" and "is being written by another process" in snap.error
    assert not unscored.has_metrics
