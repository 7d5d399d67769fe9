"""scripts/setup.sh says what it is doing while it installs (issue 27: the first run was silent for
minutes) and says nothing when .venv is already set up. Run on a copy with a stand-in python."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ["scripts/setup.sh", "requirements.txt", "requirements-dev.txt", "pyproject.toml"]


def setup(tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(tmp_path / "scripts/setup.sh")], capture_output=True, text=True, timeout=60)


def test_setup_talks_while_installing_and_is_quiet_when_done(tmp_path):
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    python = tmp_path / ".venv/bin/python"                  # pip installs become no-ops that are logged
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'pip.log'}\n")
    python.chmod(0o755)

    first = setup(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "installing" in first.stderr and "minutes" in first.stderr and "done" in first.stderr
    assert "-r requirements-dev.txt" in (tmp_path / "pip.log").read_text()

    again = setup(tmp_path)
    assert again.returncode == 0 and again.stdout == again.stderr == ""
