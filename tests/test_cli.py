"""`python -m stmgt`: each command end to end on small inputs, and plain errors with exit code 2."""

import json

import pandas as pd
import pytest

from stmgt.cli import main
from stmgt.data.folder import read_folder
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from stmgt.training.recipe import weather_recipe


def test_simulate_writes_the_generic_folder(tmp_path, capsys):
    assert main(["simulate", "--weeks", "1", "--seed", "4", "--out", str(tmp_path / "sim")]) == 0
    files = {p.name for p in (tmp_path / "sim").iterdir()}
    assert {"nodes.csv", "edges.csv", "speed.csv", "weather.csv"} <= files
    data = read_folder(tmp_path / "sim")
    assert data.num_steps == 7 * 96 and data.provenance["seed"] == 4
    assert "62 nodes" in capsys.readouterr().out


def test_forecast_writes_quantiles_and_applies_what_if(tmp_path):
    at = "2025-08-25T07:00+07:00"
    assert main(["forecast", "--run", str(BUNDLED_RUN), "--at", at, "--out", str(tmp_path / "base.csv")]) == 0
    assert main(["forecast", "--run", str(BUNDLED_RUN), "--at", at, "--precipitation", "25",
                 "--out", str(tmp_path / "wet.csv")]) == 0
    base, wet = pd.read_csv(tmp_path / "base.csv"), pd.read_csv(tmp_path / "wet.csv")
    assert list(base.columns) == ["node_id", "horizon_step", "target_time", "mean", "q10", "q25", "q50", "q75", "q90"]
    assert len(base) == 62 * 12 and base.horizon_step.between(1, 12).all()
    assert (base.q10 < base.q25).all() and (base.q25 < base.q50).all() and (base.q75 < base.q90).all()
    assert base.target_time.iloc[0] == "2025-08-25T07:15:00+07:00"
    assert wet["mean"].mean() < base["mean"].mean() - 1


def test_whatif_writes_model_and_true_change(tmp_path):
    """Rain at steps 5–8 for two anchors: one row per anchor × node × step; the true change is 0
    before the rain (the simulator is causal) and negative once it falls."""
    out = tmp_path / "whatif.csv"
    assert main(["whatif", "--run", str(BUNDLED_RUN), "--at", "2025-08-25T07:00+07:00", "--at",
                 "2025-08-26T16:00+07:00", "--precipitation", "20", "--from-step", "5", "--to-step", "8",
                 "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["anchor", "node_id", "horizon_step", "target_time", "model_change", "true_change"]
    assert len(frame) == 2 * 62 * 12
    assert frame.anchor.iloc[0] == "2025-08-25T07:00:00+07:00"
    assert frame.target_time.iloc[0] == "2025-08-25T07:15:00+07:00"
    by_step = frame.groupby("horizon_step")[["model_change", "true_change"]].mean()
    assert (by_step.loc[1:4, "true_change"] == 0).all()                                # causal, both
    assert (frame[frame.horizon_step <= 4].model_change == 0).all()
    assert (by_step.loc[6:8, "true_change"] < -1).all() and (by_step.loc[6:8, "model_change"] < 0).all()


@pytest.mark.parametrize("argv,message", [
    (["whatif", "--run", str(BUNDLED_RUN), "--at", "2025-08-25T07:00+07:00", "--out", "x.csv"],
     "give at least one of --precipitation"),
    (["whatif", "--run", str(BUNDLED_RUN), "--at", "2025-08-25T07:00+07:00", "--wind", "40", "--from-step", "9",
      "--to-step", "3", "--out", "x.csv"], "must satisfy 1 ≤ I ≤ J ≤ 12"),
    (["forecast", "--run", str(BUNDLED_RUN), "--at", "2031-01-01", "--out", "x.csv"], "not a time step of the data"),
    (["forecast", "--run", str(BUNDLED_RUN), "--at", "2025-08-25T07:00+07:00", "--precipitation", "-3",
      "--out", "x.csv"], "--precipitation must not be negative"),
    (["forecast", "--run", "no/such/run", "--at", "2025-08-25T07:00", "--out", "x.csv"], "not a finished run"),
    (["evaluate", "--run", "no/such/run"], "not a finished run"),
    (["train", "--data", "sim:speed=3", "--out", "r"], "unknown simulator option"),
    (["train", "--out", "r", "--init", "no/such/run"], "--init no/such/run: not a run folder with a trained model"),
    (["import", "generic", "no/such/folder", "--out", "o"], "no/such/folder"),
])
def test_bad_arguments_get_a_plain_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_argparse_rejects_bad_values(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", "r", "--epochs", "0"])
    assert exit_.value.code == 2 and "must be at least 1" in capsys.readouterr().err


# Every value differs from its default, so the run's config.json can only have them from the file.
SETTINGS = {"model": {"hidden_dim": 16, "num_blocks": 1, "heads": 2, "num_mixtures": 3, "dropout": 0.1,
                      "gat_layout": "concat", "time_encoding": False},
            "train": {"epochs": 7, "lr": 0.002, "patience": 3, "seed": 5, "grad_clip": 0.5, "compile": False,
                      "calibrate": False}}


def test_an_anchored_runs_epoch_0_is_valid_json_and_reads_before_training(tmp_path, capsys):
    """Epoch 0 (a persistence-anchored model validated before any step) has no training loss:
    null in the JSON lines (JSON has no NaN), "(before training)" in the text."""
    config = tmp_path / "anchored.json"
    config.write_text(json.dumps({"model": {"persistence_anchor": True, "hidden_dim": 8, "num_blocks": 1,
                                            "heads": 2, "num_mixtures": 2}, "train": {"compile": False}}))
    quick = ["--config", str(config), "--data", "sim:seed=3,weeks=2", "--specification", "--epochs", "1",
             "--batch-size", "8", "--max-batches", "1", "--device", "cpu", "--no-evaluate"]
    assert main(["train", "--out", str(tmp_path / "json"), *quick, "--progress-json"]) == 0
    out, _ = capsys.readouterr()
    epochs = [json.loads(line, parse_constant=pytest.fail) for line in out.splitlines()]
    epochs = [e for e in epochs if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1] and epochs[0]["train_loss"] is None
    assert epochs[1]["train_loss"] > 0
    assert main(["train", "--out", str(tmp_path / "text"), *quick]) == 0
    assert "epoch   0  loss (before training)" in capsys.readouterr().out


@pytest.mark.slow
def test_train_takes_every_setting_from_a_config_file_and_reports_progress_as_json(tmp_path, capsys):
    """A --config file sets the model and the training (flags on top of it), --progress-json puts
    one JSON object per line on stdout, and a run's own config.json trains the same run again."""
    config = tmp_path / "settings.json"
    config.write_text(json.dumps(SETTINGS))
    quick = ["--data", "sim:seed=3,weeks=2", "--epochs", "1", "--batch-size", "8", "--max-batches", "2",
             "--device", "cpu", "--no-evaluate"]
    assert main(["train", "--out", str(tmp_path / "first"), "--config", str(config), "--progress-json", *quick]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]            # nothing else on stdout
    kinds = [e["event"] for e in events]
    assert kinds.count("batch") == 2 and kinds.count("epoch") == 1 and kinds[-1] == "trained"
    assert events[kinds.index("epoch")]["epoch"] == 1 and events[kinds.index("epoch")]["val_mae"] > 0
    assert {"event": "phase", "phase": "validating", "done": 0, "total": 1} in events
    assert events[-1] == {"event": "trained", "stopped": "max_epochs", "best_epoch": 1, "scoring": False}
    assert "training on simulated HCMC" in err and "max epochs; best epoch 1" in err   # the text went to stderr
    first = Run.open(tmp_path / "first").config
    recipe = weather_recipe()                   # the simulator's data with weather: the file goes over it
    assert first["model"] == {**recipe["model"], **SETTINGS["model"]}
    assert first["train"] == {**recipe["train"], **SETTINGS["train"], "epochs": 1, "batch_size": 8,
                              "max_batches": 2, "device": "cpu"}

    assert main(["train", "--out", str(tmp_path / "again"), "--config", str(tmp_path / "first" / "config.json"),
                 "--data", "sim:seed=3,weeks=2", "--no-evaluate"]) == 0
    again = Run.open(tmp_path / "again").config
    assert again["model"] == first["model"] and again["train"] == first["train"]
    assert "max epochs; best epoch 1" in capsys.readouterr().out

    # Fine-tuning: the first run's weights, a lower learning rate and patience from the flags.
    assert main(["train", "--out", str(tmp_path / "tuned"), "--init", str(tmp_path / "first"), "--lr", "0.0005",
                 "--patience", "2", "--config", str(tmp_path / "first" / "config.json"), *quick]) == 0
    tuned = Run.open(tmp_path / "tuned").config["train"]
    assert tuned["init_from"] == str(tmp_path / "first") and tuned["lr"] == 0.0005 and tuned["patience"] == 2
    assert main(["train", "--out", str(tmp_path / "wider"), "--init", str(tmp_path / "first"), *quick]) == 2
    err = capsys.readouterr().err           # refused before training starts: no run folder is left
    assert "init_from" in err and "another architecture" in err and not (tmp_path / "wider").exists()


@pytest.mark.parametrize("text,message", [
    ('{"model": {"hidden_size": 16}}', "unknown STMGT config key(s): hidden_size"),
    ('{"train": {"epochs": "ten"}}', "epochs must be a whole number of at least 1, got 'ten'"),
    ('{"train": {"lr": -1}}', "lr must be a finite number of at least 0"),
    ('{"model": {"heads": 0}}', "heads must be a whole number of at least 1"),
    ('{"model": {"hidden_dim": 18, "heads": 4}}', "must be divisible by heads"),
    ('{"train": {"device": "tpu"}}', "device must be auto, cpu or cuda"),
    ('{"modle": {"heads": 2}}', 'needs a "model" and/or a "train" object'),
    ('{"train": [1, 2]}', 'needs a "model" and/or a "train" object'),
    ("[1, 2]", "must hold a JSON object"),
    ("{epochs: 3}", "is not valid JSON"),
])
def test_a_bad_config_file_is_refused_in_one_line_naming_it(text, message, tmp_path, capsys):
    config = tmp_path / "bad.json"
    config.write_text(text)
    assert main(["train", "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --config {config}: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_config_file_errors_outside_its_content(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "none.json")]) == 2
    assert "error: --config" in capsys.readouterr().err and not (tmp_path / "run").exists()
    (tmp_path / "old").mkdir()
    assert main(["train", "--resume", str(tmp_path / "old"), "--config", str(tmp_path / "none.json")]) == 2
    assert "a resumed run keeps its own settings" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A barely trained small model on two simulated weeks: the route command's full path in seconds."""
    from tests.views.page_helpers import tiny_run
    return tiny_run(tmp_path_factory.mktemp("runs") / "tiny")


@pytest.mark.slow
def test_route_writes_the_trip_as_json(tiny, tmp_path):
    out = tmp_path / "route.json"
    assert main(["route", "--run", str(tiny), "--from", "n01", "--to", "n40", "--depart", "2025-07-18T17:20+07:00",
                 "--deadline", "2025-07-18T17:50+07:00", "--samples", "500", "--out", str(out)]) == 0
    trip = json.loads(out.read_text())
    assert trip["path"][0] == "n01" and trip["path"][-1] == "n40"
    assert trip["depart"] == "2025-07-18T17:20:00+07:00" and trip["forecast_made_at"] == "2025-07-18T17:15:00+07:00"
    assert 0 < trip["p10_min"] <= trip["p50_min"] <= trip["p90_min"] and 0 <= trip["p_on_time"] <= 1
    assert trip["length_m"] == pytest.approx(sum(s["length_m"] for s in trip["segments"]), abs=0.5)
    assert [s["from"] for s in trip["segments"]] == trip["path"][:-1]
    assert trip["historical_min"] > 0 and trip["true_min"] > 0 and trip["samples"] == 500
    assert trip["shortest"]["length_m"] <= trip["length_m"] + 1e-6


@pytest.mark.parametrize("args,message", [
    (["--from", "n99", "--to", "n40", "--depart", "2025-07-18T17:20"], "--from: unknown node 'n99'"),
    (["--from", "n01", "--to", "x", "--depart", "2025-07-18T17:20"], "--to: unknown node 'x'"),
    (["--from", "n01", "--to", "n40", "--depart", "2031-01-01T08:00"],
     "--depart: 2031-01-01T08:00:00+07:00 is outside"),
    (["--from", "n01", "--to", "n40", "--depart", "soon"], "'soon' is not a time"),
])
def test_route_errors_are_one_plain_line(args, message, capsys):
    assert main(["route", "--run", str(BUNDLED_RUN), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1

