"""One batch through the model to a predictive mixture in km/h: the single place where the
model's z-scored output is turned back into speeds."""

from __future__ import annotations

import torch

from stmgt.data.dataset import Batch, Scaler
from stmgt.model.mixture import GaussianMixture
from stmgt.model import STMGT


def predict(model: STMGT, batch: Batch, edge_index: torch.Tensor, scaler: Scaler, diagnostics: bool = False,
            futures: int = 1):
    """The forecast mixture in km/h (and diagnostics on request) for a batch; with `futures`
    S, of each window under the S weathers the batch holds (STMGT.forward)."""
    inputs = dict(batch.model_inputs(), edge_index=edge_index)
    if diagnostics:
        *params, diag = model.forward_with_diagnostics(**inputs)
    else:
        params, diag = model(**inputs, futures=futures), None
    mixture = GaussianMixture(*params).denormalize(scaler.speed_mean, scaler.speed_std)
    return (mixture, diag) if diagnostics else mixture
