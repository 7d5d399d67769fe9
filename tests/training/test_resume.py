"""Interrupted training: a cancel, an exception or SIGKILL mid-epoch leaves earlier runs intact and
the new run resumable (or clearly failed), and a resumed run ends exactly where an unbroken one does."""

import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from stmgt.paths import CHECKOUT
from stmgt.cli import main
from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from stmgt.model import STMGTConfig
from stmgt.storage.runs import Run
from stmgt.training.trainer import TRAINING_STATE, TrainConfig, Trainer, fit

SMALL = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3)
SPEC = {"kind": "simulator", "seed": 2, "weeks": 2}
CONFIG = TrainConfig(epochs=3, batch_size=16, max_batches=3, device="cpu", compile=False)
ROOT = CHECKOUT


@pytest.fixture(scope="module")
def data():
    return simulate(weeks=2, seed=2)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resumed_run_ends_exactly_where_an_unbroken_one_does(data, tmp_path):
    unbroken = fit(data, SMALL, CONFIG, tmp_path / "unbroken", SPEC)
    cancel = threading.Event()

    def on_batch(p):
        if p.epoch == 2 and p.batch == 2:
            cancel.set()

    first = fit(data, SMALL, CONFIG, tmp_path / "broken", SPEC, on_batch=on_batch, cancel=cancel)
    assert first.stopped == "cancelled" and (tmp_path / "broken" / TRAINING_STATE).is_file()
    resumed = fit(data, SMALL, CONFIG, tmp_path / "broken", SPEC, resume=True)
    assert resumed.stopped == "max_epochs" and list(resumed.history.epoch) == [1, 2, 3]
    assert resumed.history.val_mae.tolist() == pytest.approx(unbroken.history.val_mae.tolist())
    for (name, a), b in zip(weights(resumed.model).items(), weights(unbroken.model).values()):
        torch.testing.assert_close(a, b, msg=name)
    assert not (tmp_path / "broken" / TRAINING_STATE).exists()     # finished: nothing left to resume


def test_exception_inside_an_epoch_leaves_a_resumable_run(data, tmp_path, monkeypatch):
    real_step = Trainer.step
    calls = []

    def failing_step(self, batch):
        calls.append(1)
        if len(calls) == 5:                  # epoch 2, batch 2
            raise RuntimeError("out of memory (simulated)")
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "step", failing_step)
    with pytest.raises(RuntimeError, match="simulated"):
        fit(data, SMALL, CONFIG, tmp_path / "run", SPEC)
    monkeypatch.setattr(Trainer, "step", real_step)
    result = fit(data, SMALL, CONFIG, tmp_path / "run", SPEC, resume=True)
    assert list(result.history.epoch) == [1, 2, 3] and result.best_epoch is not None


def test_cli_resume_carries_a_run_on_to_another_device(data, tmp_path):
    """A run started on a GPU machine can finish on a CPU one (and back): --device, not the record."""
    cancel = threading.Event()
    fit(data, SMALL, CONFIG, tmp_path / "run", SPEC, on_batch=lambda p: p.epoch == 2 and cancel.set(), cancel=cancel)
    run = Run(tmp_path / "run")
    config = run.config
    config["train"]["device"] = "cuda"                # as a GPU machine records it
    run.write_config(config)
    run.mark_finished("cancelled", "interrupted with Ctrl-C")
    assert main(["train", "--resume", str(run.path), "--device", "cpu", "--no-evaluate"]) == 0
    assert list(run.history().epoch) == [1, 2, 3] and run.status.state == "complete"


def test_nothing_to_resume_is_a_clear_error(data, tmp_path):
    with pytest.raises(DataError, match="nothing to resume"):
        fit(data, SMALL, CONFIG, tmp_path / "empty", SPEC, resume=True)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / TRAINING_STATE).write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="damaged"):
        fit(data, SMALL, CONFIG, tmp_path / "damaged", SPEC, resume=True)


KILLABLE = """
import sys
from stmgt.data.simulate import simulate
from stmgt.model import STMGTConfig
from stmgt.storage.runs import Run
from stmgt.training.trainer import TrainConfig, fit
run = Run(sys.argv[1])
run.mark_running()
fit(simulate(weeks=2, seed=2), STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3),
    TrainConfig(epochs=200, batch_size=16, max_batches=3, device="cpu", compile=False), run.path,
    {"kind": "simulator", "seed": 2, "weeks": 2}, on_epoch=lambda r: print("epoch", r.epoch, flush=True))
"""


@pytest.mark.slow
def test_sigkill_mid_training_leaves_old_runs_intact_and_the_new_one_resumable(data, tmp_path):
    old = fit(data, SMALL, CONFIG, tmp_path / "old", SPEC).run
    old.mark_finished("complete")
    before = {p.name: p.read_bytes() for p in old.path.iterdir()}

    new = tmp_path / "new"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(new)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if line.startswith("epoch 2") or time.monotonic() > deadline:
            break
    time.sleep(0.3)                                # somewhere inside epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    assert {p.name: p.read_bytes() for p in old.path.iterdir()} == before
    run = Run(new)
    assert run.status.state == "interrupted" and not run.status.usable
    with pytest.raises(DataError, match="not finished"):
        Run.open(new)
    result = fit(data, SMALL, TrainConfig(**{**CONFIG.to_dict(), "epochs": 4}), new, SPEC, resume=True)
    assert result.history.epoch.tolist()[:2] == [1, 2] and result.history.epoch.tolist()[-1] == 4


def test_cli_resume_refuses_what_it_cannot_carry_on(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    finished = fit(simulate(weeks=2, seed=2), SMALL, CONFIG, tmp_path / "done", SPEC).run
    finished.mark_finished("complete")
    assert main(["train", "--resume", str(finished.path)]) == 2
    assert "only a cancelled, failed or interrupted run" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_resume_with_more_epochs_extends_the_schedule(data, tmp_path):
    """`train --resume RUN --epochs N` trains on to N and records N; the restarts of the learning
    rate do not depend on the total, so the epochs match a run begun with N."""
    unbroken = fit(data, SMALL, TrainConfig(**{**CONFIG.to_dict(), "epochs": 4}), tmp_path / "unbroken", SPEC)
    cancel = threading.Event()
    fit(data, SMALL, CONFIG, tmp_path / "run", SPEC, on_batch=lambda p: p.epoch == 2 and cancel.set(), cancel=cancel)
    run = Run(tmp_path / "run")
    run.mark_finished("cancelled", "cancelled by the user")
    assert main(["train", "--resume", str(run.path), "--epochs", "4", "--no-evaluate"]) == 0
    assert list(run.history().epoch) == [1, 2, 3, 4] and run.config["train"]["epochs"] == 4
    assert run.history().val_mae.tolist() == pytest.approx(unbroken.history.val_mae.tolist(), abs=1e-5)
