"""Small data sets the tests build in tmp_path: a three-node dataset, matrix-format and METR-LA
inputs, and the helpers that write and compare them. Shared by the importer, page and boundary tests."""

import json
import struct

import numpy as np
import pandas as pd

from stmgt.data.dataset import TrafficDataset
from stmgt.data.graph import RoadGraph
from stmgt.model import STMGTConfig
from stmgt.training.trainer import TrainConfig


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def assert_same(a: TrafficDataset, b: TrafficDataset):
    assert a.timestamps.equals(b.timestamps) and str(a.timestamps.tz) == str(b.timestamps.tz)
    np.testing.assert_allclose(a.speed, b.speed, atol=1e-3, equal_nan=True)
    if a.weather is None:
        assert b.weather is None
    else:
        np.testing.assert_allclose(a.weather, b.weather, atol=1e-3)
    pd.testing.assert_frame_equal(a.graph.nodes, b.graph.nodes)
    pd.testing.assert_frame_equal(a.graph.edges, b.graph.edges)


def small_dataset(weather=True):
    nodes = pd.DataFrame({"node_id": ["n1", "n2", "n3"], "name": ["A St", "B St", "C St"],
                          "lat": [10.770, 10.780, 10.790], "lon": [106.700, 106.700, 106.710],
                          "road_class": ["primary", "secondary", "trunk"]})
    edges = pd.DataFrame({"source": ["n1", "n2", "n3"], "target": ["n2", "n3", "n1"],
                          "length_m": [1100.0, 1200.0, 1500.0], "road_name": ["A", "B", "C"]})
    ts = pd.date_range("2025-07-07 08:00", periods=8, freq="15min", tz="Asia/Ho_Chi_Minh")
    speed = 15 + np.arange(24, dtype=np.float32).reshape(8, 3) / 2
    speed[2, 1] = np.nan
    w = np.column_stack([np.linspace(27, 30, 8), np.full(8, 6.0), np.r_[0, 0, 2.5, 5, 0, 0, 0, 1]])
    return TrafficDataset(ts, speed, w if weather else None, RoadGraph(nodes, edges), {"source": "test"})


MATRIX_SPEED = "101,102,103\n20,30,\n22,31,40\n24,0,41\n"


MATRIX_ADJ = "0,1,0\n1,0,1\n0,1,0\n"


SENSORS = ["773869", "767541", "767542"]


def py2_adj_pickle(ids, matrix):
    """adj_mx.pkl as DCRNN's Python 2 wrote it: protocol 2, ids and the array bytes as py2 str
    (SHORT_BINSTRING/BINSTRING), which Python 3 reads only with encoding='latin1'."""
    def s(b):
        return b"U" + bytes([len(b)]) + b
    data = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    n = struct.pack("<i", len(ids))
    return (b"\x80\x02](](" + b"".join(s(i.encode()) for i in ids) + b"e}("
            + b"".join(s(i.encode()) + b"J" + struct.pack("<i", k) for k, i in enumerate(ids)) + b"u"
            + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R("
            + b"K\x01J" + n + b"J" + n + b"\x86cnumpy\ndtype\n" + s(b"f4") + b"K\x00K\x01\x87R(K\x03" + s(b"<")
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T" + struct.pack("<I", len(data)) + data + b"tbe.")


ADJ = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.9, 0.0, 1.0]], dtype=np.float32)


def metr_table(index=None):
    # 2012-03-11 01:30 .. 03:25 naive: 02:00-02:55 does not exist in Los Angeles (spring forward).
    index = pd.date_range("2012-03-11 01:30", periods=24, freq="5min") if index is None else index
    values = np.tile([60.0, 0.0, 55.0], (len(index), 1))
    values[:, 0] += np.arange(len(index))
    return pd.DataFrame(values, index=index, columns=SENSORS)


# The predecessor project's snapshot folders (run_*/nodes.json, edges.json, traffic_edges.json, ...)
NODES = [{"node_id": n, "lat": 10.77 + k / 100, "lon": 106.70, "degree": 2, "importance_score": 1.0,
          "road_type": rt, "connected_road_types": [rt], "street_names": ["X"], "intersection_name": f"{n} / X",
          "way_ids": [1], "is_major_intersection": False}
         for k, (n, rt) in enumerate([("A", "primary"), ("B", "secondary"), ("C", "trunk"), ("D", "primary")])]
EDGES = [{"edge_id": i, "start_node_id": s, "end_node_id": t, "distance_m": 500.0 + i, "road_type": "primary",
          "road_name": f"road {s}{t}", "way_id": i}
         for i, (s, t) in enumerate([("A", "B"), ("B", "C"), ("C", "A"), ("A", "D"), ("A", "B"), ("C", "C")])]


def snapshot_run(root, name, time, speeds, weather=None, skip=()):
    """speeds: {(a, b): km/h or None (no traffic data)}; weather: [(temp, wind, precip)] per node."""
    run = root / name
    run.mkdir(parents=True)
    traffic = [{"node_a_id": a, "node_b_id": b, "distance_km": 0.5, "duration_sec": 90,
                "speed_kmh": v, "has_traffic_data": v is not None, "timestamp": time, "api_type": "x"}
               for (a, b), v in speeds.items()]
    files = {"nodes.json": NODES, "edges.json": EDGES, "traffic_edges.json": traffic}
    if weather is not None:
        files["weather_snapshot.json"] = [{"node_id": "A", "lat": 0, "lon": 0, "timestamp": time, "temperature_c": t,
                                           "precipitation_mm": p, "wind_speed_kmh": w} for t, w, p in weather]
    for file, content in files.items():
        if file not in skip:
            (run / file).write_text(json.dumps(content))


# The small model, one quick epoch and the simulated data the training, checkpoint, evaluation and
# forecasting tests share, so the whole path runs in seconds on a CPU.
SMALL = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, num_mixtures=3)
QUICK = TrainConfig(epochs=1, batch_size=16, max_batches=4, device="cpu")
SPEC = {"kind": "simulator", "seed": 2, "weeks": 2}


def matrix_folder(folder, sensors: int = 4, steps: int = 400, seed: int = 0):
    """A tiny matrix-format data set (`speed.csv` with a header of sensor ids, a headerless `adj.csv`
    ring) of 5-minute steps in mph: a daily wave, a per-sensor level and noise. -> the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    day = np.sin(2 * np.pi * np.arange(steps) / 288)[:, None]
    speed = 55 + 3 * np.arange(sensors)[None] - 8 * day + rng.normal(0, 1.5, (steps, sensors))
    pd.DataFrame(speed.round(2), columns=[str(700 + i) for i in range(sensors)]).to_csv(folder / "speed.csv",
                                                                                        index=False)
    ring = np.roll(np.eye(sensors), 1, axis=1) + np.roll(np.eye(sensors), -1, axis=1)
    pd.DataFrame(ring).to_csv(folder / "adj.csv", header=False, index=False)
    return folder


# A tiny model for quick looks on big graphs: a minute of training on two cores at 1,000 nodes.
TINY_CONFIG = {"model": {"hidden_dim": 16, "heads": 2, "num_blocks": 1}, "train": {"calibrate": False}}


def road_like_workspace(root, nodes: int = 1000):
    """A workspace under `root` (returned) as a user with a city-sized network has it after the first
    minutes: a generated road-like recording (`stmgt.data.road_like`) of `nodes` nodes imported with
    `stmgt import generic` as `datasets/grid`, and a tiny quick-look model trained on it with
    `stmgt train` as `runs/quick`."""
    from stmgt.cli import main                      # here: the CLI pulls in every command's imports
    from stmgt.data.folder import write_folder
    from stmgt.data.road_like import road_like_dataset

    write_folder(road_like_dataset(nodes, weeks=1), root / "recording")
    workspace = root / "workspace"
    assert main(["import", "generic", str(root / "recording"), "--out", str(workspace / "datasets" / "grid")]) == 0
    write(root / "tiny.json", json.dumps(TINY_CONFIG))
    assert main(["train", "--data", str(workspace / "datasets" / "grid"), "--out", str(workspace / "runs" / "quick"),
                 "--config", str(root / "tiny.json"), "--epochs", "1", "--max-batches", "1", "--batch-size", "4"]) == 0
    return workspace


def count_scored_steps(monkeypatch) -> list[tuple[int, int]]:
    """The step ranges the model scores from now on (every call of `stmgt.operations.alerts.surprise`)."""
    import stmgt.operations.alerts as alerts_module

    calls, original = [], alerts_module.surprise
    monkeypatch.setattr(alerts_module, "surprise",
                        lambda f, first, last, *a: calls.append((first, last)) or original(f, first, last, *a))
    return calls
