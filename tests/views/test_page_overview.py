"""Overview: dataset summary, current-speed map and the model card, from live data and saved metrics."""

import json

import numpy as np
import pandas as pd

from stmgt.data.simulate import simulate
from stmgt.paths import BUNDLED_RUN


def test_overview_shows_the_embedded_data_and_the_bundled_model(app):
    at = app("views/overview.py")
    metrics = {m.label: m.value for m in at.metric}
    data = simulate()
    assert metrics["Nodes"] == "62" and metrics["Road segments"] == "144"
    assert metrics["Cadence"] == "15 min" and metrics["Span"] == "56 days"
    assert metrics["Mean speed"] == f"{np.nanmean(data.speed):.1f} km/h"
    deck = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    nodes = next(layer for layer in deck["layers"] if layer["id"] == "nodes")["data"]
    speeds = {n["node_id"]: n["speed"] for n in nodes}
    last = data.speed[-1]
    observed = ~np.isnan(last)
    np.testing.assert_allclose([speeds[i] for i in np.array(data.graph.node_ids)[observed]],
                               np.round(last[observed], 1), atol=0.051)
    card = at.dataframe[0].value
    saved = json.loads((BUNDLED_RUN / "metrics.json").read_text())["models"]
    assert card.loc["STMGT", "MAE +60 min"] == saved["stmgt"]["mae"][3]
    assert card.loc["Persistence", "MAE +60 min"] == saved["persistence"]["mae"][3]
    parameters = json.loads((BUNDLED_RUN / "config.json").read_text())["parameters"]
    card_text = " ".join(m.value for m in at.markdown)
    assert f"{parameters:,} parameters" in card_text
    assert "Trained on cpu on simulated HCMC" in card_text        # recorded as device "cpu", named "cpu": said once


def test_overview_of_a_dataset_without_model_or_weather(app, isolated_workspace):
    folder = isolated_workspace / "datasets" / "tiny"
    folder.mkdir(parents=True)
    pd.DataFrame({"node_id": ["a", "b"], "name": ["A", "B"], "lat": [10.77, 10.78], "lon": [106.7, 106.7],
                  "road_class": "primary"}).to_csv(folder / "nodes.csv", index=False)
    pd.DataFrame({"source": ["a", "b"], "target": ["b", "a"], "length_m": 1100.0, "road_name": "X"}).to_csv(
        folder / "edges.csv", index=False)
    stamps = pd.date_range("2025-01-06", periods=8, freq="15min", tz="Asia/Ho_Chi_Minh")
    pd.DataFrame({"timestamp": [t.isoformat() for t in stamps], "a": 20.0, "b": 30.0}).to_csv(
        folder / "speed.csv", index=False)
    at = app("views/overview.py", dataset="Imported: tiny")
    assert {m.label: m.value for m in at.metric}["Nodes"] == "2"
    texts = " ".join(x.value for x in [*at.info, *at.warning])
    assert "has no weather" in texts and "No model for this dataset" in texts
