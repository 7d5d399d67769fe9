"""Checkpoints: plain dicts of tensors and JSON-like values, written atomically and read with
`weights_only=True`, refusing a checkpoint of another road graph in plain words."""

from __future__ import annotations

import io
import math
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from stmgt.data.dataset import Scaler
from stmgt.errors import DataError, reason
from stmgt.data.graph import RoadGraph
from stmgt.storage.jsonfile import atomic_write_bytes
from stmgt.limits import LIMITS
from stmgt.model import STMGT, STMGTConfig
from stmgt.model.config import OFF_IN_OLDER_RUNS
from stmgt.settings import MODEL_SIZES

# What torch.load raises for a damaged, truncated or foreign file read with weights_only=True
# (its unpickler runs no code, but on garbage its stack machine fails with Index/Key/TypeError).
UNREADABLE = (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError,
              IndexError, KeyError, TypeError, AttributeError, struct.error)

FORMAT = "stmgt-checkpoint"
VERSION = 1
# The fields a checkpoint must hold, and their types.
FIELDS = {"state_dict": dict, "model_config": dict, "scaler": dict, "graph_fingerprint": str, "node_ids": list}


@dataclass
class LoadedModel:
    model: STMGT
    config: STMGTConfig
    scaler: Scaler
    fingerprint: str
    node_ids: list[str]
    meta: dict


def save_checkpoint(path, model: STMGT, scaler: Scaler, graph: RoadGraph, meta: dict | None = None) -> None:
    state = {
        "format": FORMAT, "version": VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_config": model.config.to_dict(),
        "scaler": scaler.to_dict(),
        "graph_fingerprint": graph.fingerprint(),
        "node_ids": list(graph.node_ids),
        "meta": meta or {},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(source) -> dict:
    """The raw checkpoint dict from a path or bytes, with damage reported in words."""
    where = "the uploaded checkpoint" if isinstance(source, (bytes, bytearray)) else str(source)
    if not isinstance(source, (bytes, bytearray)) and not Path(source).is_file():
        raise DataError("checkpoint file not found", where)
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        state = torch.load(stream, map_location="cpu", weights_only=True)
    except UNREADABLE as exc:
        raise DataError("the file is damaged or is not a PyTorch checkpoint "
                        f"({type(exc).__name__})", where) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataError("this is not an STMGT checkpoint (no STMGT header)", where)
    if state.get("version") != VERSION:
        raise DataError(f"checkpoint format version {state.get('version')} is not supported "
                        f"(this version reads {VERSION})", where)
    for name, kind in FIELDS.items():
        if not isinstance(state.get(name), kind):
            raise DataError(f"the checkpoint is incomplete: its {name!r} is missing or not a {kind.__name__}", where)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["state_dict"].items()):
        raise DataError("the checkpoint's weights are not a table of named tensors", where)
    nodes = LIMITS["nodes"]
    if not nodes.low <= len(state["node_ids"]) <= nodes.high or not all(isinstance(n, str) for n in state["node_ids"]):
        raise DataError(f"the checkpoint's node_ids must be {nodes.low} to {nodes.high:,} node names", where)
    _check_sizes(state["model_config"], where)
    return state


def _check_sizes(config: dict, where: str) -> None:
    """The sizes the trainer accepts (the same records, `stmgt.settings`), checked before a model of
    them is allocated: a few bytes of config could otherwise ask for gigabytes."""
    for name in MODEL_SIZES:
        value = config.get(name, 1)
        try:
            LIMITS[name].check(value)
        except DataError:
            raise DataError(f"the checkpoint asks for {name} = {value!r}; this version accepts "
                            f"{LIMITS[name].accepted}", where) from None


def _check_finite(weights: dict[str, torch.Tensor], where: str) -> None:
    """A model with a NaN or infinite weight forecasts nothing but NaN or inf: refuse it, naming
    the tensors, rather than write empty or infinite forecasts."""
    bad = []
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            counts = {"NaN": int(tensor.isnan().sum()), "inf": int(tensor.isinf().sum())}
            bad.append(f"{name} ({', '.join(f'{n:,} {kind}' for kind, n in counts.items() if n)})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataError(f"the checkpoint has non-finite weights in: {shown}; it cannot forecast; retrain or "
                        "pick another run", where)


def load_checkpoint(source, graph: RoadGraph | None = None, device="cpu") -> LoadedModel:
    """Rebuild the model; with `graph`, refuse a checkpoint trained on another graph."""
    where = "the uploaded checkpoint" if isinstance(source, (bytes, bytearray)) else str(source)
    state = read_checkpoint(source)
    _check_finite(state["state_dict"], where)
    if graph is not None and state["graph_fingerprint"] != graph.fingerprint():
        raise DataError(
            f"this model was trained on another road graph ({len(state['node_ids'])} nodes); the selected "
            f"dataset has {graph.num_nodes} nodes or other roads. Train a model on this dataset or pick its data.",
            where)
    try:
        config = STMGTConfig.from_dict(OFF_IN_OLDER_RUNS | state["model_config"])
        model = STMGT(config)
        model.load_state_dict(state["state_dict"])
        scaler = Scaler.from_dict(state["scaler"])
        stds = [scaler.speed_std, *(scaler.weather_std or ())]
        if not all(math.isfinite(v) for v in [scaler.speed_mean, *stds, *(scaler.weather_mean or ())]) \
                or min(stds) <= 0:
            raise ValueError("its scaler holds a zero, negative or non-finite scale")
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DataError(f"the checkpoint's weights do not fit the model ({reason(exc)})", where) from exc
    model.to(device).eval()
    meta = state.get("meta")
    return LoadedModel(model, config, scaler, state["graph_fingerprint"], list(state["node_ids"]),
                       dict(meta) if isinstance(meta, dict) else {})
