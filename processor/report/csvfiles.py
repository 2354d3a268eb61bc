"""The CSV attachments: issues.csv (every issue) and changes.csv (what a held drop would change).

District admins open these in Excel or Google Sheets, where a cell starting with = + - @ (or a tab or
carriage return, which some importers strip before looking) is run as a formula. Every such text value
gets a leading apostrophe, which spreadsheets show as plain text. Work is done on whole columns.
"""

from __future__ import annotations

import pandas as pd

from processor.validate.issues import COUNT, ISSUE_COLUMNS, issue_counts

CHANGE_COLUMNS = ["entity", "sourced_id", "action", "label", "fields"]
# UTF-8 with a BOM: without it Excel reads the file as Windows-1252 and mangles accented names.
ENCODING = "utf-8-sig"
_FORMULA_START = r"^[=+\-@\t\r]"


def formula_safe(column: pd.Series) -> pd.Series:
    """Prefix text that a spreadsheet would run as a formula with an apostrophe."""
    s = column.astype("string")
    risky = s.str.contains(_FORMULA_START, regex=True, na=False)
    if not risky.any():
        return s
    return s.where(~risky, "'" + s)


def _csv_bytes(frame: pd.DataFrame, columns: list[str], text_columns: list[str]) -> bytes:
    out = pd.DataFrame({c: frame[c] if c in frame else pd.Series([None] * len(frame), dtype="string")
                        for c in columns}, index=frame.index)
    for c in text_columns:
        out[c] = formula_safe(out[c])
    return out.to_csv(index=False, lineterminator="\r\n").encode(ENCODING)


def issues_csv(issues: pd.DataFrame) -> bytes:
    """Every issue, one row each, with the columns of ISSUE_COLUMNS and `count`: 1, or on the one row per
    code and file past the cap, how many more occurrences it stands for."""
    frame = issues.copy()
    if "line" in frame:
        frame["line"] = frame["line"].astype("Int64")
    frame[COUNT] = issue_counts(issues)
    return _csv_bytes(frame, [*ISSUE_COLUMNS, COUNT], [c for c in ISSUE_COLUMNS if c != "line"])


def changes_csv(changes: pd.DataFrame) -> bytes:
    """Every row a drop would change (held) or did change: entity, sourced_id, action, label, fields."""
    return _csv_bytes(changes if changes is not None else pd.DataFrame(), CHANGE_COLUMNS, CHANGE_COLUMNS)
