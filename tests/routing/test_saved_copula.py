"""The error copula saved beside its checkpoint: estimated once, read back without pickle, and
estimated afresh when the checkpoint or the data changed or the file is damaged."""

import io
import json
import shutil
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from stmgt.data.dataset import TrafficDataset
from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from stmgt.forecasting.forecast import Forecaster
from stmgt.model import STMGTConfig
from stmgt.paths import BUNDLED_RUN
from stmgt.routing.copula import ErrorCopula, copula_key, read_copula, save_copula, saved_copula
from stmgt.routing.trip import TripPlanner
from stmgt.storage.outputs import check_folder_target
from stmgt.storage.runs import COPULA, RUN, Run
from stmgt.training.trainer import TrainConfig, fit
from tests.samples import small_dataset

HORIZON = 2
SPATIAL = np.array([[1.0, 0.4, 0.1], [0.4, 1.0, 0.3], [0.1, 0.3, 1.0]])
TEMPORAL = np.array([[1.0, 0.7], [0.7, 1.0]])


@pytest.fixture
def run_dir(tmp_path):
    """A run folder whose checkpoint is a stand-in: the key hashes its bytes, nothing reads it."""
    (tmp_path / "checkpoint.pt").write_bytes(b"weights v1")
    return tmp_path


@pytest.fixture
def estimates(monkeypatch):
    """Counts the estimates `saved_copula` makes (each returns the fixed copula)."""
    calls = []

    def estimate(forecaster, windows, **progress):
        calls.append(windows)
        return ErrorCopula(SPATIAL.copy(), TEMPORAL.copy())

    monkeypatch.setattr(ErrorCopula, "estimate", estimate)
    return calls


@pytest.fixture
def forecaster():
    return SimpleNamespace(dataset=small_dataset(), horizon=HORIZON)


def test_saved_copula_round_trips(run_dir, forecaster):
    key = copula_key(run_dir / "checkpoint.pt", forecaster.dataset)
    save_copula(run_dir / COPULA, ErrorCopula(SPATIAL, TEMPORAL), key)
    read = read_copula(run_dir / COPULA, key, 3, HORIZON)
    np.testing.assert_array_equal(read.spatial, SPATIAL)
    np.testing.assert_array_equal(read.temporal, TEMPORAL)
    with np.load(run_dir / COPULA, allow_pickle=False) as saved:           # plain arrays, no pickle
        assert json.loads(str(saved["key"][()])) == key
    assert read_copula(run_dir / "none.npz", key, 3, HORIZON) is None


def test_estimated_once_then_read(run_dir, forecaster, estimates):
    first = saved_copula(forecaster, run_dir)
    assert len(estimates) == 1 and (run_dir / COPULA).is_file()
    again = saved_copula(forecaster, run_dir)
    assert len(estimates) == 1                                                 # read, not estimated
    np.testing.assert_array_equal(again.spatial, first.spatial)


def test_a_changed_checkpoint_or_dataset_refits(run_dir, forecaster, estimates):
    saved_copula(forecaster, run_dir)
    (run_dir / "checkpoint.pt").write_bytes(b"weights v2")                     # retrained in place
    saved_copula(forecaster, run_dir)
    assert len(estimates) == 2
    saved_copula(forecaster, run_dir)
    assert len(estimates) == 2                                                 # the refit was saved
    other = small_dataset()
    other.speed[0, 0] += 1.0                                                   # the same graph, other data
    saved_copula(SimpleNamespace(dataset=other, horizon=HORIZON), run_dir)
    assert len(estimates) == 3


def test_steps_after_the_training_split_keep_the_saved_copula(run_dir, forecaster, estimates):
    """The estimate reads training windows only, so a live feed's new steps (or a corrected
    test period) do not make it stale."""
    saved_copula(forecaster, run_dir)
    later = small_dataset()
    later.speed[-1, 0] += 1.0                                                   # the last step is a test step
    assert later.splits()["train"].stop < len(later.speed)
    saved_copula(SimpleNamespace(dataset=later, horizon=HORIZON), run_dir)
    assert len(estimates) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickled", "wrong size", "not a correlation"])
def test_a_damaged_file_is_refused_in_words_and_refitted(run_dir, forecaster, estimates, damage):
    path = run_dir / COPULA
    key = copula_key(run_dir / "checkpoint.pt", forecaster.dataset)
    save_copula(path, ErrorCopula(SPATIAL, TEMPORAL), key)
    if damage == "garbage":
        path.write_bytes(b"not a numpy file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "pickled":
        buffer = io.BytesIO()
        np.savez(buffer, spatial=np.array([SPATIAL], dtype=object), temporal=TEMPORAL,
                 key=np.array(json.dumps(key, sort_keys=True)))
        path.write_bytes(buffer.getvalue())
    elif damage == "wrong size":
        save_copula(path, ErrorCopula(np.eye(4), TEMPORAL), key)
    else:
        save_copula(path, ErrorCopula(SPATIAL * 2, TEMPORAL), key)
    with pytest.raises(DataError, match="saved error copula") as refused:
        read_copula(path, key, 3, HORIZON)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    copula = saved_copula(forecaster, run_dir)
    assert len(estimates) == 1
    np.testing.assert_array_equal(copula.spatial, SPATIAL)
    np.testing.assert_array_equal(read_copula(path, key, 3, HORIZON).spatial, SPATIAL)   # replaced
    assert zipfile.is_zipfile(path)


def test_a_read_only_folder_still_answers(run_dir, forecaster, estimates, monkeypatch):
    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("stmgt.routing.copula.atomic_write_bytes", refuse)
    copula = saved_copula(forecaster, run_dir)
    np.testing.assert_array_equal(copula.temporal, TEMPORAL)
    assert not (run_dir / COPULA).exists()


def test_a_planner_saves_the_estimate_of_a_real_model(tmp_path):
    """The planner of a run folder estimates the copula and saves it there; the saved one is what
    `estimate` gives, under the key of that checkpoint, data and number of windows."""
    data = simulate(weeks=2, seed=3)
    run_dir = tmp_path / "run"
    fit(data, STMGTConfig(hidden_dim=16, num_blocks=1, heads=2),
        TrainConfig(epochs=1, max_batches=1, batch_size=16, calibrate=False), run_dir=run_dir,
        data_spec={"kind": "simulator", "seed": 3, "weeks": 2})
    forecaster = Forecaster(Run(run_dir).load(data.graph), data)
    planner = TripPlanner.for_forecaster(forecaster, run_dir)
    saved = read_copula(run_dir / COPULA, copula_key(run_dir / "checkpoint.pt", data), data.num_nodes,
                        forecaster.horizon)
    np.testing.assert_array_equal(saved.spatial, planner.copula.spatial)
    few = saved_copula(forecaster, run_dir, windows=6)                        # another key: estimated again
    fresh = ErrorCopula.estimate(forecaster, windows=6)
    np.testing.assert_allclose(few.spatial, fresh.spatial, atol=1e-12)
    np.testing.assert_allclose(few.temporal, fresh.temporal, atol=1e-12)
    assert not np.allclose(few.spatial, saved.spatial)


def test_a_live_dataset_without_a_test_period_yet_still_gets_a_copula():
    """A feed that has just started has no test windows; the copula reads the training split only,
    the same windows as on the whole recording."""
    data = simulate(weeks=2, seed=3)
    forecaster = Forecaster(Run(BUNDLED_RUN).load(data.graph), data)
    splits = {name: [r.start, r.stop] for name, r in data.splits().items()}
    started = TrafficDataset(data.timestamps[:splits["test"][0]], data.speed[:splits["test"][0]],
                             data.weather[:splits["test"][0]], data.graph,
                             {"splits": {**splits, "test": [splits["test"][0], None]}})
    live = Forecaster(forecaster.loaded, started)
    np.testing.assert_allclose(ErrorCopula.estimate(live, windows=6).spatial,
                               ErrorCopula.estimate(forecaster, windows=6).spatial, atol=1e-12)


def test_the_bundled_model_ships_its_copula():
    """assets/model carries the copula of the bundled model on the embedded data, so the Route
    page's first answer needs no estimate."""
    from stmgt.data.sources import EMBEDDED, load_dataset

    dataset = load_dataset(dict(EMBEDDED))
    key = copula_key(BUNDLED_RUN / "checkpoint.pt", dataset)
    copula = read_copula(BUNDLED_RUN / COPULA, key, dataset.num_nodes, Run(BUNDLED_RUN).load().config.horizon)
    assert copula is not None
    assert (BUNDLED_RUN / COPULA).stat().st_size < 64_000


def test_a_run_with_its_saved_copula_is_still_a_run_of_ours_to_overwrite(tmp_path):
    """The bundled model's folder holds the copula: `--overwrite` replaces such a run (rebuilding the bundled model)."""
    copy = shutil.copytree(BUNDLED_RUN, tmp_path / "model")
    assert (copy / COPULA).is_file()
    assert check_folder_target(copy, RUN, overwrite=True) is True
