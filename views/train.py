"""Train & load: train STMGT in the background with live progress, or pick or upload a trained model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from stmgt.data.dataset import split_anchors
from stmgt.data.sources import describe
from stmgt.errors import DataError
from stmgt.training.estimate import estimate
from stmgt.evaluation.evaluate import versus_baselines
from stmgt.limits import LIMITS
from stmgt.model import STMGTConfig
from stmgt.model.config import GAT_LAYOUTS
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run, import_checkpoint
from stmgt.training.trainer import SELECT_ANCHORS, SELECTABLE, TUNABLE, TrainConfig, check_fits, whatif_simulator
from ui import state, training
from ui.eval_charts import training_figure
from ui.labels import attention_heads
from ui.text import md

DISMISSED_KEY = "train_dismissed"   # the id of the finished job whose panel was closed
UPLOADS_KEY = "train_uploads"  # upload file id -> run name, so a rerun never saves an upload twice
POLL_S = 1.5
SCROLL_KEY = "train_scroll"         # set on Start: bring the progress panel into view once
PRESET_KEY = "train_preset"
# Presets set these form fields; the rest keep the specification's defaults.
PRESETS = {
    "Quick look": {"epochs": 2, "max_batches": 3},
    "Specification": {"epochs": TrainConfig.epochs, "max_batches": None},
}
PRESET_HELP = ("*Quick look*: 2 epochs of 3 batches, validation, calibration and test scoring capped at 3 "
               "batches too: minutes on a CPU, to see the whole pipeline work (not a useful model). "
               "*Specification*: 100 epochs over every window, with early stopping (hours on a CPU).")
PHASES = {"validating": "Validating epoch {epoch}",
          "calibrating": "Calibrating the forecast spread on the validation split",
          "scoring": "Scoring the best checkpoint on the test split against both baselines",
          "scoring what-if": "Scoring weather what-if answers against the simulator",
          "what-if check": "Checking epoch {epoch}'s weather what-ifs against the simulator"}
STOP_REASONS = {"early_stopping": "stopped early: {score} stopped improving",
                "max_epochs": "ran all epochs", "cancelled": "cancelled"}
# The score that picks the best epoch (TrainConfig.select): its name, history column and meaning.
SCORES = {"val_mae": ("validation MAE", "val_mae", "Mean absolute error of the forecast mean on the validation split."),
          "whatif": ("what-if error", "val_whatif_error",
                     "Mean per-node error of the weather what-if answers against the simulator's true change, "
                     f"over the what-if grid at {SELECT_ANCHORS} validation anchors.")}



def bounds(name: str) -> dict:
    """A whole-number input's range: the table of limits the trainer and the loader check."""
    return dict(min_value=LIMITS[name].low, max_value=LIMITS[name].high)


# Form fields: attribute -> (label, help, number_input options). Defaults come from the dataclasses.
SCHEDULE = {
    "epochs": ("Epochs", "Upper limit; early stopping usually ends sooner.", bounds("epochs")),
    "patience": ("Early-stopping patience", "Stop after this many epochs without a better score (validation MAE, "
                 "or the what-if error when the best epoch is chosen on it).",
                 bounds("patience")),
}
OPTIMISER = {
    "batch_size": ("Batch size", "Windows per gradient step.", bounds("batch_size")),
    "lr": ("Learning rate", "AdamW peak learning rate (cosine annealing with warm restarts).",
           dict(min_value=1e-6, max_value=1.0, step=1e-4, format="%.1e")),
    "weight_decay": ("Weight decay", "AdamW decoupled weight decay.",
                     dict(min_value=0.0, max_value=1.0, step=1e-4, format="%.1e")),
    "grad_clip": ("Gradient clip (norm)", "Gradients are rescaled to at most this L2 norm.",
                  dict(min_value=0.01, max_value=100.0, step=0.1)),
}
SEED = {"seed": ("Seed", "Fixes initial weights and batch order: the same seed trains the same model.",
                 dict(**bounds("seed"), step=1))}
ARCHITECTURE = {
    "hidden_dim": ("Hidden size", "Width of every block; must be divisible by the number of heads.",
                   dict(**bounds("hidden_dim"), step=4)),
    "num_blocks": ("Blocks", "Parallel spatial/temporal blocks stacked.", bounds("num_blocks")),
    "heads": ("Attention heads", "GATv2 and temporal attention heads.", bounds("heads")),
    "num_mixtures": ("Mixture components", "Gaussians in each forecast distribution.",
                     bounds("num_mixtures")),
}
REGULARISERS = {
    "dropout": ("Dropout", None, dict(min_value=0.0, max_value=0.9, step=0.05)),
    "drop_edge": ("DropEdge", "Share of road segments dropped at random in each training step.",
                  dict(min_value=0.0, max_value=0.9, step=0.01)),
}
ADVANCED_TRAIN = {
    "restart_epochs": ("Epochs to first LR restart", None, bounds("restart_epochs")),
    "restart_mult": ("Restart period multiplier", None, bounds("restart_mult")),
    "min_lr": ("Minimum learning rate", None, dict(min_value=0.0, step=1e-6, format="%.1e")),
    "beta1": ("Adam β1", None, dict(min_value=0.0, max_value=0.999, step=0.01, format="%.3f")),
    "beta2": ("Adam β2", None, dict(min_value=0.0, max_value=0.9999, step=0.001, format="%.4f")),
    "variance_weight": ("Variance regulariser weight", None, dict(min_value=0.0, step=0.001, format="%.4f")),
    "entropy_weight": ("Entropy regulariser weight", None, dict(min_value=0.0, step=0.001, format="%.4f")),
}
WEATHER_RESPONSE = {
    "whatif_weight": ("What-if loss weight", "Adds this weight × the what-if loss to every step: 32 training windows "
                      "each get a sampled what-if (rain, a dry spell, heat or wind over part of the horizon), and the "
                      "model's change of its median forecast is fitted to the simulator's true change. 0 = off. "
                      "A step takes about 2.5× as long.", dict(min_value=0.0, max_value=100.0, step=0.5)),
    "weather_copies": ("Counterfactual weather copies", "Also trains on this many re-simulations of the training "
                       "weeks under sampled, rainier weather, every other random draw kept: each copy adds an "
                       "epoch's worth of windows.", bounds("weather_copies")),
}
MODEL_SWITCHES = {
    "use_weather": ("Weather cross-attention", "Off for data without weather."),
    "use_mask": ("Observed-flag input channel", "Tells a filled-in gap from a real reading."),
    "time_encoding": ("Time-of-day and weekday encoding", None),
}
# Fine-tuning (`TrainConfig.init_from`): the starting model fixes the architecture; dropout and
# DropEdge only act in training, so they stay the user's.
NEW_MODEL = "New model (random weights)"
START_KEY = "train_start_from"
SHAPE = (*ARCHITECTURE, "gat_layout", *MODEL_SWITCHES)
FINE_TUNE_LR = 3e-4        # the peak learning rate of the bundled model's fine-tuning stages (docs/bundled-model.md)
TUNE_LABELS = {"all": "every weight", "weather": "only the weather response"}


def unless_set(key: str, **default) -> dict:
    """A widget's default argument, left out when a preset or a chosen starting model has put its
    value in the session state already (Streamlit refuses both)."""
    return {} if key in st.session_state else default


def number_fields(fields: dict, defaults, disabled: bool = False) -> dict:
    """Number inputs keyed train_<name>; a value a preset put in the session state wins over the default."""
    return {name: st.number_input(label, help=help_text, key=f"train_{name}", disabled=disabled, **options,
                                  **unless_set(f"train_{name}", value=getattr(defaults, name)))
            for name, (label, help_text, options) in fields.items()}


def take_settings_of(runs: dict[str, Run]) -> None:
    """On choosing a model to start from: show its architecture in the form, and a fine-tuning
    learning rate."""
    run = runs.get(st.session_state[START_KEY])
    if run is None:
        return
    for name, value in run.config["model"].items():
        if name in SHAPE or name in REGULARISERS:
            st.session_state[f"train_{name}"] = value
    st.session_state["train_lr"] = FINE_TUNE_LR


def start_from(dataset) -> tuple[Run | None, str, bool]:
    """The trained model (of this road graph) a fine-tune starts from, None for random weights;
    which weights train; and whether the model chosen before is gone (so a Start pressed now
    would train something else than the user chose)."""
    choices, _ = state.model_choices(dataset.graph.fingerprint())
    runs = {c.label: c.run for c in choices}
    chosen = st.session_state.get(START_KEY)
    gone = chosen not in (None, NEW_MODEL, *runs)
    if gone:
        st.warning(f"**{md(chosen)}** is no longer offered to start from: deleted, unfinished, or made for another "
                   "road graph than this dataset's. Nothing was started; pick what to start from again.",
                   icon=":material/warning:")
    if chosen not in (NEW_MODEL, *runs):
        st.session_state[START_KEY] = NEW_MODEL
    cols = st.columns([2, 3, 3], vertical_alignment="bottom")
    label = cols[0].selectbox(
        "Start from", [NEW_MODEL, *runs], key=START_KEY, on_change=take_settings_of, args=(runs,),
        help="Fine-tune a trained model of this road graph instead of training a new one: training begins from "
             "its weights, keeps its architecture, and refits its σ calibration at the end. The learning rate "
             f"is set to {FINE_TUNE_LR:.0e}, gentler than a new model's.")
    run = runs.get(label)
    reads_weather = run is not None and run.config["model"].get("use_weather", True) and dataset.has_weather
    tune = cols[1].radio(
        "Weights that train", TUNABLE, key="train_tune", format_func=TUNE_LABELS.get, horizontal=True,
        disabled=not reads_weather,
        help="*only the weather response*: the weather cross-attention and the mixture head learn, every other "
             "weight stays the starting model's: a step costs little more than a forward pass, and the traffic "
             "patterns learnt before are kept. Needs a starting model that reads the weather.")
    if run is not None:
        cols[2].caption(f"Fine-tunes **{md(label)}**: the model settings below are its own.")
    return run, tune if reads_weather else "all", gone


def apply_preset() -> None:
    for name, value in PRESETS[st.session_state[PRESET_KEY] or "Specification"].items():
        st.session_state[f"train_{name}"] = value


def preset_picker() -> None:
    """Quick look by default where there is no GPU, so a first run finishes in minutes."""
    if PRESET_KEY not in st.session_state:
        st.session_state[PRESET_KEY] = "Specification" if torch.cuda.is_available() else "Quick look"
        apply_preset()
    st.segmented_control("Preset", list(PRESETS), key=PRESET_KEY, on_change=apply_preset, help=PRESET_HELP)


def run_label(run: Run, dataset) -> str | None:
    """The sidebar's label for `run`, or None when it was made for another road graph."""
    choices, _ = state.model_choices(dataset.graph.fingerprint())
    return next((c.label for c in choices if c.run.path == run.path), None)


def _select(label: str) -> None:
    st.session_state["model"] = label


def _dismiss(job_id: str) -> None:
    st.session_state[DISMISSED_KEY] = job_id


def use_button(run: Run, dataset, key: str) -> None:
    """Select `run` in the sidebar (through a callback: the sidebar's widget is drawn already)."""
    label = run_label(run, dataset)
    if label is None:
        st.caption("This model was made for another road graph: switch the sidebar's dataset to use it.")
    elif st.session_state.get("model") == label:
        st.button("Selected in the sidebar", key=key, disabled=True, icon=":material/check:")
    else:
        st.button("Use this model", key=key, type="primary", icon=":material/check_circle:",
                  on_click=_select, args=(label,), help=f"Selects '{md(label)}' in the sidebar for every page.")


def next_steps(run: Run, dataset, key: str) -> None:
    """Use the run, and evaluate it or see its evaluation."""
    cols = st.columns([1, 1, 3], vertical_alignment="center")
    with cols[0]:
        use_button(run, dataset, key=f"{key}_use")
    with cols[1]:
        if run.has_metrics:
            st.page_link("views/evaluation.py", label="See its evaluation", icon=":material/analytics:")
        else:
            training.evaluate_button(run, dataset, state.current_dataset_spec(), state.device(), key=f"{key}_evaluate")


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def fine_tuned_from(init_from: str) -> str:
    """How a fine-tuned run's start is named in Markdown (the run's name escaped)."""
    return "the bundled model" if Path(init_from).resolve() == BUNDLED_RUN else f"run {md(Path(init_from).name)}"


def best_val_mae(run: Run) -> float | None:
    history = run.history()
    if "val_mae" in history and history["val_mae"].notna().any():
        return float(history["val_mae"].min())
    return run.config.get("checkpoint", {}).get("val_mae")   # an uploaded checkpoint's own record


# ---- a training job -------------------------------------------------------------------------------
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
    cols = st.columns(4)
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
    head, button = st.columns([4, 1], vertical_alignment="center")
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


# ---- the three tabs -----------------------------------------------------------------------------
def training_form(dataset, busy: bool) -> None:
    anchors = split_anchors(dataset)
    train_defaults, model_defaults = TrainConfig(), STMGTConfig()
    per_epoch = max(1, len(anchors["train"]) // train_defaults.batch_size)   # whole batches, as Trainer
    st.markdown(f"Trains on **{md(state.dataset_label())}**: {len(anchors['train']):,} training windows "
                f"({per_epoch} batches of {train_defaults.batch_size} per epoch), early stopping on "
                f"{len(anchors['val']):,} validation windows, then scored on {len(anchors['test']):,} test "
                "windows against persistence and the historical average.")
    devices = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    preset_picker()
    init, tune, start_gone = start_from(dataset)
    locked = init is not None
    with st.form("train_form", border=True):
        schedule, optimiser, model, run = st.columns(4, gap="medium")
        with schedule:
            st.markdown("**Schedule**")
            train_values = number_fields(SCHEDULE, train_defaults)
            max_batches = st.number_input(
                "Max batches per epoch (optional)", **bounds("max_batches"), step=1, key="train_max_batches",
                placeholder=f"all {per_epoch}", **unless_set("train_max_batches", value=None),
                help="For a quick look on a CPU: caps the batches of every epoch and of every validation, "
                     "calibration and test-scoring pass. Leave empty to use every window.")
        with optimiser:
            st.markdown("**Optimiser**")
            train_values |= number_fields(OPTIMISER, train_defaults)
        with model:
            st.markdown("**Model**")
            layout = st.radio("GATv2 head layout", GAT_LAYOUTS, key="train_gat_layout", horizontal=True,
                              disabled=locked,
                              **unless_set("train_gat_layout", index=GAT_LAYOUTS.index(model_defaults.gat_layout)),
                              help="concat: the heads split the hidden size (the specification's code, fewer "
                                   "parameters); mean: every head is full width and they are averaged.")
            model_values = (number_fields(ARCHITECTURE, model_defaults, disabled=locked)
                            | number_fields(REGULARISERS, model_defaults) | {"gat_layout": layout})
        with run:
            st.markdown("**Run**")
            name = st.text_input("Run name", value="stmgt", max_chars=40, key="train_name",
                                 help="The run folder is this name plus the start time.")
            train_values |= number_fields(SEED, train_defaults)
            device = st.radio("Device", devices, index=devices.index(state.device()) if state.device() in devices
                              else 0, key="train_device", horizontal=True,
                              help="CUDA is offered when a GPU is present.")
            processes = processes_field()
            if device == "cpu":
                st.caption("On a CPU a full epoch of the default model takes many minutes: the *Quick look* "
                           "preset finishes in a few.")
        with st.expander("More options: LR schedule, Adam, regularisers, model inputs"):
            cols = st.columns(2)
            with cols[0]:
                train_values |= number_fields(ADVANCED_TRAIN, train_defaults)
            with cols[1]:
                for field, (label, help_text) in MODEL_SWITCHES.items():
                    no_weather = field == "use_weather" and not dataset.has_weather
                    model_values[field] = st.checkbox(
                        label, key=f"train_{field}", help=help_text, disabled=no_weather or locked,
                        **unless_set(f"train_{field}", value=getattr(model_defaults, field) and not no_weather))
        with st.expander("Weather response: taught and checked against the simulator"):
            train_values |= weather_response_fields(dataset, train_defaults)
        buttons = st.columns([1, 1, 3])
        submitted = buttons[0].form_submit_button("Start training", key="train_start", type="primary",
                                                  icon=":material/play_arrow:", disabled=busy)
        estimating = buttons[1].form_submit_button(
            "Estimate duration", key="train_estimate", icon=":material/timer:",
            help="Times one training step and one forward pass of this model here, then scales them by the "
                 "batches of every phase. Measured once per model, batch size and device.")
    if busy:
        st.caption("A training is running: wait for it or cancel it to start another.")
    if locked:      # the starting model's architecture, every setting the form does not show included
        model_values = init.config["model"] | {k: v for k, v in model_values.items() if k not in SHAPE}
        train_values |= {"init_from": str(init.path), "tune": tune}
        if model_values.get("use_weather", True) and not dataset.has_weather:
            st.error(f"The starting model, {fine_tuned_from(str(init.path))}, reads the weather and this dataset has "
                     "none, so it cannot be fine-tuned on it: start from a new model instead.")
            return
    configs = checked_configs(dataset, model_values, train_values | {"max_batches": max_batches, "device": device})
    if configs is None:
        return
    duration_estimate(dataset, *configs, measure=estimating)
    if submitted and not start_gone:
        start_job(dataset, *configs, name, processes if device == "cuda" else 1)


def weather_response_fields(dataset, defaults: TrainConfig) -> dict:
    """The opt-in ways to teach the weather's effect, which compare with the simulator's truth:
    offered on the embedded simulated data with weather, the defaults elsewhere."""
    simulated = state.current_dataset_spec().get("kind") == "simulator" and dataset.has_weather
    if not simulated:
        st.caption("These need the simulator's own data with weather (the embedded default), where a what-if "
                   "has a true answer to learn from.")
    cols = st.columns(2)
    with cols[0]:
        select = st.radio("Choose the best epoch by", SELECTABLE, key="train_select", disabled=not simulated,
                          format_func=lambda name: SCORES[name][0],
                          help="Picks the checkpoint and drives early stopping. *what-if error*: after every "
                               f"epoch the what-if grid runs at {SELECT_ANCHORS} validation anchors (seconds on "
                               "2 CPU cores); validation MAE barely moves with the weather response.")
    with cols[1]:
        values = number_fields(WEATHER_RESPONSE, defaults, disabled=not simulated) | {"select": select}
    return values if simulated else {}


def processes_field() -> int:
    """How many GPUs to train on, offered only where there are several."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2:
        return 1
    return st.number_input("Processes", min_value=1, max_value=gpus, value=1, step=1, key="train_processes",
                           help="Training processes, one per GPU, launched with torchrun; each trains on its share "
                                "of every epoch's windows. A step then sees batch size × processes windows (the "
                                "learning rate is not rescaled). CUDA only: on the CPU training runs in one process.")


def checked_configs(dataset, model_values: dict, train_values: dict) -> tuple[STMGTConfig, TrainConfig] | None:
    try:
        configs = STMGTConfig.from_dict(model_values), TrainConfig.from_dict(train_values)
    except ValueError as exc:
        st.error(f"These model settings do not fit together: {md(exc)}")
        return None
    try:
        whatif_simulator(dataset, *configs)
        check_fits(dataset, *configs)             # the node limit and the memory a step needs
    except DataError as exc:
        st.error(f"These settings cannot train on this dataset: {md(exc)}")
        return None
    return configs


def duration_estimate(dataset, model_config: STMGTConfig, train_config: TrainConfig, measure: bool) -> None:
    """How long these settings will take, once one step of this model has been timed here."""
    spec = state.current_dataset_spec()
    cost = training.step_cost(dataset, spec, model_config, train_config, measure=False)
    if cost is None and measure:
        with st.spinner(f"Timing two training steps and a forward pass of this model on "
                        f"{train_config.device.upper()}…"):
            cost = training.step_cost(dataset, spec, model_config, train_config, measure=True)
    if cost is None:
        st.caption(":material/timer: *Estimate duration* times this model on this machine and says how long "
                   "the run will take.")
        return
    windows = {split: len(a) for split, a in split_anchors(dataset).items()}
    plan = estimate(cost, windows, train_config, model_config.use_weather and dataset.has_weather,
                    spec.get("kind") == "simulator")
    parts = ", ".join(f"{phase} {duration(round(seconds, -1)) if seconds >= 5 else 'under 5 s'}"
                      for phase, seconds in plan.phases.items())
    st.info(f"**Expected: about {duration(round(plan.total_s, -1))}**, less if early stopping ends it sooner: {parts}. "
            f"Based on one timed training step of this model here ({cost.train_batch_s:.1f} s per batch of "
            f"{train_config.batch_size} on {cost.device.upper()}, {plan.train_batches:,} batches in all) and "
            f"one timed forward pass ({cost.forward_window_s * 1000:.0f} ms per window) for validation, "
            "calibration and scoring; loading the data is not counted, and a busier machine is slower.",
            icon=":material/timer:")


def start_job(dataset, model_config: STMGTConfig, train_config: TrainConfig, name: str, processes: int) -> None:
    try:
        training.registry().start(dataset, model_config, train_config, state.workspace().new_run_dir(name or "stmgt"),
                                  state.current_dataset_spec(), processes=processes)
    except DataError as exc:
        st.error(md(exc))
        return
    st.session_state[SCROLL_KEY] = True
    st.rerun()


def source(config: dict) -> str:
    train = config.get("train")
    init_from = train.get("init_from") if isinstance(train, dict) else None
    if isinstance(init_from, str):
        return f"fine-tuned from {fine_tuned_from(init_from)}"
    return config.get("source", "trained")


def saved_runs(dataset) -> None:
    runs = state.workspace().runs()
    if not runs:
        st.info("No saved runs yet: train one in the first tab or upload a checkpoint. "
                "The bundled model is always in the sidebar.")
        return
    fingerprint = dataset.graph.fingerprint()
    rows = []
    for run in runs:
        try:
            config = run.config
            test_mae = run.metrics()["models"]["stmgt"]["overall"]["mae"] if run.has_metrics else None
        except (DataError, KeyError) as exc:
            rows.append({"Run": run.name, "Source": f"damaged: {exc}"})
            continue
        rows.append({"Run": run.name, "Status": run.status.state,
                     "Data": describe(config["data"]) if config.get("data") else "–",
                     "Best val MAE (km/h)": best_val_mae(run), "Test MAE (km/h)": test_mae,
                     "Parameters": config.get("parameters"), "Device": config.get("device"),
                     "Created": pd.to_datetime(config.get("created")), "Source": source(config),
                     "This graph": config.get("graph_fingerprint") == fingerprint})
    small = dict(width="small")       # every column in view at 1440 px: long cells truncate, hover shows all
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"Run": st.column_config.TextColumn(width="medium"),
                                "Status": st.column_config.TextColumn(**small),
                                "Data": st.column_config.TextColumn(**small),
                                "Created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", **small),
                                "Best val MAE (km/h)": st.column_config.NumberColumn(
                                    "Val MAE", help="Best validation MAE, km/h", format="%.2f", **small),
                                "Test MAE (km/h)": st.column_config.NumberColumn(
                                    "Test MAE", help="Test MAE over all horizons, km/h", format="%.2f", **small),
                                "Parameters": st.column_config.NumberColumn(format="localized", **small),
                                "Device": st.column_config.TextColumn(**small),
                                "Source": st.column_config.TextColumn(**small),
                                "This graph": st.column_config.CheckboxColumn(**small)})
    st.caption("Newest first. Test MAE is over all horizons of the test split, empty until the run is evaluated; "
               "*This graph*: made for the selected dataset's road graph, so it can be used with it.")
    fitting = [r for r in runs if run_label(r, dataset)]
    if not fitting:
        st.info("None of these runs was made for the selected dataset's road graph.")
        return
    pick = st.selectbox("Run", fitting, format_func=lambda r: r.name, key="train_pick")
    next_steps(pick, dataset, key="train_pick")


def upload(dataset) -> None:
    st.markdown("Add an STMGT `checkpoint.pt` trained on this dataset's road graph "
                f"({dataset.num_nodes} nodes). It is checked before anything is saved.")
    file = st.file_uploader("STMGT checkpoint", type=["pt"], key="train_upload")
    if file is None:
        return
    saved = st.session_state.setdefault(UPLOADS_KEY, {})
    if file.file_id not in saved:
        stem = file.name.rsplit(".", 1)[0]
        try:
            run = import_checkpoint(file.getvalue(), state.workspace().new_run_dir(
                "uploaded" if stem == "checkpoint" else stem), dataset.graph, state.current_dataset_spec())
        except DataError as exc:
            st.error(f"**{md(file.name)}** cannot be used: {md(exc.problem)}", icon=":material/error:")
            return
        saved[file.file_id] = run.name
        st.rerun()                      # so the sidebar lists the new run
    run = Run(state.workspace().runs_dir / saved[file.file_id])
    config, meta = run.config, run.config["checkpoint"]
    st.success(f"**{md(file.name)}** is saved as **Run: {md(run.name)}**: {config['parameters']:,} parameters, "
               f"{attention_heads(config['model'])}"
               + (f", best validation MAE {meta['val_mae']:.2f} km/h at epoch {meta['epoch']}"
                  if "val_mae" in meta else "") + ".", icon=":material/task_alt:")
    next_steps(run, dataset, key="train_upload")


# ---- the page -------------------------------------------------------------------------------------
st.title("Train & load")
st.caption("Train STMGT on the selected dataset in the background, or pick or upload a trained model. "
           "Every model made here joins the sidebar's model list.")
try:
    data = state.current_dataset()
    split_anchors(data)
except DataError as exc:
    st.error(f"The selected dataset cannot be used for training: {md(exc)}")
    st.page_link("views/data.py", label="Import or fix a dataset on the Data page", icon=":material/database:")
    st.stop()

jobs = training.registry()
shown = jobs.latest()
if shown is not None and shown.id != st.session_state.get(DISMISSED_KEY):
    with st.container(border=True, key="train_panel"):
        if st.session_state.pop(SCROLL_KEY, False):     # just started: the form was in view, not this
            st.html("<script>setTimeout(() => document.querySelector('.st-key-train_panel')"
                    "?.scrollIntoView({behavior: 'smooth', block: 'start'}), 300)</script>",
                    unsafe_allow_javascript=True)
        current = shown.snapshot()
        if current.active:
            live_job(shown.id)
        else:
            job_result(current, data)

train_tab, runs_tab, upload_tab = st.tabs(["New training", "Saved runs", "Upload a checkpoint"])
with train_tab:
    training_form(data, busy=jobs.active() is not None)
with runs_tab:
    saved_runs(data)
with upload_tab:
    upload(data)
