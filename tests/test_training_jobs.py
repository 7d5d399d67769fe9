"""The background training worker and its registry, without Streamlit: a tiny model on two
simulated weeks, so each job takes seconds."""

import time

import pytest

from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.runs import Run
from stmgt.train import TrainConfig
from ui import training
from ui.training import JobRegistry

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
    assert set(metrics["models"]) == {"stmgt", "stmgt_perfect_weather", "persistence", "historical_average"}
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

    monkeypatch.setattr(training.train, "fit", broken_fit)
    snap = wait(JobRegistry().start(data, TINY, quick(), tmp_path / "broken", SPEC))
    assert snap.status == "failed" and snap.error == "training failed: RuntimeError: CUDA out of memory"
    assert not (tmp_path / "broken").exists()


def test_a_failing_evaluation_keeps_the_trained_run(data, tmp_path, monkeypatch):
    def broken_evaluate(run, dataset, spec, **options):
        raise DataError("the test split holds no observed speeds")

    monkeypatch.setattr(training.evaluation, "evaluate", broken_evaluate)
    snap = wait(JobRegistry().start(data, TINY, quick(), tmp_path / "unscored", SPEC))
    assert snap.status == "failed" and "scoring it on the test split failed" in snap.error
    assert "no observed speeds" in snap.error
    run = Run(tmp_path / "unscored")
    assert snap.has_checkpoint and not run.has_metrics
    assert run.status.state == "failed" and "no observed speeds" in run.status.reason   # as the CLI records it
