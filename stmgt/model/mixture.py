"""Gaussian-mixture predictive distributions: the model's output per (batch, horizon, node).

The probability maths (log-density, cdf, mean, variance) is delegated to
`torch.distributions.MixtureSameFamily`; this module adds what torch lacks for
forecasting: exact quantiles, the closed-form CRPS, un-normalising to km/h, and
seeded sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, Normal

# Quantile search guarantees |cdf(q) - p| <= this in float64 (callers need ~1e-4).
_CDF_TOLERANCE = 1e-7
_PHI_AT_1 = math.exp(-0.5) / math.sqrt(2.0 * math.pi)  # max |d/dz phi(z)|
# 200 halvings shrink a bracket 1e60-fold; only degenerate input (a std of 0) needs the cap.
_MAX_BISECTIONS = 200
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _crps_kernel(mu: Tensor, var: Tensor) -> Tensor:
    """A(mu, var) = E|X| for X ~ N(mu, var): the building block of the mixture CRPS."""
    sigma = var.sqrt()
    z = mu / sigma
    return mu * (2.0 * torch.special.ndtr(z) - 1.0) + 2.0 * sigma * _INV_SQRT_2PI * torch.exp(-0.5 * z * z)


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """A batch of 1-D Gaussian mixtures; parameters are [..., K] (weights sum to 1, stds > 0).

    The leading dims are the batch shape (e.g. [batch, horizon, node]); every per-mixture
    result has that shape. `eq=False` because element-wise tensor equality is not a bool.
    """

    means: Tensor
    stds: Tensor
    weights: Tensor

    def __post_init__(self):
        shapes = {tuple(t.shape) for t in (self.means, self.stds, self.weights)}
        if len(shapes) != 1 or self.means.dim() == 0:
            raise ValueError(
                "means, stds and weights must share one shape [..., K]; got "
                f"{[tuple(t.shape) for t in (self.means, self.stds, self.weights)]}"
            )

    @property
    def batch_shape(self) -> torch.Size:
        return self.means.shape[:-1]

    @property
    def num_components(self) -> int:
        return self.means.shape[-1]

    def _as_tensor(self, x) -> Tensor:
        """Scalars, arrays and tensors alike become tensors on our device and dtype."""
        return torch.as_tensor(x, dtype=self.means.dtype, device=self.means.device)

    def denormalize(self, loc, scale) -> GaussianMixture:
        """Map z-scored mixtures back to data units (x = z * scale + loc, scale > 0).

        `loc`/`scale` broadcast against the batch shape (floats, or e.g. [N] per-node tensors).
        """
        loc = self._as_tensor(loc).unsqueeze(-1)
        scale = self._as_tensor(scale).unsqueeze(-1)
        means, stds = torch.broadcast_tensors(self.means * scale + loc, self.stds * scale)
        return GaussianMixture(means, stds, self.weights.expand_as(means))

    def distribution(self) -> MixtureSameFamily:
        """The torch distribution. Argument validation is off so NaN targets propagate as NaN
        (callers mask missing readings) instead of raising."""
        return MixtureSameFamily(
            Categorical(probs=self.weights, validate_args=False),
            Normal(self.means, self.stds, validate_args=False),
            validate_args=False,
        )

    def mean(self) -> Tensor:
        return self.distribution().mean

    def variance(self) -> Tensor:
        """Law of total variance: within-component spread plus spread of the component means."""
        return self.distribution().variance

    def nll(self, y) -> Tensor:
        """Negative log-likelihood of observations `y` (batch shape); log-sum-exp stable."""
        return -self.distribution().log_prob(self._as_tensor(y))

    def cdf(self, y) -> Tensor:
        """P(Y ≤ y), clamped to [0, 1]: weights that sum to 1 + 1 ulp would otherwise give 1 + 2e-16."""
        return self.distribution().cdf(self._as_tensor(y)).clamp(0.0, 1.0)

    def prob_below(self, threshold) -> Tensor:
        """P(Y < threshold), e.g. the chance speed drops under a congestion limit."""
        return self.cdf(threshold)

    def median(self) -> Tensor:
        """The median, differentiable: bisection (`quantiles`) finds it, and the implicit-function
        theorem gives its gradient (dq/dθ = −∂F(q)/∂θ / f(q)), so a loss on what-if changes, which
        the dashboard reads off medians, can train the parameters."""
        with torch.no_grad():
            q = self.quantiles([0.5])[..., 0]
            density = self.distribution().log_prob(q).exp().clamp(min=1e-12)
        return q - (self.cdf(q) - 0.5) / density

    def quantiles(self, levels: Sequence[float] | Tensor) -> Tensor:
        """Exact quantiles for L probability levels in (0, 1); returns [..., L].

        Mixtures have no closed-form inverse cdf, so this bisects the cdf in float64 on all
        mixtures and levels at once, then finishes with one linear interpolation inside the
        final bracket; |cdf(q) - p| <= 1e-7 before the cast back to the input dtype.

        Start bracket: at the smallest component quantile mu_k + s_k Phi^-1(p) every
        component cdf is <= p, so is their weighted sum (likewise >= p at the largest), for
        any p. All levels share one bracket, [min_k at min p, max_k at max p], and every
        answer stays inside its bisection bracket, so the result is monotone in the level.
        """
        p = torch.as_tensor(levels, dtype=torch.float64, device=self.means.device)
        if p.dim() != 1 or not bool(((p > 0) & (p < 1)).all()):
            raise ValueError(f"levels must be a 1-D sequence of probabilities in (0, 1), got {levels}")
        means, stds, weights = (t.double() for t in (self.means, self.stds, self.weights))
        shape = (*self.batch_shape, len(p))
        z_range = torch.special.ndtri(torch.stack([p.min(), p.max()]))
        lo = (means + z_range[0] * stds).amin(-1, keepdim=True).expand(shape)
        hi = (means + z_range[1] * stds).amax(-1, keepdim=True).expand(shape)

        # |cdf''| <= phi(1) / min_k s_k^2, so interpolating linearly across a bracket of width
        # b misses the cdf by at most b^2 phi(1) / (8 min_k s_k^2): that sets the final width.
        # One step count for the whole batch keeps the loop free of per-step syncs.
        final_width = stds.amin(-1, keepdim=True) * math.sqrt(8 * _CDF_TOLERANCE / _PHI_AT_1)
        halvings = torch.log2((hi - lo) / final_width).nan_to_num(nan=0.0).clamp(0, _MAX_BISECTIONS)
        steps = math.ceil(halvings.max().item()) if halvings.numel() else 0

        inv = (stds * math.sqrt(2.0)).reciprocal().unsqueeze(-2)  # [..., 1, K]
        shift = -means.unsqueeze(-2) * inv
        w = (weights / weights.sum(-1, keepdim=True)).unsqueeze(-1)  # [..., K, 1], as Categorical

        def signed_cdf(x: Tensor) -> Tensor:
            """2 cdf(x) - 1 = sum_k w_k erf((x - mu_k) / (s_k sqrt 2)) for x [..., M]; fused
            by hand (one addcmul, one erf, one matmul) because it is the whole cost."""
            return (torch.addcmul(shift, x.unsqueeze(-1), inv).erf_() @ w).squeeze(-1)

        target = 2.0 * p - 1.0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            below = signed_cdf(mid) < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        at_lo, at_hi = signed_cdf(torch.cat([lo, hi], -1)).chunk(2, -1)
        # A flat cdf (at_hi == at_lo) gives 0/0: any point of the bracket is then exact.
        fraction = ((target - at_lo) / (at_hi - at_lo)).nan_to_num(nan=0.5).clamp(0.0, 1.0)
        return (lo + fraction * (hi - lo)).to(self.means.dtype)

    def crps(self, y) -> Tensor:
        """Continuous ranked probability score in closed form (Grimit et al. 2006):
        sum_i w_i A(y - mu_i, s_i^2) - 1/2 sum_ij w_i w_j A(mu_i - mu_j, s_i^2 + s_j^2).

        Proper and in the units of y, so it rewards sharp and calibrated mixtures alike.
        """
        y = self._as_tensor(y).unsqueeze(-1)
        var = self.stds.square()
        fit = (self.weights * _crps_kernel(y - self.means, var)).sum(-1)
        pair_mu = self.means.unsqueeze(-1) - self.means.unsqueeze(-2)
        pair_var = var.unsqueeze(-1) + var.unsqueeze(-2)
        pair_w = self.weights.unsqueeze(-1) * self.weights.unsqueeze(-2)
        spread = (pair_w * _crps_kernel(pair_mu, pair_var)).sum((-2, -1))
        return fit - 0.5 * spread

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws per mixture, [n, ...]. Done by hand because `MixtureSameFamily.sample`
        takes no generator, and reproducible samples need one."""
        k = self.num_components
        flat_w = self.weights.reshape(-1, k)
        component = torch.multinomial(flat_w, n, replacement=True, generator=generator)  # [B, n]
        mu = self.means.reshape(-1, k).gather(-1, component)
        sigma = self.stds.reshape(-1, k).gather(-1, component)
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return (mu + sigma * noise).T.reshape(n, *self.batch_shape)

    def __getitem__(self, idx) -> GaussianMixture:
        """Index the batch dims only; the component dim K is always kept whole."""
        idx = idx if isinstance(idx, tuple) else (idx,)
        if not any(i is Ellipsis for i in idx):
            idx = (*idx, Ellipsis)
        idx = (*idx, slice(None))
        return GaussianMixture(self.means[idx], self.stds[idx], self.weights[idx])

    def to(self, *args, **kwargs) -> GaussianMixture:
        """Same arguments as `Tensor.to` (device and/or dtype)."""
        return GaussianMixture(*(t.to(*args, **kwargs) for t in (self.means, self.stds, self.weights)))
