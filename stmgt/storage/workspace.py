"""The user's workspace: imported datasets and trained runs, kept out of the source tree's git.

`STMGT_WORKSPACE` overrides the location (tests point it at a temporary folder)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from stmgt.paths import workspace_root
from stmgt.storage.runs import Run, list_runs

def slug(text: str) -> str:
    """A safe folder name from user text."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return cleaned[:60] or "unnamed"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def default(cls) -> Workspace:
        return cls(workspace_root())

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def datasets(self) -> dict[str, Path]:
        """Imported datasets by name (folders holding a speed file; not the hidden ones a save
        builds or swaps out beside them, `stmgt.storage.outputs`)."""
        if not self.datasets_dir.is_dir():
            return {}
        return {p.name: p for p in sorted(self.datasets_dir.iterdir()) if not p.name.startswith(".")
                and ((p / "speed.csv").is_file() or (p / "speed.parquet").is_file())}

    def runs(self) -> list[Run]:
        return list_runs(self.runs_dir)

    def new_run_dir(self, label: str = "run") -> Path:
        """A fresh, unused run folder name: `<label>-<YYYYmmdd-HHMMSS>[-n]`."""
        base = f"{slug(label)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        path, n = self.runs_dir / base, 1
        while path.exists():
            n += 1
            path = self.runs_dir / f"{base}-{n}"
        return path

    def dataset_dir(self, name: str) -> Path:
        return self.datasets_dir / slug(name)
