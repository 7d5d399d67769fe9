"""Training throughput, side by side in one process: the specification's own code
(`benchmarks/spec_reference.py`: PyG GATv2Conv, concat heads, eager) against the project's training
step (`stmgt.training.trainer.Trainer.step`, default config: bf16 autocast where the CPU runs bf16 natively, and
fp32 beside it), on the embedded 62-node graph. Contenders take
turns round by round, so a machine that gets busier slows them alike; the ratio is the figure.
On the CPU at batch 32; where a GPU is present also samples/s and seconds per 16,000 training
samples at larger batches. Prints one JSON object.

    .venv/bin/python benchmarks/train_speed.py [--rounds 5] [--steps 2]

`--ddp`: data-parallel scaling instead. The project's step runs under torchrun with 1 and then 2
processes (NCCL on GPUs when there are at least 2, else gloo on the CPU, each process given its
share of the CPU threads) at the same per-process batch; samples/s counts all processes' windows,
and the scaling efficiency is samples/s(2) / (2 × samples/s(1)).

    .venv/bin/python benchmarks/train_speed.py --ddp [--steps 4] [--batch-size 32]

`--whatif`: what the what-if loss costs. The project's compiled CPU step at batch 32 without it and
with it (`whatif_weight` 3: a second pass over 32 windows, each under its observed and an edited
weather), in turns as above.

    .venv/bin/python benchmarks/train_speed.py --whatif [--rounds 5] [--steps 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import torch

from benchmarks.spec_reference import SpecTraining
from stmgt.training import distributed
from stmgt.allocator import reuse_freed_memory
from stmgt.data.dataset import split_anchors
from stmgt.data.simulate import simulate
from stmgt.model import STMGTConfig
from stmgt.training.trainer import TrainConfig, Trainer, bf16_native, device_name

SAMPLES = 16_000


def shuffled_batches(trainer: Trainer):
    """Training batches epoch after epoch, for as long as the benchmark asks."""
    for epoch in itertools.count(1):
        yield from trainer.windows.iterate(trainer.epoch_anchors(epoch), trainer.config.batch_size)


def project_step(data, device, batch_size, compile=False, bf16=None, whatif_weight=0.0, **model):
    """The project's step on fresh batches of the training split (bf16 None: the default, on where
    the hardware has it)."""
    trainer = Trainer(data, STMGTConfig(**model), TrainConfig(device=str(device), batch_size=batch_size,
                                                               compile=compile, bf16=bf16,
                                                               whatif_weight=whatif_weight))
    batches = shuffled_batches(trainer)
    return lambda: trainer.step(next(batches))


def spec_step(data, device, batch_size):
    """The specification's loop body on the same kind of batches (its input has no mask channel)."""
    trainer = Trainer(data, STMGTConfig(), TrainConfig(device=str(device), batch_size=batch_size))
    spec = SpecTraining(device)
    edge_index = data.graph.edge_index.to(device)
    batches = shuffled_batches(trainer)

    def step():
        b = next(batches)
        y = trainer.scaler.scale_speed(torch.nan_to_num(b.y))
        return spec.step(b.x.unsqueeze(-1), y, edge_index, b.weather)
    return step


def interleaved(contenders: dict, rounds: int, steps: int, device) -> dict:
    """Median seconds per step of each contender, timed in turns after one warm-up step each."""
    times = {name: [] for name in contenders}
    for step in contenders.values():
        step()
    for _ in range(rounds):
        for name, step in contenders.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def ddp_worker(args) -> None:
    """One torchrun process: time `args.steps` steps after a warm-up one; rank 0 prints samples/s."""
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("WORLD_SIZE", "1"))))
    with distributed.process_group(device) as device:
        step = project_step(simulate(), device, args.batch_size)
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.steps
        distributed.any_rank(False)    # all ranks done before rank 0 reports
        if distributed.is_main():
            print(json.dumps({"processes": distributed.world_size(), "threads_per_process": torch.get_num_threads(),
                              "seconds_per_step": seconds,
                              "samples_per_s": args.batch_size * distributed.world_size() / seconds}))


def ddp_scaling(args) -> dict:
    """torchrun with 1 and 2 processes on the devices there are."""
    device = "cuda" if torch.cuda.device_count() >= 2 else "cpu"
    gpus = f", {torch.cuda.device_count()} × {torch.cuda.get_device_name()}" if device == "cuda" else ""
    result = {"benchmark": "train_speed --ddp", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{device_name(torch.device('cpu'))}, {os.cpu_count()} CPUs{gpus}",
              "torch": torch.__version__, "device": device, "backend": "nccl" if device == "cuda" else "gloo",
              "per_process_batch_size": args.batch_size, "steps": args.steps, "runs": []}
    for processes in (1, 2):
        out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              f"--nproc-per-node={processes}", __file__, "--ddp-worker", "--device", device,
                              "--steps", str(args.steps), "--batch-size", str(args.batch_size)],
                             capture_output=True, text=True, check=True)
        result["runs"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    one, two = (r["samples_per_s"] for r in result["runs"])
    result["scaling_efficiency"] = two / (2 * one)
    return result


def whatif_cost(data, rounds: int, steps: int) -> dict:
    """Seconds per compiled CPU step at batch 32 without and with the what-if loss."""
    cpu = torch.device("cpu")
    contenders = {"without_whatif_loss": project_step(data, cpu, 32, compile=True),
                  "with_whatif_loss": project_step(data, cpu, 32, compile=True, whatif_weight=3.0)}
    seconds = interleaved(contenders, rounds, steps, cpu)
    return {"benchmark": "train_speed --whatif", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": device_name(torch.device("cpu")),
            "torch": torch.__version__, "batch_size": 32, "whatif_weight": 3.0, "seconds_per_step": seconds,
            "cost_with_loss": seconds["with_whatif_loss"] / seconds["without_whatif_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddp", action="store_true", help="data-parallel scaling, 1 against 2 processes")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whatif", action="store_true", help="the what-if loss's cost: steps without and with it")
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help="per-process batch in --ddp mode")
    parser.add_argument("--rounds", type=int, default=5, help="turns per contender (median taken)")
    parser.add_argument("--steps", type=int, default=2, help="optimiser steps per turn on the CPU")
    parser.add_argument("--gpu-steps", type=int, default=20, help="optimiser steps per turn on a GPU")
    parser.add_argument("--gpu-batches", default="32,128,256,512", help="GPU batch sizes to try")
    args = parser.parse_args()
    reuse_freed_memory()
    if args.ddp_worker:
        ddp_worker(args)
        return
    if args.ddp:
        print(json.dumps(ddp_scaling(args), indent=2))
        return
    data = simulate()
    if args.whatif:
        print(json.dumps(whatif_cost(data, args.rounds, args.steps), indent=2))
        return
    cpu = torch.device("cpu")
    result = {"benchmark": "train_speed", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": device_name(cpu),
              "torch": torch.__version__, "nodes": data.num_nodes,
              "training_windows": int(len(split_anchors(data)["train"])), "cpu_batch_size": 32,
              "cpu_bf16_native": bf16_native(torch.device("cpu"))}
    contenders = {
        "spec_code": spec_step(data, cpu, 32),
        "stmgt_default_compiled": project_step(data, cpu, 32, compile=True),
        "stmgt_default_compiled_fp32": project_step(data, cpu, 32, compile=True, bf16=False),
        "stmgt_default_eager": project_step(data, cpu, 32),
        "stmgt_concat_compiled": project_step(data, cpu, 32, compile=True, gat_layout="concat"),
        "stmgt_default_eager_pyg_path": project_step(data, cpu, 32, gat_path="pyg"),
    }
    start = time.perf_counter()
    contenders["stmgt_default_compiled"]()
    result["cpu_compile_seconds"] = time.perf_counter() - start
    seconds = interleaved(contenders, args.rounds, args.steps, cpu)
    result["cpu_samples_per_s"] = {k: 32 / v for k, v in seconds.items()}
    result["cpu_vs_spec_code"] = {k: seconds["spec_code"] / v for k, v in seconds.items()}

    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        result["gpu"] = torch.cuda.get_device_name(gpu)
        contenders = {"spec_code@32": spec_step(data, gpu, 32)}
        for b in (int(v) for v in args.gpu_batches.split(",")):
            contenders[f"stmgt_default@{b}"] = project_step(data, gpu, b)
        seconds = interleaved(contenders, args.rounds, args.gpu_steps, gpu)
        sizes = {k: int(k.split("@")[1]) for k in seconds}
        result["gpu_samples_per_s"] = {k: sizes[k] / v for k, v in seconds.items()}
        result["gpu_seconds_per_16k_samples"] = {k: SAMPLES / sizes[k] * v for k, v in seconds.items()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
