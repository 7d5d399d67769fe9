"""Where a dataset comes from, as a small JSON-able spec that run folders record, so a run can
always be re-evaluated (and forecast) on the data it was trained on."""

from __future__ import annotations

from pathlib import Path

from stmgt.data.dataset import TrafficDataset
from stmgt.data.folder import read_folder
from stmgt.data.simulate import simulate
from stmgt.errors import DataError

EMBEDDED = {"kind": "simulator", "seed": 0, "weeks": 8}
MAX_WEEKS = 520        # ten years of 15-minute steps, about 90 MB of speeds: a typo, not a request


def parse_data_arg(arg: str | None) -> dict:
    """`sim` (the embedded default), `sim:seed=1,weeks=2`, or a folder in the generic format."""
    if arg is None or arg == "sim":
        return dict(EMBEDDED)
    if arg.startswith("sim:"):
        spec = dict(EMBEDDED)
        for part in filter(None, arg[4:].split(",")):
            key, _, value = part.partition("=")
            if key not in ("seed", "weeks") or not value:
                raise DataError(f"unknown simulator option {part!r}; use seed=INT,weeks=NUMBER", "--data")
            try:
                spec[key] = int(value) if key == "seed" else float(value)
            except ValueError as exc:
                raise DataError(f"{key} must be a number, got {value!r}", "--data") from exc
        if not 0 < spec["weeks"] <= MAX_WEEKS:
            raise DataError(f"weeks must be more than 0 and at most {MAX_WEEKS}, got {spec['weeks']:g}", "--data")
        if spec["seed"] < 0:
            raise DataError(f"seed must not be negative, got {spec['seed']}", "--data")
        return spec
    return {"kind": "folder", "path": str(Path(arg).resolve())}


def data_arg(spec: dict) -> str:
    """The `--data` argument that loads `spec` (`parse_data_arg` undone), for a command run on it."""
    if spec.get("kind") == "simulator":
        return f"sim:seed={spec.get('seed', 0)},weeks={float(spec.get('weeks', 8))!r}"
    if spec.get("kind") == "folder":
        return str(spec["path"])
    raise DataError(f"unknown data source {spec!r}")


def describe(spec: dict) -> str:
    """The data as captions name it: the simulator's settings, or an imported dataset's name (its
    folder's), not the server path it is stored at."""
    if spec["kind"] == "simulator":
        return f"simulated HCMC, seed {spec['seed']}, {spec['weeks']:g} weeks"
    return f"dataset {Path(spec['path']).name}"


def load_dataset(spec: dict) -> TrafficDataset:
    if spec.get("kind") == "simulator":
        return simulate(weeks=spec.get("weeks", 8), seed=spec.get("seed", 0))
    if spec.get("kind") == "folder":
        return read_folder(spec["path"])
    raise DataError(f"unknown data source {spec!r}")
