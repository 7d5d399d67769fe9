"""The Train page's form: every field drawn from its record in `stmgt.settings` (label, help, limits,
default), the presets, the trained model a fine-tune starts from, and the checks and the duration
estimate before a start."""

from __future__ import annotations

import streamlit as st
import torch

from stmgt.data.dataset import split_anchors
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.model.config import OFF_IN_OLDER_RUNS
from stmgt.settings import MODEL, SETTINGS, TRAIN, Setting, in_section
from stmgt.storage.runs import Run
from stmgt.training.estimate import estimate
from stmgt.training.recipe import SMALL_DATA, WEATHER, default_sections, recipe_name
from stmgt.training.trainer import SELECT_ANCHORS, TrainConfig, check_fits, whatif_simulator
from ui import state, training
from ui.layout import flex_columns
from ui.train_progress import SCORES, SCROLL_KEY, duration
from ui.text import md

PRESET_KEY = "train_preset"
PRESET_DATA_KEY = "train_preset_data"       # the data spec the form's values were set for
RECIPE, QUICK_LOOK, SPECIFICATION = "Recipe", "Quick look", "Specification"
QUICK = {"epochs": 2, "max_batches": 3}     # laid over the recipe: the whole pipeline in minutes
PRESET_HELP = ("*Recipe*: the settings for this data (`stmgt.training.recipe`). On the simulator's data with "
               "weather it is the weather recipe (`assets/model/recipe.json`): "
               "the weather's effect is taught from the first epoch and checked after each; on imported data the "
               "small-data recipe; elsewhere the specification's. "
               f"*Quick look*: the recipe for {QUICK['epochs']} epochs of {QUICK['max_batches']} batches, validation, "
               f"calibration and test scoring capped at {QUICK['max_batches']} batches too: to see the whole pipeline "
               "work (not a useful model). *Specification*: the specification's plain recipe (§9.4), every setting "
               "at its default: up to 100 epochs with early stopping on validation MAE, no weather response taught. "
               "*Estimate duration* measures how long any of them takes on this machine.")
RECIPE_NOTES = {
    WEATHER: ": the weather's effect is taught from the first epoch (the what-if loss) and the kept epoch "
             "weighs validation MAE and the what-if error alike.",
    SMALL_DATA: ": a smaller, more regularised model that forecasts the change from the last reading and stops "
                "sooner, for imported data of under four weeks."}
# The settings a preset sets: every one on the form but the weather input, which follows the data.
PRESET_SETTINGS = tuple(s.name for s in SETTINGS.values() if s.section and s.name != "use_weather") + ("select",)
# Fine-tuning (`TrainConfig.init_from`): the starting model fixes the architecture; dropout and
# DropEdge only act in training, so they stay the user's.
NEW_MODEL = "New model (random weights)"
START_KEY = "train_start_from"
SHAPE = tuple(s.name for s in (*in_section("architecture"), *in_section("inputs")))
REGULARISERS = tuple(s.name for s in in_section("regularisers"))
FINE_TUNE_LR = 3e-4        # the peak learning rate the nine-stage model was fine-tuned at (benchmarks/RESULTS.md)
TUNE_LABELS = {"all": "every weight", "weather": "only the weather response"}


def unless_set(key: str, **default) -> dict:
    """A widget's default argument, left out when a preset or a chosen starting model has put its
    value in the session state already (Streamlit refuses both)."""
    return {} if key in st.session_state else default


def preset_values(chosen: str) -> dict:
    """The value of every setting a preset sets, under the preset `chosen` on the current data; the
    specification's, said so, where the data's recipe cannot be read."""
    spec, dataset = state.current_dataset_spec(), state.current_dataset()
    try:
        sections = default_sections(spec, dataset, plain=chosen == SPECIFICATION)
    except DataError as exc:
        st.error(f"{md(exc)}. The form shows the specification's recipe instead.", icon=":material/error:")
        sections = default_sections(spec, dataset, plain=True)
    recipe = sections[MODEL] | sections[TRAIN]
    values = {name: recipe.get(name, SETTINGS[name].default) for name in PRESET_SETTINGS}
    return values | (QUICK if chosen == QUICK_LOOK else {})


def field(setting: Setting, disabled: bool = False, **options):
    """The widget of one setting, keyed train_<name>: a checkbox, a radio of its choices or a number
    input within its limits; `options` go to the widget (a `value` replaces the default, which the
    preset has set already for most)."""
    key = f"train_{setting.name}"
    value = options.pop("value", setting.default)
    common = {"key": key, "help": setting.help, "disabled": disabled} | options
    if setting.kind is bool:
        return st.checkbox(setting.label, **common, **unless_set(key, value=value))
    if setting.choices:
        return st.radio(setting.label, setting.choices, **{"horizontal": True} | common,
                        **unless_set(key, index=setting.choices.index(value)))
    number = int if setting.limit.whole else float
    bounds = {"min_value": number(setting.limit.low), "max_value": number(setting.limit.high)}
    bounds |= {"step": number(setting.step)} if setting.step is not None else {}
    bounds |= {"format": setting.format} if setting.format else {}
    return st.number_input(setting.label, **bounds, **common, **unless_set(key, value=value))


def fields(section: str, disabled: bool = False, **options_of) -> dict:
    """The widgets of one part of the form, in the table's order, by setting name; `options_of`
    gives one setting's widget its own options."""
    return {s.name: field(s, **{"disabled": disabled, **options_of.get(s.name, {})}) for s in in_section(section)}


def by_config(values: dict) -> tuple[dict, dict]:
    """The model's settings and the training's, from the form's values."""
    model = {name: value for name, value in values.items() if SETTINGS[name].config == MODEL}
    return model, {name: value for name, value in values.items() if name not in model}


def take_settings_of(runs: dict[str, Run]) -> None:
    """On choosing a model to start from: show its architecture in the form, and a fine-tuning
    learning rate."""
    run = runs.get(st.session_state[START_KEY])
    if run is None:
        return
    for name, value in (OFF_IN_OLDER_RUNS | run.config["model"]).items():
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
    cols = flex_columns([2, 3, 3], 200, key="train_start_row", vertical_alignment="bottom")
    label = cols[0].selectbox(
        "Start from", [NEW_MODEL, *runs], key=START_KEY, on_change=take_settings_of, args=(runs,),
        help="Fine-tune a trained model of this road graph instead of training a new one: training begins from "
             "its weights, keeps its architecture, and refits its σ calibration at the end. The learning rate "
             f"is set to {FINE_TUNE_LR:.0e}, gentler than a new model's.")
    run = runs.get(label)
    reads_weather = run is not None and run.config["model"].get("use_weather", True) and dataset.has_weather
    with cols[1]:
        tune = field(SETTINGS["tune"], disabled=not reads_weather, format_func=TUNE_LABELS.get)
    if run is not None:
        cols[2].caption(f"Fine-tunes **{md(label)}**: the model settings below are its own.")
    return run, tune if reads_weather else "all", gone


def apply_preset() -> None:
    """Every setting the chosen preset sets, on the form; a fine-tune keeps its starting model's
    architecture, regularisers and gentle learning rate (`take_settings_of`)."""
    chosen = st.session_state[PRESET_KEY] or RECIPE
    fine_tune = st.session_state.get(START_KEY, NEW_MODEL) != NEW_MODEL
    for name, value in preset_values(chosen).items():
        if not (fine_tune and name in (*SHAPE, *REGULARISERS, "lr")):
            st.session_state[f"train_{name}"] = value
    st.session_state[PRESET_DATA_KEY] = state.current_dataset_spec()


def preset_picker() -> None:
    """The recipe by default; set again when the data changes, since the recipe goes by the data."""
    fresh = PRESET_KEY not in st.session_state        # first visit, or the page's widgets were cleared since
    if fresh:
        st.session_state[PRESET_KEY] = RECIPE
    if fresh or st.session_state.get(PRESET_DATA_KEY) != state.current_dataset_spec():
        apply_preset()
    st.segmented_control("Preset", [RECIPE, QUICK_LOOK, SPECIFICATION], key=PRESET_KEY, on_change=apply_preset,
                         help=PRESET_HELP)
    name = recipe_name(state.current_dataset_spec(), state.current_dataset())
    st.caption(f"*Recipe* on this data is {name}" + RECIPE_NOTES.get(name, "."))


def weather_response_fields(dataset) -> dict:
    """The opt-in ways to teach the weather's effect, which compare with the simulator's truth:
    offered on the embedded simulated data with weather, the defaults elsewhere."""
    simulated = state.current_dataset_spec().get("kind") == "simulator" and dataset.has_weather
    if not simulated:
        st.caption("These need the simulator's own data with weather (the embedded default), where a what-if "
                   "has a true answer to learn from.")
    select = SETTINGS["select"]
    cols = st.columns(2)
    with cols[0]:
        values = {"select": field(select, disabled=not simulated, format_func=lambda name: SCORES[name][0],
                                  horizontal=False, help=f"{select.help} The what-if grid then runs after every "
                                                         f"epoch at {SELECT_ANCHORS} validation anchors.")}
    with cols[1]:
        values |= fields("weather response", disabled=not simulated)
    return values if simulated else {}


def device_field() -> str:
    """CPU, or CUDA too where a GPU is present."""
    devices = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    device = SETTINGS["device"]
    return st.radio(device.label, devices, index=devices.index(state.device()) if state.device() in devices else 0,
                    key="train_device", horizontal=True, help=device.help)


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

    def rough(seconds: float) -> str:
        return duration(round(seconds, -1)) if seconds >= 5 else "under 5 s"

    parts = ", ".join(f"{phase} {rough(seconds)}" for phase, seconds in plan.phases.items())
    about = "about " if plan.total_s >= 5 else ""
    st.info(f"**Expected: {about}{rough(plan.total_s)}**, less if early stopping ends it sooner: {parts}. "
            f"Based on one timed training step of this model here ({cost.train_batch_s:.1f} s per batch of "
            f"{train_config.batch_size} on {cost.device.upper()}, {plan.train_batches:,} batches in all) and "
            f"one timed forward pass ({cost.forward_window_s * 1000:.0f} ms per window) for validation, "
            "calibration and scoring; loading the data is not counted, and a busier machine is slower.",
            icon=":material/timer:")


def start_job(dataset, model_config: STMGTConfig, train_config: TrainConfig, name: str, processes: int) -> None:
    try:
        training.registry().start(dataset, model_config, train_config, state.workspace().new_run_dir(name or "stmgt"),
                                  state.current_dataset_spec(), processes=processes,
                                  plain=st.session_state.get(PRESET_KEY) == SPECIFICATION)
    except DataError as exc:
        st.error(md(exc))
        return
    st.session_state[SCROLL_KEY] = True
    st.rerun()
