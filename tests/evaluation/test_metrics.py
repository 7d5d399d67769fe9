"""Scores against values worked out by hand on cases small enough to check on paper."""

import math

import numpy as np
import pytest
import torch

from stmgt.evaluation.metrics import HorizonScores
from stmgt.model.mixture import GaussianMixture


def phi(z):
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def Phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_point_scores_skip_missing_targets():
    # [B=1, H=2, N=2]; the NaN target and its absurd forecast count for nothing.
    y = torch.tensor([[[10.0, 20.0], [30.0, float("nan")]]])
    point = torch.tensor([[[12.0, 17.0], [30.0, 500.0]]])
    scores = HorizonScores(horizon=2, probabilistic=False)
    scores.update(y, point)
    out = scores.result()
    assert out["count"] == [2, 1]
    assert out["mae"] == pytest.approx([2.5, 0.0])                   # (2 + 3) / 2, then 0
    assert out["rmse"] == pytest.approx([math.sqrt(6.5), 0.0])       # sqrt((4 + 9) / 2)
    assert out["mape"] == pytest.approx([17.5, 0.0])                 # (2/10 + 3/20) / 2
    assert out["overall"]["mae"] == pytest.approx(5 / 3)             # pooled over the 3 targets
    assert out["crps"] == out["mae"]                                 # a point forecast's CRPS


def test_batches_accumulate_like_one():
    y = torch.tensor([[[10.0]], [[20.0]]])
    point = torch.tensor([[[11.0]], [[24.0]]])
    scores = HorizonScores(horizon=1, probabilistic=False)
    scores.update(y[:1], point[:1])
    scores.update(y[1:], point[1:])
    assert scores.result()["mae"] == pytest.approx([2.5])


@pytest.fixture
def standard_normal_scores():
    """One standard normal forecast (K = 1) for three targets 0, 1 and 2 at one horizon step."""
    y = torch.tensor([[[0.0, 1.0, 2.0]]], dtype=torch.float64)
    ones = torch.ones(1, 1, 3, 1, dtype=torch.float64)
    mixture = GaussianMixture(0 * ones, ones, ones)
    scores = HorizonScores(horizon=1, probabilistic=True)
    scores.update(y, mixture.mean(), mixture)
    return scores.result()


def test_crps_of_a_standard_normal(standard_normal_scores):
    def crps(y):       # Gneiting & Raftery (2007): y(2Φ(y) − 1) + 2φ(y) − 1/√π
        return y * (2 * Phi(y) - 1) + 2 * phi(y) - 1 / math.sqrt(math.pi)
    assert crps(0) == pytest.approx(0.2336949, abs=1e-6)
    assert standard_normal_scores["crps"] == pytest.approx([(crps(0) + crps(1) + crps(2)) / 3])


def test_coverage_and_width(standard_normal_scores):
    # PIT values 0.5, Φ(1) = 0.841, Φ(2) = 0.977: the 50 % interval [0.25, 0.75] holds one target,
    # the 80 % [0.1, 0.9] two, the 90 % [0.05, 0.95] two.
    assert standard_normal_scores["coverage"] == {"50": pytest.approx([1 / 3]), "80": pytest.approx([2 / 3]),
                                                  "90": pytest.approx([2 / 3])}
    assert standard_normal_scores["width"]["80"] == pytest.approx([2 * 1.2815516], abs=1e-5)
    assert standard_normal_scores["width"]["50"] == pytest.approx([2 * 0.6744898], abs=1e-5)


def test_pit_histogram(standard_normal_scores):
    # PIT 0.5 -> bin 5, 0.841 -> bin 8, 0.977 -> bin 9; density = share × 10 bins.
    expected = np.zeros(10)
    expected[[5, 8, 9]] = 10 / 3
    assert standard_normal_scores["pit_histogram"]["density"] == pytest.approx(expected.tolist())


def test_calibration_error_of_a_perfect_forecast():
    """Targets drawn from the forecast itself: coverage matches every level, the error is ~0."""
    g = torch.Generator().manual_seed(0)
    n = 20_000
    y = torch.randn(n, generator=g, dtype=torch.float64).reshape(1, 1, n)
    ones = torch.ones(1, 1, n, 1, dtype=torch.float64)
    scores = HorizonScores(horizon=1, probabilistic=True)
    mixture = GaussianMixture(0 * ones, ones, ones)
    scores.update(y, mixture.mean(), mixture)
    assert scores.result()["overall"]["calibration_error"] < 0.01
