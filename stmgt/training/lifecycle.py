"""A run's lifecycle, written once: mark it running, train, score the model on the test split, and
record how it ended (complete, cancelled or failed) in status.json with one set of reasons.
`stmgt train` (rank 0 of it under torchrun) and the dashboard's jobs (`stmgt.training.jobs`) run it;
progress goes where the trainer's callbacks point, and the trainer's cancel signal stops scoring too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from stmgt.errors import reason
from stmgt.evaluation import evaluate as evaluation
from stmgt.training.trainer import FitResult, Trainer

# How a run or a job ended, in words shared by the command line and the dashboard.
SCORING_CANCELLED = "scoring cancelled; the trained model has no test metrics"
TRAINING_FAILED = "training failed"
SCORING_FAILED = "the model was saved but scoring it on the test split failed"
NO_FINITE_EPOCH = "no epoch gave a finite validation error, so no model was kept"
INTERRUPTED = "interrupted with Ctrl-C"
NO_MODEL = "no model"        # Outcome.state of a run stopped before an epoch gave a model: nothing recorded

OnTrained = Callable[[FitResult, bool], None]


@dataclass(frozen=True)
class Outcome:
    """How a run ended: `state` is what status.json now records ("complete" or "cancelled"), or
    NO_MODEL when training kept no checkpoint (the caller removes the run); `metrics` is None
    unless scoring finished."""

    result: FitResult
    state: str
    scored: bool                  # scoring was asked for and began
    metrics: dict | None


def train_and_score(trainer: Trainer, score: bool = True, on_trained: OnTrained | None = None,
                    bars: bool = False) -> Outcome:
    """Train with `trainer` (set up on the main process with its run folder), then, if `score` and a
    model was kept and training was not cancelled, score it on the test split (metrics.json).
    `on_trained(result, scoring)` is called between the two; `bars` draws scoring's progress bars.

    An exception is recorded in status.json (a Ctrl-C or stop signal as cancelled, anything else as
    failed) and raised again."""
    run = trainer.run
    run.mark_running()
    try:
        result = trainer.fit()
        scoring = score and result.best_epoch is not None and result.stopped != "cancelled"
        if on_trained is not None:
            on_trained(result, scoring)
        metrics = None
        if scoring:
            metrics = evaluation.evaluate(run, trainer.dataset, trainer.data_spec, device=trainer.device, progress=bars,
                                          max_batches=trainer.config.max_batches, on_progress=trainer.on_phase,
                                          cancel=trainer.cancel)
    except KeyboardInterrupt as exc:
        run.mark_finished("cancelled", str(exc) or INTERRUPTED)
        raise
    except BaseException as exc:
        run.mark_failed(reason(exc))
        raise
    if result.best_epoch is None:
        return Outcome(result, NO_MODEL, scoring, None)
    if scoring and metrics is None:
        run.mark_finished("cancelled", SCORING_CANCELLED)
        return Outcome(result, "cancelled", scoring, None)
    state = "cancelled" if result.stopped == "cancelled" else "complete"
    run.mark_finished(state, result.stopped.replace("_", " "))
    return Outcome(result, state, scoring, metrics)
