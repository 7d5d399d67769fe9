"""Training the small model on simulated data: the run it writes, progress, cancel, early stopping,
selection on the what-if error, the what-if loss, fine-tuning, precision and device choice."""

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from stmgt.storage.checkpoint import load_checkpoint
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.routing.copula import copula_key, read_copula
from stmgt.storage.runs import CHECKPOINT, COPULA
from stmgt.training.trainer import TrainConfig, Trainer, bf16_native, device_name, fit, mixture_loss, resolve_device
from tests.samples import QUICK, SMALL, SPEC


def test_smoke_train_writes_a_complete_run(trained, data):
    result, batches, epochs = trained
    assert [b.batch for b in batches] == [1, 2, 3, 4, 1, 2, 3, 4]
    assert [e.epoch for e in epochs] == [1, 2] and np.isfinite(epochs[0].train_loss)
    files = sorted(p.name for p in result.run.path.iterdir())
    assert files == ["checkpoint.pt", "config.json", COPULA, "history.csv"]
    # the calibrated model's error copula, under its checkpoint's key: a route's first answer reads it
    key = copula_key(result.run.path / CHECKPOINT, data)
    assert read_copula(result.run.path / COPULA, key, data.num_nodes, SMALL.horizon) is not None
    history = result.run.history()
    assert list(history.epoch) == [1, 2] and history.val_mae.notna().all()
    config = result.run.config
    assert config["data"] == SPEC and config["model"]["hidden_dim"] == 16
    assert config["parameters"] == result.model.count_parameters()
    assert config["precision"] == ("bf16 autocast" if bf16_native(torch.device("cpu")) else "fp32")
    assert config["device"] == "cpu" and config["device_name"] == device_name(torch.device("cpu"))
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


def test_a_cancel_while_the_error_copula_is_estimated_keeps_the_calibrated_model_and_no_copula(data, tmp_path):
    cancel, phases = threading.Event(), []

    def on_phase(p):
        phases.append(p.phase)
        if p.phase == "estimating error correlations":
            cancel.set()

    result = fit(data, SMALL, TrainConfig(epochs=1, batch_size=16, max_batches=1, device="cpu"), tmp_path / "run",
                 SPEC, on_phase=on_phase, cancel=cancel)
    assert phases.count("estimating error correlations") == 1             # stopped after its first batch
    assert "sigma_scale" in load_checkpoint(tmp_path / "run" / CHECKPOINT).meta
    assert not (tmp_path / "run" / COPULA).exists() and result.best_epoch == 1


def test_a_failing_error_copula_estimate_leaves_the_trained_run_standing(data, tmp_path, monkeypatch, caplog):
    from stmgt.routing.copula import ErrorCopula

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    monkeypatch.setattr(ErrorCopula, "estimate", broken)
    result = fit(data, SMALL, TrainConfig(epochs=1, batch_size=16, max_batches=1, device="cpu"), tmp_path / "run",
                 SPEC)
    assert result.stopped == "max_epochs" and "sigma_scale" in load_checkpoint(tmp_path / "run" / CHECKPOINT).meta
    assert not (tmp_path / "run" / COPULA).exists()
    assert "error copula was not estimated (LinAlgError: Eigenvalues did not converge)" in caplog.text


def test_selecting_on_the_whatif_error_needs_the_simulators_data(data):
    without = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3, use_weather=False)
    imported = replace(data, provenance={"source": "upload"})
    for dataset, config in ((data, without), (imported, SMALL)):
        with pytest.raises(DataError, match="select: choosing the best epoch on the what-if error compares what-ifs "
                                            "with the simulator's truth, so it needs the simulator's own data and a "
                                            "model that reads the weather"):
            Trainer(dataset, config, TrainConfig(device="cpu", select="whatif"))
    with pytest.raises(ValueError, match="select must be val_mae, whatif or both"):
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


def test_a_cpu_is_recorded_by_its_model_and_threads():
    """Linux's platform.processor() is empty: the name comes from /proc/cpuinfo, where there is one."""
    models = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
    name = device_name(torch.device("cpu"))
    assert name == f"{models[0]}, {torch.get_num_threads()} threads"
    assert name.split(",")[0] not in ("", "cpu")


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(DataError, match="no CUDA GPU"):
            resolve_device("cuda")



def test_a_step_that_fits_only_with_its_blocks_recomputed_trains_so(data, tmp_path, monkeypatch):
    import stmgt.training.trainer as train
    config = TrainConfig(epochs=1, batch_size=16, max_batches=1, device="cpu", calibrate=False)
    two_blocks = replace(SMALL, num_blocks=2, gat_path="dense")
    need = {flag: two_blocks.training_bytes(16, data.num_nodes, data.graph.num_edges, "dense", flag)
            for flag in (False, True)}
    assert need[True] < need[False]
    monkeypatch.setattr(train, "memory_budget", lambda device: (need[True] + need[False]) // 2)
    result = fit(data, two_blocks, config, tmp_path / "run", SPEC)
    assert result.model.recompute_blocks and result.run.config["recompute_blocks"] is True
    monkeypatch.setattr(train, "memory_budget", lambda device: need[True] - 1)
    with pytest.raises(DataError, match="would need about .* GB of memory"):
        fit(data, two_blocks, config)


@pytest.mark.parametrize("maes, errors, best", [
    ([5.0, 4.9, 4.0], [0.9, 0.2, 0.5], 3),        # the what-if error alone would pick epoch 2
    ([4.0, 4.1, 4.4], [0.9, 0.3, 1.0], 2),        # validation MAE alone would pick epoch 1
])
def test_selecting_on_both_scores_weighs_the_forecast_and_the_whatif_alike(data, tmp_path, monkeypatch,
                                                                          maes, errors, best):
    import stmgt.training.trainer as train
    monkeypatch.setattr(train, "SELECT_ANCHORS", 3)
    monkeypatch.setattr(train.fidelity, "mean_error", lambda r, e=iter(errors): next(e))
    monkeypatch.setattr(train, "validate", lambda *a, m=iter(maes), **k: (next(m), 1.0))
    result = fit(data, SMALL, TrainConfig(epochs=3, batch_size=16, max_batches=2, patience=3, device="cpu",
                                          select="both"), tmp_path / "run", SPEC)
    sums = [m + e for m, e in zip(maes, errors)]
    assert result.run.history().score.tolist() == pytest.approx(sums) and result.best_epoch == best
    assert result.best_val_mae == maes[best - 1]
