"""Joint draws of forecast speeds across nodes and horizon steps: a Gaussian copula over the
forecast mixtures, with the dependence estimated from the model's own errors.

A route's travel time adds up speeds of neighbouring nodes over successive steps. Their forecast
errors are positively correlated (a jam the model missed is missed at the next node and the next
step too), so drawing every speed independently makes a long route's spread far too narrow.

Each speed keeps its forecast mixture as its marginal; the dependence lives in normal scores
z = Φ⁻¹(F(y)), F the mixture cdf. Their correlation is taken as separable,
corr(z[h, n], z[k, m]) = temporal[h, k] · spatial[n, m]: a few hundred training windows cannot
pin down a free (H·N)² matrix (744² on the HCMC graph), but they estimate a 62 × 62 and a 12 × 12
one from thousands of pairs each, and the Kronecker form keeps sampling cheap.

Estimating it runs the model over hundreds of training windows, so it is done once per model and
data and saved beside the checkpoint (`saved_copula`): a later route answer reads two small matrices.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stmgt.data.dataset import TrafficDataset, window_anchors
from stmgt.errors import DataError, reason
from stmgt.model.mixture import GaussianMixture
from stmgt.storage.jsonfile import atomic_write_bytes
from stmgt.storage.runs import CHECKPOINT, COPULA

# Normal scores are looked up on this grid: a mixture's quantile function is smooth in z (a single
# Gaussian's is a straight line), so linear interpolation between 91 exact quantiles (Δz = 0.1)
# suffices: on the bundled model's forecasts the draws' cdf levels were within 2e-4 of the exact
# ones. The table is most of a route answer's time, so it is no finer than that.
Z_GRID = np.linspace(-4.5, 4.5, 91)
_PIT_CLIP = 1e-6          # F(y) of 0 or 1 (a reading far in a tail) would give an infinite score
ESTIMATION_WINDOWS = 240  # training windows, evenly spaced: seconds of forward passes on a CPU (RESULTS.md)
COPULA_FORMAT = "stmgt-error-copula/2"


@dataclass(frozen=True, eq=False)
class ErrorCopula:
    """Correlation of forecast normal scores: `spatial` [N, N] between nodes, `temporal` [H, H]
    between horizon steps of one forecast."""

    spatial: np.ndarray
    temporal: np.ndarray

    @classmethod
    def independent(cls, num_nodes: int, horizon: int) -> ErrorCopula:
        """Every speed drawn on its own: the comparison that shows what dependence adds."""
        return cls(np.eye(num_nodes), np.eye(horizon))

    @classmethod
    def from_scores(cls, z: np.ndarray) -> ErrorCopula:
        """Fit to normal scores `z` [windows, H, N] (NaN = missing reading, left out pairwise)."""
        windows, horizon, nodes = z.shape
        spatial = pd.DataFrame(z.reshape(-1, nodes)).corr().to_numpy()
        temporal = pd.DataFrame(z.transpose(0, 2, 1).reshape(-1, horizon)).corr().to_numpy()
        return cls(_nearest_correlation(spatial), _nearest_correlation(temporal))

    @classmethod
    @torch.no_grad()
    def estimate(cls, forecaster, windows: int = ESTIMATION_WINDOWS, batch_size: int = 8,
                 cancel: threading.Event | None = None,
                 on_batch: Callable[[int, int], None] | None = None) -> ErrorCopula | None:
        """From the model's errors on `windows` evenly spaced anchors of the training split (only
        that split: a live dataset that has just started has no test period yet). None if
        `cancel` was set on the way; `on_batch(done, total)` after each batch."""
        train = window_anchors(forecaster.dataset.splits()["train"])
        anchors = train[np.unique(np.linspace(0, len(train) - 1, windows).round().astype(int))]
        starts = range(0, len(anchors), batch_size)
        scores = []
        for done, start in enumerate(starts, 1):
            if cancel is not None and cancel.is_set():
                return None
            forecast = forecaster.forecast(anchors[start:start + batch_size])
            scores.append(normal_scores(forecast.mixture, forecast.truth))
            if on_batch:
                on_batch(done, len(starts))
        return cls.from_scores(np.concatenate(scores))

    def sample(self, nodes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` joint draws of standard-normal scores for node positions `nodes`: [n, H, len(nodes)]."""
        spatial = _square_root(self.spatial[np.ix_(nodes, nodes)])
        temporal = _square_root(self.temporal)
        noise = rng.standard_normal((n, len(self.temporal), len(nodes)))
        return temporal @ noise @ spatial.T


def copula_key(checkpoint: Path, dataset: TrafficDataset, windows: int = ESTIMATION_WINDOWS) -> dict:
    """What a saved copula was fitted from: the checkpoint's bytes, the training split's speeds,
    weather and times (the only steps `estimate` reads, so a live feed's new steps keep it), the
    graph, and the number of windows. A copula saved under another key is stale."""
    train = dataset.splits()["train"]
    data = hashlib.sha256()
    for part in (dataset.speed, dataset.weather, dataset.timestamps.asi8):
        data.update(b"-" if part is None else np.ascontiguousarray(part[train.start:train.stop]).tobytes())
    data.update(dataset.graph.fingerprint().encode())
    return {"format": COPULA_FORMAT, "checkpoint_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest(),
            "data_sha256": data.hexdigest(), "windows": int(windows)}


def save_copula(path: Path, copula: ErrorCopula, key: dict) -> None:
    """Write `copula` with its `key` as a compressed .npz of plain arrays, atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, spatial=copula.spatial, temporal=copula.temporal,
                        key=np.array(json.dumps(key, sort_keys=True)))
    atomic_write_bytes(path, buffer.getvalue())


def read_copula(path: Path, key: dict, num_nodes: int, horizon: int) -> ErrorCopula | None:
    """The copula saved at `path`; None when there is none or it was fitted under another `key`.
    Read without pickle; a damaged file, or matrices that are not `num_nodes` and `horizon` square
    correlation matrices, is a DataError."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            stored = json.loads(str(saved["key"][()]))
            spatial, temporal = saved["spatial"], saved["temporal"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"the saved error copula cannot be read ({reason(exc)})", str(path)) from exc
    if stored != key:
        return None
    for name, matrix, size in (("spatial", spatial, num_nodes), ("temporal", temporal, horizon)):
        if matrix.shape != (size, size) or not _is_correlation(matrix):
            raise DataError(f"the saved error copula's {name} matrix is not a {size} × {size} correlation matrix",
                            str(path))
    return ErrorCopula(spatial, temporal)


def saved_copula(forecaster, run_dir: Path, windows: int = ESTIMATION_WINDOWS) -> ErrorCopula:
    """The error copula of the model in `run_dir` on the forecaster's data: read from the run
    folder when saved there for this checkpoint and data, else estimated and saved for next time.
    A damaged or stale file is estimated afresh and replaced; a folder that cannot be written
    (a read-only install) only costs the estimate again next time."""
    path = Path(run_dir) / COPULA
    key = copula_key(Path(run_dir) / CHECKPOINT, forecaster.dataset, windows)
    try:
        copula = read_copula(path, key, forecaster.dataset.num_nodes, forecaster.horizon)
    except DataError:
        copula = None
    return copula if copula is not None else _estimate_into(forecaster, path, key, windows)


def estimate_and_save(forecaster, run_dir: Path, windows: int = ESTIMATION_WINDOWS,
                      cancel: threading.Event | None = None,
                      on_batch: Callable[[int, int], None] | None = None) -> ErrorCopula | None:
    """Estimate the copula of the model in `run_dir` on the forecaster's data and save it there
    (training does this at its end, so a route's first answer reads it; at a thousand roads the
    estimate takes minutes). None, saving nothing, if cancelled."""
    key = copula_key(Path(run_dir) / CHECKPOINT, forecaster.dataset, windows)
    return _estimate_into(forecaster, Path(run_dir) / COPULA, key, windows, cancel, on_batch)


def _estimate_into(forecaster, path: Path, key: dict, windows: int, cancel=None, on_batch=None) -> ErrorCopula | None:
    """Estimate and save at `path` under `key`; a folder that cannot be written keeps nothing."""
    copula = ErrorCopula.estimate(forecaster, windows, cancel=cancel, on_batch=on_batch)
    if copula is not None:
        try:
            save_copula(path, copula, key)
        except OSError:
            pass
    return copula


def normal_scores(mixture: GaussianMixture, observed: np.ndarray) -> np.ndarray:
    """Φ⁻¹(F(y)) of each observation under its forecast mixture (NaN stays NaN)."""
    u = mixture.cdf(torch.from_numpy(np.nan_to_num(observed))).double().numpy()
    z = torch.special.ndtri(torch.from_numpy(np.clip(u, _PIT_CLIP, 1 - _PIT_CLIP))).numpy()
    return np.where(np.isnan(observed), np.nan, z)


def mixture_draws(mixture: GaussianMixture, z: np.ndarray) -> np.ndarray:
    """Speeds with normal scores `z` [n, *batch] under `mixture` (batch shape e.g. [H, P]): the
    mixture quantile at Φ(z), from exact quantiles on `Z_GRID` (scores beyond it are clipped)."""
    levels = torch.special.ndtr(torch.from_numpy(Z_GRID)).tolist()
    table = mixture.quantiles(levels).double().numpy()                     # [*batch, G]
    position = (np.clip(z, Z_GRID[0], Z_GRID[-1]) - Z_GRID[0]) / (Z_GRID[1] - Z_GRID[0])
    left = np.minimum(position.astype(np.int64), len(Z_GRID) - 2)
    frac = position - left
    lo = np.take_along_axis(table[None], left[..., None], -1)[..., 0]
    hi = np.take_along_axis(table[None], left[..., None] + 1, -1)[..., 0]
    return lo + frac * (hi - lo)


def _nearest_correlation(matrix: np.ndarray) -> np.ndarray:
    """A valid correlation matrix near `matrix`: pairwise-complete estimates (and NaN for a
    node never observed) need not be positive semi-definite. Negative eigenvalues are cut to 0
    and the diagonal rescaled to 1."""
    matrix = np.nan_to_num(matrix, nan=0.0)
    np.fill_diagonal(matrix, 1.0)
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    fixed = (vectors * np.clip(values, 0, None)) @ vectors.T
    scale = 1 / np.sqrt(np.clip(np.diag(fixed), 1e-12, None))
    return fixed * scale[:, None] * scale[None, :]


def _is_correlation(matrix: np.ndarray) -> bool:
    """Finite, symmetric, unit diagonal and entries within [−1, 1]."""
    return (matrix.dtype.kind == "f" and bool(np.isfinite(matrix).all()) and np.allclose(matrix, matrix.T)
            and np.allclose(np.diag(matrix), 1.0) and bool((np.abs(matrix) <= 1 + 1e-9).all()))


def _square_root(matrix: np.ndarray) -> np.ndarray:
    """L with L Lᵀ = matrix, for positive semi-definite matrices: a Cholesky factor fails on the
    singular ones (perfectly correlated nodes), an eigen-decomposition does not."""
    values, vectors = np.linalg.eigh(matrix)
    return vectors * np.sqrt(np.clip(values, 0, None))
