"""Data-parallel training on torchrun: the process group from torchrun's environment, the
training windows split between ranks, the sums and decisions every rank must share.

Without a process group (a plain `python -m stmgt train`, the dashboard's thread) every function
here is the single-process identity: rank 0 of 1, nothing reduced.

Batch semantics: `TrainConfig.batch_size` is per rank, so the global batch of one optimiser step
is batch_size × ranks; the learning rate is not rescaled. DistributedDataParallel averages the
ranks' gradients, so 2 ranks at batch 16 take the step 1 process at batch 32 would."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from stmgt.errors import DataError

T = TypeVar("T")
_control = None    # a gloo group for small CPU-side decisions when the training group is NCCL


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 alone writes the run folder and prints."""
    return rank() == 0


def launched() -> bool:
    """True in a process torchrun started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group (env:// rendezvous: MASTER_ADDR/PORT, RANK, WORLD_SIZE,
    LOCAL_RANK) with NCCL on GPUs, gloo on CPUs; yield the device this rank trains on, and leave
    the group on the way out. Outside torchrun: yields `device`, does nothing else."""
    global _control
    if not launched() or active():
        yield device
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        device = torch.device("cuda", torch.cuda.current_device())
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    _control = dist.new_group(backend="gloo") if device.type == "cuda" else None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _stopped_by_launcher)
    failed = True
    try:
        yield device
        failed = False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _control = None
        _leave(failed)


LEAVE_TIMEOUT_S = 10.0


def _leave(failed: bool) -> None:
    """Destroy the process group. After a failure on this rank its peers may be blocked in a
    collective waiting for it, and destroying would wait for them in turn (a deadlock CI met):
    then give it LEAVE_TIMEOUT_S and go on. The process ends soon after, which closes its
    connections and fails the peers' collective. (Not destroying at all is no way out: the
    group's destructor aborts the process at exit.) On success the ranks first meet at a barrier, so
    none closes its connections while a peer may still be sending (a rank once aborted in gloo's
    teardown in CI, "terminate called without an active exception")."""
    if not failed:
        dist.barrier()      # no rank tears its connections down while a peer still sends on them
        dist.destroy_process_group()
        return
    leaving = threading.Thread(target=dist.destroy_process_group, daemon=True)
    leaving.start()
    leaving.join(LEAVE_TIMEOUT_S)


def _stopped_by_launcher(signum, frame):
    """torchrun stops the other ranks with SIGTERM when one fails: unwind, so rank 0 records why."""
    raise DataError("training stopped: another training process failed or the launcher was stopped")


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as the training step calls it: in DistributedDataParallel when there are ranks."""
    if not active():
        return model
    return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None)


def train_sampler(num_windows: int, seed: int) -> DistributedSampler:
    """Positions of this rank's training windows for an epoch (`set_epoch` first): one shuffle
    shared by all ranks, rank r taking every r-th of it, the tail that does not divide dropped."""
    return DistributedSampler(range(num_windows), num_replicas=world_size(), rank=rank(), shuffle=True,
                              seed=seed, drop_last=True)


def shard(anchors: np.ndarray) -> np.ndarray:
    """This rank's share of evaluation windows: every window exactly once across ranks (no padding,
    which would count some twice in a reduced mean)."""
    return anchors[rank()::world_size()]


def generator(*key: int) -> np.random.Generator:
    """The random stream `key` of this rank: every rank draws its own, and rank 0's is a single
    process's `np.random.default_rng(key)`, so one process reproduces its earlier runs."""
    return np.random.default_rng([*key, rank()] if rank() else list(key))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks, in place."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is True on any: a decision to stop must be the same
    everywhere, or the ranks still stepping wait for the others forever. A CPU-side exchange."""
    if not active():
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control)
    return bool(value.item())


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and give every rank its result, or raise its DataError on every
    rank: a bad --out ends each process with the same one-line message, not a hang."""
    if not active():
        return fn()
    box: list = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except DataError as exc:
            box[0] = ("error", (exc.problem, exc.where))
    dist.broadcast_object_list(box, src=0, group=_control)
    kind, value = box[0]
    if kind == "error":
        raise DataError(*value)
    return value


def describe(batch_size: int) -> dict:
    """What the run config records about the ranks that trained it."""
    backend = dist.get_backend() if active() else None
    return {"ranks": world_size(), "backend": backend, "per_rank_batch_size": batch_size,
            "global_batch_size": batch_size * world_size()}
