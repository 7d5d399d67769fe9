"""GaussianMixture maths checked against independent references (scipy, scoringrules,
explicit formulas, Monte Carlo)."""

import math

import numpy as np
import pytest
import scoringrules as sr
import torch
from scipy import special, stats

from stmgt.model.mixture import GaussianMixture

F64 = torch.float64


def random_mixture(shape=(3, 4), k=5, seed=0, dtype=F64, spread=2.0, std_range=(0.05, 1.0)):
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(*shape, k, generator=g, dtype=dtype)
    lo, hi = std_range
    stds = lo + (hi - lo) * torch.rand(*shape, k, generator=g, dtype=dtype)
    weights = torch.softmax(torch.randn(*shape, k, generator=g, dtype=dtype), -1)
    return GaussianMixture(means, stds, weights)


def hard_mixtures():
    """Mixtures whose cdf is hard to invert: far-apart modes with flat cdf between them,
    needle-thin components, and a mixture of both widths."""
    separated = GaussianMixture(
        torch.tensor([[-1000.0, 0.0, 1000.0]], dtype=F64),
        torch.tensor([[0.01, 0.02, 0.01]], dtype=F64),
        torch.tensor([[0.3, 0.4, 0.3]], dtype=F64),
    )
    narrow = random_mixture((2, 3), k=4, seed=1, std_range=(1e-4, 1e-3))
    mixed_widths = GaussianMixture(
        torch.tensor([[0.0, 0.0, 5.0]], dtype=F64),
        torch.tensor([[1e-4, 10.0, 1e-3]], dtype=F64),
        torch.tensor([[0.5, 0.2, 0.3]], dtype=F64),
    )
    return [random_mixture(), separated, narrow, mixed_widths]


LEVELS = [0.001, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.999]


def cdf_at_quantiles(mix, q):
    """cdf of each mixture at each of its L quantiles: [..., L] -> [..., L]."""
    return mix.cdf(q.movedim(-1, 0)).movedim(0, -1)


@pytest.mark.parametrize("mix", hard_mixtures())
def test_cdf_of_quantile_recovers_level(mix):
    q = mix.quantiles(LEVELS)
    assert q.shape == (*mix.batch_shape, len(LEVELS))
    error = (cdf_at_quantiles(mix, q) - torch.tensor(LEVELS, dtype=F64)).abs().max()
    assert error < 1e-6  # callers need 1e-4; float64 search promises 1e-7


def test_the_median_is_the_exact_one_and_its_gradient_is_the_implicit_functions():
    mix = random_mixture(shape=(2, 3), k=3, seed=4)
    torch.testing.assert_close(mix.median(), mix.quantiles([0.5])[..., 0], atol=1e-7, rtol=0)
    means, stds = mix.means.clone().requires_grad_(), mix.stds.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda m, s: GaussianMixture(m, s, mix.weights).median(), (means, stds),
                                    eps=1e-6, atol=1e-5)
    # A shift of every component moves the median by the same amount.
    shifted = GaussianMixture(means + 0.0, stds, mix.weights).median().sum()
    grad, = torch.autograd.grad(shifted, means)
    torch.testing.assert_close(grad.sum(-1), torch.ones(2, 3, dtype=F64))


def test_quantiles_in_float32_keep_dtype_and_accuracy():
    mix = random_mixture((8, 6), dtype=torch.float32)
    q = mix.quantiles(LEVELS)
    assert q.dtype == torch.float32
    assert (cdf_at_quantiles(mix, q) - torch.tensor(LEVELS)).abs().max() < 1e-4


def test_single_component_quantiles_are_normal_ppf_even_in_the_far_tails():
    mix = random_mixture((5,), k=1)
    levels = [1e-12, 1e-9, *LEVELS, 1 - 1e-9, 1 - 1e-12]
    mu, sigma = mix.means.numpy(), mix.stds.numpy()
    expected_z = (stats.norm.ppf(levels, loc=mu, scale=sigma) - mu) / sigma
    np.testing.assert_allclose((mix.quantiles(levels).numpy() - mu) / sigma, expected_z, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mix", hard_mixtures())
def test_quantiles_monotone_in_level(mix):
    levels = torch.linspace(0.0005, 0.9995, 301, dtype=F64)
    q = mix.quantiles(levels)
    assert (q.diff(dim=-1) >= 0).all()


def test_quantiles_reject_levels_outside_unit_interval():
    mix = random_mixture()
    for bad in ([0.0, 0.5], [0.5, 1.0], [[0.1, 0.9]]):
        with pytest.raises(ValueError):
            mix.quantiles(bad)


def test_mean_and_variance_match_explicit_formulas_and_monte_carlo():
    mix = random_mixture((2, 3), k=3)
    w, mu, var = mix.weights, mix.means, mix.stds**2
    mean = (w * mu).sum(-1)
    variance = (w * (var + mu**2)).sum(-1) - mean**2
    torch.testing.assert_close(mix.mean(), mean)
    torch.testing.assert_close(mix.variance(), variance)

    draws = mix.sample(400_000, generator=torch.Generator().manual_seed(1))
    sd = variance.sqrt()
    # Monte-Carlo standard error is sd / sqrt(n) ~ sd / 630; allow ~6 standard errors.
    assert ((draws.mean(0) - mean).abs() < 0.01 * sd).all()
    assert ((draws.var(0) / variance - 1).abs() < 0.02).all()


def test_nll_matches_scipy_logsumexp():
    mix = random_mixture((4, 3), k=4)
    y = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=F64) * 3
    m, s, w = (t.numpy() for t in (mix.means, mix.stds, mix.weights))
    log_terms = np.log(w) + stats.norm.logpdf(y.numpy()[..., None], loc=m, scale=s)
    np.testing.assert_allclose(mix.nll(y).numpy(), -special.logsumexp(log_terms, axis=-1), rtol=1e-12)


def test_nll_stable_far_in_the_tail():
    """Every component density underflows to 0 here, so a naive log(sum(w * pdf)) is -inf."""
    mix = GaussianMixture(
        torch.tensor([0.0, 1.0], dtype=torch.float32),
        torch.tensor([0.1, 0.1], dtype=torch.float32),
        torch.tensor([0.5, 0.5], dtype=torch.float32),
    )
    y = 30.0
    log_terms = math.log(0.5) + stats.norm.logpdf(y, loc=[0.0, 1.0], scale=0.1)
    expected = -special.logsumexp(log_terms)
    nll = mix.nll(y)
    assert torch.isfinite(nll)
    assert nll.item() == pytest.approx(expected, rel=1e-5)


def test_crps_check_value():
    mix = GaussianMixture(
        torch.tensor([0.1, -0.3, 1.0], dtype=F64),
        torch.tensor([0.4, 2.1, 0.7], dtype=F64),
        torch.tensor([0.1, 0.2, 0.7], dtype=F64),
    )
    assert mix.crps(0.0).item() == pytest.approx(0.46806866729387275, rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_crps_matches_scoringrules_on_random_batches(k):
    mix = random_mixture((6, 7), k=k, seed=k)
    y = 4 * torch.randn(6, 7, generator=torch.Generator().manual_seed(3), dtype=F64)
    m, s, w = (t.numpy() for t in (mix.means, mix.stds, mix.weights))
    expected = sr.crps_mixnorm(y.numpy(), m, s, w, backend="numpy")
    np.testing.assert_allclose(mix.crps(y).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_crps_single_component_is_gaussian_crps():
    mix = random_mixture((10,), k=1, seed=4)
    y = torch.linspace(-5, 5, 10, dtype=F64)
    mu, sigma = mix.means[:, 0].numpy(), mix.stds[:, 0].numpy()
    z = (y.numpy() - mu) / sigma
    gaussian = sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    np.testing.assert_allclose(mix.crps(y).numpy(), gaussian, rtol=1e-10)


@pytest.mark.parametrize(
    "mix",
    [
        # Symmetric bimodal: median 0.
        GaussianMixture(torch.tensor([-2.0, 2.0], dtype=F64), torch.tensor([0.5, 0.5], dtype=F64),
                        torch.tensor([0.5, 0.5], dtype=F64)),
        # Skewed: the minimiser is the median, not the mean.
        GaussianMixture(torch.tensor([0.0, 6.0], dtype=F64), torch.tensor([1.0, 0.3], dtype=F64),
                        torch.tensor([0.7, 0.3], dtype=F64)),
    ],
)
def test_crps_nonnegative_and_minimised_at_median(mix):
    """d CRPS / dy = 2 F(y) - 1, so over y the score bottoms out at the median."""
    y = torch.linspace(-8, 10, 18001, dtype=F64)
    batch = GaussianMixture(*(t.expand(len(y), -1) for t in (mix.means, mix.stds, mix.weights)))
    scores = batch.crps(y)
    assert (scores >= 0).all()
    median = mix.quantiles([0.5]).item()
    assert y[scores.argmin()].item() == pytest.approx(median, abs=2e-3)


def test_denormalize_is_an_affine_map():
    nodes = 4
    mix = random_mixture((3, nodes), k=3, seed=5)
    loc = torch.tensor([30.0, 45.0, 20.0, 60.0], dtype=F64)
    scale = torch.tensor([5.0, 12.0, 3.0, 8.0], dtype=F64)
    kmh = mix.denormalize(loc, scale)
    torch.testing.assert_close(kmh.quantiles(LEVELS), loc[:, None] + scale[:, None] * mix.quantiles(LEVELS),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(kmh.mean(), loc + scale * mix.mean())
    torch.testing.assert_close(kmh.variance(), scale**2 * mix.variance())
    y = torch.randn(3, nodes, generator=torch.Generator().manual_seed(6), dtype=F64)
    torch.testing.assert_close(kmh.crps(loc + scale * y), scale * mix.crps(y))
    scalar = mix.denormalize(40.0, 10.0)
    torch.testing.assert_close(scalar.crps(40.0 + 10.0 * y), 10.0 * mix.crps(y))


def test_prob_below_equals_cdf():
    mix = random_mixture((3, 4), seed=7)
    thresholds = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=F64)  # one per node, broadcast
    torch.testing.assert_close(mix.prob_below(thresholds), mix.cdf(thresholds.expand(3, 4)))
    m, s, w = (t.numpy() for t in (mix.means, mix.stds, mix.weights))
    expected = (w * stats.norm.cdf(0.5, loc=m, scale=s)).sum(-1)
    np.testing.assert_allclose(mix.prob_below(0.5).numpy(), expected, rtol=1e-12)


def test_sample_shape_reproducibility_and_empirical_cdf():
    mix = random_mixture((2, 3), k=3, seed=8)
    n = 50_000
    draws = mix.sample(n, generator=torch.Generator().manual_seed(9))
    assert draws.shape == (n, 2, 3)
    assert torch.equal(draws, mix.sample(n, generator=torch.Generator().manual_seed(9)))
    for p in (0.1, 0.5, 0.9):
        q = mix.quantiles([p])[..., 0]
        empirical = (draws < q).double().mean(0)
        # Binomial standard error at n=50k is <= 0.0023.
        assert ((empirical - p).abs() < 0.012).all()


def test_nan_targets_give_nan_not_errors():
    mix = random_mixture((2,), k=3)
    y = torch.tensor([float("nan"), 0.3], dtype=F64)
    for score in (mix.nll(y), mix.cdf(y), mix.crps(y), mix.prob_below(y)):
        assert torch.isnan(score[0]) and torch.isfinite(score[1])


def test_getitem_indexes_batch_dims_only():
    mix = random_mixture((3, 4), k=5)
    node = mix[..., 1]
    assert node.batch_shape == (3,) and node.num_components == 5
    torch.testing.assert_close(node.mean(), mix.mean()[:, 1])
    first = mix[0]
    assert first.batch_shape == (4,)
    torch.testing.assert_close(first.crps(0.0), mix.crps(torch.zeros(3, 4))[0])
    masked = mix[mix.mean() > 0]
    assert masked.batch_shape == ((mix.mean() > 0).sum().item(),)


def test_to_changes_dtype_of_every_parameter():
    mix = random_mixture().to(torch.float32)
    assert {t.dtype for t in (mix.means, mix.stds, mix.weights)} == {torch.float32}
    assert mix.quantiles([0.5]).dtype == torch.float32


def test_mismatched_parameter_shapes_rejected():
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(2, 3), torch.ones(2, 3), torch.full((2, 4), 0.25))
