"""fit(): the training recipe of the specification (§9.4) with early stopping, callbacks for live
progress, and a cancel signal that stops after the current batch keeping the best checkpoint."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch

from stmgt.calibration import fit_sigma_scale
from stmgt.checkpoint import save_checkpoint
from stmgt.data.augment import with_weather_copies
from stmgt.data.dataset import Scaler, TrafficDataset, Windows, split_anchors, split_ranges
from stmgt.errors import DataError
from stmgt.mixture import GaussianMixture
from stmgt.model import STMGT, STMGTConfig
from stmgt.predict import predict
from stmgt.runs import CHECKPOINT, Run


@dataclass
class TrainConfig:
    """Defaults are the specification's (§9.4.2–9.4.3)."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    restart_epochs: int = 10      # CosineAnnealingWarmRestarts T_0
    restart_mult: int = 2         # T_mult
    min_lr: float = 1e-6          # eta_min
    patience: int = 10            # early stopping on validation MAE
    grad_clip: float = 1.0
    variance_weight: float = 0.01
    entropy_weight: float = 0.001
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda
    max_batches: int | None = None  # cap per epoch, for quick looks on a CPU; None = all
    calibrate: bool = True        # fit a per-horizon σ scale on the validation split at the end
    weather_copies: int = 0       # opt-in: train also on N re-simulations under sampled weather (stmgt.data.augment)

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
    loss: float


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
def validate(model, windows: Windows, anchors, edge_index, device, batch_size: int = 128) -> tuple[float, float]:
    """Masked MAE (km/h) of the mixture mean, and mean NLL in km/h, over the given windows."""
    model.eval()
    abs_err = nll = count = 0.0
    for batch in windows.iterate(anchors, batch_size):
        batch = batch.to(device)
        mixture = predict(model, batch, edge_index, windows.scaler)
        mask = ~torch.isnan(batch.y)
        y = torch.nan_to_num(batch.y)
        abs_err += ((mixture.mean() - y).abs() * mask).sum().item()
        nll += (mixture.nll(y) * mask).sum().item()
        count += mask.sum().item()
    return abs_err / max(count, 1), nll / max(count, 1)


def fit(dataset: TrafficDataset, model_config: STMGTConfig | None = None,
        train_config: TrainConfig | None = None, run_dir=None, data_spec: dict | None = None,
        on_batch: Callable[[BatchProgress], None] | None = None,
        on_epoch: Callable[[EpochReport], None] | None = None,
        cancel: CancelSignal | None = None) -> FitResult:
    """Train STMGT on `dataset`'s training split, early-stopping on validation MAE.

    With `run_dir`, the best checkpoint, `config.json` and `history.csv` are written there as
    training goes, so a cancelled or crashed run still leaves its best model behind."""
    train_config = train_config or TrainConfig()
    model_config = model_config or STMGTConfig()
    if model_config.use_weather and not dataset.has_weather:
        model_config = STMGTConfig.from_dict({**model_config.to_dict(), "use_weather": False})
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)
    np.random.seed(train_config.seed)
    shuffle_gen = torch.Generator().manual_seed(train_config.seed)

    ranges = split_ranges(dataset.num_steps)
    anchors = split_anchors(dataset)
    scaler = Scaler.fit(dataset, ranges["train"])
    windows = Windows(dataset, scaler)
    if train_config.weather_copies:
        windows, anchors["train"] = with_weather_copies(dataset, windows, anchors["train"],
                                                        train_config.weather_copies, train_config.seed)
    edge_index = dataset.graph.edge_index.to(device)
    model = STMGT(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay,
                                  betas=(train_config.beta1, train_config.beta2))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=train_config.restart_epochs, T_mult=train_config.restart_mult, eta_min=train_config.min_lr)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    run = Run(run_dir) if run_dir is not None else None
    if run is not None:
        run.write_config({
            "model": model_config.to_dict(), "train": train_config.to_dict(), "data": data_spec,
            "graph_fingerprint": dataset.graph.fingerprint(), "num_nodes": dataset.num_nodes,
            "parameters": model.count_parameters(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "splits": {k: [r.start, r.stop] for k, r in ranges.items()}, "scaler": scaler.to_dict(),
        })

    history, best_mae, best_epoch, bad_epochs, stopped = [], float("inf"), None, 0, "max_epochs"
    num_batches = -(-len(anchors["train"]) // train_config.batch_size)
    if train_config.max_batches:
        num_batches = min(num_batches, train_config.max_batches)
    for epoch in range(1, train_config.epochs + 1):
        if cancel is not None and cancel.is_set():   # asked during the last validation
            stopped = "cancelled"
            break
        model.train()
        started, losses, skipped = time.perf_counter(), [], 0
        for i, batch in enumerate(windows.iterate(anchors["train"], train_config.batch_size, True, shuffle_gen)):
            batch = batch.to(device)
            mask = ~torch.isnan(batch.y)
            y_scaled = scaler.scale_speed(torch.nan_to_num(batch.y))
            with autocast:
                params = model(**batch.model_inputs(), edge_index=edge_index)
            loss = mixture_loss(GaussianMixture(*params), y_scaled, mask, train_config)
            optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(loss):       # one bad batch must not poison the weights
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
                optimizer.step()
            else:
                skipped += 1
            losses.append(loss.item())
            if on_batch:
                on_batch(BatchProgress(epoch, i + 1, num_batches, losses[-1]))
            if cancel is not None and cancel.is_set():
                stopped = "cancelled"
                break
            if i + 1 >= num_batches:
                break
        if stopped == "cancelled":
            break
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val_mae, val_nll = validate(model, windows, anchors["val"], edge_index, device)
        improved = val_mae < best_mae
        if improved:
            best_mae, best_epoch, bad_epochs = val_mae, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if run is not None:
                save_checkpoint(run.path / CHECKPOINT, model, scaler, dataset.graph,
                                {"epoch": epoch, "val_mae": val_mae, "data": data_spec})
        else:
            bad_epochs += 1
        report = EpochReport(epoch, float(np.nanmean(losses)), val_mae, val_nll, lr,
                             time.perf_counter() - started, improved, skipped)
        history.append(asdict(report))
        if run is not None:
            run.write_history(pd.DataFrame(history))
        if on_epoch:
            on_epoch(report)
        if bad_epochs >= train_config.patience:
            stopped = "early_stopping"
            break

    if best_epoch is not None:
        model.load_state_dict(best_state)
        if train_config.calibrate and stopped != "cancelled":
            scale = fit_sigma_scale(model, windows, anchors["val"], edge_index, device)
            if run is not None:
                save_checkpoint(run.path / CHECKPOINT, model, scaler, dataset.graph,
                                {"epoch": best_epoch, "val_mae": best_mae, "data": data_spec,
                                 "sigma_scale": scale.tolist()})
    model.eval()
    return FitResult(run, model, scaler, pd.DataFrame(history), best_epoch, best_mae, stopped)
