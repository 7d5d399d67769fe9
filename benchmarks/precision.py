"""Does bf16 training cost accuracy? Short runs of the default model on the embedded data in fp32
and under bf16 autocast, on the same seeds (same initial weights and batch order), compared with the
seed-to-seed spread of fp32 itself. bf16 passes when, on every seed, its best validation MAE is
within that spread of fp32's. Also reports each run's training throughput. Prints one JSON object.

    .venv/bin/python benchmarks/precision.py [--seeds 0 1] [--epochs 2] [--batches 100]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone

import torch

from stmgt.allocator import reuse_freed_memory
from stmgt.data.simulate import simulate
from stmgt.model import STMGTConfig
from stmgt.training.trainer import TrainConfig, bf16_native, device_name, fit, resolve_device


def short_run(data, device, seed: int, bf16: bool, epochs: int, batches: int) -> dict:
    config = TrainConfig(device=device.type, seed=seed, bf16=bf16, epochs=epochs, max_batches=batches,
                         patience=epochs, calibrate=False)
    start = time.perf_counter()
    result = fit(data, STMGTConfig(), config)
    seconds = time.perf_counter() - start
    return {"seed": seed, "precision": "bf16" if bf16 else "fp32", "best_val_mae": result.best_val_mae,
            "val_mae_per_epoch": result.history["val_mae"].round(4).tolist(),
            "train_seconds": round(float(result.history["seconds"].sum()), 1), "total_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=100, help="training batches of 32 per epoch")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if len(args.seeds) < 2:
        parser.error("give at least two seeds: the fp32 spread between them is the noise bf16 is judged against")
    reuse_freed_memory()
    device = resolve_device(args.device)
    data = simulate()
    runs = [short_run(data, device, seed, bf16, args.epochs, args.batches)
            for seed in args.seeds for bf16 in (False, True)]
    fp32 = {r["seed"]: r["best_val_mae"] for r in runs if r["precision"] == "fp32"}
    bf16 = {r["seed"]: r["best_val_mae"] for r in runs if r["precision"] == "bf16"}
    spread = max(fp32.values()) - min(fp32.values())
    gaps = {seed: bf16[seed] - fp32[seed] for seed in args.seeds}
    print(json.dumps({
        "benchmark": "precision", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": device_name(device),
        "torch": torch.__version__, "bf16_native": bf16_native(device),
        "short_run": {"epochs": args.epochs, "batches_per_epoch": args.batches, "batch_size": 32},
        "runs": runs, "fp32_seed_spread": spread, "bf16_minus_fp32": gaps,
        "bf16_within_noise": all(abs(g) <= spread for g in gaps.values()),
    }, indent=2))


if __name__ == "__main__":
    main()
