"""The one catalogue of issue codes, and issues kept as columns (a frame), never as per-row objects.

Each code has a severity, whether it is fatal (the run is rejected), a title, an explanation and the fix
a district IT admin should make in the SIS. Reports, JSON messages and docs all render from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ISSUE_COLUMNS = ["severity", "code", "file", "line", "sourced_id", "field", "value", "message"]
SEVERITY_ORDER = {"hold": 0, "error": 1, "alert": 2}


@dataclass(frozen=True)
class Code:
    code: str
    severity: str  # default severity: "error" | "alert" | "hold"
    fatal: bool
    title: str
    explanation: str
    fix: str


CATALOGUE: dict[str, Code] = {c.code: c for c in [
    Code("bad_bundle", "error", True, "The file could not be read as a roster bundle",
         "The upload is not a usable zip of CSV files (corrupt, encrypted, unsafe paths, too large or not text).",
         "Export the roster again from your SIS as a plain (unencrypted) zip of OneRoster CSV files and upload it."),
    Code("missing_file", "error", True, "A required file is missing",
         "The bundle lacks a file that OneRoster requires or that its manifest names.",
         "Include the file in the export, or mark it 'absent' in manifest.csv if you do not send it."),
    Code("missing_column", "error", True, "A required column is missing",
         "A file's header lacks a column that must be present.",
         "Add the column to the export's header (it may be empty where the value is optional)."),
    Code("missing_value", "error", False, "A required value is blank",
         "This row lacks a value that OneRoster or your district's settings require, so it was not imported.",
         "Fill in the value for this record in your SIS."),
    Code("invalid_value", "error", False, "A value is not valid for its field",
         "The value does not have the form OneRoster expects for this field.",
         "Correct the value in your SIS to the expected form."),
    Code("duplicate_id", "error", False, "The same sourcedId appears twice",
         "Two rows of one file share a sourcedId; only the first was imported.",
         "Give every record its own sourcedId in your SIS, or remove the duplicate record."),
    Code("unknown_reference", "error", False, "A row refers to a record that does not exist",
         "The row points at a sourcedId that is neither in this bundle nor already in the roster.",
         "Include the referenced record in the export, or correct the reference in your SIS."),
    Code("rejected_reference", "error", False, "A row refers to a record that was rejected",
         "The row points at a record that was itself rejected, so it could not be imported either.",
         "Fix the referenced record's own error first; this row will then import."),
    Code("multiple_schools", "error", False, "A person belongs to more than one school",
         "Your district's settings allow each person one school only.",
         "Keep one school for this person in your SIS, or ask us to allow several schools."),
    Code("student_without_enrollment", "error", False, "A student has no class",
         "Your district's settings require every student to be enrolled in at least one active class.",
         "Enroll the student in a class in your SIS, or leave them out of the export."),
    Code("unknown_column", "alert", False, "An unknown column was ignored",
         "The column is neither OneRoster nor a metadata.* extension, so its values were not imported.",
         "Rename it to its OneRoster name, prefix it with 'metadata.' to keep it, or drop it from the export."),
    Code("renamed_column", "alert", False, "A column header was read under its OneRoster name",
         "The header differs from OneRoster in case or spelling, and was matched to the standard column.",
         "Use the exact OneRoster header in your export."),
    Code("normalized_value", "alert", False, "Values were read in their standard spelling",
         "Values differ from OneRoster only in case or a known legacy spelling, and were normalised.",
         "Export the values in OneRoster's exact spelling."),
    Code("encoding", "alert", False, "The file is not UTF-8",
         "The file was not valid UTF-8 and was read as Windows-1252; check accented names.",
         "Export the CSV files as UTF-8."),
    Code("malformed_row", "error", False, "A row has the wrong number of fields",
         "The row has more fields than the header (beyond empty trailing ones), so its columns cannot be matched.",
         "Quote values that contain commas in your export, or fix the row in your SIS."),
    Code("references_not_checked", "alert", False, "References were not checked",
         "The bundle has no file for the referenced entity, so these references could not be verified.",
         "Include the referenced file in the export if you want these links verified."),
    Code("dangling_link", "alert", False, "An optional link points at an unknown record",
         "An optional reference (guardian, parent org, school year) names a record that does not exist; the link was dropped.",
         "Include the referenced record in the export, or remove the reference in your SIS."),
    Code("unsupported_file", "alert", False, "A file was ignored",
         "The bundle carries a file that Rosterdrop does not import (for example gradebook files).",
         "No action needed, or leave the file out of the export."),
    Code("renamed_file", "alert", False, "A file name was read under its OneRoster name",
         "The file's name differs from OneRoster's only in case (e.g. userprofiles.csv); it was read as the standard file.",
         "Name the file exactly as OneRoster does in your export."),
    Code("extension_value", "alert", False, "Extension (ext:) values were accepted",
         "OneRoster 1.2 lets a district extend a vocabulary with values prefixed 'ext:'; these were kept as sent. "
         "An 'ext:' role the district's role_map does not name gives the app role staff.",
         "No action needed; ask us to map an 'ext:' role to another app role if staff is not right."),
    Code("no_primary_role", "alert", False, "A person has no primary role",
         "OneRoster 1.2 gives every person one primary role in roles.csv; this person has only secondary ones, so "
         "the highest of those was used.",
         "Mark one of the person's roles as roleType primary in your SIS."),
    Code("role_not_applied", "alert", False, "A role was not applied",
         "roles.csv names a person that this delta's users.csv does not carry; a person's roles are applied "
         "together with their users.csv row.",
         "Send the person's users.csv row with their roles, or send a full (bulk) drop."),
    Code("excluded_role", "alert", False, "People of an excluded role were not stored",
         "Your district's settings exclude this role; these rows were skipped on purpose.",
         "No action needed."),
    # Data checks (validate/datachecks.py): the row was imported; the district should fix the record.
    Code("duplicate_email", "alert", False, "Two people share an email",
         "Two or more active people have the same email (ignoring case), so single sign-on cannot tell them "
         "apart and both may be locked out.",
         "Give each person their own email in your SIS."),
    Code("duplicate_username", "alert", False, "Two people share a username",
         "Two or more active people have the same username (ignoring case), so sign-in cannot tell them apart.",
         "Give each person their own username in your SIS."),
    Code("class_without_teacher", "alert", False, "A class has no teacher",
         "The class has no active teacher enrollment, so no teacher sees it in the app.",
         "Assign the class a teacher in your SIS."),
    Code("class_without_students", "alert", False, "A class has no students",
         "The class has no active student enrollment.",
         "Enroll the class's students in your SIS, or leave the class out of the export if it does not meet."),
    Code("student_without_class", "alert", False, "A student has no class",
         "The student has no active class enrollment, so they see no class in the app.",
         "Enroll the student in a class in your SIS, or leave them out of the export."),
    Code("session_dates", "alert", False, "A session's dates do not fit",
         "A session ends before it starts, or a term or grading period lies outside its parent session's dates.",
         "Correct the session's start and end dates in your SIS."),
    Code("duplicate_drop", "alert", False, "This drop was already processed",
         "The same bytes were already processed for this district, so nothing was done.",
         "No action needed; send a new export when the roster changes."),
    Code("superseded", "alert", False, "A newer drop replaced this one",
         "A newer drop was applied after this one was held, so releasing it would undo newer data.",
         "No action needed; the newer drop is the current roster."),
    Code("internal_error", "error", True, "Rosterdrop could not process this file",
         "An internal error stopped the processing before anything was applied; the operator has been told.",
         "No action needed: the operator processes the same file again (`rosterdrop runs retry`) once the cause "
         "is fixed."),
    Code("mass_deactivation", "hold", False, "Too many records would be removed",
         "This full (bulk) drop would deactivate more records than your district's threshold allows (for the whole "
         "district or for one school); nothing was applied.",
         "If the removal is intended, release the hold; otherwise fix the export and send it again."),
    Code("rejected_rows", "hold", False, "Too many rows of a file were rejected",
         "So many rows of one file have errors that the export looks broken or cut short (for example a students "
         "file that stops early while the enrollments still name everyone); nothing was applied.",
         "Fix the export so the file is complete and send it again; release the hold only if the rest of the "
         "drop should be applied without those rows."),
    Code("mass_update", "hold", False, "Too many records would change",
         "This drop would update more of a file's records than your district's threshold allows, as a drop "
         "from another district or an SIS that renumbered its ids would; nothing was applied.",
         "Check that the drop is your district's current export; if the changes are intended, release the hold."),
    Code("paused", "hold", False, "Syncs are paused",
         "The drop arrived during a pause in your district's calendar (for example the summer): it is held, "
         "applied for additions only, or skipped, as the pause says.",
         "No action needed; release the hold to apply the drop now, or send a new drop after the pause."),
    Code("new_year", "alert", False, "New school year",
         "This run was the new-school-year reset: last year's classes and enrollments that the drop does not list "
         "were deactivated, people were kept, and the limits that would have held the drop were only reported.",
         "No action needed; check the new year's classes in the report."),
    Code("too_many_guardians", "hold", False, "A student has too many guardian contacts",
         "A student has more guardian links than your district's threshold allows; nothing was applied.",
         "Correct the student's contacts in your SIS, or release the hold if they are right."),
    Code("school_vanished", "hold", False, "A school disappeared from the roster",
         "An active school with people in it is missing from this full (bulk) drop; nothing was applied.",
         "If the school closed, release the hold; otherwise include it in the export and send it again."),
    Code("manual_change_kept", "alert", False, "Manual changes were kept",
         "Some fields were changed by hand in the app and locked there; this drop's values for them were not applied.",
         "No action needed; to let the SIS's value apply again, ask the vendor to unlock the field."),
    Code("probable_id_change", "hold", False, "People seem to have changed ids",
         "Many people would be removed while as many near-identical people (same email, or same name and birth "
         "date) are added with other sourcedIds: the SIS probably changed its ids; nothing was applied.",
         "If the ids changed, have the operator map old ids to new ones (`rosterdrop roster alias`), then "
         "release the hold; if these are different people, release it as it is."),
]}


def issue_frame(code: str, file: str | None, lines=None, sourced_ids=None, field: str | None = None,
                values=None, message=None, severity: str | None = None) -> pd.DataFrame:
    """Issues for many rows at once. Vector arguments align; scalars broadcast."""
    spec = CATALOGUE[code]
    n = _length(lines, sourced_ids, values, message)
    df = pd.DataFrame({
        "severity": severity or spec.severity,
        "code": code,
        "file": file,
        "line": _col(lines, n, "Int64"),
        "sourced_id": _col(sourced_ids, n, "object"),
        "field": field,
        "value": _col(values, n, "object"),
        "message": _col(message, n, "object") if message is not None else spec.title,
    }, index=range(n))
    return df[ISSUE_COLUMNS]


def one_issue(code: str, message: str, file: str | None = None, line: int | None = None,
              sourced_id: str | None = None, field: str | None = None, value: str | None = None,
              severity: str | None = None) -> pd.DataFrame:
    return issue_frame(code, file, [line], [sourced_id], field, [value], [message], severity)


def _length(*vecs) -> int:
    for v in vecs:
        if v is not None and not isinstance(v, str):
            return len(v)
    return 1


def _col(v, n, dtype):
    if v is None:
        return pd.Series([None] * n, dtype=dtype)
    if isinstance(v, str):
        return pd.Series([v] * n, dtype="object")
    if isinstance(v, pd.Series) and n > _ARROW_ROWS:
        # A check over a big file: keep its Arrow strings (no Python object per row) and its integers as
        # they are; the issues are capped per code and file right after, and only those become objects.
        if dtype == "object" and v.dtype == "str":
            return pd.Series(v.array, dtype="str")
        if dtype == "Int64":
            return pd.Series(pd.array(v.to_numpy(), dtype="Int64"))
    return pd.Series(np.asarray(v, dtype=object) if dtype == "object" else list(v), dtype=dtype)


_ARROW_ROWS = 10_000


def empty_issues() -> pd.DataFrame:
    # A copy of one template: building the frame takes ~3 ms, and a small drop asks for dozens.
    global _EMPTY
    if _EMPTY is None:
        _EMPTY = issue_frame("bad_bundle", None, [], [], None, [], [])
    return _EMPTY.copy()


_EMPTY: pd.DataFrame | None = None


def concat_issues(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_issues()
    return pd.concat(frames, ignore_index=True)


def is_fatal(issues: pd.DataFrame) -> bool:
    fatal = [c.code for c in CATALOGUE.values() if c.fatal]
    return bool(issues["code"].isin(fatal).any())


def sort_issues(issues: pd.DataFrame) -> pd.DataFrame:
    order = issues["severity"].map(SEVERITY_ORDER)
    return issues.assign(_o=order).sort_values(["_o", "file", "line", "code"], na_position="first",
                                                kind="stable").drop(columns="_o").reset_index(drop=True)


def issues_to_records(issues: pd.DataFrame) -> list[dict]:
    out = issues[ISSUE_COLUMNS].astype(object).where(issues[ISSUE_COLUMNS].notna(), None)
    out["count"] = issue_counts(issues).to_numpy()
    return out.to_dict("records")


# An issue row stands for `count` occurrences. Rows are 1 (the column is absent from most frames); cap_issues
# writes one row per (severity, code, file) with the count of the rows past the cap.
COUNT = "count"
CAP_KEYS = ["severity", "code", "file"]


def issue_counts(issues: pd.DataFrame) -> pd.Series:
    """How many occurrences each issue row stands for (1, or the count of a summary row)."""
    if COUNT not in issues:
        return pd.Series(1, index=issues.index, dtype="int64")
    return issues[COUNT].fillna(1).astype("int64")


def cap_issues(issues: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most `limit` issue rows per (severity, code, file), in their order; the rest become one row per
    group that counts them (`count`), so that a million invalid rows cost a thousand rows of memory, JSON
    and issues.csv, and every total still adds up. Capping capped issues again merges their counts."""
    if len(issues) <= limit:
        return issues
    counts = issue_counts(issues)
    listed = counts.eq(1)
    if COUNT not in issues and all(_constant(issues[k]) for k in CAP_KEYS):
        # One check's frame (one code, one file), the common case: no grouping, no copy of the rest.
        first = issues.iloc[0]
        field = first["field"] if _constant(issues["field"]) else None
        groups = [((first["severity"], first["code"], first["file"]), len(issues) - limit, field)]
        kept = issues.iloc[:limit].copy()
    else:
        by = [issues[k] for k in CAP_KEYS]
        keep = listed & listed.groupby(by, sort=False, dropna=False).cumsum().le(limit)
        if keep.all():
            return issues
        rest = issues[~keep]
        by = [rest[k].fillna("") for k in CAP_KEYS]
        totals = counts[~keep].groupby(by, sort=False).sum()
        fields = rest["field"].groupby(by, sort=False).agg(lambda f: f.iloc[0] if f.nunique(dropna=False) == 1
                                                           else None)
        groups = [(key, n, fields.get(key)) for key, n in totals.items()]
        kept = issues[keep].copy()
    summary = []
    for (severity, code, file), n, field in groups:
        file = None if pd.isna(file) else file
        where = f" in {file}" if file else ""
        summary.append({
            "severity": severity, "code": code, "file": file or None, "line": None, "sourced_id": None,
            "field": None if pd.isna(field) else field, "value": None, COUNT: int(n),
            "message": f"{int(n):,} more {code} {_plural(severity)}{where} are counted here, not listed one by "
                       f"one: only the first {limit:,} of each kind in one file are listed. {_fix(code)}",
        })
    kept[COUNT] = 1
    extra = pd.DataFrame(summary, columns=[*ISSUE_COLUMNS, COUNT]).astype({"line": "Int64", COUNT: "int64"})
    return pd.concat([kept, extra], ignore_index=True)


def _constant(column: pd.Series) -> bool:
    first = column.iloc[0]
    return bool(column.isna().all()) if pd.isna(first) else bool(column.eq(first).all())


def _plural(severity: str) -> str:
    return {"error": "errors", "alert": "alerts", "hold": "holds"}.get(severity, "issues")


def _fix(code: str) -> str:
    spec = CATALOGUE.get(code)
    return spec.fix if spec else ""
