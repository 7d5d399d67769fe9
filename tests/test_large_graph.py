"""A real-sized import (issue 29): a generated 1,000-node road-like recording imported as a user
would (`stmgt import generic`), a quick-look model trained on it (`stmgt train`, tiny settings so
it takes a minute on two cores), and every dashboard page opened on it without an error; the
Interpretability page zooms to the selected road's neighbourhood."""

import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import APP
from tests.views.page_helpers import array, deck_layers, plotly
from ui import pages
from ui.state import DATASET_KEY

pytestmark = pytest.mark.slow
NODES = 1000


def test_every_page_opens_on_a_1000_node_import(road_like_city, isolated_workspace):
    shutil.copytree(road_like_city, isolated_workspace)
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.selectbox(key=DATASET_KEY).set_value(next(o for o in at.selectbox(key=DATASET_KEY).options if "grid" in o))
    at.run()
    for page in pages.ALL:
        at.switch_page(page.path)
        at.run()
        assert not at.exception, (page.title, [e.message for e in at.exception])
        assert not at.error, (page.title, [e.value for e in at.error])
        if page == pages.FORECAST_MAP:
            assert len(deck_layers(at)["nodes"]["data"]) == NODES
        if page == pages.INTERPRETABILITY:
            gate = plotly(at, "interp_gate")["data"][0]["x"]
            matrix = plotly(at, "interp_attention")["data"][0]
            assert 3 < len(gate) < 60 and matrix["x"] == matrix["y"] == gate     # the neighbourhood, not 1,000
            assert not [t for t in at.toggle if t.key == "interp_matrix_all"]
            assert np.isfinite(array(matrix["z"])).all()
