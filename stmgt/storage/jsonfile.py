"""Small JSON files (run configs, metrics, dataset provenance): read with plain-words errors,
written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from stmgt.errors import DataError, reason


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename over it: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)      # mkstemp makes it private; run folders are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:    # a full disk: say which file
            exc.filename = str(path)
        raise


def json_text(data: dict, where: str | None = None) -> str:
    """`data` as indented JSON. JSON has no NaN or infinity (Python would write a bare `NaN` that
    other readers refuse), so a non-finite number is refused naming its key."""
    try:
        return json.dumps(data, indent=2, default=str, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:
        found = _non_finite(data)
        if found is None:
            raise
        raise DataError(f"{found[0]} is {found[1]}, which JSON cannot hold; nothing was written", where) from None


def _non_finite(data, key: str = "") -> tuple[str, float] | None:
    """The first non-finite number in nested dicts and lists, with its key path (e.g. `segments[2].speed`)."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    for k, value in items:
        path = f"{key}[{k}]" if isinstance(k, int) else f"{key}.{k}" if key else str(k)
        if isinstance(value, float) and not math.isfinite(value):
            return path, value
        found = _non_finite(value, path)
        if found:
            return found
    return None


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_bytes(path, json_text(data, str(path)).encode())


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"is not valid JSON ({reason(exc)})", str(path)) from exc
    if not isinstance(data, dict):
        raise DataError("must hold a JSON object", str(path))
    return data
