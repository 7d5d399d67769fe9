"""Where the project's files live: the bundled assets beside the package, and the workspace and
server settings that the environment can move elsewhere."""

from pathlib import Path

import stmgt
from stmgt import paths
from stmgt.data.graph import RoadGraph
from stmgt.storage.runs import list_runs


def test_the_checkout_is_the_folder_that_holds_the_package():
    assert paths.CHECKOUT.is_absolute() and paths.CHECKOUT == paths.CHECKOUT.resolve()
    assert Path(stmgt.__file__).resolve().parent == paths.CHECKOUT / "stmgt"
    assert (paths.CHECKOUT / "app.py").is_file()


def test_the_bundled_model_and_graph_are_there():
    assert {"checkpoint.pt", "config.json"} <= {p.name for p in paths.BUNDLED_RUN.iterdir()}
    assert paths.BUNDLED_RUN == paths.BUNDLED_RUN.resolve()    # pages compare a run's resolved path with it
    assert [run.path for run in list_runs(paths.ASSETS)] == [paths.BUNDLED_RUN]
    graph = RoadGraph.hcmc()
    assert graph.source == str(paths.HCMC_GRAPH_DIR) and graph.num_nodes > 0


def test_the_workspace_follows_stmgt_workspace_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("STMGT_WORKSPACE", str(tmp_path / "elsewhere"))
    assert paths.workspace_root() == tmp_path / "elsewhere"
    monkeypatch.setenv("STMGT_WORKSPACE", str(tmp_path / "moved"))         # read on each call, not at import
    assert paths.workspace_root() == tmp_path / "moved"
    monkeypatch.delenv("STMGT_WORKSPACE")
    assert paths.workspace_root() == paths.CHECKOUT / "workspace"
    ignored = (paths.CHECKOUT / ".gitignore").read_text().split()
    assert "/workspace/" in ignored                              # the user's data stays out of git


def test_the_server_settings_follow_stmgt_config_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("STMGT_CONFIG", str(tmp_path / "server.toml"))
    assert paths.server_config() == tmp_path / "server.toml"
    monkeypatch.delenv("STMGT_CONFIG", raising=False)
    assert paths.server_config() == paths.CHECKOUT / "stmgt.toml"
