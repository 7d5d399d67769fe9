"""The Train page's panel of a training job: live progress bars, headline numbers and curves while
it runs; how it ended and what to do next once it has."""

from __future__ import annotations

import streamlit as st

from stmgt.data.sources import describe
from stmgt.evaluation.evaluate import versus_baselines
from stmgt.storage.runs import Run
from stmgt.training.trainer import SELECT_ANCHORS
from ui import training
from ui.eval_charts import training_figure
from ui.layout import flex_columns, metric_columns
from ui.saved_runs import fine_tuned_from, next_steps
from ui.text import md

DISMISSED_KEY = "train_dismissed"   # the id of the finished job whose panel was closed
POLL_S = 1.5
SCROLL_KEY = "train_scroll"         # set on Start: bring the progress panel into view once
PHASES = {"validating": "Validating epoch {epoch}",
          "calibrating": "Calibrating the forecast spread on the validation split",
          "estimating error correlations": "Estimating how forecast errors move together, for route travel times",
          "scoring": "Scoring the best checkpoint on the test split against the three baselines",
          "scoring what-if": "Scoring weather what-if answers against the simulator",
          "what-if check": "Checking epoch {epoch}'s weather what-ifs against the simulator"}
STOP_REASONS = {"early_stopping": "stopped early: {score} stopped improving",
                "max_epochs": "ran all epochs", "cancelled": "cancelled"}
# The score that picks the best epoch (TrainConfig.select): its name, history column and meaning.
SCORES = {"val_mae": ("validation MAE", "val_mae", "Mean absolute error of the forecast mean on the validation split."),
          "whatif": ("what-if error", "val_whatif_error",
                     "Mean per-node error of the weather what-if answers against the simulator's true change, "
                     f"over the what-if grid at {SELECT_ANCHORS} validation anchors."),
          "both": ("validation MAE + what-if error", "score",
                   "Validation MAE plus the what-if error (the mean per-node error of the weather what-if answers "
                   f"against the simulator's over the what-if grid at {SELECT_ANCHORS} validation anchors), both "
                   "in km/h: the forecast and the weather response weigh alike.")}


def panel(dataset) -> None:
    """The latest job's panel until it is dismissed: live while the job runs, its outcome after."""
    shown = training.registry().latest()
    if shown is None or shown.id == st.session_state.get(DISMISSED_KEY):
        return
    with st.container(border=True, key="train_panel"):
        if st.session_state.pop(SCROLL_KEY, False):     # just started: the form was in view, not this
            st.html("<script>setTimeout(() => document.querySelector('.st-key-train_panel')"
                    "?.scrollIntoView({behavior: 'smooth', block: 'start'}), 300)</script>",
                    unsafe_allow_javascript=True)
        current = shown.snapshot()
        if current.active:
            live_job(shown.id)
        else:
            job_result(current, dataset)


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _dismiss(job_id: str) -> None:
    st.session_state[DISMISSED_KEY] = job_id


def progress_view(snap: training.JobSnapshot) -> None:
    """Progress bars, headline numbers and curves of a job, running or done."""
    done = len(snap.history)
    in_epoch = snap.epoch > done and snap.num_batches
    epochs = snap.config.epochs
    share = (done + (snap.batch / snap.num_batches if in_epoch else 0)) / epochs
    score, column, meaning = SCORES[snap.config.select]
    if snap.stopped == "early_stopping":
        share, text = 1.0, f"Stopped early after {done} of {epochs} epochs: {score} stopped improving"
    else:
        text = f"{done} of {epochs} epochs done" + (" · early stopping may end it sooner" if snap.active else "")
    st.progress(min(share, 1.0), text=text)
    if snap.active and snap.phase in PHASES:
        st.progress(snap.phase_done / snap.phase_total if snap.phase_total else 0.0,
                    text=PHASES[snap.phase].format(epoch=snap.epoch)
                    + (f": batch {snap.phase_done} of {snap.phase_total}" if snap.phase_total > 1 else "…"))
    elif snap.phase == "training" and in_epoch:
        st.progress(snap.batch / snap.num_batches, text=f"Epoch {snap.epoch}: batch {snap.batch} of {snap.num_batches}")
    elif snap.active:
        st.caption(":material/hourglass_top: " + ("Preparing data and model…" if snap.phase == "starting"
                                                  else f"Starting epoch {done + 1}…"))
    cols = metric_columns(4)
    cols[0].metric("Last batch loss", f"{snap.batch_losses[-1][1]:.3f}" if snap.batch_losses else "–")
    best = snap.best
    cols[1].metric(f"Best {score}", f"{best[column]:.2f} km/h" if best else "–",
                   help=f"{meaning} The checkpoint keeps the best epoch.")
    cols[2].metric("Best epoch", best["epoch"] if best else "–")
    cols[3].metric("Elapsed", duration(snap.elapsed),
                   help=f"Last epoch took {duration(snap.history[-1]['seconds'])} (training + validation)."
                   if snap.history else None)
    if snap.batch_losses:
        figure = training_figure(snap.history_frame(), snap.batches_frame(), snap.config.whatif_weight)
        st.plotly_chart(figure, key=f"train_curves_{snap.id}")


@st.fragment(run_every=POLL_S)
def live_job(job_id: str) -> None:
    """Redraws itself every POLL_S seconds while the job runs; reruns the page when it ends so the
    sidebar lists the new model."""
    job = training.registry().get(job_id)
    if job is None or not job.snapshot().active:   # ended (or the registry was cleared with the caches)
        st.rerun()
    snap = job.snapshot()
    head, button = flex_columns([4, 1], 140, key="train_panel_head", vertical_alignment="center")
    head.subheader(f"Training **{md(snap.id)}**", anchor=False)
    head.caption(f"On {md(describe(snap.data_spec))} · {snap.config.device.upper()}"
                 + (f" · {snap.processes} processes" if snap.processes > 1 else "")
                 + (f" · fine-tuning {fine_tuned_from(snap.config.init_from)}" if snap.config.init_from else "")
                 + " · the other pages stay usable while it runs.")
    if snap.active:
        button.button("Stopping…" if snap.cancel_requested else "Cancel", key="train_cancel",
                      icon=":material/stop_circle:", on_click=job.cancel, disabled=snap.cancel_requested,
                      help="Stops after the current batch. In training the best checkpoint so far is kept; "
                           "in calibration or scoring the trained model is kept without them.")
    progress_view(snap)


def job_result(snap: training.JobSnapshot, dataset) -> None:
    """How a finished, cancelled or failed job ended, and what to do next."""
    run = Run(snap.run_dir)
    best = snap.best
    st.subheader(f"Training **{md(snap.id)}**", anchor=False)
    if snap.status == "finished":
        metrics = run.metrics()
        score, column, _ = SCORES[snap.config.select]
        st.success(f"Finished in {duration(snap.elapsed)} ({STOP_REASONS[snap.stopped].format(score=score)}). "
                   f"Best {score} **{best[column]:.2f} km/h** at epoch {best['epoch']}. On the test split: "
                   f"**{versus_baselines(metrics)}**. The model is now in the sidebar's model list as "
                   f"**Run: {md(snap.id)}**.", icon=":material/task_alt:")
    elif snap.status == "cancelled" and snap.stopped != "cancelled":
        st.warning(f"Scoring was cancelled. The trained model (best epoch {best['epoch']}, validation MAE "
                   f"{best['val_mae']:.2f} km/h) is kept as **Run: {md(snap.id)}** without test metrics: "
                   "*Evaluate now* scores it.", icon=":material/stop_circle:")
    elif snap.status == "cancelled" and snap.has_checkpoint:
        st.warning(f"Cancelled during epoch {snap.epoch}. The best checkpoint (epoch {best['epoch']}, validation "
                   f"MAE {best['val_mae']:.2f} km/h) is kept as **Run: {md(snap.id)}**; it has no test metrics yet.",
                   icon=":material/stop_circle:")
    elif snap.status == "cancelled":
        st.info("Cancelled before the first epoch ended, so there was no model to keep; nothing was saved.",
                icon=":material/stop_circle:")
    else:
        st.error(f"Training failed: {md(snap.error)}", icon=":material/error:")
    if snap.has_checkpoint:
        next_steps(run, dataset, key="train_job")
    if snap.batch_losses:
        with st.expander("Training curves", expanded=snap.status == "finished"):
            progress_view(snap)
    st.button("Dismiss", key="train_dismiss", on_click=_dismiss, args=(snap.id,))
