"""Output paths (`--out` of simulate, import, train and forecast; the Data page's save): nothing
the user owns is ever deleted or overwritten.

Every folder this tool writes carries a small marker file naming what it is. An existing target
is refused when it is a file where a folder is wanted, a non-empty folder without the marker
(someone else's), or one of ours without `overwrite`. A new folder is built in a hidden sibling
and moved into place only once complete, so a crash leaves the old content as it was."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from stmgt.errors import DataError

MARKER = ".stmgt"             # {"kind": "dataset" | "run", "created": ...}
STAGING = ".partial-"         # staging folders are `.<name>.partial-XXXX` beside the target


def write_marker(folder: Path, kind: str) -> None:
    (Path(folder) / MARKER).write_text(json.dumps(
        {"kind": kind, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")


def written_here(folder: Path, kind: str) -> bool:
    """True when `folder` holds this tool's marker for `kind`."""
    try:
        return json.loads((Path(folder) / MARKER).read_text()).get("kind") == kind
    except (OSError, ValueError, AttributeError):
        return False


def check_folder_target(path, kind: str, overwrite: bool, option: str = "--out") -> bool:
    """Refuse a target that must not be replaced; True when `path` is a non-empty folder of ours
    that will be replaced (so the caller stages its output beside it)."""
    path = Path(path)
    where = f"{option} {path}"
    _check_parent(path, where)
    if path.exists() and not path.is_dir():
        raise DataError(f"is an existing file; give the path of a new or empty folder for the {kind}", where)
    if not path.exists() or not any(path.iterdir()):
        return False
    if not written_here(path, kind):
        raise DataError(f"is a folder with files this tool did not write; nothing was changed. "
                        f"Give a new or empty folder for the {kind}", where)
    if not overwrite:
        raise DataError(f"already holds a {kind}; pass --overwrite to replace it", where)
    return True


def check_file_target(path, overwrite: bool, ours: Callable[[Path], bool], what: str,
                      option: str = "--out") -> None:
    """The same rules for a single output file; `ours` recognises a file this tool wrote."""
    path = Path(path)
    where = f"{option} {path}"
    _check_parent(path, where)
    if path.is_dir():
        raise DataError(f"is a folder; give a file name for the {what}", where)
    if not path.exists() or path.stat().st_size == 0:
        return
    if not ours(path):
        raise DataError(f"is an existing file that this tool did not write; nothing was changed. "
                        f"Give a new file name for the {what}", where)
    if not overwrite:
        raise DataError(f"already exists; pass --overwrite to replace it", where)


def _check_parent(path: Path, where: str) -> None:
    """The nearest existing ancestor must be a folder we can write into."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"cannot be created: {parent} is a file, not a folder", where)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"cannot be created: no permission to write in {parent}", where)


@contextmanager
def staged_folder(target, kind: str) -> Iterator[Path]:
    """Yield a hidden sibling folder to write into; on success it replaces `target`, on any
    error it is removed and `target` is left untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING}", dir=target.parent))
    tmp.chmod(0o755)              # mkdtemp makes it private; outputs are meant to be shared
    try:
        write_marker(tmp, kind)
        yield tmp
        _move_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, target: Path) -> None:
    if target.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, backup / target.name)
        os.replace(tmp, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(tmp, target)
