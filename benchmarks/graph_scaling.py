"""How STMGT's cost grows with the road graph: the embedded 62-node graph and generated road-like
graphs of 200, 1,000 and 5,000 nodes (`stmgt.data.road_like`: a jittered grid, each node linked
both ways to its grid and some diagonal neighbours: in-degrees 1–8), each GATv2 path side by side
(`dense` where its N×N attention fits the memory cap, `table`, `pyg`). Per case, in a fresh subprocess so its peak
memory is its own:

* a training step (default config, eager fp32 on the CPU: forward + mixture loss + backward +
  AdamW) at batch 32 on the embedded graph, smaller batches on the bigger ones (`BATCHES`; the
  JSON says which), as µs per
  node-window (step time / (batch × nodes)) and its ratio to the 62-node step on the path `auto`
  takes there;
* a batch-1 forecast (no diagnostics) with the five quantiles, in ms;
* peak resident memory (VmHWM) after the forecasts and after the training steps, beside
  `STMGTConfig.training_bytes`' estimate;
* without `--quick`, the 5,000-node graph at batch 8 on the table path (issue 29's memory figure),
  its blocks' activations kept and recomputed in the backward pass (`STMGT.recompute_blocks`).

`auto` is the path `stmgt.model.spatial.choose_path` picks for the graph's eager training step (under
`--compiled`, for the compiled one). Beside them, the GATv2
layer alone (forward + backward with DropEdge, the default config's sizes, eager fp32) on the dense
and the table path, taking turns in one process so a busier machine slows both alike, against
nodes / slots (slots = max in-degree + 1). Prints one JSON object.

    .venv/bin/python benchmarks/graph_scaling.py [--quick] [--repeats 3]

`--quick`: sizes up to 1,000 nodes and 2 repeats (a few minutes on a quiet 2-core machine).
`--layer`: the GATv2 layer's turns only (after the forecasts by head layout: the batch-1 forecast of
the default `mean` heads and of the specification's `concat` heads on the path `auto` picks, in turns);
`--forecast`: those forecasts only.
`--compiled`: training steps as `fit` runs them (compiled, bf16 autocast where the CPU has it) on the
dense and the table path in turns, at 62 and 200 nodes: what `choose_path`'s `DENSE_SLOTS_RATIO` is
read from.
`--inference`: passes without gradients over a validation-sized batch (about 8,000 node-windows) per
graph size, in turns: the dense path (where its N×N attention fits), and the table path in slices of
the memory cap (`EDGE_SLICE_BYTES`) and in cache-sized slices (`CACHED_SLICE_BYTES`, what `auto`
takes on a CPU without gradients), each in parts of target-node rows (`stmgt.model.row_parts`).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from stmgt.data.graph import RoadGraph
from stmgt.data.road_like import road_like_edges
from stmgt.forecasting.forecast import QUANTILE_LEVELS
from stmgt.allocator import reuse_freed_memory
from stmgt.model import STMGT, STMGTConfig, spatial
from stmgt.model.mixture import GaussianMixture
from stmgt.model.spatial import GAT_PATHS, StepGraph, choose_path, dense_gatv2, table_gatv2
from stmgt.training.trainer import TrainConfig, bf16_native, compiled_forward, device_name, mixture_loss

SIZES = (62, 200, 1000, 5000)
QUICK_SIZES = (62, 200, 1000)
# Batch per graph size: 32 on the embedded graph (the other benchmarks' batch), then about 2,000
# node-windows a step, as there, so every path fits a shared machine's memory.
BATCHES = {62: 32, 200: 8, 1000: 2, 5000: 1}
# Passes without gradients: validation's batch of 128 windows on the embedded graph, the same number
# of node-windows on the bigger ones.
INFERENCE_BATCHES = {62: 128, 200: 40, 1000: 8, 5000: 2}
# The dense path runs only where its [batch·steps, heads, N, N] attention stays under this many bytes.
DENSE_MATRIX_CAP = 2 * 1024 ** 3


def dense_bytes(nodes: int, batch: int, config: STMGTConfig) -> int:
    """The size of the dense path's [batch·steps, heads, N, N] attention in fp32."""
    return 4 * batch * config.seq_len * config.heads * nodes ** 2


def graph_edges(nodes: int) -> torch.Tensor:
    """The embedded graph's edges at 62 nodes, else a generated road-like graph's."""
    return RoadGraph.hcmc().edge_index if nodes == 62 else road_like_edges(nodes)


def inputs(batch: int, nodes: int, steps: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(batch, steps, nodes, generator=g),
                mask=torch.rand(batch, steps, nodes, generator=g) > 0.05,
                weather=torch.randn(batch, steps, 3, generator=g),
                time_of_day=torch.rand(batch, steps, generator=g),
                day_of_week=torch.randint(0, 7, (batch, steps), generator=g),
                past_weather=torch.randn(batch, steps, 3, generator=g))


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh with the process's own memory
    (ru_maxrss would carry the parent's peak over the fork and exec of a case's subprocess)."""
    status = Path("/proc/self/status")
    if status.is_file():
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024                                  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # kB on Linux


def forecast(model: STMGT, edge_index: torch.Tensor, inputs: dict) -> torch.Tensor:
    """A forecast as the dashboard makes one: the mixture and its five quantiles."""
    return GaussianMixture(*model(edge_index=edge_index, **inputs)).quantiles(QUANTILE_LEVELS)


def training_step(model: STMGT, forward, edge_index: torch.Tensor, nodes: int, batch: int, bf16: bool = False):
    """One optimiser step of `model` run through `forward` (the model, or it compiled) on fixed random
    windows: forward, mixture loss, backward, AdamW; as a function to call once per step."""
    config = model.config
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train = inputs(batch, nodes, config.seq_len, seed=1)
    target, target_mask = torch.randn(batch, config.horizon, nodes), torch.ones(batch, config.horizon, nodes).bool()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            params = forward(edge_index=edge_index, **train)
        loss = mixture_loss(GaussianMixture(*params), target, target_mask, TrainConfig())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return step


def run_case(nodes: int, path: str, batch: int, repeats: int, recompute: bool = False) -> dict:
    """One graph size on one path, in this process: forecast first, then training steps (with each
    block recomputed in the backward pass if `recompute`, as the trainer does where a step would
    not fit the machine's memory otherwise)."""
    torch.manual_seed(0)
    edge_index = graph_edges(nodes)
    config = STMGTConfig(gat_path=path)
    model = STMGT(config)
    model.recompute_blocks = recompute
    estimate = config.training_bytes(batch, nodes, edge_index.shape[1], path, recompute)
    result = {"rss_before_mb": peak_rss_mb(), "recompute_blocks": recompute, "estimated_training_mb": estimate / 2**20}
    model.eval()
    one = inputs(1, nodes, config.seq_len)
    forecast_ms = []
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            forecast(model, edge_index, one)
            if i:                                            # the first call builds the graph's tables
                forecast_ms.append(1000 * (time.perf_counter() - start))
    result.update(forecast_ms=statistics.median(forecast_ms), peak_rss_after_forecast_mb=peak_rss_mb())
    model.train()
    train_step = training_step(model, model, edge_index, nodes, batch)
    step_s = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        train_step()
        if i:                                                # the first step warms the allocator
            step_s.append(time.perf_counter() - start)
    step = statistics.median(step_s)
    result.update(batch=batch, train_step_s=step, train_us_per_node_window=1e6 * step / (batch * nodes),
                  peak_rss_after_training_mb=peak_rss_mb())
    return result


def layer_in_turns(nodes: int, batch: int, repeats: int, config: STMGTConfig) -> dict:
    """The GATv2 layer's training pass (forward + backward, DropEdge on) on the dense and the table
    path, in turns; medians in ms and dense / table (> 1: the table is faster)."""
    torch.manual_seed(0)
    graph = StepGraph(graph_edges(nodes), nodes)
    gat = STMGT(config).blocks[0].spatial.gat.train()
    x = torch.randn(batch * config.seq_len, nodes, config.hidden_dim, requires_grad=True)
    keep = torch.rand(batch * config.seq_len, graph.num_real_edges) >= config.drop_edge
    times = {"dense": [], "table": []}
    for i in range(repeats + 1):
        for name, layer in (("dense", dense_gatv2), ("table", table_gatv2)):
            start = time.perf_counter()
            layer(gat, x, graph, keep)[0].sum().backward()
            if i:
                times[name].append(1000 * (time.perf_counter() - start))
    dense, table = statistics.median(times["dense"]), statistics.median(times["table"])
    return {"nodes": nodes, "slots": graph.slots, "nodes_per_slot": nodes / graph.slots, "batch": batch,
            "dense_ms": dense, "table_ms": table, "dense_over_table": dense / table,
            "auto": choose_path(graph, torch.device("cpu"))}


def forecast_in_turns(nodes: int, repeats: int) -> dict:
    """The batch-1 forecast with the five quantiles on the path `auto` picks, for each head layout
    (the default `mean` and the specification's `concat`), taking turns in one process; medians in ms."""
    edge_index = graph_edges(nodes)
    one = inputs(1, nodes, STMGTConfig().seq_len)
    models = {}
    for layout in ("mean", "concat"):
        torch.manual_seed(0)
        models[layout] = STMGT(STMGTConfig(gat_layout=layout)).eval()
    times = {layout: [] for layout in models}
    with torch.no_grad():
        for i in range(repeats + 1):
            for layout, model in models.items():
                start = time.perf_counter()
                forecast(model, edge_index, one)
                if i:                                        # the first call builds the graph's tables
                    times[layout].append(1000 * (time.perf_counter() - start))
    return {"nodes": nodes, "auto": choose_path(StepGraph(edge_index, nodes), torch.device("cpu"), taped=False),
            **{f"{layout}_forecast_ms": statistics.median(t) for layout, t in times.items()}}


def inference_in_turns(nodes: int, batch: int, repeats: int) -> dict:
    """A pass without gradients over `batch` windows (the mixture and its quantiles, as validation and
    evaluation run) on the dense path where its N×N attention fits, and on the table path in slices of
    the memory cap and in cache-sized ones (`auto`), taking turns in one process; medians in ms, and
    each case's time over the cache-sized slices'."""
    edge_index = graph_edges(nodes)
    config = STMGTConfig()
    windows = inputs(batch, nodes, config.seq_len)
    cases = {"table_cache_slices": ("table", spatial.CACHED_SLICE_BYTES),
             "table_memory_cap_slices": ("table", spatial.EDGE_SLICE_BYTES)}
    if dense_bytes(nodes, batch, config) <= DENSE_MATRIX_CAP:
        cases["dense"] = ("dense", spatial.CACHED_SLICE_BYTES)
    models = {}
    for path in {path for path, _ in cases.values()}:
        torch.manual_seed(0)                                 # the same weights on every path
        models[path] = STMGT(STMGTConfig(gat_path=path)).eval()
    cached, times = spatial.CACHED_SLICE_BYTES, {name: [] for name in cases}
    try:
        with torch.no_grad():
            for i in range(repeats + 1):
                for name, (path, slice_bytes) in cases.items():
                    spatial.CACHED_SLICE_BYTES = slice_bytes
                    start = time.perf_counter()
                    forecast(models[path], edge_index, windows)
                    if i:
                        times[name].append(1000 * (time.perf_counter() - start))
    finally:
        spatial.CACHED_SLICE_BYTES = cached
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"nodes": nodes, "batch": batch, **{f"{name}_ms": ms for name, ms in medians.items()},
            **{f"{name}_over_cache_slices": ms / medians["table_cache_slices"] for name, ms in medians.items()
               if name != "table_cache_slices"}}


def compiled_steps_in_turns(nodes: int, batch: int, repeats: int) -> dict:
    """Training steps as `fit` runs them on this CPU (compiled as the trainer compiles, bf16 autocast
    where the CPU multiplies bf16 natively) on the dense and the table path, in turns after each has
    compiled; medians in s and dense / table (> 1: the table is faster)."""
    edge_index = graph_edges(nodes)
    bf16 = bf16_native(torch.device("cpu"))
    steps, times = {}, {"dense": [], "table": []}
    for path in times:
        torch.manual_seed(0)
        model = STMGT(STMGTConfig(gat_path=path)).train()
        model.step_graph(edge_index, nodes)                  # built eagerly, as the trainer does
        steps[path] = training_step(model, compiled_forward(model, torch.device("cpu")), edge_index, nodes, batch, bf16)
        steps[path]()                                        # compiles
    for i in range(repeats + 1):
        for path, step in steps.items():
            start = time.perf_counter()
            step()
            if i:
                times[path].append(time.perf_counter() - start)
    dense, table = statistics.median(times["dense"]), statistics.median(times["table"])
    graph = StepGraph(edge_index, nodes)
    return {"nodes": nodes, "batch": batch, "slots": graph.slots, "nodes_per_slot": nodes / graph.slots,
            "bf16": bf16, "dense_step_s": dense, "table_step_s": table, "dense_over_table": dense / table,
            "auto": choose_path(graph, torch.device("cpu"), compiled=True)}


def case_in_subprocess(nodes: int, path: str, batch: int, repeats: int, recompute: bool = False) -> dict:
    command = [sys.executable, "-m", "benchmarks.graph_scaling", "--case", str(nodes), path, str(batch),
               "--repeats", str(repeats)] + (["--recompute"] if recompute else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 1,000 nodes, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 3, quick 2)")
    parser.add_argument("--layer", action="store_true", help="the GATv2 layer's turns only")
    parser.add_argument("--forecast", action="store_true", help="the batch-1 forecast per head layout only")
    parser.add_argument("--inference", action="store_true", help="validation-sized passes without gradients only")
    parser.add_argument("--compiled", action="store_true", help="compiled training steps, dense against table, only")
    parser.add_argument("--case", nargs=3, metavar=("NODES", "PATH", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--recompute", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    reuse_freed_memory()                                     # as the dashboard and the command line run
    if args.case:
        nodes, path, batch = args.case
        print(json.dumps(run_case(int(nodes), path, int(batch), repeats, args.recompute)))
        return
    config = STMGTConfig()
    result = {"benchmark": "graph_scaling", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": device_name(torch.device("cpu")),
              "torch": torch.__version__, "repeats": repeats, "precision": "fp32, eager",
              "model": {k: getattr(config, k) for k in ("hidden_dim", "num_blocks", "heads", "gat_layout")},
              "quantile_levels": list(QUANTILE_LEVELS)}
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.compiled:
        result["compiled_steps"] = [compiled_steps_in_turns(nodes, BATCHES[nodes], repeats) for nodes in (62, 200)]
        print(json.dumps(result, indent=2))
        return
    if args.inference:
        result["inference"] = [inference_in_turns(nodes, INFERENCE_BATCHES[nodes], repeats) for nodes in sizes]
        print(json.dumps(result, indent=2))
        return
    result["forecast_by_layout"] = [forecast_in_turns(nodes, 2 * repeats) for nodes in sizes]
    if args.forecast:
        print(json.dumps(result, indent=2))
        return
    result["gatv2_layer"] = [layer_in_turns(nodes, BATCHES[nodes], 2 * repeats, config) for nodes in sizes
                             if dense_bytes(nodes, BATCHES[nodes], config) <= DENSE_MATRIX_CAP]
    if args.layer:
        print(json.dumps(result, indent=2))
        return
    result["graphs"] = {}
    for nodes in sizes:
        edge_index = graph_edges(nodes)
        graph = StepGraph(edge_index, nodes)
        in_degree = torch.bincount(graph.real_edges[1], minlength=nodes)
        batch = BATCHES[nodes]
        entry = {"nodes": nodes, "edges": graph.num_real_edges, "in_degree_min": int(in_degree.min()),
                 "in_degree_max": int(in_degree.max()), "batch": batch,
                 "auto": choose_path(graph, torch.device("cpu")), "paths": {}}
        for path in GAT_PATHS:
            matrix = dense_bytes(nodes, batch, config)
            if path == "dense" and matrix > DENSE_MATRIX_CAP:
                entry["paths"][path] = {"skipped": f"its N×N attention would take {matrix / 1e9:.0f} GB"}
                continue
            case = case_in_subprocess(nodes, path, batch, repeats)
            entry["paths"][path] = case
            print(f"{nodes} nodes, {path}: {case}", file=sys.stderr, flush=True)
        result["graphs"][str(nodes)] = entry
    first = result["graphs"][str(sizes[0])]
    reference = first["paths"][first["auto"]]["train_us_per_node_window"]
    for entry in result["graphs"].values():
        for case in entry["paths"].values():
            if "train_us_per_node_window" in case:
                case["per_node_window_vs_62_auto"] = case["train_us_per_node_window"] / reference
    if not args.quick:     # issue 29's memory figure: 5,000 nodes at batch 8, as trained with and without recomputing
        result["memory_5000_nodes_batch_8"] = {
            ("recomputed" if flag else "kept"): case_in_subprocess(5000, "table", 8, 1, flag) for flag in (False, True)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
