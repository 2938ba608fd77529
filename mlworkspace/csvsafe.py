"""CSV files a spreadsheet can open without running anything (OWASP "CSV injection").

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a
formula to Excel, LibreOffice and Google Sheets: ``=HYPERLINK("http://evil", "click")``
copied from an upload into predictions.csv came back live. Every CSV the workspace writes
goes through ``write_csv``, which puts a single quote in front of such text cells (and
header names) and quotes every text field, as OWASP advises. Numbers are never touched (a
spreadsheet reads -1.5 as a number, not a formula), nor is text that is just a plain
number such as "-1.5". The original values are kept where they are not a spreadsheet's
business: the uploaded dataset and the Parquet copy of each CSV artifact.

Plain pandas with no Django import: the pure pipeline (``runs/pipeline.py``) uses it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise(value):
    """'=1+1' -> "'=1+1"; anything that is not such a text cell is returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _neutralised(series: pd.Series) -> pd.Series:
    """`series` with its formula cells neutralised, vectorised: the same cells as
    ``neutralise`` one by one, found by pandas' string methods (Arrow's for a string
    column) instead of a Python call per cell."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = [neutralise(c) for c in series.cat.categories]
        if len(set(categories)) == len(categories):  # "=a" beside "'=a" would merge: per cell
            return series.cat.rename_categories(categories)
        series = series.astype(object)
    if pd.api.types.is_object_dtype(series) and pd.api.types.infer_dtype(series) == "string":
        series = series.astype("str")  # text only: Arrow's string kernels, not Python's
    try:
        # Non-text cells of an object column are NaN to the string methods: never a formula.
        suspect = series.str.startswith(FORMULA_STARTS, na=False).to_numpy(dtype=bool)
    except AttributeError:  # an object column without any text
        return series
    if not suspect.any():
        return series
    text = series[suspect]
    formula = suspect.copy()
    formula[suspect] = ~text.str.fullmatch(_PLAIN_NUMBER.pattern, na=False).to_numpy(dtype=bool)
    values = series.to_numpy(dtype=object, copy=True)
    values[formula] = "'" + values[formula]
    return pd.Series(values, index=series.index, name=series.name, dtype=object)


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells and header names cannot start a formula."""
    out = frame.copy()
    for index in range(frame.shape[1]):
        series = frame.iloc[:, index]
        if (
            pd.api.types.is_object_dtype(series)
            or pd.api.types.is_string_dtype(series)
            or isinstance(series.dtype, pd.CategoricalDtype)
        ):
            out.isetitem(index, _neutralised(series))
    out.columns = [neutralise(str(c)) if isinstance(c, str) else c for c in frame.columns]
    return out


def write_csv(frame: pd.DataFrame, path, **kwargs) -> None:
    """frame.to_csv(path) with formula cells neutralised and every text field quoted."""
    kwargs.setdefault("index", False)
    safe_frame(frame).to_csv(path, quoting=csv.QUOTE_NONNUMERIC, **kwargs)


def stream_csv(rows: Iterable[list], chunk_rows: int = 5000) -> Iterator[str]:
    """Rows (the header first) as CSV text in chunks of `chunk_rows` lines, for a streamed
    download whose memory stays flat: every text cell neutralised and quoted, numbers not,
    as ``write_csv`` writes a frame."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    for index, row in enumerate(rows, start=1):
        writer.writerow([neutralise(cell) for cell in row])
        if index % chunk_rows == 0:
            yield take()
    rest = take()
    if rest:
        yield rest
