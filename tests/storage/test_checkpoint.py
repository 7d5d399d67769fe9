"""Checkpoints: a round trip, and the refusal of another graph's, a damaged one and a foreign pickle;
an old checkpoint without the weather memory still loads."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from stmgt.storage.checkpoint import load_checkpoint, save_checkpoint
from stmgt.data.dataset import Scaler, Windows, split_ranges
from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph
from stmgt.model import STMGT
from stmgt.training.trainer import TrainConfig, Trainer
from tests.samples import SMALL, SPEC


def test_a_model_without_weather_memory_loads_and_can_grow_one(data, tmp_path):
    """Checkpoints from before the weather memory have no such key in their config: they load with
    it off, and `train --init` from one starts a memory with fresh decays."""
    torch.manual_seed(0)
    old = STMGT(replace(SMALL, weather_memory=False))
    scaler = Scaler.fit(data, split_ranges(data.num_steps)["train"])
    save_checkpoint(tmp_path / "checkpoint.pt", old, scaler, data.graph)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for newer in ("weather_memory", "weather_past", "weather_bend"):
        del state["model_config"][newer]
    torch.save(state, tmp_path / "checkpoint.pt")
    loaded = load_checkpoint(tmp_path / "checkpoint.pt", data.graph)
    assert loaded.config.weather_memory is False and loaded.model.weather_attn.memory_logit is None
    assert loaded.config.weather_past is False and loaded.config.weather_bend is False
    (tmp_path / "config.json").write_text(json.dumps({"model": state["model_config"], "data": SPEC}))
    trainer = Trainer(data, SMALL, TrainConfig(device="cpu", init_from=str(tmp_path), compile=False))
    fresh = STMGT(SMALL).weather_attn.memory_logit
    torch.testing.assert_close(trainer.model.weather_attn.memory_logit, fresh)
    torch.testing.assert_close(trainer.model.weather_attn.weather_proj.weight, old.weather_attn.weather_proj.weight)


def test_checkpoint_round_trip(trained, data, tmp_path):
    result = trained[0]
    path = tmp_path / "again.pt"
    save_checkpoint(path, result.model, result.scaler, data.graph, {"note": "x"})
    loaded = load_checkpoint(path, data.graph)
    assert loaded.config == SMALL and loaded.scaler == result.scaler and loaded.meta == {"note": "x"}
    batch = Windows(data, result.scaler).batch([200])
    with torch.no_grad():
        a = result.model(**batch.model_inputs(), edge_index=data.graph.edge_index)
        b = loaded.model(**batch.model_inputs(), edge_index=data.graph.edge_index)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert "weights_only=True" in open(load_checkpoint.__code__.co_filename).read()


def test_checkpoint_of_another_graph_is_refused(trained):
    result = trained[0]
    nodes = pd.DataFrame({"node_id": ["a", "b"], "lat": [10.7, 10.71], "lon": [106.7, 106.7]})
    other = RoadGraph(nodes, pd.DataFrame({"source": ["a", "b"], "target": ["b", "a"]}))
    with pytest.raises(DataError, match="trained on another road graph .*62 nodes.*2 nodes"):
        load_checkpoint(result.run.path / "checkpoint.pt", other)


@pytest.mark.parametrize("damage,message", [
    (lambda raw: raw[: len(raw) // 2], "damaged"),
    (lambda raw: b"not a checkpoint at all", "damaged"),
])
def test_damaged_checkpoint_is_refused(trained, tmp_path, damage, message):
    raw = (trained[0].run.path / "checkpoint.pt").read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(damage(raw))
    with pytest.raises(DataError, match=message) as err:
        load_checkpoint(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(DataError, match=message):
        load_checkpoint(damage(raw))


def test_foreign_pickle_is_not_executed(tmp_path):
    torch.save({"state_dict": {}, "format": "something else"}, tmp_path / "x.pt")
    with pytest.raises(DataError, match="not an STMGT checkpoint"):
        load_checkpoint(tmp_path / "x.pt")

