"""Output paths (`--out` of simulate, import, train and forecast; the Data page's save): nothing
the user owns is ever deleted or overwritten.

Every folder this tool writes carries a small marker file naming its kind, and each kind lists the
files the tool writes in it (`FolderKind`), so the tool knows its own files one by one. An
existing target is refused when it is a link, a file where a folder is wanted, a non-empty folder
without the marker (someone else's), one of ours holding anything the tool did not write (named in
the message), or one of ours without `overwrite`. A new folder is built in a hidden sibling and
moved into place only once complete, so a crash leaves the old content as it was; on Linux the two
folders are exchanged in one step (renameat2), so the folder's path never lacks a complete folder for
a reader (elsewhere there is a moment without one, which `stmgt.data.folder.read_folder` waits out).
Writers hold the folder's lock (`stmgt.storage.lock`) while they check and write."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from stmgt.errors import DataError, reason
from stmgt.storage.lock import FolderLock

MARKER = ".stmgt"             # {"kind": "dataset" | "run", "created": ...}
STAGING = ".partial-"         # staging folders are `.<name>.partial-XXXX` beside the target
LISTED = 5                    # foreign entries named in a message
AT_FDCWD, RENAME_EXCHANGE = -100, 2          # Linux's renameat2: paths relative to the working folder; swap


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder this tool writes: its name (in the marker) and every file name it writes
    there. Anything else in such a folder is the user's."""

    name: str
    files: frozenset[str]

    def ours(self, entry: Path) -> bool:
        """A regular file this tool writes here, or the temporary file of an atomic write of one
        (`.<name>.` and mkstemp's 8 characters) that a killed process left behind."""
        if entry.is_symlink() or not entry.is_file():
            return False
        names = self.files | {MARKER}
        leftover = re.fullmatch(r"\.(.+)\.[a-z0-9_]{8}", entry.name)
        return entry.name in names or (leftover is not None and leftover.group(1) in names)

    def foreign(self, folder: Path) -> list[str]:
        """The entries of `folder` this tool did not write, folders marked with a trailing /."""
        return sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "")
                      for p in Path(folder).iterdir() if not self.ours(p))


def write_marker(folder: Path, kind: FolderKind) -> None:
    (Path(folder) / MARKER).write_text(json.dumps(
        {"kind": kind.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")


def marked_kind(folder: Path) -> str | None:
    """The kind this tool's marker in `folder` names; None without one."""
    try:
        return json.loads((Path(folder) / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_folder_target(path, kind: FolderKind, overwrite: bool, option: str = "--out") -> bool:
    """Refuse a target that must not be replaced; True when `path` is a non-empty folder of ours
    that will be replaced (so the caller stages its output beside it)."""
    path = Path(path)
    where = f"{option} {path}"
    _check_parent(path, where)
    if path.is_symlink():
        gone = "" if path.exists() else ", which does not exist"
        raise DataError(f"is a symbolic link to {os.readlink(path)}{gone}; give the path of a real new or "
                        f"empty folder for the {kind.name}, not a link", where)
    if path.exists() and not path.is_dir():
        raise DataError(f"is an existing file; give the path of a new or empty folder for the {kind.name}", where)
    if not path.exists() or not any(path.iterdir()):
        return False
    marked = marked_kind(path)
    if marked not in (None, kind.name):
        raise DataError(f"holds a {marked}, not a {kind.name}; give a new or empty folder for the {kind.name}", where)
    if marked is None:
        raise DataError(f"is a folder with files this tool did not write ({_listed(sorted(os.listdir(path)))}); "
                        f"nothing was changed. Give a new or empty folder for the {kind.name}", where)
    foreign = kind.foreign(path)
    if foreign:
        raise DataError(f"holds files this tool did not write: {_listed(foreign)}; move them out or choose "
                        "another folder; nothing was changed", where)
    if not overwrite:
        raise DataError(f"already holds a {kind.name}; pass --overwrite to replace it", where)
    return True


@contextmanager
def locked_target(path, kind: FolderKind, overwrite: bool, option: str = "--out") -> Iterator[bool]:
    """Hold the writer's lock on `path` for the block and check it under the lock
    (`check_folder_target`: another writer may have finished with it meanwhile); -> whether an
    output of ours is being replaced."""
    path = Path(path)
    _check_parent(path, f"{option} {path}")          # the lock file goes beside it
    with FolderLock(path, f"{option} {path}"):
        yield check_folder_target(path, kind, overwrite, option)


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
        raise DataError("already exists; pass --overwrite to replace it", where)


def os_failure(exc: OSError) -> str:
    """An OSError in words: the system's reason, and what to do when the disk is full."""
    text = exc.strerror or reason(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        text += "; free some space there or write elsewhere"
    return text


def _listed(names: list[str]) -> str:
    more = len(names) - LISTED
    return ", ".join(names[:LISTED]) + (f" and {more} more" if more > 0 else "")


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
def staged_folder(target, kind: FolderKind, option: str = "--out") -> Iterator[Path]:
    """Yield a hidden sibling folder to write into; on success it replaces `target`, on any
    error it is removed and `target` is left untouched. A failed write (a full disk) is a
    DataError naming `target`, never the hidden folder."""
    target = Path(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING}", dir=target.parent))
        tmp.chmod(0o755)              # mkdtemp makes it private; outputs are meant to be shared
        write_marker(tmp, kind)
        yield tmp
        _move_into_place(tmp, target, kind)
    except OSError as exc:
        raise DataError(f"could not be written: {os_failure(exc)}; nothing was changed",
                        f"{option} {target}") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def remove_ours(folder: Path, kind: FolderKind) -> list[Path]:
    """Delete this tool's files in `folder`, and the folder once empty; -> what is left (the user's)."""
    for entry in folder.iterdir():
        if kind.ours(entry):
            entry.unlink()
    left = list(folder.iterdir())
    if not left:
        folder.rmdir()
    return left


def _move_into_place(tmp: Path, target: Path, kind: FolderKind) -> None:
    if not target.exists():
        os.replace(tmp, target)
        return
    if exchange(tmp, target):              # `tmp` now holds the old folder, which staged_folder removes
        for entry in remove_ours(tmp, kind):     # saved into it since the check: carried over, never lost
            os.replace(entry, target / entry.name)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old = backup / target.name
    os.replace(target, old)
    os.replace(tmp, target)
    for entry in remove_ours(old, kind):     # saved into it since the check: carried over, never lost
        os.replace(entry, target / entry.name)
    shutil.rmtree(backup)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2 with RENAME_EXCHANGE), so `b` always names a
    complete folder; False, changing nothing, where the system or file system cannot."""
    try:
        swap = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return False
    swap.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    swap.restype = ctypes.c_int
    if swap(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    failure = ctypes.get_errno()
    if failure in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(failure, os.strerror(failure), str(b))
