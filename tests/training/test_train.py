"""Training, checkpoints, evaluation and forecasting on a small simulated dataset with a small
model, so the whole path runs in seconds on a CPU."""

import json
import shutil
import threading
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from stmgt.evaluation.baselines import HistoricalAverage, persistence
from stmgt.storage.checkpoint import load_checkpoint, save_checkpoint
from stmgt.data.dataset import Scaler, Windows, split_ranges
from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from stmgt.training.estimate import StepCost, estimate
from stmgt.evaluation.evaluate import evaluate, versus_baselines
from stmgt.forecasting.forecast import QUANTILE_LEVELS, Forecaster
from stmgt.data.scenario import WeatherScenario
from stmgt.data.graph import RoadGraph
from stmgt.model import STMGT, STMGTConfig
from stmgt.storage.runs import Run, kept_epoch
from stmgt.training.trainer import TrainConfig, Trainer, bf16_native, fit, mixture_loss, resolve_device

SMALL = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3)
QUICK = TrainConfig(epochs=1, batch_size=16, max_batches=4, device="cpu")
SPEC = {"kind": "simulator", "seed": 2, "weeks": 2}


@pytest.fixture(scope="module")
def data():
    return simulate(weeks=2, seed=2)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "small"
    batches, epochs = [], []
    result = fit(data, SMALL, TrainConfig(epochs=2, batch_size=16, max_batches=4, device="cpu"), run_dir,
                 SPEC, on_batch=batches.append, on_epoch=epochs.append)
    return result, batches, epochs


def test_smoke_train_writes_a_complete_run(trained):
    result, batches, epochs = trained
    assert [b.batch for b in batches] == [1, 2, 3, 4, 1, 2, 3, 4]
    assert [e.epoch for e in epochs] == [1, 2] and np.isfinite(epochs[0].train_loss)
    files = sorted(p.name for p in result.run.path.iterdir())
    assert files == ["checkpoint.pt", "config.json", "history.csv"]
    history = result.run.history()
    assert list(history.epoch) == [1, 2] and history.val_mae.notna().all()
    config = result.run.config
    assert config["data"] == SPEC and config["model"]["hidden_dim"] == 16
    assert config["parameters"] == result.model.count_parameters()
    assert config["precision"] == ("bf16 autocast" if bf16_native(torch.device("cpu")) else "fp32")
    assert result.stopped == "max_epochs"


@pytest.mark.parametrize("bf16", [None, False, True])
def test_bf16_autocast_follows_the_hardware_unless_set(data, bf16):
    trainer = Trainer(data, SMALL, TrainConfig(batch_size=16, device="cpu", bf16=bf16, compile=False))
    assert trainer.autocast._enabled == (bf16_native(torch.device("cpu")) if bf16 is None else bf16)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    loss, finite = trainer.step(next(trainer.windows.iterate(trainer.anchors["train"][:16], 16)))
    assert bool(finite) and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())   # master weights stay fp32
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.model.parameters()))


def test_fine_tuning_starts_from_another_runs_weights_uncalibrated(trained, data, tmp_path):
    result, _, _ = trained
    trainer = Trainer(data, SMALL, TrainConfig(device="cpu", init_from=str(result.run.path), compile=False))
    for name, value in result.model.state_dict().items():
        expected = torch.ones_like(value) if name == "sigma_scale" else value
        torch.testing.assert_close(trainer.model.state_dict()[name], expected, msg=name)
    wider = STMGTConfig(hidden_dim=32, num_blocks=1, heads=2, num_mixtures=3)
    without_memory = replace(SMALL, weather_memory=False)
    with pytest.raises(DataError, match="not in this model: weather_attn.memory_logit"):
        Trainer(data, without_memory, TrainConfig(device="cpu", init_from=str(result.run.path)))
    with pytest.raises(DataError, match="init_from .*another architecture"):
        Trainer(data, wider, TrainConfig(device="cpu", init_from=str(result.run.path)))
    with pytest.raises(DataError):
        Trainer(data, SMALL, TrainConfig(device="cpu", init_from=str(tmp_path / "no-such-run")))


def test_a_weather_fine_tune_trains_only_the_weather_attention_and_the_head(trained, data):
    result, _, _ = trained
    trainer = Trainer(data, SMALL, TrainConfig(device="cpu", batch_size=16, init_from=str(result.run.path),
                                               tune="weather", compile=False))
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.model.train()
    for batch in trainer.windows.iterate(trainer.anchors["train"][:32], 16):
        trainer.step(batch)
    changed = {name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)}
    assert changed and all(name.startswith(("weather_attn.", "mixture_head.")) for name in changed)
    assert any(name.startswith("weather_attn.") for name in changed)
    without = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3, use_weather=False)
    with pytest.raises(DataError, match="needs a model that reads the weather"):
        Trainer(data, without, TrainConfig(device="cpu", tune="weather"))
    with pytest.raises(ValueError, match="tune must be all or weather"):
        TrainConfig(tune="head")


def test_training_is_reproducible_for_a_seed(data, tmp_path):
    a = fit(data, SMALL, QUICK)
    b = fit(data, SMALL, QUICK)
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_cancel_stops_after_the_current_batch_and_keeps_the_best(data, tmp_path):
    cancel = threading.Event()
    seen = []

    def on_batch(progress):
        seen.append((progress.epoch, progress.batch))
        if progress.epoch == 2 and progress.batch == 2:
            cancel.set()

    result = fit(data, SMALL, TrainConfig(epochs=5, batch_size=16, max_batches=4, device="cpu"),
                 tmp_path / "run", SPEC, on_batch=on_batch, cancel=cancel)
    assert result.stopped == "cancelled" and seen[-1] == (2, 2)
    assert result.best_epoch == 1
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt").meta["epoch"] == 1


def test_early_stopping_on_validation_mae(data, monkeypatch):
    import stmgt.training.trainer as train
    maes = iter([5.0, 4.0, 4.5, 4.6, 4.7, 4.8])
    monkeypatch.setattr(train, "validate", lambda *a, **k: (next(maes), 1.0))
    result = fit(data, SMALL, TrainConfig(epochs=6, batch_size=16, max_batches=1, patience=3, device="cpu"))
    assert result.stopped == "early_stopping" and result.best_epoch == 2 and len(result.history) == 5


def test_selecting_on_the_whatif_error_picks_and_checkpoints_its_best_epoch(data, tmp_path, monkeypatch):
    import stmgt.training.trainer as train
    monkeypatch.setattr(train, "SELECT_ANCHORS", 3)
    measured = []
    real_error = train.fidelity.mean_error
    monkeypatch.setattr(train.fidelity, "mean_error", lambda r: measured.append(real_error(r)) or measured[-1])
    maes = iter([5.0, 4.0, 4.5])                      # validation MAE alone would pick epoch 2
    monkeypatch.setattr(train, "validate", lambda *a, **k: (next(maes), 1.0))
    result = fit(data, SMALL, TrainConfig(epochs=3, batch_size=16, max_batches=2, patience=3, device="cpu",
                                          select="whatif"), tmp_path / "run", SPEC)
    assert len(measured) == 3 and all(np.isfinite(measured))
    assert result.run.history().val_whatif_error.tolist() == pytest.approx(measured)
    best = int(np.argmin(measured)) + 1
    assert result.best_epoch == best and load_checkpoint(tmp_path / "run" / "checkpoint.pt").meta["epoch"] == best
    assert result.best_val_mae == [5.0, 4.0, 4.5][best - 1]


def test_a_cancel_during_the_whatif_check_stops_there_and_keeps_the_best(data, tmp_path, monkeypatch):
    import stmgt.training.trainer as train
    monkeypatch.setattr(train, "SELECT_ANCHORS", 3)
    cancel, checked = threading.Event(), []
    real_grid = train.fidelity.scenario_grid

    def grid(horizon):                       # the cancel arrives while epoch 2's check runs
        checked.append(1)
        if len(checked) == 2:
            cancel.set()
        return real_grid(horizon)

    monkeypatch.setattr(train.fidelity, "scenario_grid", grid)
    result = fit(data, SMALL, TrainConfig(epochs=4, batch_size=16, max_batches=2, device="cpu", select="whatif"),
                 tmp_path / "run", SPEC, cancel=cancel)
    assert result.stopped == "cancelled" and len(checked) == 2
    assert list(result.history.epoch) == [1] and result.best_epoch == 1
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt").meta["epoch"] == 1


def test_selecting_on_the_whatif_error_needs_the_simulators_data(data):
    without = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3, use_weather=False)
    imported = replace(data, provenance={"source": "upload"})
    for dataset, config in ((data, without), (imported, SMALL)):
        with pytest.raises(DataError, match="select: choosing the best epoch on the what-if error compares what-ifs "
                                            "with the simulator's truth, so it needs the simulator's own data and a "
                                            "model that reads the weather"):
            Trainer(dataset, config, TrainConfig(device="cpu", select="whatif"))
    with pytest.raises(ValueError, match="select must be val_mae or whatif"):
        TrainConfig(select="crps")


def test_the_whatif_loss_teaches_the_simulators_answer(data):
    """A step on what-if pairs moves the model's what-if answers towards the simulator's; the same
    steps without the loss do not."""
    def pair_error(trainer):
        trainer.pair_rng = np.random.default_rng(99)                  # the same pairs each time
        with torch.no_grad():
            return trainer.whatif_loss().item()

    errors = {}
    for weight in (0.0, 5.0):
        trainer = Trainer(data, SMALL, TrainConfig(device="cpu", batch_size=16, lr=3e-3, seed=0, compile=False,
                                                   whatif_weight=weight, select="whatif"))
        before = pair_error(trainer)
        batches = trainer.windows.iterate(trainer.epoch_anchors(1), 16)
        trainer.model.train()
        for _, batch in zip(range(25), batches):
            trainer.step(batch)
        errors[weight] = pair_error(trainer) / before
    assert errors[5.0] < 0.8 and errors[5.0] < errors[0.0] - 0.1


def test_the_whatif_loss_needs_the_simulators_data(data):
    imported = replace(data, provenance={"source": "upload"})
    with pytest.raises(DataError, match="whatif_weight: the what-if loss compares what-ifs with the simulator's truth"):
        Trainer(imported, SMALL, TrainConfig(device="cpu", whatif_weight=1.0))
    with pytest.raises(ValueError, match="whatif_weight must be a finite number of at least 0"):
        TrainConfig(whatif_weight=-1.0)


def test_loss_masks_missing_targets():
    from stmgt.model.mixture import GaussianMixture
    mix = GaussianMixture(torch.zeros(2, 1), torch.ones(2, 1), torch.ones(2, 1))
    y = torch.tensor([0.5, 1000.0])
    mask = torch.tensor([True, False])
    masked = mixture_loss(mix, y, mask, TrainConfig())
    only_first = mixture_loss(mix[:1], y[:1], mask[:1], TrainConfig())
    assert masked.item() == pytest.approx(only_first.item(), rel=1e-6)


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(DataError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_a_model_without_weather_memory_loads_and_can_grow_one(data, tmp_path):
    """Checkpoints from before the weather memory have no such key in their config: they load with
    it off, and `train --init` from one starts a memory with fresh decays."""
    torch.manual_seed(0)
    old = STMGT(replace(SMALL, weather_memory=False))
    scaler = Scaler.fit(data, split_ranges(data.num_steps)["train"])
    save_checkpoint(tmp_path / "checkpoint.pt", old, scaler, data.graph)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["model_config"]["weather_memory"], state["model_config"]["weather_past"]
    torch.save(state, tmp_path / "checkpoint.pt")
    loaded = load_checkpoint(tmp_path / "checkpoint.pt", data.graph)
    assert loaded.config.weather_memory is False and loaded.model.weather_attn.memory_logit is None
    assert loaded.config.weather_past is False
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


def test_baselines(data):
    ranges = split_ranges(data.num_steps)
    ha = HistoricalAverage(data, ranges["train"])
    step = ranges["test"].start + 20
    pred = ha.predict(torch.tensor([[step]]))[0, 0].numpy()
    slot_mates = np.arange(step % 672, ranges["train"].stop, 672)
    np.testing.assert_allclose(pred, np.nanmean(data.speed[slot_mates], axis=0), rtol=1e-5)
    scaler = Scaler.fit(data, ranges["train"])
    batch = Windows(data, scaler).batch([step])
    held = persistence(batch, scaler, torch.zeros(1, 12, data.num_nodes))[0].numpy()
    last = data.speed[step]
    observed = ~np.isnan(last)
    np.testing.assert_allclose(held[:, observed], np.broadcast_to(last[observed], (12, observed.sum())), atol=1e-4)


def test_historical_average_falls_back_to_time_of_day_for_unseen_slots():
    """One week of data trains on Monday–Friday only; a Sunday 08:00 slot falls back to the
    training mean at 08:00 (rush hour), not the all-day node mean."""
    week = simulate(weeks=1, seed=1)
    train = split_ranges(week.num_steps)["train"]
    ha = HistoricalAverage(week, train)
    sunday = int(np.flatnonzero((week.timestamps.day_of_week == 6) & (week.timestamps.hour == 8)
                                & (week.timestamps.minute == 0))[0])
    assert sunday >= train.stop
    at_eight = [s for s in train if week.timestamps[s].hour == 8 and week.timestamps[s].minute == 0]
    pred = ha.predict(torch.tensor([[sunday]]))[0, 0].numpy()
    np.testing.assert_allclose(pred, np.nanmean(week.speed[at_eight], axis=0), rtol=1e-5)


def test_evaluate_writes_metrics_with_baselines(trained, data):
    run = trained[0].run
    metrics = evaluate(run, data, SPEC)
    assert run.metrics()["models"]["stmgt"]["mae"] == pytest.approx(metrics["models"]["stmgt"]["mae"])
    assert set(metrics["models"]) == {"stmgt", "stmgt_perfect_weather", "persistence", "historical_average"}
    assert "simulator's weather forecast" in metrics["weather_forecast"]
    assert metrics["models"]["stmgt"]["mae"] != metrics["models"]["stmgt_perfect_weather"]["mae"]
    assert metrics["horizon_minutes"] == [15 * k for k in range(1, 13)]
    stmgt = metrics["models"]["stmgt"]
    assert len(stmgt["mae"]) == 12 and all(v > 0 for v in stmgt["crps"])
    assert all(0 <= c <= 1 for c in stmgt["coverage"]["80"])
    widths = stmgt["overall"]["width"]
    assert widths["50"] < widths["80"] < widths["90"]
    assert sum(stmgt["pit_histogram"]["density"]) == pytest.approx(10)
    assert metrics["models"]["persistence"]["mae"][0] < metrics["models"]["persistence"]["mae"][-1]
    assert "what_if" in metrics and metrics["what_if"]["mean_true_change_kmh"] < -2
    again = evaluate(run, data, SPEC)              # deterministic: re-running reproduces it
    assert again["models"] == metrics["models"]


def test_a_capped_evaluation_says_it_is_a_quick_look_and_reports_each_phase(trained, data, tmp_path):
    run = Run(shutil.copytree(trained[0].run.path, tmp_path / "capped"))
    seen = []
    metrics = evaluate(run, data, SPEC, max_batches=1, on_progress=seen.append)
    assert metrics["quick_look"] and metrics["windows"] == 64 < metrics["windows_in_split"]
    assert metrics["what_if"]["anchors"] == 16                    # one batch of 16 what-if anchors
    assert [(p.phase, p.done, p.total) for p in seen] == [("scoring", 1, 1), ("scoring what-if", 1, 1)]
    assert run.metrics()["windows"] == 64
    full = evaluate(run, data, SPEC)
    assert not full["quick_look"] and full["windows"] == full["windows_in_split"]
    assert "quick look" in versus_baselines(metrics) and "quick look" not in versus_baselines(full)


def test_a_cancelled_evaluation_writes_no_metrics(trained, data, tmp_path):
    run = Run(shutil.copytree(trained[0].run.path, tmp_path / "cancelled"))
    (run.path / "metrics.json").unlink(missing_ok=True)
    cancel = threading.Event()

    def on_progress(p):
        cancel.set()                                              # cancel as soon as one batch is done

    assert evaluate(run, data, SPEC, on_progress=on_progress, cancel=cancel) is None
    assert not run.has_metrics


def test_versus_baselines_says_better_or_worse_in_words():
    scores = lambda mae: {"mae": [0.0, mae, 9.0]}          # noqa: E731
    metrics = {"horizon_minutes": [30, 60, 90], "windows": 10, "windows_in_split": 10,
               "models": {"stmgt": scores(3.29), "persistence": scores(2.70), "historical_average": scores(4.1)}}
    assert versus_baselines(metrics) == ("MAE at +1 h 3.29 km/h — worse than persistence (2.70), "
                                         "better than the historical average (4.10)")


def test_metrics_name_the_data_they_were_scored_on(trained, data, tmp_path):
    run = Run(shutil.copytree(trained[0].run.path, tmp_path / "copy"))
    other = {"kind": "simulator", "seed": 3, "weeks": 2}
    metrics = evaluate(run, simulate(weeks=2, seed=3), other)
    assert run.config["data"] == SPEC                       # trained on seed 2 ...
    assert metrics["data"] == other == run.metrics()["data"]  # ... scored on seed 3, and said so
    assert metrics["models"]["stmgt"]["mae"] != evaluate(run, data, SPEC)["models"]["stmgt"]["mae"]


def test_forecast_quantiles_and_what_if(trained, data):
    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    anchor = forecaster.test_anchors()[5]
    forecast = forecaster.forecast(anchor)
    q = forecast.quantiles()
    assert q.shape == (1, 12, data.num_nodes, len(QUANTILE_LEVELS))
    assert (np.diff(q, axis=-1) > 0).all()
    cdf = forecast.mixture.cdf(torch.from_numpy(q[..., 2])).numpy()
    np.testing.assert_allclose(cdf, 0.5, atol=1e-4)
    frame = forecast.to_frame()
    assert len(frame) == 12 * data.num_nodes
    assert list(frame.columns[:5]) == ["anchor_time", "node_id", "horizon_step", "target_time", "mean"]
    assert (frame.target_time - frame.anchor_time == frame.horizon_step * pd.Timedelta("15min")).all()
    wet = forecaster.forecast(anchor, WeatherScenario(precipitation_mm=30.0))
    assert (wet.weather[..., 2] == 30).all()
    assert not np.allclose(wet.mean(), forecast.mean())


def test_several_scenarios_in_one_pass_match_one_forecast_each(trained, data):
    from stmgt.forecasting.what_if import MEDIAN, median_changes

    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    anchors = forecaster.test_anchors()[[3, 40]]
    scenarios = [WeatherScenario(precipitation_mm=10.0), WeatherScenario(temperature_shift=3.0, first_step=4)]
    medians = [forecaster.forecast(anchors, s).quantiles([MEDIAN])[..., 0] for s in (None, *scenarios)]
    changes = median_changes(forecaster, anchors, scenarios)
    assert changes.shape == (2, 2, 12, data.num_nodes)
    for change, median in zip(changes, medians[1:]):
        np.testing.assert_allclose(change, median - medians[0], atol=1e-4)
    assert np.abs(changes[0]).max() > 0.01
    assert np.abs(changes[1][:, :3]).max() < 1e-4        # causal: nothing before step 4 (to float rounding)


def test_several_weathers_in_one_pass_match_one_forecast_each(trained, data):
    """evaluate reads each window under the issued and the observed weather in one pass."""
    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    anchors = forecaster.test_anchors()[[3, 40]]
    observed = forecaster.horizon_weather(anchors)
    issued = observed + np.array([1.0, 5.0, 2.0])
    both = forecaster.under_weathers(anchors, [issued, observed])
    for together, weather in zip(both, (issued, observed)):
        alone = forecaster.forecast(anchors, weather=weather).mixture
        torch.testing.assert_close(together.mean(), alone.mean(), atol=1e-4, rtol=0)
    assert (both[0].mean() - both[1].mean()).abs().max() > 0.01


def test_anchor_validation(trained, data):
    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    assert forecaster.anchor_at(data.timestamps[100].isoformat()) == 100
    with pytest.raises(DataError, match="not a time step"):
        forecaster.anchor_at("2031-01-01T00:00+07:00")
    with pytest.raises(DataError, match="fewer than 12 observed steps"):
        forecaster.anchor_at(data.timestamps[3])
    with pytest.raises(DataError, match="not a timestamp"):
        forecaster.anchor_at("tomorrow-ish")


def test_what_if_needs_weather(trained, data):
    no_weather = type(data)(data.timestamps, data.speed, None, data.graph)
    with pytest.raises(DataError, match="trained with weather, but this dataset has no weather"):
        Forecaster(trained[0].run.load(data.graph), no_weather)
    blind = fit(no_weather, SMALL, QUICK)              # trains without weather instead
    assert not blind.model.config.use_weather
    for what_if in (lambda f: f.forecast(200, WeatherScenario(precipitation_mm=5)),
                    lambda f: f.under_scenarios([200], [WeatherScenario(precipitation_mm=5)])):
        with pytest.raises(DataError, match="no weather"):
            what_if(Forecaster(_loaded(blind, data), data))


def _loaded(result, data):
    from stmgt.storage.checkpoint import LoadedModel
    return LoadedModel(result.model, result.model.config, result.scaler, data.graph.fingerprint(),
                       data.graph.node_ids, {})


def test_weather_scenario_edits():
    base = np.tile(np.array([[28.0, 10.0, 0.0]], dtype=np.float32), (12, 1))
    out = WeatherScenario(temperature_shift=2, rain_mm=12, rain_start=3, rain_steps=4).apply(base)
    assert (out[:, 0] == 30).all() and (out[:, 1] == 10).all()
    assert out[:, 2].tolist() == [0, 0, 12, 12, 12, 12, 0, 0, 0, 0, 0, 0]
    assert (WeatherScenario(precipitation_shift=-5).apply(base)[:, 2] == 0).all()     # never negative
    np.testing.assert_array_equal(base, np.tile([[28.0, 10.0, 0.0]], (12, 1)))        # input untouched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_forward_matches_cpu(trained, data):
    model = trained[0].model
    batch = Windows(data, trained[0].scaler).batch([200, 300])
    with torch.no_grad():
        cpu = model.cpu()(**batch.model_inputs(), edge_index=data.graph.edge_index)
        gpu = model.cuda()(**batch.to("cuda").model_inputs(), edge_index=data.graph.edge_index.cuda())
    model.cpu()
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu(), atol=1e-4, rtol=1e-4)


def test_sigma_calibration_fits_the_validation_split(trained, data):
    """The σ scale fitted at the end of training minimises the validation NLL over its grid, and
    the saved checkpoint carries it."""
    from stmgt.forecasting.calibration import SCALE_GRID, fit_sigma_scale
    from stmgt.data.dataset import split_anchors
    from stmgt.forecasting.predict import predict

    result = trained[0]
    saved = load_checkpoint(result.run.path / "checkpoint.pt")
    torch.testing.assert_close(saved.model.sigma_scale, result.model.sigma_scale)
    assert saved.meta["sigma_scale"] == pytest.approx(result.model.sigma_scale.tolist())
    windows = Windows(data, result.scaler)
    val = split_anchors(data)["val"]
    scale = fit_sigma_scale(result.model, windows, val, data.graph.edge_index, "cpu")
    assert set(scale.tolist()) <= set(SCALE_GRID.astype(np.float32).tolist())

    def val_nll(factor):
        result.model.sigma_scale.copy_(scale * factor)
        batch = windows.batch(val)
        mix, y = predict(result.model, batch, data.graph.edge_index, result.scaler), batch.y
        mask = ~torch.isnan(y)
        return ((mix.nll(torch.nan_to_num(y)) * mask).sum() / mask.sum()).item()

    best = val_nll(1.0)
    assert best <= val_nll(1.1) and best <= val_nll(0.9)
    result.model.sigma_scale.copy_(scale)


def test_whatif_fidelity_grid_and_artifact(trained, data, tmp_path):
    """The fidelity benchmark's measurement on a barely trained model: every scenario of the grid,
    a true change of exactly 0 before each rain event, and a saved artifact that reads back."""
    from stmgt.evaluation import fidelity
    from stmgt.data.simulate import simulator_for

    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    result = fidelity.measure(forecaster, simulator_for(data), count=3)
    assert result["anchors"] == 3 and result["horizon_minutes"] == [15 * k for k in range(1, 13)]
    names = list(result["scenarios"])
    assert names[:5] == [f"rain {mm} mm/h" for mm in (2, 5, 10, 20, 30)]
    assert names[-2:] == ["heat +3 °C", "wind +15 km/h"]
    late = result["scenarios"]["rain 20 mm/h at steps 7–10"]
    assert late["mean_true_change_kmh"][:6] == [0.0] * 6 and late["mean_true_change_kmh"][7] < -1
    assert set(late["checks"]) == {"rain_within_20_percent", "node_mae_within_35_percent", "no_change_before_rain"}
    assert result["scenarios"]["rain 30 mm/h"]["mean_true_change_kmh"][-1] < \
        result["scenarios"]["rain 2 mm/h"]["mean_true_change_kmh"][-1] < 0
    fidelity.save(tmp_path, result)
    assert fidelity.load(tmp_path) == result and fidelity.load(tmp_path / "none") is None
    assert list(fidelity.summary(result).index) == names


def test_estimate_counts_the_counterfactual_weather_copies_and_the_whatif_checks():
    cost = StepCost(train_batch_s=1.0, forward_window_s=0.01, device="cpu")
    windows = {"train": 320, "val": 64, "test": 64}
    plain = estimate(cost, windows, TrainConfig(epochs=2, batch_size=32), use_weather=True, simulated=True)
    copies = estimate(cost, windows, TrainConfig(epochs=2, batch_size=32, weather_copies=2), True, True)
    assert plain.phases["training"] == 20 and plain.train_batches == 20 and "what-if checks" not in plain.phases
    assert copies.phases["training"] == 60 and copies.train_batches == 60
    checked = estimate(cost, windows, TrainConfig(epochs=2, batch_size=32, select="whatif"), True, True)
    assert checked.phases["what-if checks"] == pytest.approx(2 * 50 * 0.01)    # 2 epochs × 50 anchors
    assert checked.total_s == pytest.approx(plain.total_s + 2 * 50 * 0.01)
    # scoring: one pass over the 64 test windows (both weathers) and one over 48 what-if anchors
    assert plain.phases["scoring"] == pytest.approx((64 + 48) * 0.01)


def test_the_kept_epoch_is_the_last_that_improved_the_selection_score():
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_mae": [2.0, 1.5, 1.8], "best": [True, False, True]})
    assert kept_epoch(history)["epoch"] == 3                     # chosen on another score than val MAE
    assert kept_epoch(history.drop(columns="best"))["epoch"] == 2  # a history without the column
    assert kept_epoch(pd.DataFrame()) is None
