"""Shared fixtures: an empty workspace per test, the dashboard under AppTest, and the files its
download buttons hand out."""

from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

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
