"""Every map's tooltip shows its numbers rounded (issue 27: "median 10.5 → 7.599999904632568 km/h"
on the What-if map): each field a tooltip names holds text or a number that prints short."""

import json
import re

import numpy as np

from ui.maps import rounded

MAP_PAGES = ["views/overview.py", "views/forecast_map.py", "views/route.py", "views/interpretability.py",
             "views/what_if.py"]
MAX_DECIMALS = 3


def tooltip_values(at) -> dict[str, list]:
    """For each map drawn, the values of the fields its tooltip names, over every row it holds."""
    values = {}
    for index, chart in enumerate(at.get("deck_gl_json_chart")):
        deck = json.loads(chart.proto.json)
        fields = set(re.findall(r"{(\w+)}", json.loads(chart.proto.tooltip)["html"]))
        for layer in deck["layers"]:
            for row in layer.get("data") or []:
                for field in fields & row.keys():
                    values.setdefault(f"{index}:{field}", []).append(row[field])
    return values


def noisy(value) -> bool:
    return isinstance(value, float) and repr(value) != repr(round(value, MAX_DECIMALS))


def test_no_map_tooltip_prints_float_noise(app):
    at = app(MAP_PAGES[0])
    for page in MAP_PAGES:
        if page != MAP_PAGES[0]:
            at.switch_page(page).run()
        assert not at.exception, (page, [e.message for e in at.exception])
        values = tooltip_values(at)
        assert values, f"{page}: no map tooltip found"
        noise = {field: [v for v in column if noisy(v)][:3] for field, column in values.items()}
        assert not any(noise.values()), (page, noise)
    assert all(isinstance(v, float) for v in values["0:base"])         # the What-if map's numbers were checked


def test_rounded_prints_as_written():
    speeds = np.array([7.6, 10.55, np.nan], dtype=np.float32)
    assert noisy(float(np.round(speeds[0], 1)))                        # the float32 way: the noise
    shown = rounded(speeds, 1).tolist()
    assert shown[0] == 7.6 and repr(shown[0]) == "7.6" and np.isnan(shown[2])
