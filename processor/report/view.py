"""What a run report says, as plain data for the templates: banner, counts, holds, issues grouped by code.

Issues can number in the hundreds of thousands, so grouping and capping happen on whole columns with
pandas; only the capped rows (at most `rows_per_code` per code) ever become Python dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from processor.runs import COUNTED, RunResult, RunStatus
from processor.validate.issues import CATALOGUE, SEVERITY_ORDER, issue_counts

ROWS_PER_CODE = 50
SCHOOLS_SHOWN = 50
VALUE_CHARS = 120  # longer user values are cut in the body (the CSV keeps them whole)
MESSAGE_CHARS = 300

ENTITY_LABELS = {
    "users": "People",
    "people": "People",
    "orgs": "Schools and orgs",
    "schools": "Schools",
    "classes": "Classes",
    "enrollments": "Enrollments",
    "courses": "Courses",
    "academicSessions": "Terms",
    "academic_sessions": "Terms",
    "guardian_links": "Guardian links",
    "demographics": "Demographics",
}
COUNT_FIELDS = ("created", "updated", "deactivated", "unchanged", "rejected")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
# "41% of students ..." or "... 512 of 1,249 active people (41%) ...": who the removal hits.
_PERCENT_OF = re.compile(r"\d\s*%\s+of\s+(?:the\s+|all\s+|its\s+)?(?:active\s+)?([A-Za-z]+(?: links)?)")
_AT_SCHOOL = re.compile(r"active people at (.+?) \(\d")  # a per-school mass_deactivation (holds.py)
_OF_ACTIVE = re.compile(r"of\s+[\d,]+\s+active\s+([A-Za-z]+(?: [A-Za-z]+)?)\s*\(")


@dataclass(frozen=True)
class Banner:
    kind: str  # applied | held | rejected | grey: picks the colour
    title: str
    subtitle: str


def clean(text: object, limit: int | None = None) -> str:
    """One line of display text: control characters (CR/LF in a subject or a cell) become spaces."""
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return ""
    s = _CONTROL.sub(" ", str(text)).strip()
    if limit and len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return s


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def effective_status(result: RunResult) -> str:
    """The outcome the report describes: a dry run reports what would have happened."""
    if result.status == RunStatus.DRY_RUN:
        return str(result.outcome or "applied")
    return str(result.status)


def severity_totals(issues: pd.DataFrame) -> dict[str, int]:
    # A row past the cap per code and file counts many occurrences (validate/issues.py cap_issues).
    counts = issue_counts(issues).groupby(issues["severity"]).sum() if len(issues) else pd.Series(dtype="int64")
    return {s: int(counts.get(s, 0)) for s in ("hold", "error", "alert")}


# ---------------------------------------------------------------- subject and banner


def outcome_phrase(result: RunResult, issues: pd.DataFrame, changes: pd.DataFrame | None = None) -> str:
    """The outcome in a few words, e.g. 'applied with 3 errors, 12 alerts' (used by subject and banner)."""
    status = effective_status(result)
    totals = severity_totals(issues)
    if status == "held":
        return "is ON HOLD: " + hold_reason(issues)
    if status == "rejected":
        return "was rejected: " + rejection_reason(issues)
    if status == "applied":
        parts = [plural(totals[s], s) for s in ("error", "alert") if totals[s]]
        applied = "applied with " + ", ".join(parts) if parts else "applied, no problems found"
        if result.released is not None:
            return f"held for review ({hold_reason(issues)}), released by {clean(result.released.by, 60)} and {applied}"
        return applied
    if status == "duplicate":
        return "was a duplicate of an earlier drop; nothing done"
    if status == "discarded":
        if result.discarded is None and len(issues) and issues["code"].eq("paused").any():
            return "was skipped: syncs are paused; nothing applied"  # a pause of mode skip (apply/pauses.py)
        return "held drop was discarded; nothing applied"
    if status == "superseded":
        return "held drop was superseded by a newer drop; nothing applied"
    return status.replace("_", " ")


def subject(result: RunResult, tenant_name: str, issues: pd.DataFrame) -> str:
    phrase = outcome_phrase(result, issues)
    name = clean(tenant_name, 80) or result.tenant
    dry = " (dry run)" if result.status == RunStatus.DRY_RUN else ""
    if phrase.startswith(("is ", "was ")):
        text = f"{name} roster{dry} {phrase}"
    else:
        text = f"{name} roster{dry}: {phrase}"
    return clean(text, 200)


def hold_reason(issues: pd.DataFrame) -> str:
    """Why the run is held, in subject-line length: taken from the first hold issue."""
    holds = issues[issues["severity"] == "hold"] if len(issues) else issues
    if holds.empty:
        return "a change needs review"
    first = holds.iloc[0]
    code = first["code"]
    same = int((holds["code"] == code).sum())
    more = len(holds) - same
    if code == "mass_deactivation":
        # One hold per entity: name the one an admin cares about most (people), else the biggest share.
        reasons = [_mass_deactivation_reason(row) for _, row in holds[holds["code"] == code].iterrows()]
        reason = max(reasons, key=_reason_rank)
        more += len(reasons) - 1
    elif code == "rejected_rows":
        reason = (f"{clean(first['value'])} of {clean(first['file'], 60)} was rejected" if same == 1
                  else f"{same:,} files had too many rejected rows")
    elif code == "mass_update":
        reason = f"{clean(first['value'])} of {_entity_noun(first)} would be updated"
    elif code == "too_many_guardians":
        reason = ("a student has" if same == 1 else f"{same:,} students have") + " too many guardian contacts"
    elif code == "school_vanished":
        reason = "a school disappeared from the roster" if same == 1 else f"{same:,} schools disappeared"
    else:
        title = CATALOGUE[code].title if code in CATALOGUE else clean(first["message"], 80)
        reason = title[:1].lower() + title[1:]
    if more:
        reason += f" (and {plural(more, 'more reason')})"
    return clean(reason, 120)


def _mass_deactivation_reason(issue: pd.Series) -> str:
    # The holds module words its message for people; the subject needs the percentage and who it hits.
    value, message = clean(issue.get("value")), clean(issue.get("message"))
    said = _PERCENT_OF.search(message) or _OF_ACTIVE.search(message)
    pct = _PERCENT.search(value) or _PERCENT.search(message)
    if pct:
        pct_text = pct.group(1)
    else:
        try:
            pct_text = f"{float(value):g}"
        except ValueError:
            return clean(message, 100) or "too many records would be removed"
    noun = said.group(1).lower() if said else _entity_noun(issue)
    school = _AT_SCHOOL.search(message) if clean(issue.get("field")) == "school" else None
    if school:
        noun = f"people at {school.group(1)}"
    return f"{pct_text}% of {noun} would be removed"


_PEOPLE = ("people", "students", "teachers", "staff", "users")


def _reason_rank(reason: str) -> tuple[bool, float]:
    pct = _PERCENT.match(reason)
    noun = reason.split(" of ", 1)[-1].split(" would", 1)[0]
    return noun in _PEOPLE, float(pct.group(1)) if pct else 0.0


def _entity_noun(issue: pd.Series) -> str:
    stem = clean(issue.get("file")).removesuffix(".csv")
    return {"users": "people", "orgs": "orgs", "": "records"}.get(stem, stem)


def rejection_reason(issues: pd.DataFrame) -> str:
    """Why the run was rejected: the first fatal issue, worded like 'users.csv is missing'."""
    # The catalogue lists fatal codes from the most to the least fundamental (an unreadable bundle, a
    # missing file, a missing column): the subject names the most fundamental one.
    rank = {c.code: i for i, c in enumerate(c for c in CATALOGUE.values() if c.fatal)}
    fatal = issues[issues["code"].isin(list(rank))] if len(issues) else issues
    if len(fatal):
        fatal = fatal.iloc[fatal["code"].map(rank).argsort(kind="stable")]
    if fatal.empty:
        fatal = issues[issues["severity"] == "error"] if len(issues) else issues
    if fatal.empty:
        return "the bundle could not be used"
    first = fatal.iloc[0]
    code, file, field = first["code"], clean(first["file"], 60), clean(first["field"], 40)
    if code == "missing_file" and file:
        reason = f"{file} is missing"
    elif code == "missing_column" and file and field:
        reason = f"{file} has no {field} column"
    else:
        reason = clean(first["message"], 100) or (CATALOGUE[code].title if code in CATALOGUE else code)
        reason = reason.rstrip(".")
    if len(fatal) > 1:
        reason += f" (and {plural(len(fatal) - 1, 'more problem')})"
    return clean(reason, 120)


def banner(result: RunResult, issues: pd.DataFrame) -> Banner:
    status = effective_status(result)
    totals = severity_totals(issues)
    found = ", ".join(plural(totals[s], s) for s in ("error", "alert") if totals[s]) or "no problems found"
    if result.status == RunStatus.DRY_RUN:
        would = {"applied": "would be applied", "held": "would be put on hold",
                 "rejected": "would be rejected"}.get(status, status)
        return Banner("grey", "Dry run: nothing was applied", f"This drop {would}; {found}.")
    if status == "applied":
        errors = totals["error"]
        # Rows were rejected: the roster is applied but not whole; amber, never the all-clear green.
        kind, title = ("partial", f"Roster applied with {plural(errors, 'error')}") if errors else (
            "applied", "Roster applied")
        alerts = f"; {plural(totals['alert'], 'alert')}" if totals["alert"] else ""
        subtitle = (f"{plural(errors, 'row')} with errors {'was' if errors == 1 else 'were'} not imported (what the "
                    f"roster already had for them was kept as it was); the rest of the drop was applied{alerts}."
                    if errors else f"The drop was applied; {found}.")
        if result.new_year:  # the August reset (processor/calendar.py): its first line says so
            title += " as the new school year"
            note = issues.loc[issues["code"].eq("new_year"), "message"] if not issues.empty else None
            if note is not None and len(note):
                subtitle = clean(note.iloc[0], 300).removeprefix("New school year: ")
        if result.released is not None:  # the report's first lines say what it was held for, and who released it
            title = "Held drop released: " + title[0].lower() + title[1:]
        return Banner(kind, title, subtitle[0].upper() + subtitle[1:])
    if status == "held" and _additions_applied(issues):
        return Banner("held", "Roster partly applied: new records only, the rest ON HOLD",
                      clean(issues.loc[issues["code"].eq("paused"), "message"].iloc[0], 300))
    if status == "held":
        return Banner("held", "Roster ON HOLD: nothing was applied",
                      "A change in this drop needs a person's OK: " + _sentence(hold_reason(issues)))
    if status == "rejected":
        return Banner("rejected", "Roster rejected: nothing was applied",
                      "The drop as a whole could not be used: " + _sentence(rejection_reason(issues)))
    return Banner("grey", "Roster " + outcome_phrase(result, issues), "")


def _additions_applied(issues: pd.DataFrame) -> bool:
    """An additions_only pause applied the drop's creations and holds the rest (apply/pauses.py)."""
    if issues is None or issues.empty:
        return False
    return bool((issues["code"].eq("paused") & issues["severity"].eq("hold") & issues["value"].eq("additions_only")).any())


def released_line(result: RunResult, issues: pd.DataFrame, timezone: str | None = None) -> str:
    """'Held for review (52% of people would be removed), released by alice at 2026-12-01 22:10 UTC ("note").'"""
    action = result.released
    if action is None:
        return ""
    note = f' ("{clean(action.note, 200)}")' if action.note else ""
    return (f"Held for review ({hold_reason(issues)}), released by {clean(action.by, 120)} at {when(action.at, timezone)}"
            f"{note}.")


def _sentence(text: str) -> str:
    # Not capitalised: the reason often starts with a file name ("users.csv is missing").
    return text if text.endswith((".", ")")) else text + "."


# ---------------------------------------------------------------- counts


def entity_counts(result: RunResult) -> list[dict]:
    rows = []
    for entity in (*COUNTED, *sorted(set(result.counts) - set(COUNTED))):
        c = result.counts.get(entity)
        if c is None:
            continue
        rows.append({"entity": entity, "label": ENTITY_LABELS.get(entity, entity),
                     **{f: getattr(c, f) for f in (*COUNT_FIELDS, "skipped")}})
    return rows


def school_rows(school_counts: pd.DataFrame, limit: int = SCHOOLS_SHOWN) -> tuple[list[dict], int]:
    """Per-school counts, the schools with the most changes first; returns (schools shown, schools left out)."""
    if school_counts is None or school_counts.empty:
        return [], 0
    df = school_counts.copy()
    for f in ("created", "updated", "deactivated", "unchanged"):
        df[f] = pd.to_numeric(df[f], errors="coerce").fillna(0).astype("int64") if f in df else 0
    name = df["school_name"] if "school_name" in df else df["school"]
    df["_name"] = name.astype("string").fillna(df["school"].astype("string")).fillna("")
    df["_changed"] = df["created"] + df["updated"] + df["deactivated"]
    per_school = df.groupby("school", sort=False, dropna=False).agg(_changed=("_changed", "sum"),
                                                                    _name=("_name", "first"))
    per_school = per_school.sort_values(["_changed", "_name"], ascending=[False, True], kind="stable")
    shown = per_school.head(limit)
    hidden = len(per_school) - len(shown)
    df = df[df["school"].isin(shown.index)]
    schools = []
    for school_id in shown.index:
        part = df[df["school"] == school_id]
        schools.append({
            "school": clean(school_id, 80),
            "name": clean(shown.at[school_id, "_name"], 120) or clean(school_id, 80),
            "rows": [{"label": ENTITY_LABELS.get(e, clean(e, 40)), "created": int(cr), "updated": int(up),
                      "deactivated": int(de), "unchanged": int(un)}
                     for e, cr, up, de, un in zip(part["entity"], part["created"], part["updated"],
                                                  part["deactivated"], part["unchanged"], strict=True)],
        })
    return schools, hidden


# ---------------------------------------------------------------- issues


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Display strings for the capped rows: NA as '', control characters removed, long values cut."""
    out = pd.DataFrame(index=frame.index)
    line = frame["line"]
    out["line"] = line.astype("Int64").astype("string").fillna("") if len(frame) else line.astype("string")
    for col, limit in (("file", 60), ("sourced_id", 80), ("field", 60), ("value", VALUE_CHARS),
                       ("message", MESSAGE_CHARS)):
        s = frame[col].astype("string").fillna("").str.replace(_CONTROL, " ", regex=True)
        too_long = s.str.len() > limit
        if too_long.any():
            s = s.where(~too_long, s.str.slice(0, limit - 1) + "…")
        out[col] = s
    return out


def issue_groups(issues: pd.DataFrame, rows_per_code: int = ROWS_PER_CODE) -> list[dict]:
    """Issues grouped by (severity, code): holds, then errors, then alerts, the biggest group first.

    Each group carries the catalogue's title, explanation and fix, its total count and its first
    `rows_per_code` rows (in the order the issues came, i.e. by file and line).
    """
    if issues is None or issues.empty:
        return []
    keys = ["severity", "code"]
    occurrences = issue_counts(issues)
    grouped = occurrences.groupby([issues[k] for k in keys], sort=False)
    sizes = grouped.sum().rename("count").rename_axis(keys).reset_index()
    unlisted = occurrences.where(occurrences > 1, 0).groupby([issues[k] for k in keys], sort=False).sum()
    # Holds, errors, alerts; within errors the fatal ones first (they are why a run was rejected), most
    # fundamental first, then the biggest groups.
    fatal_rank = {c.code: i for i, c in enumerate(c for c in CATALOGUE.values() if c.fatal)}
    sizes["_o"] = sizes["severity"].map(SEVERITY_ORDER).fillna(9)
    sizes["_f"] = sizes["code"].map(fatal_rank).fillna(len(fatal_rank))
    sizes = sizes.sort_values(["_o", "_f", "count", "code"], ascending=[True, True, False, True], kind="stable")
    head = issues.groupby(keys, sort=False).head(rows_per_code)
    # What the shown rows stand for (a counting row shown stands for its count), so "and N more" is the rest.
    head_occurrences = occurrences[head.index]
    shown_count = head_occurrences.groupby([head[k] for k in keys], sort=False).sum()
    unlisted = unlisted.sub(head_occurrences.where(head_occurrences > 1, 0)
                            .groupby([head[k] for k in keys], sort=False).sum(), fill_value=0)
    shown = _display(head)
    shown["severity"], shown["code"] = head["severity"], head["code"]
    rows_by_key = {key: part.drop(columns=keys).to_dict("records") for key, part in shown.groupby(keys, sort=False)}
    groups = []
    for severity, code, count in zip(sizes["severity"], sizes["code"], sizes["count"], strict=True):
        spec = CATALOGUE.get(code)
        rows = rows_by_key.get((severity, code), [])
        groups.append({
            "severity": severity,
            "code": code,
            "title": spec.title if spec else code.replace("_", " "),
            "explanation": spec.explanation if spec else "",
            "fix": spec.fix if spec else "",
            "count": int(count),
            "rows": rows,
            "more": int(count) - int(shown_count.get((severity, code), 0)),
            # of those, the ones issues.csv counts on a summary row instead of listing them
            "unlisted": int(unlisted.get((severity, code), 0)),
        })
    return groups


DATA_CHECK_ROWS = 10  # the first rows of each data check; every one is in issues.csv


def data_check_groups(groups: list[dict], rows: int = DATA_CHECK_ROWS) -> list[dict]:
    """The alert groups of the data checks (validate/datachecks.py), in the checks' order, first rows only."""
    from processor.validate.datachecks import DATA_CHECKS

    by_code = {g["code"]: g for g in groups if g["severity"] == "alert" and g["code"] in DATA_CHECKS}
    out = []
    for code in DATA_CHECKS:
        if code in by_code:
            g = by_code[code]
            shown = g["rows"][:rows]
            out.append({**g, "rows": shown, "more": g["count"] - len(shown)})
    return out


def deactivations(changes: pd.DataFrame, limit: int = ROWS_PER_CODE) -> tuple[list[dict], int]:
    """The rows a held drop would deactivate: the first `limit` and the total."""
    if changes is None or changes.empty or "action" not in changes:
        return [], 0
    gone = changes[changes["action"] == "deactivated"]
    head = gone.head(limit)
    rows = [{"entity": ENTITY_LABELS.get(e, clean(e, 40)), "sourced_id": clean(s, 80), "label": clean(lb, 120)}
            for e, s, lb in zip(head["entity"], head["sourced_id"],
                                head["label"] if "label" in head else [""] * len(head), strict=True)]
    return rows, len(gone)


def change_totals(changes: pd.DataFrame) -> list[dict]:
    """Deactivations by entity (e.g. People deactivated 812), for the hold section."""
    if changes is None or changes.empty or "action" not in changes:
        return []
    gone = changes[changes["action"] == "deactivated"]
    counts = gone.groupby(["entity", "action"], sort=True).size()
    return [{"entity": ENTITY_LABELS.get(e, clean(e, 40)), "action": a, "count": int(n)}
            for (e, a), n in counts.items()]


def when(iso: str | None, timezone: str | None = None) -> str:
    """An ISO timestamp as '2024-05-01 02:13 UTC' (or as given when it does not parse); with the tenant's
    time zone, as its local time and abbreviation ('2024-04-30 21:13 CDT')."""
    if not iso:
        return ""
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return clean(iso, 40)
    if timezone and dt.utcoffset() is not None:
        from processor.report.timezones import local_time

        return local_time(dt, timezone)
    if dt.utcoffset() is None or dt.utcoffset().total_seconds() == 0:
        return dt.strftime("%Y-%m-%d %H:%M UTC")
    return dt.strftime("%Y-%m-%d %H:%M %z")
