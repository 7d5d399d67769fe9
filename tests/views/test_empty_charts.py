"""A chart with nothing to draw says why: the Forecast map's 'Likely congested nodes by horizon'
bars when no road is likely congested at any horizon (issue 27: a map of data without weather
showed an empty chart with no word)."""

from tests.views.page_helpers import array, plotly


def reasons(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("No bars:")]


def test_likely_congested_bars_say_why_they_are_empty(app):
    at = app("views/forecast_map.py")
    bars = array(plotly(at, "map_congested_bars")["data"][0]["y"])
    assert (bars > 0).any() == (not reasons(at))                     # a reason only when there are no bars
    at.number_input(key="map_threshold").set_value(5.0).run()        # a line no forecast falls below
    assert not array(plotly(at, "map_congested_bars")["data"][0]["y"]).any()
    [reason] = reasons(at)
    assert "speed < 5 % of free-flow" in reason and "above 50 %" in reason
