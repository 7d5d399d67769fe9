"""Page paths are written once (ui/pages.py): every record names a page that exists, every page
in views/ is registered, and the bare paths appear nowhere else in the app's code."""

import re
from pathlib import Path

from ui import pages

ROOT = Path(__file__).resolve().parents[2]


def test_every_page_record_names_an_existing_file_and_every_view_is_registered():
    registered = [p.path for p in pages.ALL]
    assert len(set(registered)) == len(registered)
    assert all((ROOT / path).is_file() for path in registered), registered
    assert set(registered) == {f"views/{f.name}" for f in (ROOT / "views").glob("*.py")}
    assert [p for p in pages.ALL if p.default] == [pages.OVERVIEW]
    assert len({p.title for p in pages.ALL}) == len(pages.ALL)


def test_no_bare_page_path_outside_the_registry():
    bare = re.compile(r"[\"']views/\w+\.py[\"']")
    code = [ROOT / "app.py", *(ROOT / "ui").glob("*.py"), *(ROOT / "views").glob("*.py")]
    found = [f"{f.relative_to(ROOT)}: {m.group()}" for f in code if f.name != "pages.py"
             for m in bare.finditer(f.read_text())]
    assert not found

