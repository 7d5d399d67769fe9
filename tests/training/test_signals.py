"""Long commands stop gracefully on SIGINT and SIGTERM however they were started: `train` begun in
the background as a script does it (SIGINT ignored) finishes its batch, records the run as
cancelled and exits 128 + the signal; a second signal stops it at once (stmgt.training.stopping)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stmgt.paths import CHECKOUT
from stmgt.cli import main
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run

ROOT = CHECKOUT
TINY = {"model": {"hidden_dim": 8, "num_blocks": 1, "heads": 2, "num_mixtures": 2},
        "train": {"compile": False, "batch_size": 4}}
EPOCHS = 500
BATCH_S = 1.0
# `python -m stmgt` with every batch taking BATCH_S more: a signal sent as a batch begins lands inside it.
SLOW_TRAIN = f"""
import sys, time
from stmgt.cli import main
from stmgt.training.trainer import Trainer
step = Trainer.step
Trainer.step = lambda self, batch: (time.sleep({BATCH_S}), step(self, batch))[1]
sys.exit(main(sys.argv[1:]))
"""


def background_train(tmp_path, epoch: int = 2) -> tuple[subprocess.Popen, Path]:
    """`train` as `nohup … &` in a script starts it: SIGINT ignored. Returns inside the second batch
    of `epoch` (from the second on, the run has a model), the process still training."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_TRAIN, "train", "--data", "sim:weeks=1", "--config", str(config),
         "--epochs", str(EPOCHS), "--max-batches", "3", "--device", "cpu", "--no-evaluate", "--progress-json",
         "--out", str(run_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    for line in proc.stdout:
        record = json.loads(line)
        if (record["event"], record.get("epoch"), record.get("batch")) == ("batch", epoch, 1):
            time.sleep(BATCH_S / 3)                 # past the end of batch 1, into batch 2
            return proc, run_dir
    proc.wait()
    pytest.fail(f"training ended early: {proc.stderr.read()}")


def events(proc) -> list[tuple]:
    """The progress events still to come, to the end of the process."""
    return [(r["event"], r.get("epoch"), r.get("batch")) for r in map(json.loads, proc.stdout)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_background_train_stops_after_the_batch(tmp_path, sig):
    proc, run_dir = background_train(tmp_path)
    proc.send_signal(sig)
    assert events(proc) == [("batch", 2, 2), ("trained", None, None)]     # the batch in progress, no other
    code, err = proc.wait(timeout=60), proc.stderr.read()
    assert code == 128 + sig, err
    assert f"{sig.name}: stopping after the current batch; send it again to stop at once" in err
    assert err.strip().splitlines()[-1] == (f"error: stopped by {sig.name} after the current batch; the run is marked "
                                            f"cancelled and `train --resume {run_dir}` carries it on")
    run = Run(run_dir)
    assert run.status.state == "cancelled" and run.history().epoch.tolist() == [1]
    assert Run.open(run_dir).load().meta["epoch"] == 1 and (run_dir / "training_state.pt").is_file()


@pytest.mark.slow
def test_a_train_stopped_in_its_first_epoch_keeps_nothing(tmp_path):
    proc, run_dir = background_train(tmp_path, epoch=1)
    proc.send_signal(signal.SIGTERM)
    code, err = proc.wait(timeout=60), proc.stderr.read()
    assert code == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "error: stopped by SIGTERM before the first epoch ended; no run was kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json"]      # no run folder, no lock file


@pytest.mark.slow
def test_a_second_signal_stops_at_once(tmp_path):
    proc, run_dir = background_train(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert any(line.startswith("SIGTERM: stopping after the current batch") for line in proc.stderr)
    proc.send_signal(signal.SIGTERM)                   # the batch is still sleeping
    assert events(proc) == []                          # it never ends
    code, err = proc.wait(timeout=60), proc.stderr.read()
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "error: stopped at once by a second SIGTERM"
    status = Run(run_dir).status
    assert (status.state, status.reason) == ("cancelled", "stopped at once by a second SIGTERM")


def test_evaluate_stops_on_sigterm_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """The signal arrives while scoring: the cancel reaches `evaluate`, the exit status is 143."""
    seen = {}

    def scoring(run, dataset, spec, device, progress, cancel):
        os.kill(os.getpid(), signal.SIGTERM)
        seen["cancel"] = cancel.is_set()
        return None                                   # what evaluate returns when cancelled

    monkeypatch.setattr("stmgt.cli.evaluate", scoring)
    monkeypatch.setattr("stmgt.cli.load_dataset", lambda spec: None)
    previous = signal.getsignal(signal.SIGTERM)
    assert main(["evaluate", "--run", str(BUNDLED_RUN)]) == 143
    assert seen == {"cancel": True}
    assert capsys.readouterr().err == "error: evaluation stopped by SIGTERM; metrics.json was not written\n"
    assert signal.getsignal(signal.SIGTERM) is previous      # the handlers are put back
