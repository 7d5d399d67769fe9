"""The dashboard's side of background work (`stmgt.training.jobs`): the process-wide registry of
jobs, so they outlive reruns, page switches and new browser tabs; the per-batch cost estimates; and
'Evaluate now', which scores a run as a job of the registry with its progress and a Cancel while
the page stays usable."""

from __future__ import annotations

import json

import streamlit as st

from stmgt.data.dataset import TrafficDataset
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.storage.runs import Run
from stmgt.training.estimate import StepCost, measure_step_cost
from stmgt.training.jobs import EvaluationJob, JobRegistry, JobSnapshot
from stmgt.training.trainer import TrainConfig
from ui.layout import flex_columns
from ui.text import md

EVALUATION_POLL_S = 1.0
EVALUATION_PHASES = {"starting": "Loading the model and the test split…",
                     "scoring": "Scoring the model and the three baselines on the test split",
                     "scoring what-if": "Checking its weather what-if answers against the simulator"}


@st.cache_resource
def registry() -> JobRegistry:
    """The process-wide registry: jobs survive reruns, page switches and new browser tabs."""
    return JobRegistry()


@st.cache_resource
def _step_costs() -> dict[str, StepCost]:
    return {}


def step_cost(dataset: TrafficDataset, spec: dict, model_config: STMGTConfig, train_config: TrainConfig,
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
    from `spec`, in the background. While that runs its progress and a Cancel stand here instead;
    when it ends the page reruns (and shows the metrics); how the last one failed or was cancelled
    is said above the button."""
    job = registry().get(EvaluationJob.id_for(run.path))
    snap = None if job is None else job.snapshot()
    if snap is not None and snap.active:
        evaluation_progress(snap.id, key)
        return
    if snap is not None and snap.status == "failed":
        st.error(f"The last evaluation failed: {md(snap.error)}", icon=":material/error:")
    elif snap is not None and snap.status == "cancelled":
        st.info("The last evaluation was cancelled; no metrics were saved.", icon=":material/stop_circle:")
    if not st.button("Evaluate now", key=key, type="primary", icon=":material/analytics:",
                     help="Scores the model and the three baselines on the test split and saves metrics.json "
                          "in the run folder, in the background: the other pages stay usable meanwhile."):
        return
    try:
        registry().start_evaluation(run, dataset, spec, device)
    except DataError as exc:
        st.error(f"This run cannot be evaluated now: {md(exc)}")
        return
    st.rerun()


@st.fragment(run_every=EVALUATION_POLL_S)
def evaluation_progress(job_id: str, key: str) -> None:
    """A running evaluation's phase, progress and Cancel; redraws itself every EVALUATION_POLL_S
    seconds and reruns the page when the job ends."""
    job = registry().get(job_id)
    if job is None or not job.snapshot().active:     # ended (or the registry was cleared with the caches)
        st.rerun()
    snap = job.snapshot()
    bar, button = flex_columns([4, 1], 140, key=f"{key}_progress_row", vertical_alignment="center")
    bar.progress(snap.phase_done / snap.phase_total if snap.phase_total else 0.0, text=phase_text(snap))
    button.button("Stopping…" if snap.cancel_requested else "Cancel", key=f"{key}_cancel",
                  icon=":material/stop_circle:", on_click=job.cancel, disabled=snap.cancel_requested,
                  help="Stops after the current batch; no metrics are saved.")


def phase_text(snap: JobSnapshot) -> str:
    """What an evaluation is doing, e.g. 'Scoring … on the test split: batch 3 of 40'."""
    text = EVALUATION_PHASES.get(snap.phase, EVALUATION_PHASES["starting"])
    return text + (f": batch {snap.phase_done} of {snap.phase_total}" if snap.phase_total > 1 else "")
