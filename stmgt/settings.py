"""Every knob of a model and a training run a user can set, each written once: name, type, default,
limits, meaning and label.

`STMGTConfig` and `TrainConfig` take their defaults from here and validate with `check`; the
command line's `train` options, the Train page's form and the checkpoint loader's size limits are
all built from the same records, so a value one of them accepts the others accept too, and a value
over a limit is refused by each in the same words.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from stmgt.errors import DataError


@dataclass(frozen=True)
class Limit:
    """A number's bounds and why the upper one is there; `whole` numbers are counts and sizes."""

    name: str
    low: float
    high: float
    why: str = ""
    whole: bool = True

    def check(self, value) -> None:
        """DataError (a ValueError) for anything but a number from `low` to `high`."""
        if self.whole:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < self.low:
                raise DataError(f"{self.name} must be a whole number of at least {self.low}, got {value!r}")
        elif (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
              or value < self.low):
            raise DataError(f"{self.name} must be a finite number of at least {self.low:g}, got {value!r}")
        if value > self.high:
            raise DataError(f"{self.name} = {value!r} is over the limit of {self.shown(self.high)}: {self.why}")

    def shown(self, number) -> str:
        return f"{number:,}" if self.whole else f"{number:,g}"

    @property
    def span(self) -> str:
        return f"{self.shown(self.low)} to {self.shown(self.high)}"

    @property
    def accepted(self) -> str:
        return f"{'whole numbers' if self.whole else 'numbers'} from {self.span} ({self.why})"


@dataclass(frozen=True)
class Setting:
    """One knob. `config` names the config it belongs to ("model": `STMGTConfig`, "train":
    `TrainConfig`); `section` the part of the Train form that shows it (None: drawn by a widget of
    its own, or not on the form); `option` its `stmgt train` option (None: only in a --config file)."""

    name: str
    config: str
    kind: type
    default: object
    help: str
    label: str | None = None
    section: str | None = None
    option: str | None = None
    limit: Limit | None = None
    choices: tuple = ()
    unset: str | None = None        # what None means, for a setting that may be left unset
    step: float | None = None       # the form's step and display format of a number
    format: str | None = None

    def check(self, value) -> None:
        """DataError (a ValueError) naming the setting, for a value it does not take."""
        if value is None and self.unset is not None:
            return
        if self.limit is not None:
            self.limit.check(value)
        elif self.choices:
            if not isinstance(value, str) or value not in self.choices:
                raise DataError(f"{self.name} must be {either(self.choices)}, got {value!r}")
        elif not isinstance(value, self.kind):
            kinds = ("true", "false") if self.kind is bool else ("text",)
            raise DataError(f"{self.name} must be {either(kinds + (('null',) if self.unset else ()))}, "
                            f"got {value!r}")

    @property
    def shown_default(self) -> str:
        return self.unset if self.default is None else str(self.default)

    @property
    def span(self) -> str:
        """The values it takes, in words: '1 to 1,000', 'auto, cpu or cuda'."""
        if self.limit is not None:
            return self.limit.span
        return either(self.choices) if self.choices else either(("true", "false"))


def either(words) -> str:
    """'a, b or c'."""
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def whole(name: str, config: str, default: int | None, low: int, high: int, why: str, help: str,
          **more) -> Setting:
    return Setting(name, config, int, default, help, limit=Limit(name, low, high, why), **more)


def real(name: str, config: str, default: float, low: float, high: float, why: str, help: str, **more) -> Setting:
    return Setting(name, config, float, default, help, limit=Limit(name, low, high, why, whole=False), **more)


def switch(name: str, config: str, default: bool | None, help: str, **more) -> Setting:
    return Setting(name, config, bool, default, help, **more)


def choice(name: str, config: str, default: str, choices: tuple[str, ...], help: str, **more) -> Setting:
    return Setting(name, config, str, default, help, choices=choices, **more)


MODEL, TRAIN = "model", "train"
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    # ---- the model (STMGTConfig): its sizes are checked again before a checkpoint is allocated
    choice("gat_layout", MODEL, "mean", ("concat", "mean"),
           "How the GATv2 heads combine. concat: the heads split the hidden size (the specification's code, "
           "fewer parameters); mean: every head is full width and they are averaged.",
           label="GATv2 head layout", section="architecture", option="--layout"),
    whole("hidden_dim", MODEL, 96, 1, 512, "five times the specification's 96; memory grows with it times the heads",
          "Width of every block; must be divisible by the number of heads.",
          label="Hidden size", section="architecture", step=4),
    whole("num_blocks", MODEL, 3, 1, 8, "the specification stacks 3 blocks",
          "Parallel spatial/temporal blocks stacked.", label="Blocks", section="architecture"),
    whole("heads", MODEL, 4, 1, 16, "the specification uses 4; each head adds a hidden_dim-wide copy of every edge",
          "GATv2 and temporal attention heads.", label="Attention heads", section="architecture"),
    whole("num_mixtures", MODEL, 5, 1, 16, "the specification's forecast mixes 5 Gaussians",
          "Gaussians in each forecast distribution.", label="Mixture components", section="architecture"),
    whole("seq_len", MODEL, 12, 1, 96, "a day of 15-minute steps; the temporal attention grows with its square",
          "Steps of observed traffic a forecast reads; equal to horizon."),
    whole("horizon", MODEL, 12, 1, 96, "a day of 15-minute steps ahead",
          "Steps a forecast reaches ahead; equal to seq_len, as output position i is read as horizon step i+1."),
    real("dropout", MODEL, 0.2, 0.0, 1.0, "a share of the activations",
         "Share of the activations zeroed at random in each training step.",
         label="Dropout", section="regularisers", step=0.05),
    real("drop_edge", MODEL, 0.05, 0.0, 1.0, "a share of the road segments",
         "Share of road segments dropped at random in each training step.",
         label="DropEdge", section="regularisers", step=0.01),
    switch("use_weather", MODEL, True, "Off for data without weather.",
           label="Weather cross-attention", section="inputs"),
    switch("use_mask", MODEL, True, "Tells a filled-in gap from a real reading.",
           label="Observed-flag input channel", section="inputs"),
    switch("time_encoding", MODEL, True, "The time of day and the day of the week as inputs.",
           label="Time-of-day and weekday encoding", section="inputs"),
    switch("causal_weather", MODEL, True, "Horizon step h reads the weather of steps up to h only."),
    switch("weather_memory", MODEL, True,
           "Each weather token carries a leaky running mean of the forecast weather up to its step."),
    switch("weather_past", MODEL, True,
           "The weather memory starts from the observed weather of the input window; needs weather_memory."),
    switch("weather_bend", MODEL, False,
           "Each step's weather also passes through a small MLP, so its effect can bend with the intensity "
           "(light and heavy rain slow traffic by different shares, not in proportion).",
           label="Weather effect that bends with the intensity", section="inputs"),
    switch("persistence_anchor", MODEL, False,
           "The mixture forecasts the change from each road's last observed speed in the window, so a model that "
           "has learnt nothing forecasts persistence (the last reading held) instead of noise.",
           label="Forecast the change from the last reading", section="inputs"),
    choice("gat_path", MODEL, "auto", ("auto", "dense", "table", "pyg"),
           "How GATv2 runs: over a masked N×N attention matrix, over a padded table of each node's neighbours, "
           "or through PyG's message passing; auto picks dense or table by a measured cost model."),
    # ---- training (TrainConfig)
    whole("epochs", TRAIN, 100, 1, 1000, "ten times the specification's 100; early stopping ends runs long before",
          "Upper limit; early stopping usually ends sooner.", label="Epochs", section="schedule", option="--epochs"),
    whole("patience", TRAIN, 10, 1, 1000, "no run has more epochs",
          "Stop after this many epochs without a better score (validation MAE, or the what-if error when the "
          "best epoch is chosen on it).", label="Early-stopping patience", section="schedule", option="--patience"),
    whole("max_batches", TRAIN, None, 1, 10_000_000, "a cap above any epoch's number of batches",
          "For a quick look: caps the batches of every epoch and of every validation, calibration and "
          "test-scoring pass (metrics.json then says how many test windows were scored); unset, every window.",
          label="Max batches per epoch (optional)", section="schedule", option="--max-batches", unset="every batch"),
    whole("batch_size", TRAIN, 32, 1, 1024, "memory grows with it; the specification's is 32",
          "Windows per gradient step and process: under torchrun a step sees batch size × processes (the "
          "learning rate is not rescaled).", label="Batch size", section="optimiser", option="--batch-size"),
    real("lr", TRAIN, 1e-3, 0.0, 1.0, "a larger step throws the weights away from anything learnt",
         "AdamW peak learning rate (cosine annealing with warm restarts).",
         label="Learning rate", section="optimiser", option="--lr", step=1e-4, format="%.1e"),
    real("weight_decay", TRAIN, 1e-4, 0.0, 1.0, "AdamW shrinks every weight by lr times this at every step",
         "AdamW decoupled weight decay.", label="Weight decay", section="optimiser", step=1e-4, format="%.1e"),
    real("grad_clip", TRAIN, 1.0, 0.01, 100.0, "gradients are rarely that large; a clip above it does nothing",
         "Gradients are rescaled to at most this L2 norm.",
         label="Gradient clip (norm)", section="optimiser", step=0.1),
    whole("seed", TRAIN, 0, 0, 2**32 - 1, "NumPy's random seeds are 32-bit",
          "Fixes initial weights and batch order: the same seed trains the same model.",
          label="Seed", section="run", option="--seed"),
    choice("device", TRAIN, "auto", ("auto", "cpu", "cuda"),
           "Where training runs: cpu, or cuda where a GPU is present (auto picks it then).",
           label="Device", option="--device"),
    whole("restart_epochs", TRAIN, 10, 1, 1000, "no run has more epochs",
          "Epochs of the first cosine period of the learning rate (CosineAnnealingWarmRestarts' T_0).",
          label="Epochs to first LR restart", section="more"),
    whole("restart_mult", TRAIN, 2, 1, 10, "the learning-rate period grows by this factor at every restart",
          "Each period of the learning rate is this many times the one before (T_mult).",
          label="Restart period multiplier", section="more"),
    real("min_lr", TRAIN, 1e-6, 0.0, 1.0, "the floor of the learning rate, which is at most 1",
         "The learning rate the cosine schedule falls to (eta_min).",
         label="Minimum learning rate", section="more", step=1e-6, format="%.1e"),
    real("beta1", TRAIN, 0.9, 0.0, 0.9999, "at 1 Adam's mean of the gradients would never change",
         "Decay of Adam's running mean of the gradients.",
         label="Adam β1", section="more", step=0.01, format="%.3f"),
    real("beta2", TRAIN, 0.999, 0.0, 0.9999, "at 1 Adam's mean of the squared gradients would never change",
         "Decay of Adam's running mean of the squared gradients.",
         label="Adam β2", section="more", step=0.001, format="%.4f"),
    real("variance_weight", TRAIN, 0.01, 0.0, 100.0, "the penalty would drown the forecast's own loss",
         "Weight of the loss term that keeps the mixture's standard deviations from collapsing.",
         label="Variance regulariser weight", section="more", step=0.001, format="%.4f"),
    real("entropy_weight", TRAIN, 0.001, 0.0, 100.0, "the bonus would drown the forecast's own loss",
         "Weight of the loss term that rewards spreading the mixture's weights over its components.",
         label="Entropy regulariser weight", section="more", step=0.001, format="%.4f"),
    choice("select", TRAIN, "val_mae", ("val_mae", "whatif", "both"),
           "Picks the checkpoint and drives early stopping: validation MAE, the what-if error (the mean "
           "per-node error of weather what-if answers against the simulator's true change on validation "
           "anchors; simulated data with weather), or their sum, both in km/h: validation MAE barely moves "
           "with the weather response, and the what-if error alone can pick an epoch that forecasts worse.",
           label="Choose the best epoch by"),
    real("whatif_weight", TRAIN, 0.0, 0.0, 100.0, "the what-if loss would drown the forecast's own",
         "Adds this weight × the what-if loss to every step: a batch of training windows each get a sampled what-if "
         "(rain, a dry spell, heat or wind over part of the horizon), and the model's change of its median "
         "forecast is fitted to the simulator's true change. 0 = off. Each step also runs the "
         "simulator on those what-ifs, so it takes longer.",
         label="What-if loss weight", section="weather response", step=0.5),
    whole("weather_copies", TRAIN, 0, 0, 10,
          "each copy re-simulates the training weeks and holds their windows in memory",
          "Also trains on this many re-simulations of the training weeks under sampled, rainier weather, every "
          "other random draw kept: each copy adds an epoch's worth of windows.",
          label="Counterfactual weather copies", section="weather response"),
    choice("tune", TRAIN, "all", ("all", "weather"),
           "Which weights train: every weight, or only the weather response: the weather cross-attention and "
           "the mixture head learn, every other weight stays the starting model's, so a step costs little more "
           "than a forward pass and the traffic patterns learnt before are kept. Needs a starting model that "
           "reads the weather.",
           label="Weights that train"),
    Setting("init_from", TRAIN, str, None,
            "Fine-tune: start from this run's weights (same road graph and architecture) instead of random "
            "ones; its σ calibration is refitted at the end.", unset="random weights"),
    switch("calibrate", TRAIN, True, "Fit a per-horizon σ scale on the validation split at the end."),
    switch("compile", TRAIN, None, "torch.compile the training step.",
           unset="on the CPU when the run is long enough to earn back the compile time"),
    switch("bf16", TRAIN, None, "bf16 autocast in the training step; validation and forecasts stay fp32.",
           unset="where the device runs bf16 matmuls natively"),
)}


def of(config: str) -> list[Setting]:
    """The settings of one config ("model" or "train"), in the table's order."""
    return [s for s in SETTINGS.values() if s.config == config]


def in_section(section: str) -> list[Setting]:
    """The settings one part of the Train form shows, in the table's order."""
    return [s for s in SETTINGS.values() if s.section == section]


def default(name: str):
    return SETTINGS[name].default


def check(config, which: str) -> None:
    """Every setting of a config object against its record; the first bad one raises DataError."""
    for setting in of(which):
        setting.check(getattr(config, setting.name))


# The whole-number settings: sizes and counts, whose limits the checkpoint loader applies too.
MODEL_SIZES = tuple(s.name for s in of(MODEL) if s.kind is int)
TRAIN_SIZES = tuple(s.name for s in of(TRAIN) if s.kind is int)
OPTIONS = [s for s in SETTINGS.values() if s.option]      # the `stmgt train` options
