"""The what-if fidelity measurement against the simulator's truth."""

from stmgt.forecasting.forecast import Forecaster


def test_whatif_fidelity_grid_and_artifact(trained, data, tmp_path):
    """The fidelity benchmark's measurement on a barely trained model: every scenario of the grid,
    a true change of exactly 0 before each rain event, and a saved artifact that reads back."""
    from stmgt.evaluation import fidelity
    from stmgt.data.simulate import simulator_for

    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    result = fidelity.measure(forecaster, simulator_for(data), count=3)
    assert result["anchors"] == 3 and result["horizon_minutes"] == [15 * k for k in range(1, 13)]
    names = list(result["scenarios"])
    assert names[:5] == [f"rain {mm} mm/h" for mm in (2, 5, 10, 20, 30)]
    assert names[-2:] == ["heat +3 °C", "wind +15 km/h"]
    late = result["scenarios"]["rain 20 mm/h at steps 7–10"]
    assert late["mean_true_change_kmh"][:6] == [0.0] * 6 and late["mean_true_change_kmh"][7] < -1
    assert set(late["checks"]) == {"rain_within_20_percent", "node_mae_within_35_percent", "no_change_before_rain"}
    assert result["scenarios"]["rain 30 mm/h"]["mean_true_change_kmh"][-1] < \
        result["scenarios"]["rain 2 mm/h"]["mean_true_change_kmh"][-1] < 0
    fidelity.save(tmp_path, result)
    assert fidelity.load(tmp_path) == result and fidelity.load(tmp_path / "none") is None
    assert list(fidelity.summary(result).index) == names

