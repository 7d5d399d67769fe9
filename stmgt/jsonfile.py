"""Small JSON files (run configs, metrics, dataset provenance): read with plain-words errors,
written atomically."""

from __future__ import annotations

import json
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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n").encode())


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
