"""Which files on the server the Data page may read by path. Off by default: anyone who can open
the dashboard could otherwise read any file the server's user can. The server's operator turns it
on in `stmgt.toml` beside app.py (or the file `$STMGT_CONFIG` names):

    [data_page]
    server_folder = "/srv/traffic-data"   # paths are read only inside this folder

Paths are then taken relative to that folder, and one that leads outside it (`..`, an absolute
path elsewhere, a link pointing out) is refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

from stmgt.errors import DataError
from stmgt.paths import server_config

def server_folder() -> Path | None:
    """The allow-listed folder, or None when reading server paths is off (or misconfigured)."""
    path = server_config()
    try:
        settings = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    folder = settings.get("data_page", {}).get("server_folder")
    if not isinstance(folder, str) or not folder:
        return None
    folder = Path(folder).expanduser().resolve()
    return folder if folder.is_dir() else None


def allowed_path(text: str) -> Path:
    """`text` as a path inside the allow-listed folder; DataError naming what was typed otherwise."""
    folder = server_folder()
    if folder is None:
        raise DataError("reading files on the server is turned off; upload the files instead", text)
    path = (folder / Path(text.strip())).resolve()   # an absolute `text` stays absolute
    if path != folder and folder not in path.parents:
        raise DataError(f"is outside the folder this server allows reading from ({folder})", text)
    return path
