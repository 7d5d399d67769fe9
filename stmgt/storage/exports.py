"""CSV that is safe to open in a spreadsheet (OWASP "CSV injection").

A spreadsheet evaluates a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return, so
an imported node id `=HYPERLINK("http://…")` or a street named `@SUM(1)` would become a live formula
in a forecast export. Every text cell (column names included) that begins so is written with a
leading apostrophe, which spreadsheets take as "this is text". Numeric, boolean and datetime
columns are never touched, so numbers stay numbers; a text cell is marked even when it looks like a
number ("-3.5" in a text column), since the rule is about where the cell came from, not its value.

A text cell that already begins with an apostrophe followed by one of those characters or by
another apostrophe gains one too. `restore` drops exactly one apostrophe from such a cell, so
`restore(neutralise(s)) == s` for every string and a frame read back through `restored` equals
the one written.

The generic dataset folder (`nodes.csv`, `edges.csv`, `speed.csv`, `weather.csv`) is written by
the same rule: it is also what users open in a spreadsheet. Its readers (`stmgt.data.graph.read_nodes`,
`RoadGraph.read`, `stmgt.data.folder.read_timeseries`) apply `restored`, so node ids, names and
street names round-trip byte for byte. A hand-written folder whose text begins with an apostrophe
before one of those characters is read as a spreadsheet shows it: without that apostrophe."""

from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"


def _marked(text: str) -> bool:
    return text[:1] == TEXT_MARK and text[1:2] in (*FORMULA_STARTS, TEXT_MARK)


def neutralise(text: str) -> str:
    """`text` as a cell a spreadsheet shows and never evaluates."""
    return TEXT_MARK + text if text[:1] in FORMULA_STARTS or _marked(text) else text


def restore(text: str) -> str:
    """The text that `neutralise` turned into `text`."""
    return text[1:] if _marked(text) else text


def _text_columns(frame: pd.DataFrame) -> list[int]:
    """Positions of the columns that may hold text (object, string, categorical)."""
    return [i for i, dtype in enumerate(frame.dtypes)
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)
                    or isinstance(dtype, pd.PeriodDtype) or pd.api.types.is_timedelta64_dtype(dtype))]


def _map_text(frame: pd.DataFrame, convert) -> pd.DataFrame:
    """`frame` with `convert` applied to every str cell and str column name."""
    out = frame.copy()
    for i in _text_columns(frame):
        out.isetitem(i, frame.iloc[:, i].map(lambda v: convert(v) if isinstance(v, str) else v))
    out.columns = [convert(c) if isinstance(c, str) else c for c in frame.columns]
    return out


def csv_bytes(frame: pd.DataFrame, **to_csv_args) -> bytes:
    """The frame's columns (not its index: `reset_index()` first to keep it) as UTF-8 CSV with every
    text cell neutralised. `to_csv_args` go to `DataFrame.to_csv` (float_format, na_rep, …)."""
    # RFC 4180's line end. With it Python's csv writer also quotes a cell holding a bare carriage
    # return, which a spreadsheet would otherwise take as a new row (that could begin with "=").
    return _map_text(frame, neutralise).to_csv(index=False, lineterminator="\r\n", **to_csv_args).encode()


def restored(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame read from a CSV that `csv_bytes` wrote, with its text as it was before."""
    return _map_text(frame, restore)
