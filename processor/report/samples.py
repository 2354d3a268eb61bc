"""Synthetic run reports (no pipeline needed): for the preview renderer, the benchmark and tests.

The issues are built on whole columns with numpy, so 100,000 of them take milliseconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from processor.report.render import ReportData
from processor.runs import Counts, RunResult, RunStatus
from processor.validate.issues import ISSUE_COLUMNS, sort_issues

TENANT = "lincoln"
TENANT_NAME = "Lincoln Unified"

# (severity, code, file, field, message template; {v} is the value)
_ROW_KINDS = [
    ("error", "missing_value", "users.csv", "email", "email is required by your district's settings and is blank"),
    ("error", "invalid_value", "users.csv", "email", "'{v}' is not an email address"),
    ("error", "unknown_reference", "enrollments.csv", "classSourcedId",
     "class '{v}' is neither in this bundle nor in the roster"),
    ("error", "rejected_reference", "enrollments.csv", "userSourcedId",
     "user '{v}' was rejected (see its own error), so this enrollment was not imported"),
    ("error", "duplicate_id", "classes.csv", "sourcedId", "sourcedId '{v}' already appeared on an earlier line"),
    ("alert", "invalid_value", "users.csv", "birthDate", "'{v}' is not a date (expected YYYY-MM-DD); left blank"),
    ("alert", "dangling_link", "users.csv", "agentSourcedIds", "guardian '{v}' does not exist; link dropped"),
    ("alert", "normalized_value", "users.csv", "enabledUser", "'{v}' was read as 'true'"),
]
_NASTY = ["<script>alert(1)</script>", "=HYPERLINK(\"http://evil.example\",\"x\")", "+1-555-0100", "@SUM(A1)",
          "Zoë Ñúñez-O'Brien", "\"quoted, with comma\"", "a" * 400]


def result(status: RunStatus, outcome: str | None = None, counts: dict[str, Counts] | None = None,
           run_id: str = "20240502T021300-5f3a9c1e") -> RunResult:
    return RunResult(run_id=run_id, tenant=TENANT, status=status, outcome=outcome, format="oneroster-1.1",
                     source="sftp", received_at="2024-05-02T02:13:00+00:00",
                     counts=counts or {e: Counts() for e in ("users", "orgs", "classes", "enrollments")},
                     report=f"/var/lib/rosterdrop/reports/{run_id}/report.html")


def issues(n: int, seed: int = 7, kinds: list[tuple] | None = None) -> pd.DataFrame:
    """n row issues spread over a few codes, with hostile values (markup, formulas, long text) mixed in."""
    kinds = kinds or _ROW_KINDS
    rng = np.random.default_rng(seed)
    weights = np.array([30, 12, 20, 10, 3, 15, 5, 5][: len(kinds)], dtype=float)
    pick = rng.choice(len(kinds), size=n, p=weights / weights.sum())
    table = pd.DataFrame(kinds, columns=["severity", "code", "file", "field", "template"])
    chosen = table.iloc[pick].reset_index(drop=True)
    idx = pd.Series(np.arange(n)).astype("string")
    value = ("x" + idx).astype(object)
    nasty = rng.random(n) < 0.02
    value[nasty] = rng.choice(np.array(_NASTY, dtype=object), size=int(nasty.sum()))
    value[(chosen["code"] == "missing_value").to_numpy()] = ""
    message = pd.Series([t.replace("{v}", "\0") for t in chosen["template"]], dtype="string")
    parts = message.str.split("\0", n=1, expand=True)
    if parts.shape[1] == 2:
        message = parts[0] + pd.Series(value, dtype="string").where(parts[1].notna(), "") + parts[1].fillna("")
    frame = pd.DataFrame({
        "severity": chosen["severity"],
        "code": chosen["code"],
        "file": chosen["file"],
        "line": pd.Series(rng.integers(2, 300_000, size=n), dtype="Int64"),
        "sourced_id": ("u-" + idx).astype(object),
        "field": chosen["field"],
        "value": value,
        "message": message.astype(object),
    })[ISSUE_COLUMNS]
    return sort_issues(frame)


def _frame(rows: list[dict]) -> pd.DataFrame:
    return sort_issues(pd.DataFrame(rows, columns=ISSUE_COLUMNS).astype({"line": "Int64"}))


def schools(n: int = 3) -> pd.DataFrame:
    names = ["Lincoln High School", "Washington Middle School", "Roosevelt Elementary", "Jefferson Academy",
             "Adams Elementary"]
    rows = []
    for i in range(n):
        for entity, base in (("users", 400), ("classes", 30), ("enrollments", 1500)):
            rows.append({"school": f"sch-{i + 1:03d}", "school_name": names[i % len(names)], "entity": entity,
                         "created": (i * 7 + base // 50) % 40, "updated": (i * 13) % 25,
                         "deactivated": (i * 3) % 9, "unchanged": base - i * 11})
    return pd.DataFrame(rows)


def _counts(**over: dict) -> dict[str, Counts]:
    base = {"users": Counts(created=14, updated=37, deactivated=5, unchanged=1204, rejected=0),
            "orgs": Counts(created=0, updated=1, deactivated=0, unchanged=4),
            "classes": Counts(created=3, updated=6, deactivated=2, unchanged=118),
            "enrollments": Counts(created=140, updated=0, deactivated=61, unchanged=4310)}
    base.update({k: Counts(**v) for k, v in over.items()})
    return base


def clean_applied() -> ReportData:
    return ReportData(result(RunStatus.APPLIED, counts=_counts()), TENANT_NAME, _frame([]), schools(3),
                      pd.DataFrame())


def applied_with_errors(n: int = 60) -> ReportData:
    found = issues(n)
    rejected = int((found["severity"] == "error").sum())
    counts = _counts(users={"created": 14, "updated": 37, "deactivated": 5, "unchanged": 1190,
                            "rejected": rejected})
    return ReportData(result(RunStatus.APPLIED, counts=counts), TENANT_NAME, found, schools(3), pd.DataFrame())


def held() -> ReportData:
    hold = _frame([{
        "severity": "hold", "code": "mass_deactivation", "file": "users.csv", "line": None, "sourced_id": None,
        "field": None, "value": "41%",
        "message": "This drop would deactivate 41% of students (512 of 1,249 active); the limit is 10%.",
    }])
    n = 512
    ids = pd.Series(np.arange(n)).astype("string")
    changes = pd.DataFrame({
        "entity": "users", "sourced_id": ("stu-" + ids).astype(object),
        "action": "deactivated", "label": ("Student " + ids).astype(object), "fields": "status",
    })
    changes.loc[3, "label"] = "<script>alert(1)</script>"
    changes.loc[4, "label"] = "=cmd|' /C calc'!A0"
    found = pd.concat([hold, issues(12, seed=3)], ignore_index=True)
    counts = _counts(users={"created": 2, "updated": 9, "deactivated": 512, "unchanged": 737})
    return ReportData(result(RunStatus.HELD, counts=counts), TENANT_NAME, sort_issues(found), schools(2),
                      changes, release_command="rosterdrop holds release 20240502T021300-5f3a9c1e",
                      discard_command="rosterdrop holds discard 20240502T021300-5f3a9c1e")


def rejected() -> ReportData:
    found = _frame([
        {"severity": "error", "code": "missing_file", "file": "users.csv", "line": None, "sourced_id": None,
         "field": None, "value": None,
         "message": "users.csv is missing; the manifest marks it bulk. Include it or mark it absent."},
        {"severity": "error", "code": "missing_column", "file": "classes.csv", "line": 1, "sourced_id": None,
         "field": "title", "value": None, "message": "classes.csv has no 'title' column."},
    ])
    return ReportData(result(RunStatus.REJECTED), TENANT_NAME, found, pd.DataFrame(), pd.DataFrame())


def dry_run() -> ReportData:
    data = applied_with_errors(25)
    data.result = result(RunStatus.DRY_RUN, outcome="applied", counts=data.result.counts)
    return data


SCENARIOS = {
    "clean_applied": clean_applied,
    "applied_with_errors": applied_with_errors,
    "held": held,
    "rejected": rejected,
    "dry_run": dry_run,
}
