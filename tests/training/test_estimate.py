"""The run-time estimate before training: batches, what-if checks and scoring."""

import pytest

from stmgt.training.estimate import StepCost, estimate
from stmgt.training.trainer import TrainConfig


def test_estimate_counts_the_counterfactual_weather_copies_and_the_whatif_checks():
    cost = StepCost(train_batch_s=1.0, forward_window_s=0.01, device="cpu")
    windows = {"train": 320, "val": 64, "test": 64}
    plain = estimate(cost, windows, TrainConfig(epochs=2, batch_size=32), use_weather=True, simulated=True)
    copies = estimate(cost, windows, TrainConfig(epochs=2, batch_size=32, weather_copies=2), True, True)
    assert plain.phases["training"] == 20 and plain.train_batches == 20 and "what-if checks" not in plain.phases
    assert copies.phases["training"] == 60 and copies.train_batches == 60
    checked = estimate(cost, windows, TrainConfig(epochs=2, batch_size=32, select="whatif"), True, True)
    assert checked.phases["what-if checks"] == pytest.approx(2 * 50 * 0.01)    # 2 epochs × 50 anchors
    assert checked.total_s == pytest.approx(plain.total_s + 2 * 50 * 0.01)
    # scoring: one pass over the 64 test windows (both weathers) and one over 48 what-if anchors
    assert plain.phases["scoring"] == pytest.approx((64 + 48) * 0.01)

