"""Node forecast page under AppTest: the fan chart's traces, the density slider, the quantile table and
its CSV download, and the node chosen elsewhere (session state) carrying over."""

import io

import numpy as np
import pandas as pd

from tests.views.page_helpers import array, plotly, trace

PAGE = "views/node_forecast.py"
QUANTILES = ["q10", "q25", "q50", "q75", "q90"]


def test_fan_chart_has_bands_median_observed_and_truth(app):
    at = app(PAGE, node_id="n05")
    fig = plotly(at, "node_fan")
    names = {t.get("name") for t in fig["data"]}
    assert {"80 % interval (q10–q90)", "50 % interval (q25–q75)", "Median forecast (q50)",
            "Observed (model input)", "Actual speed"} <= names
    lo80, lo50 = trace(fig, "80 % interval (q10–q90)"), trace(fig, "50 % interval (q25–q75)")
    hi80, hi50 = trace(fig, "80 % interval (q10–q90) upper"), trace(fig, "50 % interval (q25–q75) upper")
    median = array(trace(fig, "Median forecast (q50)")["y"])
    assert lo80["fill"] == "tonexty" and lo50["fill"] == "tonexty"
    assert (array(lo80["y"]) <= array(lo50["y"]) + 1e-6).all() and (array(lo50["y"]) <= median + 1e-6).all()
    assert (median <= array(hi50["y"]) + 1e-6).all() and (array(hi50["y"]) <= array(hi80["y"]) + 1e-6).all()
    assert (array(hi80["y"])[1:] > array(lo80["y"])[1:]).all()          # a real spread after the anchor
    assert len(array(trace(fig, "Observed (model input)")["y"])) == 12
    assert np.isfinite(array(trace(fig, "Actual speed")["y"])).sum() >= 10      # test period: truth known


def test_density_slider_redraws_the_density(app):
    at = app(PAGE)
    first = array(trace(plotly(at, "node_density"), "Predictive density")["y"])
    assert first.min() >= 0 and first.max() > 0
    at.select_slider(key="horizon_widget").set_value(12).run()
    assert not at.exception
    last = array(trace(plotly(at, "node_density"), "Predictive density")["y"])
    assert not np.allclose(first, last)
    names = {t.get("name") for t in plotly(at, "node_density")["data"]}
    assert {"q10", "q50", "q90", "Mixture components (weighted)"} <= names


def test_table_and_csv_hold_ordered_quantiles(app, downloads):
    at = app(PAGE, node_id="n09")
    table = at.dataframe[0].value
    assert len(table) == 12 and set(QUANTILES) <= set(table.columns)
    (name, data), = [(k, v) for k, v in downloads.items() if k.endswith(".csv")]
    assert name.startswith("forecast_n09_")
    csv = pd.read_csv(io.BytesIO(data if isinstance(data, bytes) else data.encode()))
    assert len(csv) == 12
    assert {"target_time", "mean", *QUANTILES, "truth"} <= set(csv.columns)
    q = csv[QUANTILES].to_numpy()
    assert (np.diff(q, axis=1) > 0).all()
    assert pd.to_datetime(csv["target_time"]).is_monotonic_increasing
    np.testing.assert_allclose(q, table[QUANTILES].to_numpy(), atol=1e-3)


def test_node_selected_elsewhere_is_shown(app):
    at = app(PAGE, node_id="n33")
    assert at.selectbox(key="node_id_widget").value == "n33"
    assert any("`n33`" in c.value for c in at.caption)
    other = app(PAGE, node_id="n34")
    assert not np.allclose(at.dataframe[0].value["q50"], other.dataframe[0].value["q50"])


def test_anchor_change_moves_the_forecast(app):
    at = app(PAGE)
    slider = at.select_slider(key="anchor_widget")
    before = at.dataframe[0].value["target_time"].iloc[0]
    slider.set_value(slider.value + 4).run()
    assert not at.exception
    assert at.dataframe[0].value["target_time"].iloc[0] - before == pd.Timedelta(hours=1)


def test_a_node_never_observed_is_flagged(tmp_path, monkeypatch):
    """Its forecast rests on its neighbours only: the page says so above the numbers (issue 26)."""
    from streamlit.testing.v1 import AppTest

    from stmgt.data.folder import write_folder
    from stmgt.data.simulate import simulate
    from tests.conftest import APP, APP_TIMEOUT

    dataset = simulate(weeks=2, seed=3)
    dataset.speed[:, dataset.graph.index_of["n05"]] = np.nan
    write_folder(dataset, tmp_path / "workspace" / "datasets" / "gap")
    monkeypatch.setenv("STMGT_WORKSPACE", str(tmp_path / "workspace"))
    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
    at.session_state["dataset"] = "Imported: gap"
    for node_id, flagged in (("n05", True), ("n06", False)):
        at.session_state["node_id"] = node_id
        at.switch_page(PAGE)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        warnings = [w.value for w in at.warning if "no speed reading anywhere in the data" in w.value]
        assert len(warnings) == int(flagged) and all("(n05)" in w for w in warnings), warnings
