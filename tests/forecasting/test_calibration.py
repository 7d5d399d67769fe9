"""The σ calibration fitted at the end of training."""

import copy

import numpy as np
import pytest
import torch

from stmgt.storage.checkpoint import load_checkpoint
from stmgt.data.dataset import Windows


def test_sigma_calibration_fits_the_validation_split(trained, data):
    """The σ scale fitted at the end of training minimises the validation NLL over its grid, and
    the saved checkpoint carries it."""
    from stmgt.forecasting.calibration import SCALE_GRID, fit_sigma_scale
    from stmgt.data.dataset import split_anchors
    from stmgt.forecasting.predict import predict

    result = copy.deepcopy(trained[0])              # its σ scale is changed below
    saved = load_checkpoint(result.run.path / "checkpoint.pt")
    torch.testing.assert_close(saved.model.sigma_scale, result.model.sigma_scale)
    assert saved.meta["sigma_scale"] == pytest.approx(result.model.sigma_scale.tolist())
    windows = Windows(data, result.scaler)
    val = split_anchors(data)["val"]
    scale = fit_sigma_scale(result.model, windows, val, data.graph.edge_index, "cpu")
    assert set(scale.tolist()) <= set(SCALE_GRID.astype(np.float32).tolist())

    def val_nll(factor):
        result.model.sigma_scale.copy_(scale * factor)
        batch = windows.batch(val)
        mix, y = predict(result.model, batch, data.graph.edge_index, result.scaler), batch.y
        mask = ~torch.isnan(y)
        return ((mix.nll(torch.nan_to_num(y)) * mask).sum() / mask.sum()).item()

    best = val_nll(1.0)
    assert best <= val_nll(1.1) and best <= val_nll(0.9)
    result.model.sigma_scale.copy_(scale)

