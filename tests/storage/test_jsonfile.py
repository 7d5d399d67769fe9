"""Small JSON files: what is written reads back the same, and a write either replaces the whole
file or leaves the old one as it was, with no temporary file left beside it."""

import errno
import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from stmgt.storage import jsonfile
from stmgt.storage.jsonfile import atomic_write_bytes, json_text, read_json, write_json


def test_what_is_written_reads_back_the_same(tmp_path):
    metrics = {"models": {"stmgt": {"mae": [1.25, 2.5], "coverage": {"80": [0.8, 0.79]}}},
               "node": "Lê Lợi / Nguyễn Huệ", "quick_look": False, "anchors": 16, "note": None}
    path = tmp_path / "run" / "metrics.json"           # the folder is created
    write_json(path, metrics)
    assert read_json(path) == metrics
    text = path.read_text(encoding="utf-8")
    assert "Lê Lợi / Nguyễn Huệ" in text and text.endswith("}\n")      # readable, not \u-escaped
    assert text.splitlines()[1].startswith("  \"models\"")              # indented for people


def test_values_json_has_no_type_for_are_written_as_text():
    when = pd.Timestamp("2025-07-07 08:00", tz="Asia/Ho_Chi_Minh")
    assert json.loads(json_text({"at": when, "folder": Path("runs/a")})) == {
        "at": "2025-07-07 08:00:00+07:00", "folder": "runs/a"}


def test_a_write_replaces_the_whole_file_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"epochs": 30, "notes": "x" * 1000})
    write_json(path, {"epochs": 3})
    assert read_json(path) == {"epochs": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644                   # readable by others, like the folder


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "interrupted"])
def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch, failure):
    path = tmp_path / "metrics.json"
    write_json(path, {"mae": 2.5})

    def fail(fd):
        raise failure

    monkeypatch.setattr(jsonfile.os, "fsync", fail)
    with pytest.raises(type(failure)) as err:
        atomic_write_bytes(path, b'{"mae": 9.9, "half": ')
    assert read_json(path) == {"mae": 2.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]     # the temporary file is gone
    if isinstance(failure, OSError):
        assert err.value.filename == str(path)                         # names the file, not the temporary one


def test_a_reader_never_sees_half_a_file(tmp_path, monkeypatch):
    """Until the rename, the path still holds the old content; the new bytes go to another file."""
    path = tmp_path / "status.json"
    write_json(path, {"state": "running"})
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((Path(src).name, read_json(path)))
        real_replace(src, dst)

    monkeypatch.setattr(jsonfile.os, "replace", replace)
    write_json(path, {"state": "finished"})
    (temporary, before), = seen
    assert before == {"state": "running"} and temporary.startswith(".status.json.")
    assert read_json(path) == {"state": "finished"}
