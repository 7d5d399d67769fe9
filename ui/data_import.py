"""What the Data page needs around the importers: uploads are staged in a private temporary
folder (never the workspace) and read from there by the importers; archives are unpacked with
guards against entries that escape the folder and against zip bombs; saved datasets are
summarised (cached) and deleted."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable

import streamlit as st

from stmgt.data.folder import read_folder
from stmgt.data.importers import ImportResult
from stmgt.errors import DataError

MAX_UNPACKED_BYTES = 4 * 2**30  # an archive that unpacks to more is refused (zip bomb guard)
UPLOADS_FOLDER = "uploaded files"  # where a multi-file upload lands, as messages name it
IGNORED_ENTRIES = ("__MACOSX", ".DS_Store")  # macOS adds these to zips it makes


def staged_import(read: Callable[[Callable], ImportResult]) -> ImportResult:
    """`read(stage)` imports the data; `stage(value)` turns a path text or uploaded file(s) into a
    path, writing uploads into a fresh private temporary folder that is removed afterwards (the
    dataset is in memory by then). Errors, notes and provenance name the uploaded files as the
    user knows them, not by their temporary path."""
    with tempfile.TemporaryDirectory(prefix="stmgt-upload-") as tmp:
        try:
            result = read(lambda value: stage(value, Path(tmp)))
        except DataError as exc:
            raise DataError(_untemp(exc.problem, tmp),
                            None if exc.where is None else _untemp(exc.where, tmp)) from exc
    result.dataset.provenance = {k: _untemp(v, tmp) if isinstance(v, str) else v
                                 for k, v in result.dataset.provenance.items()}
    return ImportResult(result.dataset, [_untemp(note, tmp) for note in result.notes])


def _untemp(text: str, tmp: str) -> str:
    return text.replace(tmp + os.sep, "").replace(tmp, "upload")


def stage(value, folder: Path) -> Path | None:
    """A path text as a path; an uploaded file written into `folder` under its own name (a .zip
    unpacked into a folder of that name); several uploaded files written together into one
    folder, or unpacked when they are a single .zip. None when nothing was given."""
    if not value:
        return None
    if isinstance(value, str):
        return Path(value.strip()).expanduser()
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
    `dest` (absolute paths, `..`), links, and archives that unpack to over 4 GiB."""
    name = dest.name
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DataError("is not a readable zip archive", name) from exc
    with archive:
        members, total = [], 0
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
            members.append((info, dest.joinpath(*parts)))
        dest.mkdir(parents=True)
        try:
            for info, target in members:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
            raise DataError(f"is damaged or uses an unsupported compression ({exc})", name) from exc
    return content_root(dest)


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


def delete_saved(path: Path, datasets_dir: Path) -> None:
    """Remove an imported dataset's folder; only ever one directly inside the workspace's datasets."""
    path = Path(path)
    if not path.is_dir() or path.parent.resolve() != Path(datasets_dir).resolve():
        raise DataError("is not an imported dataset folder of this workspace", str(path))
    shutil.rmtree(path)
