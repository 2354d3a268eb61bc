"""Row checks that need one file only: required values, enums, dates, booleans, emails, ids, duplicates.

Codes: missing_value, invalid_value, duplicate_id, missing_column (policy-required column absent).
Every check is a boolean mask over a whole column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from processor.bundle.formats import GRADES, Field, FileSpec
from processor.bundle.provenance import FILE, accepts_ext, field_of, file_of, named, relabel, spec_required
from processor.bundle.read import LINE, BundleFile
from processor.validate.issues import issue_frame
from processor.vector import eq, explode, isin, matches, ne, per_unique

DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
DATETIME_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
EMAIL_RE = r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$"
USERID_RE = r"^\{[^:{}]+:[^{}]*\}$"
YEAR_RE = r"^\d{4}$"

EXPECTED = {
    "date": "a date in the form YYYY-MM-DD (e.g. 2026-08-15)",
    "datetime": "an ISO 8601 date-time such as 2026-08-15T02:00:00Z",
    "bool": "true or false",
    "email": "an email address such as name@school.org",
    "year": "a four-digit year such as 2027",
    "grades": "CEDS grade codes such as KG, 01 ... 12, separated by commas",
    "userids": "identifiers in the form {type:id}, separated by commas",
}


def check_values(bf: BundleFile, spec: FileSpec, active: pd.Series, extra_required: dict[str, pd.Series]
                 ) -> tuple[list[pd.DataFrame], pd.Series]:
    """Issues and the mask of rejected rows for one file.

    active: rows that are not `tobedeleted` (a deletion needs only its sourcedId).
    extra_required: policy-required column → mask of the rows it applies to.
    """
    df = bf.frame
    issues: list[pd.DataFrame] = []
    rejected = pd.Series(False, index=df.index)
    for f in spec.fields:
        col = df[f.name]
        blank = eq(col, "")
        spec_must = spec_required(bf, f)  # a Clever or 1.2 file may leave some OneRoster-required fields out
        must = spec_must & active if f.name != "sourcedId" else spec_must
        if f.name in extra_required:
            must = must | (extra_required[f.name] & active)
        missing = must & blank
        if missing.any():
            issues.append(_rows(bf, "missing_value", f.name, missing,
                                f"{f.name} is blank; it is required" +
                                (" by OneRoster." if (missing & spec_must).any() else " by your district's settings.") +
                                f" Fill in {f.name} for this record in your SIS."))
            rejected |= missing
        bad, expected = _invalid(f, col, blank, accepts_ext(bf, f.name))
        if bad is None or not bad.any():
            continue
        # Enums and required values reject the row; other bad optional values are accepted with an alert.
        is_error = f.kind == "enum" or (f.required and bool(spec_must.all())) or f.name in extra_required
        severity = "error" if is_error else "alert"
        scope = bad & active if is_error else bad
        if not scope.any():
            continue
        tail = " The row was not imported." if is_error else " The value was kept as sent."
        issues.append(_rows(bf, "invalid_value", f.name, scope,
                            f"{f.name} must be {expected}.{tail}", severity=severity))
        if is_error:
            rejected |= scope
    for name, rows in extra_required.items():
        if name in spec.columns:
            continue
        missing = rows & active & eq(df[name], "")  # a policy-required metadata.* column
        if missing.any():
            issues.append(_rows(bf, "missing_value", name, missing, f"{name} is blank; it is required by your "
                                f"district's settings. Fill in {name} for this record in your SIS."))
            rejected |= missing
    sid = df["sourcedId"]
    dup = sid.duplicated(keep="first") & ne(sid, "")
    if dup.any():
        cols = ["sourcedId", LINE, *([FILE] if FILE in df.columns else [])]
        first = df.loc[~sid.duplicated(keep="first"), cols].set_index("sourcedId")
        firsts = sid[dup].map(first[LINE]).astype("int64").astype("str")
        in_file = sid[dup].map(first[FILE]) if FILE in df.columns else bf.name
        issues.append(issue_frame(
            "duplicate_id", file_of(bf, dup), df.loc[dup, LINE], sid[dup], field_of(bf, "sourcedId", dup), sid[dup],
            named(bf, "sourcedId", dup[dup].index) + " repeats the one on line " + firsts + " of " + in_file +
            "; only the first was imported. Give every record its own sourcedId in your SIS."))
        rejected |= dup
    return issues, rejected


def _invalid(f: Field, col: pd.Series, blank: pd.Series, ext: bool = False) -> tuple[pd.Series | None, str]:
    present = ~blank
    if f.kind == "enum":
        ok = isin(col, list(f.enum))
        if ext:  # OneRoster 1.2 extension values; the reader has already alerted on them
            ok |= col.str.startswith("ext:")
        return present & ~ok, "one of " + ", ".join(f.enum)
    if f.kind == "date":
        return present & ~per_unique(col, _valid_dates), EXPECTED["date"]
    if f.kind in ("datetime", "year"):
        pattern = {"datetime": DATETIME_RE, "year": YEAR_RE}[f.kind]
        return present & ~per_unique(col, lambda u: matches(u, pattern)), EXPECTED[f.kind]
    if f.kind == "email":  # nearly all distinct: no point in grouping
        return present & ~matches(col, EMAIL_RE), EXPECTED[f.kind]
    if f.kind == "bool":
        return present & ~isin(col, ["true", "false"]), EXPECTED["bool"]
    if f.kind in ("grades", "userids"):
        has = present
        if not has.any():
            return None, ""
        items = explode(col[has])
        if f.kind == "grades":
            bad_item = ~isin(items, list(GRADES))
        else:
            bad_item = ~matches(items, USERID_RE)
        return pd.Series(col.index.isin(items.index[np.asarray(bad_item)]), index=col.index), EXPECTED[f.kind]
    return None, ""


def _valid_dates(values: pd.Series) -> np.ndarray:
    shaped = matches(values, DATE_RE)
    parsed = pd.to_datetime(values.where(shaped, None), format="%Y-%m-%d", errors="coerce")
    return shaped & parsed.notna().to_numpy()


def _rows(bf: BundleFile, code: str, field: str, mask: pd.Series, message: str,
          severity: str | None = None) -> pd.DataFrame:
    df = bf.frame
    return issue_frame(code, file_of(bf, mask), df.loc[mask, LINE], df.loc[mask, "sourcedId"], field_of(bf, field, mask),
                       df.loc[mask, field], relabel(bf, field, mask, message), severity=severity)
