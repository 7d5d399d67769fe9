"""fit(): the training recipe of the specification (§9.4) with early stopping, callbacks for live
progress, and a cancel signal that stops after the current batch keeping the best checkpoint."""

from __future__ import annotations

import io
import logging
import platform
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch

from stmgt.training import distributed
from stmgt.evaluation import fidelity
from stmgt.forecasting.calibration import fit_sigma_scale
from stmgt.storage.checkpoint import UNREADABLE, LoadedModel, save_checkpoint
from stmgt.data.augment import whatif_pairs, with_weather_copies
from stmgt.data.dataset import Batch, Scaler, TrafficDataset, Windows, split_anchors
from stmgt.data.simulate import TrafficSimulator, simulator_for
from stmgt.errors import DataError
from stmgt.forecasting.forecast import Forecaster
from stmgt.limits import LIMITS, check_memory, memory_budget
from stmgt.settings import SETTINGS, TRAIN, check, default
from stmgt.model.mixture import GaussianMixture
from stmgt.model import STMGT, STMGTConfig
from stmgt.model.spatial import StepGraph, choose_path
from stmgt.forecasting.predict import predict
from stmgt.routing.copula import estimate_and_save
from stmgt.storage.jsonfile import atomic_write_bytes
from stmgt.storage.runs import CHECKPOINT, TRAINING_STATE, Run

log = logging.getLogger(__name__)


# `tune`: every weight, or only those the weather's effect is learnt in (the weather cross-attention
# and the mixture head read the traffic features, which stay as they are).
TUNABLE = SETTINGS["tune"].choices
# Fine-tuning a model without weather memory into one with it: the decays start at their initial values.
FRESH_WEATHER_MEMORY = "weather_attn.memory_logit"
# `select`: the validation score that picks the best epoch and drives early stopping. "whatif" is
# the what-if error (stmgt.evaluation.fidelity.mean_error) on SELECT_ANCHORS validation anchors: validation MAE
# barely moves with the weather response, which can swing widely from one epoch to the next. "both" is
# their sum (both km/h), so neither the forecast nor the weather response is traded away unseen.
SELECTABLE = SETTINGS["select"].choices
SELECT_ANCHORS = 50
PAIR_STREAM = 11          # the what-if pairs' random stream: (seed, epoch, PAIR_STREAM), one per rank


@dataclass
class TrainConfig:
    """The settings of a training run; each one's default (the specification's, §9.4.2–9.4.3),
    limits and meaning are in `stmgt.settings`."""

    epochs: int = default("epochs")
    batch_size: int = default("batch_size")
    lr: float = default("lr")
    weight_decay: float = default("weight_decay")
    beta1: float = default("beta1")
    beta2: float = default("beta2")
    restart_epochs: int = default("restart_epochs")
    restart_mult: int = default("restart_mult")
    min_lr: float = default("min_lr")
    patience: int = default("patience")
    grad_clip: float = default("grad_clip")
    variance_weight: float = default("variance_weight")
    entropy_weight: float = default("entropy_weight")
    seed: int = default("seed")
    device: str = default("device")
    max_batches: int | None = default("max_batches")
    calibrate: bool = default("calibrate")
    compile: bool | None = default("compile")
    weather_copies: int = default("weather_copies")
    init_from: str | None = default("init_from")
    tune: str = default("tune")
    select: str = default("select")
    whatif_weight: float = default("whatif_weight")
    bf16: bool | None = default("bf16")

    def __post_init__(self):
        """Refuse, in words, what training would only trip over later (a `train --config` file can hold anything)."""
        check(self, TRAIN)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class BatchProgress:
    epoch: int
    batch: int
    num_batches: int
    loss: float | None            # read back every Trainer.LOG_EVERY batches and at an epoch's end


@dataclass
class PhaseProgress:
    """Progress of the work between and after epochs (validating, calibrating)."""

    phase: str
    done: int
    total: int


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    val_mae: float
    val_nll: float
    lr: float
    seconds: float
    best: bool
    skipped_batches: int = 0      # batches whose loss was not finite (no update made)
    val_whatif_error: float | None = None  # km/h, measured when the run selects on it
    score: float | None = None    # the `select` score of this epoch (km/h)


@dataclass
class FitResult:
    run: Run | None
    model: STMGT
    scaler: Scaler
    history: pd.DataFrame
    best_epoch: int | None
    best_val_mae: float
    stopped: str                  # early_stopping | max_epochs | cancelled


class CancelSignal(Protocol):
    def is_set(self) -> bool: ...


def whatif_simulator(dataset: TrafficDataset, model_config: STMGTConfig,
                     config: TrainConfig) -> TrafficSimulator | None:
    """The simulator a run's what-if loss and what-if check compare with, None when it uses
    neither; a DataError, before anything is trained, when the data has none or the model reads no
    weather."""
    if config.select == "val_mae" and not config.whatif_weight:
        return None
    simulator = simulator_for(dataset)
    if simulator is None or not model_config.use_weather:
        option, where = (("choosing the best epoch on the what-if error", "select") if config.select != "val_mae"
                         else ("the what-if loss", "whatif_weight"))
        raise DataError(f"{option} compares what-ifs with the simulator's truth, so it needs the simulator's "
                        "own data and a model that reads the weather", where)
    return simulator


def check_fits(dataset: TrafficDataset, model_config: STMGTConfig, config: TrainConfig) -> bool:
    """Refuse, before anything is allocated, a road graph over the node limit (the loader would
    refuse its checkpoint) or a training step whose memory would not fit the training device, even
    with each block recomputed in the backward pass. -> whether the step must recompute its blocks
    to fit (`STMGT.recompute_blocks`: about one more forward pass a step)."""
    LIMITS["nodes"].check(dataset.num_nodes)
    device = resolve_device(config.device)
    paths = {model_config.gat_path}
    if model_config.gat_path == "auto":      # the step's path depends on whether it is compiled: both are counted
        graph = StepGraph(dataset.graph.edge_index, dataset.num_nodes)
        paths = {choose_path(graph, device, compiled=compiled) for compiled in (False, True)}
    plain, recomputed = (max(model_config.training_bytes(config.batch_size, dataset.num_nodes, dataset.graph.num_edges,
                                                         path, recompute, device.type) for path in paths)
                         for recompute in (False, True))
    budget = memory_budget(device)
    recompute = plain > budget and recomputed < plain
    check_memory(recomputed if recompute else plain, budget,
                 f"a training step (batch_size {config.batch_size} × {dataset.num_nodes} nodes × seq_len "
                 f"{model_config.seq_len}, hidden_dim {model_config.hidden_dim} × {model_config.heads} heads "
                 f"× {model_config.num_blocks} blocks)", "lower batch_size, hidden_dim, heads or num_blocks")
    return recompute


def compiled_forward(model: torch.nn.Module, device: torch.device):
    """`model` compiled as training steps run it: one shape, and on a CPU dropout's random bits from
    ATen, not from generated code (stmgt.model.dropout)."""
    return torch.compile(model, dynamic=False, options={"fallback_random": device.type == "cpu"})


def device_name(device: torch.device) -> str:
    """What the device is, for a run's or a benchmark's record (speed, and what bf16 kernels give, depend
    on it): the GPU's name, or the CPU's model as Linux names it (`platform.processor()` is empty there)
    and the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                 platform.processor() or platform.machine())
    return f"{model}, {torch.get_num_threads()} threads"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("device 'cuda' was asked for but no CUDA GPU is available; use cpu")
    if name not in ("cpu", "cuda"):
        raise DataError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def mixture_loss(mixture: GaussianMixture, y_scaled: torch.Tensor, mask: torch.Tensor,
                 config: TrainConfig) -> torch.Tensor:
    """Masked mixture NLL + variance and entropy regularisers (§9.4.1): missing targets add nothing."""
    nll = mixture.nll(torch.where(mask, y_scaled, torch.zeros_like(y_scaled)))
    nll = (nll * mask).sum() / mask.sum().clamp(min=1)
    variance_reg = -torch.log(mixture.stds).mean()
    entropy = -(mixture.weights * torch.log(mixture.weights + 1e-8)).sum(-1).mean()
    return nll + config.variance_weight * variance_reg - config.entropy_weight * entropy


@torch.no_grad()
def validate(model, windows: Windows, anchors, edge_index, device, batch_size: int = 128,
             max_batches: int | None = None) -> tuple[float, float]:
    """Masked MAE (km/h) of the mixture mean, and mean NLL in km/h, over the given windows.
    Sums stay on the device and are read once, so the GPU never waits on the host per batch."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)   # |error|, nll, count
    for i, batch in enumerate(windows.iterate(anchors, batch_size)):
        if max_batches is not None and i >= max_batches:
            break
        batch = batch.to(device)
        mixture = predict(model, batch, edge_index, windows.scaler)
        mask = ~torch.isnan(batch.y)
        y = torch.nan_to_num(batch.y)
        totals += torch.stack([((mixture.mean() - y).abs() * mask).sum(), (mixture.nll(y) * mask).sum(),
                               mask.sum()]).double()
    abs_err, nll, count = distributed.all_reduce_sum(totals).tolist()   # the same on every rank
    return abs_err / max(count, 1), nll / max(count, 1)


def bf16_native(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware: a CUDA GPU that supports it, or a CPU
    with AVX-512 BF16 or AMX (oneDNN's check). There a compiled bf16 step is much faster than the
    fp32 one (benchmarks/train_speed.py) with validation MAE within fp32's seed spread
    (benchmarks/precision.py; both in benchmarks/RESULTS.md); elsewhere bf16 would be emulated,
    and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


# A compiled CPU step saves a good part of every batch against a one-off compile of seconds to
# minutes (benchmarks/RESULTS.md, *Training speed*): 200 batches earn it back with room to spare.
COMPILE_MIN_BATCHES = 200


class Trainer:
    """The training recipe in the parts a reader looks for: setup (`__init__`), `train_epoch`
    (`step` per batch), `validate`, `checkpoint`, `calibrate`; `fit` strings them together.

    Nothing in a step waits for the device: the loss is summed on it and read every
    `LOG_EVERY` batches, a non-finite loss skips its update inside the fused AdamW kernel
    (`found_inf`, the mechanism AMP's GradScaler uses), and the windows are cut from a copy of
    the series that lives on the training device."""

    LOG_EVERY = 10

    def __init__(self, dataset: TrafficDataset, model_config: STMGTConfig | None = None,
                 train_config: TrainConfig | None = None, run_dir=None, data_spec: dict | None = None,
                 on_batch: Callable[[BatchProgress], None] | None = None,
                 on_epoch: Callable[[EpochReport], None] | None = None,
                 on_phase: Callable[[PhaseProgress], None] | None = None,
                 cancel: CancelSignal | None = None, resume: bool = False, recipe: dict | None = None):
        """`recipe`: the recipe a new model's settings were laid over (`stmgt.training.recipe`),
        recorded in the run folder beside config.json."""
        self.config = config = train_config or TrainConfig()
        model_config = model_config or STMGTConfig()
        if model_config.use_weather and not dataset.has_weather:
            model_config = STMGTConfig.from_dict({**model_config.to_dict(), "use_weather": False})
        self.dataset, self.data_spec = dataset, data_spec
        self.on_batch, self.on_epoch, self.on_phase, self.cancel = on_batch, on_epoch, on_phase, cancel
        self.device = device = resolve_device(config.device)
        recompute_blocks = check_fits(dataset, model_config, config)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)

        self.ranges = dataset.splits()
        self.anchors = split_anchors(dataset)
        self.scaler = Scaler.fit(dataset, self.ranges["train"])
        self.windows = Windows(dataset, self.scaler)
        train = self.anchors["train"]
        self.pair_anchors = train[train + self.windows.horizon < dataset.num_steps]   # of the observed series
        self.pair_rng = distributed.generator(config.seed, 0, PAIR_STREAM)
        if config.weather_copies:
            self.windows, self.anchors["train"] = with_weather_copies(dataset, self.windows, self.anchors["train"],
                                                                      config.weather_copies, config.seed)
        self.windows.to(device)
        self.simulator = whatif_simulator(dataset, model_config, config)
        self.edge_index = dataset.graph.edge_index.to(device)
        self.model = STMGT(model_config).to(device)
        self.model.recompute_blocks = recompute_blocks
        self.model.step_graph(self.edge_index, dataset.num_nodes)   # built eagerly, never traced by compile
        if config.init_from and not resume:
            self._start_from(Run(config.init_from), dataset)
        self._freeze_all_but(config.tune)
        self.replica = distributed.wrap(self.model, device)   # what a step calls; DDP under torchrun
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=config.lr,
                                           weight_decay=config.weight_decay, betas=(config.beta1, config.beta2),
                                           fused=True)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=config.restart_epochs, T_mult=config.restart_mult, eta_min=config.min_lr)
        self.bf16 = bf16_native(device) if config.bf16 is None else config.bf16
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)
        # Whole batches only (a fresh shuffle every epoch still reaches every window), so the
        # compiled step sees one shape; at least one batch however small the split.
        self.sampler = distributed.train_sampler(len(self.anchors["train"]), config.seed)
        self.num_batches = max(1, len(self.sampler) // config.batch_size)
        if config.max_batches:
            self.num_batches = min(self.num_batches, config.max_batches)
        self.compiled = self._wants_compile()
        self.forward = compiled_forward(self.replica, device) if self.compiled else self.replica

        self.run = Run(run_dir) if run_dir is not None and distributed.is_main() else None
        self.history: list[dict] = []
        self.best_mae, self.best_epoch, self.best_state, self.bad_epochs = float("inf"), None, None, 0
        self.best_score = float("inf")            # the `select` score of best_epoch
        self.start_epoch = 1
        if resume:
            self._restore()
        elif self.run is not None:
            self.run.write_config({
                "model": model_config.to_dict(), "train": config.to_dict(), "data": data_spec,
                "graph_fingerprint": dataset.graph.fingerprint(), "num_nodes": dataset.num_nodes,
                "parameters": self.model.count_parameters(), "device": str(device),
                "precision": "bf16 autocast" if self.bf16 else "fp32", "recompute_blocks": recompute_blocks,
                "device_name": device_name(device),
                "torch": torch.__version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "distributed": distributed.describe(config.batch_size),
                "splits": {k: [r.start, r.stop] for k, r in self.ranges.items()}, "scaler": self.scaler.to_dict(),
            })
            if recipe is not None:
                self.run.write_recipe(recipe)

    def _start_from(self, run: Run, dataset: TrafficDataset) -> None:
        """Fine-tuning: begin from `run`'s weights (same road graph and architecture). Its σ scale is
        dropped: training starts uncalibrated and `calibrate` fits a new one at the end."""
        where = f"init_from {run.path}"
        loaded = run.load(dataset.graph)          # DataError for another graph or a damaged checkpoint
        try:
            missing, unexpected = self.model.load_state_dict(loaded.model.state_dict(), strict=False)
        except RuntimeError as exc:
            raise DataError("its model has another architecture than the one to train "
                            f"({str(exc).splitlines()[-1].strip()})", where) from exc
        missing = [name for name in missing if name != FRESH_WEATHER_MEMORY]   # a model may grow one
        if missing or unexpected:
            raise DataError("its model has another architecture than the one to train "
                            f"(missing: {', '.join(missing) or 'none'}; not in this model: "
                            f"{', '.join(unexpected) or 'none'})", where)
        self.model.sigma_scale.fill_(1.0)

    def _freeze_all_but(self, tune: str) -> None:
        """With tune "weather" only the weather cross-attention and the mixture head learn: the
        backward pass stops there, so a step costs little more than its forward, and the traffic
        features the weather is read against stay those of the model fine-tuned."""
        if tune == "all":
            return
        if self.model.weather_attn is None:
            raise DataError("tune \"weather\" needs a model that reads the weather (use_weather on, data with "
                            "weather)", "tune")
        self.model.requires_grad_(False)
        for part in (self.model.weather_attn, self.model.mixture_head):
            part.requires_grad_(True)

    @property
    def cancelled(self) -> bool:
        """Asked on every rank at the same points; True everywhere once any rank is cancelled."""
        return distributed.any_rank(self.cancel is not None and self.cancel.is_set())

    def step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on a batch -> (loss, finite), both still on the device."""
        mask = ~torch.isnan(batch.y)
        y_scaled = self.scaler.scale_speed(torch.nan_to_num(batch.y))
        with self.autocast:
            params = self._forward(batch)
        loss = mixture_loss(GaussianMixture(*params), y_scaled, mask, self.config)
        if self.config.whatif_weight:
            loss = loss + self.config.whatif_weight * self.whatif_loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        finite = torch.isfinite(loss) & torch.isfinite(norm)
        self.optimizer.found_inf = (~finite).float()     # one bad batch must not poison the weights
        self.optimizer.step()
        return loss.detach(), finite

    def whatif_loss(self) -> torch.Tensor:
        """Mean |model − true change| of the median (z-scored km/h) over a batch of sampled what-if
        pairs (stmgt.data.augment.whatif_pairs), the model run as it forecasts: eval mode, no dropout.
        Under torchrun it is a second pass through DDP before the step's one backward, which DDP
        takes: it reduces the summed gradient (tests/training/test_distributed.py)."""
        anchors = self.pair_rng.choice(self.pair_anchors, self.config.batch_size)
        observed, edited, change = whatif_pairs(self.simulator, anchors, self.windows.horizon, self.pair_rng)
        batch = self.windows.batch(anchors, weather=torch.from_numpy(np.concatenate([observed, edited])))
        self.model.eval()
        try:
            with self.autocast:
                params = self._forward(batch, futures=2)     # the past encoded once for both
        finally:
            self.model.train()
        as_observed, as_edited = GaussianMixture(*(p.float() for p in params)).median().chunk(2)
        target = torch.from_numpy(change).to(self.device) / self.scaler.speed_std
        known = ~torch.isnan(target)
        error = torch.where(known, (as_edited - as_observed) - torch.nan_to_num(target), 0.0).abs()
        return error.sum() / known.sum().clamp(min=1)

    def _forward(self, batch: Batch, futures: int = 1):
        try:
            return self.forward(**batch.model_inputs(), edge_index=self.edge_index, futures=futures)
        except Exception as exc:   # noqa: BLE001 - no compiler or an unsupported op: train eagerly
            if self.forward is self.replica:
                raise
            log.warning("torch.compile failed (%s); training without it", str(exc).splitlines()[0][:200])
            self.forward, self.compiled = self.replica, False
            return self.replica(**batch.model_inputs(), edge_index=self.edge_index, futures=futures)

    def _wants_compile(self) -> bool:
        """Compiling makes a CPU step faster but costs seconds to minutes up front
        (benchmarks/train_speed.py; benchmarks/RESULTS.md), so by default only runs of
        COMPILE_MIN_BATCHES batches or more are compiled.
        On CUDA it stays off unless asked for: not yet measured there."""
        if self.config.compile is not None:
            return self.config.compile
        return (self.device.type == "cpu"
                and self.config.epochs * self.num_batches >= COMPILE_MIN_BATCHES)

    def train_epoch(self, epoch: int) -> tuple[float, int] | None:
        """-> (mean finite training loss, batches skipped as non-finite), None if cancelled."""
        self.model.train()
        self.pair_rng = distributed.generator(self.config.seed, epoch, PAIR_STREAM)
        total = torch.zeros(2, device=self.device)      # finite loss sum, finite batches
        batches = self.windows.iterate(self.epoch_anchors(epoch), self.config.batch_size)
        for i, batch in zip(range(self.num_batches), batches):
            loss, finite = self.step(batch)
            total += torch.stack([torch.where(finite, loss, 0.0), finite.float()])
            if self.on_batch:
                read = (i + 1) % self.LOG_EVERY == 0 or i + 1 == self.num_batches
                self.on_batch(BatchProgress(epoch, i + 1, self.num_batches, loss.item() if read else None))
            if self.cancelled:
                return None
        loss_sum, finite_batches = total.tolist()
        return loss_sum / max(finite_batches, 1), self.num_batches - int(finite_batches)

    def epoch_anchors(self, epoch: int) -> np.ndarray:
        """This rank's training windows for `epoch`, shuffled by (seed, epoch) the same way on
        every rank, so no generator state has to be carried from epoch to epoch."""
        self.sampler.set_epoch(epoch)
        return self.anchors["train"][list(self.sampler)]

    def validate(self) -> tuple[float, float]:
        self._phase("validating", 0, 1)
        return validate(self.model, self.windows, distributed.shard(self.anchors["val"]), self.edge_index,
                        self.device, max_batches=self.config.max_batches)

    def whatif_error(self) -> float | None:
        """The what-if error (km/h) of the model as it is now, on validation anchors; None if
        cancelled on the way (its time: benchmarks/RESULTS.md). Rank 0 measures it and every rank gets
        its answer, so all stop early or cancel together (on a GPU their forecasts may differ in
        the last bits)."""
        self._phase("what-if check", 0, 1)
        forecaster = self.forecaster()
        result = distributed.on_main(lambda: fidelity.measure(forecaster, self.simulator, SELECT_ANCHORS,
                                                              split="val", cancel=self.cancel))
        return None if result is None else fidelity.mean_error(result)

    def checkpoint(self, epoch: int, **meta) -> None:
        """The model as it is now, as the run's checkpoint (written atomically)."""
        if self.run is not None:
            save_checkpoint(self.run.path / CHECKPOINT, self.model, self.scaler, self.dataset.graph,
                            {"epoch": epoch, "val_mae": self.best_mae, "data": self.data_spec, **meta})

    def forecaster(self) -> Forecaster:
        """The model as it is now, forecasting on the training data (puts it in eval mode)."""
        loaded = LoadedModel(self.model, self.model.config, self.scaler, self.dataset.graph.fingerprint(),
                             self.dataset.graph.node_ids, {})
        return Forecaster(loaded, self.dataset, self.device)

    def calibrate(self) -> bool:
        """Fit the per-horizon σ scale on the validation split; False if cancelled meanwhile."""
        scale = fit_sigma_scale(self.model, self.windows, self.anchors["val"], self.edge_index, self.device,
                                max_batches=self.config.max_batches, cancel=self.cancel,
                                on_batch=lambda done, total: self._phase("calibrating", done, total))
        if scale is None:
            return False
        self.checkpoint(self.best_epoch, sigma_scale=scale.tolist())
        return True

    def save_error_copula(self) -> None:
        """The route answers' error copula of the calibrated model, saved beside the checkpoint so a
        route's first answer reads it. Nothing is saved if the run
        is cancelled meanwhile or the estimate fails: it is an aid, not the model, so the trained
        run stands and the Route page estimates it on its first answer (where a failure is shown).
        Nothing without a run folder."""
        if self.run is None:
            return
        try:
            estimate_and_save(self.forecaster(), self.run.path, cancel=self.cancel,
                              on_batch=lambda done, total: self._phase("estimating error correlations", done, total))
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
            log.warning("the route answers' error copula was not estimated (%s: %s); the Route page will "
                        "estimate it", type(exc).__name__, exc)

    def score_the_start(self) -> None:
        """A new persistence-anchored model forecasts persistence before its first step, so it is
        validated first, as epoch 0 (no training loss), and kept unless an epoch beats it: the model
        a run keeps is then never worse than persistence on validation MAE. Not for a fine-tune,
        a resumed run, or one choosing on the what-if error."""
        if (not self.model.config.persistence_anchor or self.start_epoch != 1 or self.config.init_from
                or self.config.select != "val_mae" or self.cancelled):
            return
        started = time.perf_counter()
        val_mae, val_nll = self.validate()
        self.best_score = self.best_mae = val_mae
        self.best_epoch, self.best_state = 0, {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.checkpoint(0)
        report = EpochReport(0, float("nan"), val_mae, val_nll, self.optimizer.param_groups[0]["lr"],
                             time.perf_counter() - started, True, score=val_mae)
        self.history.append(asdict(report))
        if self.run is not None:
            self.run.write_history(pd.DataFrame(self.history))
        if self.on_epoch:
            self.on_epoch(report)

    def fit(self) -> FitResult:
        stopped = "max_epochs"
        self.score_the_start()
        for epoch in range(self.start_epoch, self.config.epochs + 1):
            started = time.perf_counter()
            trained = None if self.cancelled else self.train_epoch(epoch)
            if trained is None:
                stopped = "cancelled"
                break
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            val_mae, val_nll = self.validate()
            whatif = None
            if self.config.select != "val_mae":
                whatif = self.whatif_error()
                if whatif is None:
                    stopped = "cancelled"               # this epoch unscored: resume redoes it
                    break
            score = {"val_mae": val_mae, "whatif": whatif, "both": val_mae + (whatif or 0.0)}[self.config.select]
            improved = score < self.best_score
            if improved:
                self.best_score, self.best_mae, self.best_epoch, self.bad_epochs = score, val_mae, epoch, 0
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.checkpoint(epoch)
            else:
                self.bad_epochs += 1
            report = EpochReport(epoch, trained[0], val_mae, val_nll, lr, time.perf_counter() - started,
                                 improved, trained[1], whatif, score)
            self.history.append(asdict(report))
            if self.run is not None:
                self.run.write_history(pd.DataFrame(self.history))
                self.save_state(epoch)
            if self.on_epoch:
                self.on_epoch(report)
            if self.bad_epochs >= self.config.patience:
                stopped = "early_stopping"
                break

        if self.best_epoch is not None:
            self.model.load_state_dict(self.best_state)
            if self.config.calibrate and stopped != "cancelled":
                if self.calibrate():
                    distributed.on_main(self.save_error_copula)     # every rank calls it: the others wait there
                else:
                    stopped = "cancelled"
        if stopped != "cancelled" and self.run is not None:
            (self.run.path / TRAINING_STATE).unlink(missing_ok=True)   # finished: nothing to resume
        self.model.eval()
        return FitResult(self.run, self.model, self.scaler, pd.DataFrame(self.history), self.best_epoch,
                         self.best_mae, stopped)

    def save_state(self, epoch: int) -> None:
        """Everything `resume` needs to carry on after `epoch` as if never stopped: weights,
        optimiser and scheduler state, the best model so far, history and the random stream (the
        shuffle is a function of seed and epoch)."""
        state = {
            "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "best_state": self.best_state,
            "best_mae": self.best_mae, "best_score": self.best_score, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history, "rng": torch.get_rng_state(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.run.path / TRAINING_STATE, buffer.getvalue())

    def _restore(self) -> None:
        """Load the state `save_state` wrote after the last finished epoch (refusing in words)."""
        path = None if self.run is None else self.run.path / TRAINING_STATE
        if path is None or not path.is_file():
            raise DataError("nothing to resume: the run has no saved training state (it finished, or "
                            "stopped before its first epoch ended)", str(self.run.path if self.run else ""))
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"].cpu())
        except UNREADABLE as exc:
            raise DataError(f"the saved training state is damaged or belongs to another model "
                            f"({type(exc).__name__})", str(path)) from exc
        self.best_state, self.best_mae = state["best_state"], state["best_mae"]
        self.best_score = state.get("best_score", self.best_mae)     # states saved before `select` existed
        self.best_epoch, self.bad_epochs = state["best_epoch"], state["bad_epochs"]
        self.history, self.start_epoch = list(state["history"]), state["epoch"] + 1
        recorded = self.run.config.get("train", {})
        if recorded.get("epochs") != self.config.epochs:       # `train --resume --epochs N` changed the total
            self.run.write_config({**self.run.config, "train": {**recorded, "epochs": self.config.epochs}})

    def _phase(self, name: str, done: int, total: int) -> None:
        if self.on_phase:
            self.on_phase(PhaseProgress(name, done, total))


def fit(dataset: TrafficDataset, model_config: STMGTConfig | None = None,
        train_config: TrainConfig | None = None, run_dir=None, data_spec: dict | None = None,
        on_batch: Callable[[BatchProgress], None] | None = None,
        on_epoch: Callable[[EpochReport], None] | None = None,
        on_phase: Callable[[PhaseProgress], None] | None = None,
        cancel: CancelSignal | None = None, resume: bool = False) -> FitResult:
    """Train STMGT on `dataset`'s training split, early-stopping on validation MAE, then
    calibrate its spread on the validation split.

    With `run_dir`, the best checkpoint, `config.json`, `history.csv` and the training state
    are written there as training goes, so a cancelled or crashed run still leaves its best
    model behind and can carry on with `resume=True` (same configs and data)."""
    return Trainer(dataset, model_config, train_config, run_dir, data_spec, on_batch, on_epoch, on_phase,
                   cancel, resume).fit()
