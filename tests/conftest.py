"""Shared fixtures: an empty workspace per test, the dashboard under AppTest, the files its
download buttons hand out, and a small model trained once on simulated data."""

from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from stmgt.data.simulate import simulate
from stmgt.training.trainer import TrainConfig, fit
from tests.samples import SMALL, SPEC, road_like_workspace

APP_TIMEOUT = 120
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(autouse=True)
def isolated_workspace(tmp_path, monkeypatch):
    """Imported datasets and runs go to a temporary workspace, never the user's."""
    root = tmp_path / "workspace"
    monkeypatch.setenv("STMGT_WORKSPACE", str(root))
    return root


@pytest.fixture
def app():
    """Return a function that opens the dashboard on a page and runs it."""

    def open_page(page: str = "views/overview.py", **session) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
        for key, value in session.items():
            at.session_state[key] = value
        at.run()
        if page != "views/overview.py":
            at.switch_page(page)
            at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return open_page


@pytest.fixture
def downloads(monkeypatch):
    """Files handed to st.download_button, by file name."""
    files = {}
    add = MemoryMediaFileStorage.load_and_get_id

    def capture(self, path_or_data, mimetype, kind, filename=None):
        files[filename] = path_or_data
        return add(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    return files


@pytest.fixture(scope="session")
def data():
    """Two simulated weeks (seed 2): the data the shared small model is trained and scored on."""
    return simulate(weeks=2, seed=2)


@pytest.fixture(scope="session")
def trained(data, tmp_path_factory):
    """The small model trained for two epochs of four batches, once per session: (the fit's result,
    its batch progress, its epoch progress). Tests only read it; one that writes copies the run."""
    run_dir = tmp_path_factory.mktemp("runs") / "small"
    batches, epochs = [], []
    result = fit(data, SMALL, TrainConfig(epochs=2, batch_size=16, max_batches=4, device="cpu"), run_dir,
                 SPEC, on_batch=batches.append, on_epoch=epochs.append)
    return result, batches, epochs


@pytest.fixture(scope="session")
def road_like_city(tmp_path_factory):
    """A workspace holding a generated 1,000-node recording imported as `grid` and its quick-look run
    (`tests.samples.road_like_workspace`), built once per session; tests copy it before use."""
    return road_like_workspace(tmp_path_factory.mktemp("road-like-city"), 1000)

