"""Checkpoints: plain dicts of tensors and JSON-like values, written atomically and read with
`weights_only=True`, refusing a checkpoint of another road graph in plain words."""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from stmgt.data.dataset import Scaler
from stmgt.errors import DataError
from stmgt.graph import RoadGraph
from stmgt.jsonfile import atomic_write_bytes
from stmgt.model import STMGT, STMGTConfig

FORMAT = "stmgt-checkpoint"
VERSION = 1


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
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise DataError("the file is damaged or is not a PyTorch checkpoint "
                        f"({type(exc).__name__})", where) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataError("this is not an STMGT checkpoint (no STMGT header)", where)
    if state.get("version") != VERSION:
        raise DataError(f"checkpoint format version {state.get('version')} is not supported "
                        f"(this version reads {VERSION})", where)
    return state


def load_checkpoint(source, graph: RoadGraph | None = None, device="cpu") -> LoadedModel:
    """Rebuild the model; with `graph`, refuse a checkpoint trained on another graph."""
    where = "the uploaded checkpoint" if isinstance(source, (bytes, bytearray)) else str(source)
    state = read_checkpoint(source)
    if graph is not None and state["graph_fingerprint"] != graph.fingerprint():
        n = len(state["node_ids"])
        raise DataError(
            f"this model was trained on another road graph ({n} nodes, fingerprint "
            f"{state['graph_fingerprint']}); the selected dataset has {graph.num_nodes} nodes "
            f"(fingerprint {graph.fingerprint()}). Train a model on this dataset or pick its data.", where)
    try:
        # Checkpoints from before the causal weather mask were trained without it.
        config = STMGTConfig.from_dict({"causal_weather": False, **state["model_config"]})
        model = STMGT(config)
        model.load_state_dict(state["state_dict"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DataError(f"the checkpoint's weights do not fit the model ({str(exc).splitlines()[0][:160]})",
                        where) from exc
    model.to(device).eval()
    return LoadedModel(model, config, Scaler.from_dict(state["scaler"]), state["graph_fingerprint"],
                       list(state["node_ids"]), dict(state.get("meta", {})))
