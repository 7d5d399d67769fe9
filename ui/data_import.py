"""What the Data page needs around the importers: uploads are staged in a private temporary
folder (never the workspace) and read from there by the importers; archives are unpacked with
guards against entries that escape the folder and against zip bombs; saved datasets are
summarised (cached) and deleted."""

from __future__ import annotations

import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable

import streamlit as st

from stmgt.data.folder import DATASET, read_folder
from stmgt.data.importers import ImportResult
from stmgt.errors import DataError
from stmgt.storage.lock import FolderLock
from stmgt.storage.outputs import remove_ours
from ui.server_files import allowed_path

# Zip bomb guards: an archive is refused when it unpacks to more than this, holds more entries, or
# an entry expands more than MAX_RATIO times (CSV of speeds compresses 3-10×; bombs 1000× and more).
MAX_UNPACKED_BYTES = 2**30
MAX_ENTRIES = 10_000
MAX_RATIO = 200
UPLOADS_FOLDER = "uploaded files"  # where a multi-file upload lands, as messages name it
IGNORED_ENTRIES = ("__MACOSX", ".DS_Store")  # macOS adds these to zips it makes


def staged_import(read: Callable[[Callable], ImportResult]) -> ImportResult:
    """`read(stage)` imports the data; `stage(value)` turns a path text or uploaded file(s) into a
    path, writing uploads into a fresh private temporary folder that is removed afterwards (the
    dataset is in memory by then). Errors, notes and provenance name the uploaded files as the
    user knows them, not by their temporary path."""
    given: list[str] = []

    def staging(value, tmp: str):
        given.extend(given_names(value))
        return stage(value, Path(tmp))

    with tempfile.TemporaryDirectory(prefix="stmgt-upload-") as tmp:
        try:
            result = read(lambda value: staging(value, tmp))
        except DataError as exc:
            problem = _untemp(exc.problem, tmp)
            if given and not any(name in str(exc) for name in given):
                problem += f" (read from what you gave: {', '.join(given)})"
            raise DataError(problem, None if exc.where is None else _untemp(exc.where, tmp)) from exc
    result.dataset.provenance = {k: _untemp(v, tmp) if isinstance(v, str) else v
                                 for k, v in result.dataset.provenance.items()}
    return ImportResult(result.dataset, [_untemp(note, tmp) for note in result.notes])


def given_names(value) -> list[str]:
    """The names of the files or the path the user gave, as they gave them."""
    if not value:
        return []
    if isinstance(value, str):
        return [value.strip()]
    return [upload.name for upload in (value if isinstance(value, list) else [value])]


def _untemp(text: str, tmp: str) -> str:
    return text.replace(tmp + os.sep, "").replace(tmp, "upload")


def stage(value, folder: Path) -> Path | None:
    """A path text as a path; an uploaded file written into `folder` under its own name (a .zip
    unpacked into a folder of that name); several uploaded files written together into one
    folder, or unpacked when they are a single .zip. None when nothing was given."""
    if not value:
        return None
    if isinstance(value, str):
        return allowed_path(value)
    if isinstance(value, list):
        if len(value) == 1 and value[0].name.lower().endswith(".zip"):
            return stage(value[0], folder)
        target = folder / UPLOADS_FOLDER
        target.mkdir()
        for upload in value:
            _write_upload(upload, target)
        return target
    if value.name.lower().endswith(".zip"):
        return extract_zip(value.getvalue(), folder / Path(value.name).name)
    return _write_upload(value, folder)


def _write_upload(upload, folder: Path) -> Path:
    path = folder / Path(upload.name).name
    if path.exists():
        raise DataError("two uploaded files have this name; rename one of them", path.name)
    path.write_bytes(upload.getvalue())
    return path


def extract_zip(data: bytes, dest: Path) -> Path:
    """Unpack an uploaded archive into `dest` and return the folder that holds its content (the
    archive's single top folder, if it has one). Refuses entries that would land outside
    `dest` (absolute paths, `..`), links, and zip bombs (`MAX_UNPACKED_BYTES`, `MAX_ENTRIES`,
    `MAX_RATIO`), counting the bytes actually unpacked, not the sizes the archive claims."""
    name = dest.name
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DataError("is not a readable zip archive", name) from exc
    with archive:
        members, total = [], 0
        if len(archive.infolist()) > MAX_ENTRIES:
            raise DataError(f"refused: it holds {len(archive.infolist()):,} entries, more than the "
                            f"{MAX_ENTRIES:,} allowed", name)
        for info in archive.infolist():
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if not parts or parts[0] in IGNORED_ENTRIES or parts[-1] in IGNORED_ENTRIES:
                continue
            if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                raise DataError(f"refused: entry {info.filename!r} would be written outside the archive's "
                                "folder", name)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"refused: entry {info.filename!r} is a link", name)
            total += info.file_size
            if total > MAX_UNPACKED_BYTES:
                raise DataError(f"refused: it unpacks to more than {MAX_UNPACKED_BYTES / 2**30:g} GiB", name)
            if info.file_size > MAX_RATIO * max(info.compress_size, 1024):
                raise DataError(f"refused: entry {info.filename!r} expands more than {MAX_RATIO} times, "
                                "as zip bombs do", name)
            members.append((info, dest.joinpath(*parts)))
        dest.mkdir(parents=True)
        try:
            for info, target in members:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    _bounded_copy(src, out, info.file_size, name)
        except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
            raise DataError(f"is damaged or uses an unsupported compression ({exc})", name) from exc
    return content_root(dest)


def _bounded_copy(src, out, declared: int, name: str, chunk: int = 2**20) -> None:
    """Copy at most the entry's declared size: an archive that lies about sizes is refused."""
    copied = 0
    while block := src.read(min(chunk, declared - copied + 1)):
        copied += len(block)
        if copied > declared:
            raise DataError("refused: an entry unpacks to more than the archive says", name)
        out.write(block)


def content_root(folder: Path) -> Path:
    """`folder`, or the one folder inside it when that is all it holds (zips usually wrap one)."""
    entries = list(folder.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


# ---- saved datasets ----------------------------------------------------------------------------
def saved_summary(path: Path) -> dict:
    """The dataset's summary and source for the list of imported datasets, or {'error': message}
    when the folder no longer reads; cached until its files change."""
    stamp = max((p.stat().st_mtime for p in path.iterdir()), default=0.0)
    return _summary(str(path), stamp)


@st.cache_data(show_spinner="Reading the imported datasets…", max_entries=64)
def _summary(path: str, stamp: float) -> dict:
    try:
        dataset = read_folder(path)
    except DataError as exc:
        return {"error": str(exc)}
    return {**dataset.summary(), "source": dataset.provenance.get("source", "folder")}


def delete_saved(path: Path, datasets_dir: Path) -> list[Path]:
    """Remove an imported dataset's files, only ever in a folder directly inside the workspace's
    datasets and under its lock; -> what is left: files someone else put there, kept with the folder."""
    path = Path(path)
    if not path.is_dir() or path.parent.resolve() != Path(datasets_dir).resolve():
        raise DataError("is not an imported dataset folder of this workspace", str(path))
    with FolderLock(path, str(path)):
        return remove_ours(path, DATASET)
