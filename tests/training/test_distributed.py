"""Data-parallel training with 2 CPU processes on gloo: the ranks step in lockstep, agree on
validation and cancel, write one run between them, and learn what one process with the same
global batch learns."""

import os
import socket
import subprocess
import sys
import threading

import pytest
import torch
import torch.multiprocessing as mp

from stmgt.training import distributed
from stmgt.training import trainer as train
from stmgt.storage.checkpoint import load_checkpoint
from stmgt.data.simulate import simulate
from stmgt.model import STMGTConfig
from stmgt.storage.runs import Run
from stmgt.training.trainer import TrainConfig, Trainer, fit

# No dropout or DropEdge: the ranks draw their own masks, so with them on a 2-process run could
# only match a 1-process one in distribution, not number for number.
SMALL = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3, dropout=0.0, drop_edge=0.0)
SPEC = {"kind": "simulator", "seed": 2, "weeks": 2}
PER_RANK_BATCH, BATCHES = 8, 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(batch_size: int, **changes) -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=batch_size, max_batches=BATCHES, device="cpu", compile=False,
                       calibrate=False, **changes)


def _as_rank(rank: int, port: int) -> None:
    """The environment torchrun gives a worker."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")


def _train_two_ways(rank: int, port: int, data, run_dir, out) -> None:
    """Rank `rank` of 2: a run recording the weights after every step, then one that rank 1 alone
    is asked to cancel in epoch 2."""
    _as_rank(rank, port)
    with distributed.process_group(torch.device("cpu")):
        weights = []
        trainer = Trainer(data, SMALL, _config(PER_RANK_BATCH), run_dir, SPEC, on_batch=lambda p: weights.append(
            torch.nn.utils.parameters_to_vector(trainer.model.parameters()).detach().clone()))
        result = trainer.fit()
        cancel = threading.Event()
        seen = []

        def on_batch(p):
            seen.append((p.epoch, p.batch))
            if rank == 1 and (p.epoch, p.batch) == (2, 1):
                cancel.set()

        cancelled = fit(data, SMALL, _config(PER_RANK_BATCH), on_batch=on_batch, cancel=cancel)
    torch.save({"weights": weights, "history": result.history.to_dict("list"), "stopped": cancelled.stopped,
                "seen": seen}, out / f"rank{rank}.pt")


def _train_with_the_whatif_loss(rank: int, port: int, data, out) -> None:
    """Rank `rank` of 2 training as `_train_two_ways` does, with the what-if loss added and the
    best epoch chosen on the what-if error."""
    _as_rank(rank, port)
    measured = []
    measure = train.fidelity.measure
    train.fidelity.measure = lambda *a, **k: measured.append(rank) or measure(*a, **k)
    with distributed.process_group(torch.device("cpu")):
        weights, pair_losses = [], []
        trainer = Trainer(data, SMALL, _config(PER_RANK_BATCH, whatif_weight=1.0, select="whatif"),
                          on_batch=lambda p: weights.append(
                              torch.nn.utils.parameters_to_vector(trainer.model.parameters()).detach().clone()))
        whatif_loss = trainer.whatif_loss
        trainer.whatif_loss = lambda: pair_losses.append(whatif_loss()) or pair_losses[-1]
        result = trainer.fit()
    torch.save({"weights": weights, "pair_losses": [loss.item() for loss in pair_losses], "measured": measured,
                "history": result.history.to_dict("list")}, out / f"whatif{rank}.pt")


@pytest.fixture(scope="module")
def data():
    return simulate(weeks=2, seed=2)


@pytest.fixture(scope="module")
def two_ranks(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_train_two_ways, args=(_free_port(), data, out / "run", out), nprocs=2, join=True)
    return out, [torch.load(out / f"rank{r}.pt") for r in range(2)]


def test_ranks_hold_identical_weights_after_every_step(two_ranks):
    _, (a, b) = two_ranks
    assert len(a["weights"]) == len(b["weights"]) == 2 * BATCHES
    for step, (wa, wb) in enumerate(zip(a["weights"], b["weights"])):
        assert torch.equal(wa, wb), f"ranks differ after step {step + 1}"
    assert not torch.equal(a["weights"][0], a["weights"][-1])      # they did train


def test_one_run_is_written_by_rank_0(two_ranks, data):
    out, (a, b) = two_ranks
    run = Run(out / "run")
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint.pt", "config.json", "history.csv"]
    assert run.config["distributed"] == {"ranks": 2, "backend": "gloo", "per_rank_batch_size": PER_RANK_BATCH,
                                         "global_batch_size": 2 * PER_RANK_BATCH}
    assert list(run.history().epoch) == [1, 2]
    load_checkpoint(run.path / "checkpoint.pt", data.graph)
    assert a["history"]["val_mae"] == b["history"]["val_mae"]       # reduced: early stopping agrees


def test_a_cancel_on_one_rank_stops_both_at_the_same_batch(two_ranks):
    _, (a, b) = two_ranks
    assert a["stopped"] == b["stopped"] == "cancelled"
    assert a["seen"] == b["seen"] and a["seen"][-1] == (2, 1)


def test_validation_matches_one_process_with_the_same_global_batch(two_ranks, data):
    _, (a, _) = two_ranks
    single = fit(data, SMALL, _config(2 * PER_RANK_BATCH))
    torch.testing.assert_close(torch.tensor(a["history"]["val_mae"]), torch.tensor(list(single.history.val_mae)),
                               rtol=1e-3, atol=0)


def test_the_whatif_loss_and_check_keep_the_ranks_in_lockstep(two_ranks, data):
    out, (plain, _) = two_ranks
    mp.spawn(_train_with_the_whatif_loss, args=(_free_port(), data, out), nprocs=2, join=True)
    a, b = (torch.load(out / f"whatif{r}.pt") for r in range(2))
    assert len(a["weights"]) == len(b["weights"]) == 2 * BATCHES
    for step, (wa, wb) in enumerate(zip(a["weights"], b["weights"])):
        assert torch.equal(wa, wb), f"ranks differ after step {step + 1}"
    assert not torch.equal(a["weights"][0], plain["weights"][0])    # the pairs' gradient reached the step
    assert all(la != lb for la, lb in zip(a["pair_losses"], b["pair_losses"]))   # each rank drew its own
    assert (a["measured"], b["measured"]) == ([0, 0], [])                 # rank 0 checks the what-ifs
    assert a["history"]["val_whatif_error"] == b["history"]["val_whatif_error"]   # and every rank gets its score


@pytest.mark.slow
def test_torchrun_cli_writes_one_loadable_run(tmp_path, data):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
         "-m", "stmgt", "train", "--data", "sim:seed=2,weeks=2", "--out", str(out), "--epochs", "1",
         "--batch-size", "8", "--max-batches", "2", "--device", "cpu", "--no-evaluate"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("max epochs; best epoch 1") == 1               # rank 0 alone prints
    run = Run.open(out)
    assert run.status.state == "complete" and run.config["distributed"]["ranks"] == 2
    run.load(data.graph)


def _fail_on_rank_1(rank: int, port: int, data, out) -> None:
    _as_rank(rank, port)

    def on_batch(p):
        if rank == 1 and p.batch == 2:
            raise RuntimeError("rank 1 broke")

    with distributed.process_group(torch.device("cpu")):
        try:
            fit(data, SMALL, _config(PER_RANK_BATCH), on_batch=on_batch)
        except BaseException as exc:
            (out / f"rank{rank}.txt").write_text(f"{type(exc).__name__}: {exc}")
            raise


def test_an_error_on_one_rank_ends_every_rank(data, tmp_path):
    # mp.spawn reports whichever rank it hears from first: rank 1's error, or rank 0's lost connection
    with pytest.raises(mp.ProcessRaisedException):
        mp.spawn(_fail_on_rank_1, args=(_free_port(), data, tmp_path), nprocs=2, join=True)
    assert (tmp_path / "rank1.txt").read_text() == "RuntimeError: rank 1 broke"
    assert (tmp_path / "rank0.txt").is_file()       # rank 0 unwound (the CLI marks the run failed there)


def _train_into(rank: int, port: int, out, results) -> None:
    from stmgt.cli import main
    _as_rank(rank, port)
    (results / f"rank{rank}.txt").write_text(str(main(["train", "--data", "sim:weeks=1", "--out", str(out),
                                                       "--device", "cpu"])))


def test_a_refused_out_ends_every_rank_with_the_message(tmp_path, capfd):
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    mp.spawn(_train_into, args=(_free_port(), users, tmp_path), nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)] == ["2", "2"]
    assert capfd.readouterr().err.count("files this tool did not write") == 2
    assert sorted(p.name for p in users.iterdir()) == ["notes.txt"]
