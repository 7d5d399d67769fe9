"""Training throughput of STMGT (default config, batch 32, the embedded 62-node graph): seconds per
optimiser step on the CPU (the baseline) and, where a GPU is present, on CUDA in fp32 and with the
bf16 autocast that `fit` uses there. Prints one JSON object.

    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py [--steps 20] [--cpu-steps 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from stmgt.data.dataset import Scaler, Windows, split_anchors, split_ranges
from stmgt.data.simulate import simulate
from stmgt.mixture import GaussianMixture
from stmgt.model import STMGT, STMGTConfig
from stmgt.train import TrainConfig, mixture_loss


def seconds_per_step(windows, anchors, edge_index, device, steps, bf16=False, layout="concat") -> float:
    torch.manual_seed(0)
    model = STMGT(STMGTConfig(gat_layout=layout)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [windows.batch(anchors[i * 32:(i + 1) * 32]).to(device) for i in range(steps + 2)]
    edge_index = edge_index.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(batch):
        mask = ~torch.isnan(batch.y)
        y = windows.scaler.scale_speed(torch.nan_to_num(batch.y))
        with autocast:
            params = model(**batch.model_inputs(), edge_index=edge_index)
        loss = mixture_loss(GaussianMixture(*params), y, mask, TrainConfig())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches[:2]:                       # warm-up: allocator, kernels, caches
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches[2:]:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cpu-steps", type=int, default=3)
    args = parser.parse_args()
    data = simulate()
    scaler = Scaler.fit(data, split_ranges(data.num_steps)["train"])
    windows = Windows(data, scaler)
    anchors = split_anchors(data)["train"]
    batches_per_epoch = -(-len(anchors) // 32)
    results = {"benchmark": "train_step", "batch_size": 32, "nodes": data.num_nodes,
               "batches_per_epoch": batches_per_epoch, "torch": torch.__version__,
               "cpu_threads": torch.get_num_threads(), "seconds_per_step": {}}
    cpu = seconds_per_step(windows, anchors, data.graph.edge_index, torch.device("cpu"), args.cpu_steps)
    results["seconds_per_step"]["cpu_fp32 (baseline)"] = cpu
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        results["gpu"] = torch.cuda.get_device_name(gpu)
        for name, bf16, layout in (("cuda_fp32", False, "concat"), ("cuda_bf16", True, "concat"),
                                   ("cuda_bf16_mean_layout", True, "mean")):
            results["seconds_per_step"][name] = seconds_per_step(windows, anchors, data.graph.edge_index, gpu,
                                                                 args.steps, bf16, layout)
    results["seconds_per_epoch"] = {k: v * batches_per_epoch for k, v in results["seconds_per_step"].items()}
    results["speedup_vs_cpu"] = {k: cpu / v for k, v in results["seconds_per_step"].items()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
