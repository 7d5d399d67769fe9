"""What-if weather scenarios edit a horizon of weather, never the input."""

import numpy as np

from stmgt.data.scenario import WeatherScenario


def test_weather_scenario_edits():
    base = np.tile(np.array([[28.0, 10.0, 0.0]], dtype=np.float32), (12, 1))
    out = WeatherScenario(temperature_shift=2, rain_mm=12, rain_start=3, rain_steps=4).apply(base)
    assert (out[:, 0] == 30).all() and (out[:, 1] == 10).all()
    assert out[:, 2].tolist() == [0, 0, 12, 12, 12, 12, 0, 0, 0, 0, 0, 0]
    assert (WeatherScenario(precipitation_shift=-5).apply(base)[:, 2] == 0).all()     # never negative
    np.testing.assert_array_equal(base, np.tile([[28.0, 10.0, 0.0]], (12, 1)))        # input untouched

