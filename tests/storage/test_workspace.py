"""The user's workspace: where it is, which datasets and runs it lists, and the folder names it
makes from user text."""

import os
from datetime import datetime

import pytest

from stmgt.storage import workspace as workspace_module
from stmgt.storage.workspace import Workspace, slug


@pytest.mark.parametrize("text,expected", [
    ("HCMC July", "HCMC-July"),
    ("  rain/what if?  ", "rain-what-if"),
    ("../../etc/passwd", "etc-passwd"),                 # never leaves the folder it is put in
    ("v1.2_final-run", "v1.2_final-run"),
    ("Quận 1", "Qu-n-1"),                               # ASCII only
    ("?!/", "unnamed"),
    ("x" * 100, "x" * 60),
])
def test_a_slug_is_a_safe_folder_name(text, expected):
    assert slug(text) == expected


def test_the_default_workspace_is_the_one_the_environment_names(isolated_workspace):
    workspace = Workspace.default()
    assert workspace.root == isolated_workspace
    assert workspace.datasets_dir == isolated_workspace / "datasets"
    assert workspace.runs_dir == isolated_workspace / "runs"
    assert workspace.dataset_dir("July / rain") == isolated_workspace / "datasets" / "July-rain"


def test_only_folders_holding_speeds_are_listed_as_datasets(tmp_path):
    workspace = Workspace(tmp_path)
    assert workspace.datasets() == {} and workspace.runs() == []
    for name, speed in [("b-csv", "speed.csv"), ("a-parquet", "speed.parquet"), (".b-csv.partial-x1", "speed.csv"),
                        ("graph-only", "nodes.csv")]:
        (workspace.datasets_dir / name).mkdir(parents=True)
        (workspace.datasets_dir / name / speed).write_text("")
    (workspace.datasets_dir / "speed.csv").write_text("")               # a stray file, not a dataset
    assert workspace.datasets() == {"a-parquet": workspace.datasets_dir / "a-parquet",
                                    "b-csv": workspace.datasets_dir / "b-csv"}


def test_runs_are_the_finished_ones_newest_first(tmp_path):
    workspace = Workspace(tmp_path)
    for k, name in enumerate(["old", "new", "unfinished"]):
        (workspace.runs_dir / name).mkdir(parents=True)
        if name != "unfinished":
            (workspace.runs_dir / name / "checkpoint.pt").write_bytes(b"")
            os.utime(workspace.runs_dir / name / "checkpoint.pt", (1_700_000_000 + k, 1_700_000_000 + k))
    assert [run.path.name for run in workspace.runs()] == ["new", "old"]


def test_a_new_run_folder_is_named_after_its_label_and_time_and_never_reused(tmp_path, monkeypatch):
    class Clock:
        @staticmethod
        def now():
            return datetime(2025, 7, 7, 8, 30, 5)

    monkeypatch.setattr(workspace_module, "datetime", Clock)
    workspace = Workspace(tmp_path)
    first = workspace.new_run_dir("rain test")
    assert first == tmp_path / "runs" / "rain-test-20250707-083005" and not first.exists()
    first.mkdir(parents=True)
    second = workspace.new_run_dir("rain test")
    assert second.name == "rain-test-20250707-083005-2"
    second.mkdir()
    assert workspace.new_run_dir("rain test").name == "rain-test-20250707-083005-3"
    assert workspace.new_run_dir().name == "run-20250707-083005"
