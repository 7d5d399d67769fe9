"""One writer at a time per output folder. A process writing a dataset or a run (import, simulate,
train, train --resume, the dashboard's training jobs and its Data page) holds that folder's lock
for as long as it writes, so a second writer is refused in words instead of mixing its files with
the first's or silently replacing them.

The lock is `fcntl.flock` on a hidden file beside the folder, `.<name>.lock`: beside it, because a
replaced folder is swapped in as a new directory; flock, because the OS drops it when its holder
dies, so a lock left by a killed process is simply taken over. The file names its holder (pid,
host, start) for the message and for `holder`, and is removed on release. flock does not reach
other machines on every network file system; two hosts writing one folder are not guarded."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from stmgt.errors import DataError


@dataclass(frozen=True)
class Holder:
    """The process that holds a lock (written into the lock file)."""

    pid: int
    host: str
    started: str                      # when it took the lock, UTC ISO 8601
    process_start: int | None = None  # its start tick since boot: tells a reused pid apart

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"


def lock_file(folder) -> Path:
    """`.<name>.lock` in `folder`'s parent: every spelling of the folder's path (relative, through a
    linked parent) reaches that one file."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


class FolderLock:
    """A held lock on one folder; `release()` (or leaving the `with` block) gives it up."""

    def __init__(self, folder, where: str):
        """Take the lock on `folder` (its parent is created if need be), or raise a DataError at
        `where` naming the process that holds it."""
        self.path = lock_file(folder)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = _read(fd)
                os.close(fd)
                raise DataError(f"is being written by another process "
                                f"({other.describe() if other else 'it has not said which yet'}); "
                                "wait for it to finish or stop it", where) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)          # its holder removed the file as we locked it: lock the new one
        me = os.getpid()
        record = Holder(me, socket.gethostname(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        process_start(me))
        with contextlib.suppress(OSError):       # a full disk: the lock holds all the same, unnamed
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(record)).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)     # still held: a process waiting on this file sees it go
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(folder) -> Holder | None:
    """The live process, other than this one, that holds `folder`'s lock; None if there is none
    (no lock file, or one left by a process that has died)."""
    try:
        with open(lock_file(folder), "rb") as f:
            record = _parse(f.read())
    except OSError:
        return None
    if record is None or record.pid == os.getpid() or record.host != socket.gethostname():
        return None
    return record if process_alive(record.pid, record.process_start) else None


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int | None, start: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # alive, owned by someone else
        pass
    now = process_start(pid)
    return start is None or now is None or now == start


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read(fd: int) -> Holder | None:
    return _parse(os.pread(fd, 4096, 0))


def _parse(data: bytes) -> Holder | None:
    """The holder a lock file names; None while it is being written or if it is not ours."""
    try:
        return Holder(**json.loads(data))
    except (ValueError, TypeError):
        return None
