"""A run's lifecycle (stmgt.training.lifecycle), the one the command line and the dashboard's jobs
share: what status.json records for each way a run ends, and what is raised again."""

import threading

import pytest

from stmgt.data.simulate import simulate
from stmgt.evaluation import evaluate as evaluation
from stmgt.model import STMGTConfig
from stmgt.storage.runs import Run
from stmgt.training.lifecycle import INTERRUPTED, NO_MODEL, SCORING_CANCELLED, train_and_score
from stmgt.training.trainer import TrainConfig, Trainer

TINY = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3)
SPEC = {"kind": "simulator", "seed": 3, "weeks": 2}


@pytest.fixture(scope="module")
def data():
    return simulate(weeks=2, seed=3)


def trainer(data, run_dir, **changes) -> Trainer:
    config = TrainConfig(**{"epochs": 1, "batch_size": 8, "max_batches": 2, "device": "cpu", **changes})
    return Trainer(data, TINY, config, run_dir=run_dir, data_spec=SPEC, cancel=threading.Event())


def test_a_run_without_scoring_is_complete_and_says_why_training_ended(data, tmp_path):
    trained = []
    outcome = train_and_score(trainer(data, tmp_path / "run"), score=False,
                              on_trained=lambda result, scoring: trained.append((result.stopped, scoring)))
    assert (outcome.state, outcome.scored, outcome.metrics) == ("complete", False, None)
    assert trained == [("max_epochs", False)]
    run = Run(tmp_path / "run")
    assert (run.status.state, run.status.reason) == ("complete", "max epochs") and not run.has_metrics


def test_scoring_cancelled_keeps_the_model_without_metrics(data, tmp_path):
    work = trainer(data, tmp_path / "run")
    outcome = train_and_score(work, on_trained=lambda result, scoring: work.cancel.set())   # as scoring begins
    assert (outcome.state, outcome.scored, outcome.metrics) == ("cancelled", True, None)
    assert outcome.result.stopped == "max_epochs"
    run = Run(tmp_path / "run")
    assert (run.status.state, run.status.reason) == ("cancelled", SCORING_CANCELLED) and not run.has_metrics


def test_a_run_stopped_before_its_first_epoch_has_no_model_and_records_no_end(data, tmp_path):
    work = trainer(data, tmp_path / "run", max_batches=None)
    work.cancel.set()
    outcome = train_and_score(work)
    assert (outcome.state, outcome.scored, outcome.result.stopped) == (NO_MODEL, False, "cancelled")
    assert Run(tmp_path / "run").status.state == "running"       # the caller removes the run


def test_an_interrupt_is_recorded_as_cancelled_and_raised_again(data, tmp_path, monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt()

    monkeypatch.setattr(Trainer, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_and_score(trainer(data, tmp_path / "run"))
    status = Run(tmp_path / "run").status
    assert (status.state, status.reason) == ("cancelled", INTERRUPTED)


def test_a_failure_in_scoring_is_recorded_in_its_first_line_and_raised_again(data, tmp_path, monkeypatch):
    def broken_evaluate(run, dataset, spec, **options):
        raise RuntimeError("CUDA out of memory\nTried to allocate 2.00 GiB")

    monkeypatch.setattr(evaluation, "evaluate", broken_evaluate)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        train_and_score(trainer(data, tmp_path / "run"))
    run = Run(tmp_path / "run")
    assert (run.status.state, run.status.reason) == ("failed", "CUDA out of memory") and not run.has_metrics
