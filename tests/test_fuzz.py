"""Property-based fuzzing: the importers meet any table with a DataError or a valid dataset, never
another exception; the mixture maths gives finite answers for any finite parameters."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stmgt.data.folder import write_folder
from stmgt.data.importers import import_generic, import_matrix
from stmgt.data.importers.safe_pickle import Refused, load_arrays
from stmgt.errors import DataError
from stmgt.model.mixture import GaussianMixture
from tests.samples import small_dataset

FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 60)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

cells = st.one_of(st.just(""), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.integers(-10**12, 10**12).map(str), st.text(max_size=8),
                  st.sampled_from(["nan", "inf", "-0", "1e400", "NULL", "\"", "12,5", "٣"]))
stamps = st.one_of(st.sampled_from(["2025-07-07T08:00:00+07:00", "2025-07-07T08:15:00+07:00",
                                    "2025-07-07T08:30:00Z", "2025-07-07 08:45", "2025-07-07", ""]),
                   st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=12))


def rows(width):
    return st.lists(st.tuples(stamps, st.lists(cells, min_size=width - 1, max_size=width + 1)), max_size=12)


def imports_or_refuses(read):
    try:
        result = read()
    except DataError as exc:
        assert "\n" not in str(exc)
        return None
    dataset = result.dataset
    observed = dataset.speed[~np.isnan(dataset.speed)]
    assert ((observed >= 0) & (observed <= 250)).all()
    assert dataset.timestamps.tz is not None
    return dataset


@FUZZ
@given(table=rows(4), weather=rows(4))
def test_generic_speed_and_weather_tables(table, weather):
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(small_dataset(), Path(tmp) / "g")
        lines = ["timestamp,n1,n2,n3"] + [",".join([t, *c]) for t, c in table]
        (folder / "speed.csv").write_text("\n".join(lines) + "\n")
        lines = ["timestamp,temperature_c,wind_kmh,precipitation_mm"] + [",".join([t, *c]) for t, c in weather]
        (folder / "weather.csv").write_text("\n".join(lines) + "\n")
        imports_or_refuses(lambda: import_generic(folder))


@FUZZ
@given(text=st.text(max_size=300), start=st.text(max_size=20), freq=st.text(max_size=6))
def test_matrix_csv_of_any_text(text, start, freq):
    with tempfile.TemporaryDirectory() as tmp:
        speed, adj = Path(tmp) / "speed.csv", Path(tmp) / "adj.csv"
        speed.write_text(text)
        adj.write_text("0,1\n1,0\n")
        imports_or_refuses(lambda: import_matrix(speed, adj, start=start or "2025-01-01", freq=freq or "5min"))


@FUZZ
@given(data=st.binary(max_size=400))
def test_pickle_loader_on_any_bytes(data):
    try:
        load_arrays(data)
    except Refused:
        pass
    except Exception as exc:   # malformed pickles raise many kinds; what matters is that nothing runs
        assert not isinstance(exc, (SystemExit, KeyboardInterrupt))


finite = st.floats(-1e3, 1e3, allow_nan=False)


@st.composite
def mixtures(draw):
    k = draw(st.integers(1, 5))
    means = draw(st.lists(finite, min_size=k, max_size=k))
    stds = draw(st.lists(st.floats(1e-2, 1e3), min_size=k, max_size=k))
    raw = draw(st.lists(st.floats(1e-3, 1.0), min_size=k, max_size=k))
    weights = [w / sum(raw) for w in raw]
    as_tensor = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    return GaussianMixture(as_tensor(means), as_tensor(stds), as_tensor(weights))


@FUZZ
@given(mixture=mixtures(), y=st.floats(-1e4, 1e4, allow_nan=False))
def test_mixture_maths_is_finite(mixture, y):
    target = torch.tensor([y], dtype=torch.float64)
    for value in (mixture.mean(), mixture.variance(), mixture.nll(target), mixture.cdf(target), mixture.crps(target)):
        assert torch.isfinite(value).all(), value
    assert 0 <= mixture.cdf(target).item() <= 1
    assert mixture.crps(target).item() >= -1e-9
    q = mixture.quantiles([0.05, 0.5, 0.95])
    assert torch.isfinite(q).all() and (q.diff(dim=-1) >= -1e-9).all()
    assert math.isclose(mixture.cdf(q[..., 1]).item(), 0.5, abs_tol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_maths_at_extreme_but_finite_values(dtype):
    mixture = GaussianMixture(torch.tensor([[-1e3, 1e3]], dtype=dtype), torch.tensor([[1e-2, 1e3]], dtype=dtype),
                              torch.tensor([[0.999, 0.001]], dtype=dtype))
    y = torch.tensor([1e4], dtype=dtype)
    for value in (mixture.nll(y), mixture.cdf(y), mixture.crps(y), mixture.quantiles([0.01, 0.99])):
        assert torch.isfinite(value).all()
