"""What a CSV that will not parse looks like, said in words instead of the symptom.

A spreadsheet saving "CSV" in a locale that writes decimal commas (most of Europe, Vietnam)
separates fields with `;`: pandas then sees one column ("no 'timestamp' column") or, where the
decimal commas split the numbers, rows wider than the header. And pandas silently renames a
repeated header name `n1` to `n1.1`, which later reads as an unknown node id."""

from __future__ import annotations

import re
from pathlib import Path

from stmgt.errors import DataError

OTHER_SEPARATORS = {";": "`;`", "\t": "tab", "|": "`|`"}
DECIMAL_COMMA = re.compile(r"\d,\d")
SNIFF_BYTES = 65536
TIME_COLUMN = "timestamp"


def check_separator(path: Path) -> None:
    """Refuse a file whose first line has no comma but another separator, saying which, what the
    line is and how to save it (with decimal commas too, when the second line has them)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first, second = (f.readline(SNIFF_BYTES).strip("\r\n\ufeff") for _ in range(2))
    except OSError:
        return                      # the reader that follows says what is wrong with the file
    if "," in first or "\ufffd" in first or not first.replace("\t", "").isprintable():
        return                      # a comma-separated file, or not text at all: the reader says so
    found = next((sep for sep in OTHER_SEPARATORS if sep in first), None)
    if found is None:
        return
    decimal = DECIMAL_COMMA.search(second) is not None
    shown = first if len(first) <= 60 else first[:59] + "…"
    raise DataError(f"looks {OTHER_SEPARATORS[found]}-separated{' with decimal commas' if decimal else ''} "
                    f"(first line: {shown!r}); save it with commas between fields"
                    f"{' and points as decimal marks' if decimal else ''}, e.g. as \"CSV UTF-8\" from a "
                    "spreadsheet set to an English locale", str(path))


def check_header(names: list[str], where: str) -> None:
    """Every column needs its own name; TIME_COLUMN is the time column's, never a node's."""
    seen: dict[str, int] = {}
    for field, name in enumerate((n.strip() for n in names), start=1):
        if name in seen:
            reserved = (f"; {TIME_COLUMN!r} names the time column, so no node may be called that: give "
                        "the node another id here and in nodes.csv") if name == TIME_COLUMN else ""
            raise DataError(f"column {name!r} appears twice in the header (fields {seen[name]} and {field})"
                            f"{reserved or '; every column needs a name of its own'}", f"{where} line 1")
        seen[name] = field
