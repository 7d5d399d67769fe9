"""benchmarks/real_data.py end to end on a tiny generated matrix data set: it imports, trains with the
default recipe, scores validation and test, and prints the figures per horizon as JSON."""

import json

import pytest

from benchmarks import real_data
from samples import matrix_folder
from stmgt.settings import MODEL
from stmgt.training.recipe import SMALL


@pytest.mark.slow
def test_prints_every_model_per_horizon_and_scores_a_kept_run_again(tmp_path, capsys):
    folder = matrix_folder(tmp_path / "matrix")
    (tmp_path / "quick.json").write_text(json.dumps({"train": {"epochs": 1, "max_batches": 1}}))
    argv = [str(folder), "--start", "2012-03-01T00:00", "--units", "mph", "--timezone", "America/Los_Angeles",
            "--config", str(tmp_path / "quick.json"), "--out", str(tmp_path / "work")]
    real_data.main(argv)
    result = json.loads(capsys.readouterr().out)
    assert result["units"] == "mph" and result["nodes"] == 4 and result["cadence_min"] == 5
    training = result["training"]
    assert training["run_state"].startswith("complete") and training["seconds_train_command"] > 0
    # The anchored model is validated before its first step (epoch 0, persistence) and after it.
    assert training["epochs_run"] == 1 and len(training["val_mae_kmh_per_epoch"]) == 2
    assert training["kept_epoch"] == min((0, 1), key=lambda e: training["val_mae_kmh_per_epoch"][e])
    assert {k: training["model"][k] for k in SMALL[MODEL]} == SMALL[MODEL]      # the default on imported data
    for split in ("validation", "test"):
        scores = result[split]
        assert scores["horizon_minutes"] == [5 * (k + 1) for k in range(12)]
        for name in ("stmgt", "persistence", "historical_average", "linear_autoregressive"):
            assert len(scores[name]["mae"]) == 12 and all(v >= 0 for v in scores[name]["mae"])
        assert all(0 <= c <= 1 for c in scores["stmgt"]["coverage_80"])
        assert len(scores["targets"]["mae_at_most_best_baseline"]) == 12 and len(scores["verdicts"]) == 12
    # The figures are in mph: persistence's error there is the km/h one (metrics.json) over 1.609344.
    metrics = json.loads((tmp_path / "work" / "run" / "metrics.json").read_text())
    kmh = metrics["models"]["persistence"]["mae"][0]
    assert result["test"]["persistence"]["mae"][0] == pytest.approx(kmh / 1.609344, abs=1e-3)
    assert {"load_average", "processor"} <= set(result["machine"]) and result["date"]

    real_data.main(argv + ["--validation-only"])       # the kept run is scored, not trained again
    again = json.loads(capsys.readouterr().out)
    assert again["training"]["seconds_train_command"] is None and "test" not in again
    assert again["validation"]["stmgt"]["mae"] == result["validation"]["stmgt"]["mae"]


def test_a_matrix_folder_needs_one_speed_and_one_adjacency_file(tmp_path):
    folder = matrix_folder(tmp_path / "matrix")
    (folder / "adj.csv").rename(folder / "graph.csv")
    with pytest.raises(Exception, match=r"exactly one \*adj\*\.csv file for the adjacency, found none"):
        real_data.matrix_files(folder)
