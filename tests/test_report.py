"""The run report: what report.html, report.txt, issues.csv and changes.csv say, built from small frames."""

from __future__ import annotations

import csv
import io
import re
import time

import pandas as pd
import pytest

from processor.report import samples
from processor.report.csvfiles import formula_safe
from processor.report.render import ReportData, render_report, report_context, run_summary_text, write_report
from processor.runs import Counts, IssueOut, RunResult, RunStatus
from processor.validate.issues import CATALOGUE, ISSUE_COLUMNS, sort_issues

SCRIPT = "<script>alert(1)</script>"


def issues(*rows: tuple) -> pd.DataFrame:
    """Issues from (severity, code, file, line, sourced_id, field, value, message) tuples."""
    return sort_issues(pd.DataFrame(list(rows), columns=ISSUE_COLUMNS).astype({"line": "Int64"}))


def result(status: str = "applied", outcome: str | None = None, **counts: dict) -> RunResult:
    return RunResult(run_id="20240502T021300-aaaa1111", tenant="lincoln", status=RunStatus(status), outcome=outcome,
                     format="oneroster-1.1", source="sftp", received_at="2024-05-02T02:13:00+00:00",
                     counts={e: Counts(**counts.get(e, {})) for e in ("users", "orgs", "classes", "enrollments")})


def report(status: str = "applied", found: pd.DataFrame | None = None, changes: pd.DataFrame | None = None,
           schools: pd.DataFrame | None = None, outcome: str | None = None, **kw) -> ReportData:
    return ReportData(result(status, outcome, **kw), "Lincoln Unified",
                      found if found is not None else issues(), schools if schools is not None else pd.DataFrame(),
                      changes if changes is not None else pd.DataFrame(),
                      release_command="rosterdrop holds release 20240502T021300-aaaa1111" if status == "held" else None,
                      discard_command="rosterdrop holds discard 20240502T021300-aaaa1111" if status == "held" else None)


ROW_ERRORS = issues(
    ("error", "missing_value", "users.csv", 12, "u-12", "email", "", "email is blank"),
    ("error", "missing_value", "users.csv", 14, "u-14", "email", "", "email is blank"),
    ("error", "invalid_value", "users.csv", 20, "u-20", "email", "bob@", "'bob@' is not an email address"),
    ("alert", "unknown_column", "users.csv", 1, None, "shoeSize", None, "column shoeSize was ignored"),
)
MASS = ("hold", "mass_deactivation", "users.csv", None, None, "status", "41%",
        "This full drop would deactivate 512 of 1,249 active people (41%), more than your limit of 10%.")
CHANGES = pd.DataFrame({"entity": ["users"] * 60, "sourced_id": [f"s-{i}" for i in range(60)],
                        "action": ["deactivated"] * 60, "label": [f"Student {i}" for i in range(60)],
                        "fields": ["status"] * 60})


# ---------------------------------------------------------------- subjects


@pytest.mark.parametrize("data, subject", [
    (report(found=ROW_ERRORS), "Lincoln Unified roster: applied with 3 errors, 1 alert"),
    (report(), "Lincoln Unified roster: applied, no problems found"),
    (report("held", issues(MASS), CHANGES), "Lincoln Unified roster is ON HOLD: 41% of people would be removed"),
    (report("held", issues(("hold", "mass_deactivation", "users.csv", None, None, "status", "41%",
                            "This drop would deactivate 41% of students (512 of 1,249 active)."))),
     "Lincoln Unified roster is ON HOLD: 41% of students would be removed"),
    (report("rejected", issues(
        ("error", "missing_column", "classes.csv", 1, None, "title", None, "classes.csv has no title column"),
        ("error", "missing_file", "users.csv", None, None, None, None, "users.csv is missing"))),
     "Lincoln Unified roster was rejected: users.csv is missing (and 1 more problem)"),
    (report("rejected", issues(("error", "bad_bundle", "drop.zip", None, None, None, None,
                                "The zip is encrypted."))),
     "Lincoln Unified roster was rejected: The zip is encrypted"),
    (report("dry_run", ROW_ERRORS, outcome="applied"),
     "Lincoln Unified roster (dry run): applied with 3 errors, 1 alert"),
])
def test_subject_names_the_tenant_and_the_outcome(data, subject):
    assert render_report(data).subject == subject


def test_subject_never_carries_a_line_break_from_bundle_data():
    data = report("rejected", issues(("error", "missing_file", "users.csv\r\nBcc: x@evil.example", None, None,
                                      None, None, "missing")))
    assert "\n" not in render_report(data).subject and "\r" not in render_report(data).subject


# ---------------------------------------------------------------- HTML


def test_html_is_a_mail_safe_single_column_page_with_inlined_css():
    html = render_report(samples.applied_with_errors()).html
    assert '<meta name="color-scheme" content="light dark">' in html
    container = re.search(r'<table class="container"[^>]*>', html).group(0)
    assert 'width="600"' in container and "max-width: 600px" in container
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)  # no remote images or stylesheets
    assert "<link" not in html
    # The rules are inlined; only the dark-mode and phone @media blocks stay in <style>.
    banner = re.search(r'<td class="banner b-partial"[^>]*>', html).group(0)  # rows were rejected: amber
    assert "background: #a16207" in banner
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert "prefers-color-scheme: dark" in style and ".banner{padding:20px" not in style


@pytest.mark.parametrize("status, outcome, kind", [
    ("applied", None, "b-partial"), ("held", None, "b-held"), ("rejected", None, "b-rejected"),
    ("dry_run", "applied", "b-grey"),
])
def test_banner_colour_follows_the_outcome(status, outcome, kind):
    found = issues(MASS) if status == "held" else ROW_ERRORS
    assert f'class="banner {kind}"' in render_report(report(status, found, outcome=outcome)).html


def test_an_applied_run_with_rejected_rows_says_so_in_amber_and_a_clean_one_in_green():
    partial = render_report(report("applied", ROW_ERRORS))
    assert 'class="banner b-partial"' in partial.html
    assert partial.text.startswith("ROSTER APPLIED WITH 3 ERRORS\n")
    clean = render_report(report("applied", issues()))
    assert 'class="banner b-applied"' in clean.html and clean.text.startswith("ROSTER APPLIED\n")


def test_everything_from_the_bundle_is_escaped_in_html():
    found = issues(("error", "invalid_value", "users.csv", 3, SCRIPT, "givenName", SCRIPT, f"name {SCRIPT} bad"))
    changes = CHANGES.copy()
    changes.loc[0, "label"] = SCRIPT
    schools = pd.DataFrame([{"school": "s1", "school_name": SCRIPT, "entity": "users", "created": 1,
                             "updated": 0, "deactivated": 0, "unchanged": 3}])
    data = ReportData(result("held"), "<b>Lincoln</b>", sort_issues(pd.concat([issues(MASS), found])), schools,
                      changes, release_command="rosterdrop holds release x")
    html = render_report(data).html
    assert "<script>" not in html and "<b>Lincoln</b>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # sourced id, value, message, label, school


def test_counts_per_entity_and_per_school_are_shown():
    schools = pd.DataFrame([
        {"school": "s1", "school_name": "Lincoln High", "entity": "people", "created": 4, "updated": 2,
         "deactivated": 1, "unchanged": 0},
        {"school": "s2", "school_name": "Adams Elementary", "entity": "people", "created": 0, "updated": 0,
         "deactivated": 0, "unchanged": 0},
    ])
    data = report(schools=schools, users={"created": 14, "updated": 3, "deactivated": 2, "unchanged": 1234,
                                          "rejected": 5})
    ctx = report_context(data)
    assert [s["name"] for s in ctx["schools"]] == ["Lincoln High", "Adams Elementary"]  # most changes first
    users = next(c for c in ctx["counts"] if c["entity"] == "users")
    assert (users["created"], users["updated"], users["deactivated"], users["unchanged"], users["rejected"]) == (
        14, 3, 2, 1234, 5)
    rendered = render_report(data)
    assert "1,234" in rendered.html and "Lincoln High" in rendered.html and "Adams Elementary" in rendered.html
    assert "1,234" in rendered.text and "Lincoln High" in rendered.text


def test_errors_and_alerts_are_grouped_by_code_with_the_catalogue_text():
    rendered = render_report(report(found=ROW_ERRORS))
    for code in ("missing_value", "invalid_value", "unknown_column"):
        spec = CATALOGUE[code]
        for text in (spec.title, spec.fix):
            assert text in rendered.html.replace("&#39;", "'") and text in rendered.text
    groups = report_context(report(found=ROW_ERRORS))["error_groups"]
    assert [(g["code"], g["count"]) for g in groups] == [("missing_value", 2), ("invalid_value", 1)]
    assert groups[0]["rows"][0] == {"line": "12", "file": "users.csv", "sourced_id": "u-12", "field": "email",
                                    "value": "", "message": "email is blank"}


def test_a_held_report_says_why_what_would_go_and_how_to_release_or_discard():
    rendered = render_report(report("held", issues(MASS), CHANGES))
    for text in (rendered.html, rendered.text):
        assert "512 of 1,249 active people (41%)" in text
        assert "rosterdrop holds release 20240502T021300-aaaa1111" in text
        assert "rosterdrop holds discard 20240502T021300-aaaa1111" in text
        assert "If you cannot run commands, reply to this email or contact your Rosterdrop operator" in text
        assert "Student 49" in text and "Student 50" not in text  # first 50 deactivations
        assert "changes.csv" in text


def test_a_rejected_report_lists_the_fatal_problem_first():
    found = issues(("error", "missing_column", "classes.csv", 1, None, "title", None, "no title column"),
                   ("error", "missing_file", "users.csv", None, None, None, None, "users.csv is missing"))
    ctx = report_context(report("rejected", found))
    assert [g["code"] for g in ctx["error_groups"]] == ["missing_file", "missing_column"]
    assert not ctx["show_counts"]


def test_a_dry_run_report_is_grey_and_says_what_would_happen():
    rendered = render_report(report("dry_run", ROW_ERRORS, outcome="held"))
    assert "b-grey" in rendered.html and "Dry run: nothing was applied" in rendered.html
    assert "would be put on hold" in rendered.text


# ---------------------------------------------------------------- files


def test_write_report_writes_html_text_and_every_issue_as_csv(tmp_path):
    path = write_report(tmp_path / "r", report(found=ROW_ERRORS))
    assert path == tmp_path / "r" / "report.html"
    assert path.read_text().lower().startswith("<!doctype html>")
    assert (tmp_path / "r" / "report.txt").read_text().startswith("ROSTER APPLIED")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r" / "issues.csv").read_text(encoding="utf-8-sig"))))
    assert list(rows[0]) == [*ISSUE_COLUMNS, "count"]
    assert [(r["severity"], r["code"], r["line"], r["sourced_id"]) for r in rows] == [
        ("error", "missing_value", "12", "u-12"), ("error", "missing_value", "14", "u-14"),
        ("error", "invalid_value", "20", "u-20"), ("alert", "unknown_column", "1", "")]
    assert not (tmp_path / "r" / "changes.csv").exists()  # only held runs get one


def test_a_held_run_also_gets_changes_csv(tmp_path):
    write_report(tmp_path / "r", report("held", issues(MASS), CHANGES))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r" / "changes.csv").read_text(encoding="utf-8-sig"))))
    assert len(rows) == 60 and rows[0] == {"entity": "users", "sourced_id": "s-0", "action": "deactivated",
                                           "label": "Student 0", "fields": "status"}


@pytest.mark.parametrize("value, safe", [
    ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("plain", "plain"), ("a=b", "a=b"), ("", ""),
])
def test_issues_csv_defuses_spreadsheet_formulas(tmp_path, value, safe):
    found = issues(("error", "invalid_value", "users.csv", 5, value or "u-1", "email", value, f"{value} bad"))
    write_report(tmp_path, report(found=found))
    text = (tmp_path / "issues.csv").read_bytes().decode("utf-8-sig")  # bytes: keep a CR inside a value
    row = next(csv.DictReader(io.StringIO(text, newline="")))
    assert row["value"] == safe and row["line"] == "5"
    assert row["sourced_id"] == (safe or "u-1")


def test_changes_csv_defuses_formulas_in_names(tmp_path):
    changes = CHANGES.copy()
    changes.loc[0, "label"] = "=cmd|' /C calc'!A0"
    write_report(tmp_path, report("held", issues(MASS), changes))
    row = next(csv.DictReader(io.StringIO((tmp_path / "changes.csv").read_text(encoding="utf-8-sig"))))
    assert row["label"] == "'=cmd|' /C calc'!A0"


def test_formula_safe_works_on_whole_columns_and_keeps_missing_values():
    out = formula_safe(pd.Series(["=x", None, "ok"], dtype="object"))
    assert out.tolist()[0] == "'=x" and pd.isna(out.tolist()[1]) and out.tolist()[2] == "ok"


# ---------------------------------------------------------------- big reports


def test_a_report_with_100k_issues_lists_at_most_50_rows_per_code_and_stays_under_1_mb(tmp_path):
    found = samples.issues(100_000)
    data = report(found=found)
    started = time.perf_counter()
    rendered = render_report(data)
    elapsed = time.perf_counter() - started
    ctx = report_context(data)
    groups = ctx["error_groups"] + ctx["alert_groups"]
    assert sum(g["count"] for g in groups) == 100_000
    assert all(len(g["rows"]) == 50 and g["more"] == g["count"] - 50 for g in groups)
    for g in groups:
        assert f"and {g['more']:,} more in issues.csv" in rendered.html
    # Each issue row shows its line as "line N": at most 50 per group in each body.
    assert len(re.findall(r" line&nbsp;\d", rendered.html)) <= 50 * len(groups)
    assert len(rendered.html.encode()) + len(rendered.text.encode()) < 1_000_000
    assert elapsed < 2 * 3  # the bench measures it properly (target < 2 s); here: no pathology on slow CI
    write_report(tmp_path, data)
    with open(tmp_path / "issues.csv", encoding="utf-8-sig", newline="") as fh:
        assert sum(1 for _ in csv.reader(fh)) == 100_001


def test_even_every_code_with_long_values_keeps_the_body_under_1_mb():
    n = 200
    rows = []
    for code, spec in CATALOGUE.items():
        for i in range(n):
            rows.append((spec.severity, code, "users.csv", i + 2, "x" * 200, "f" * 80, "v" * 500, "m" * 1000))
    rendered = render_report(report(found=issues(*rows)))
    assert len(rendered.html.encode()) + len(rendered.text.encode()) < 1_000_000


# ---------------------------------------------------------------- terminal summary


def test_run_summary_text_shows_status_counts_issue_codes_and_the_report_path():
    res = result("applied", users={"created": 3, "updated": 1, "unchanged": 10, "rejected": 2})
    res.issues = [IssueOut(severity="error", code="missing_value", file="users.csv", line=3, message="blank"),
                  IssueOut(severity="error", code="missing_value", file="users.csv", line=4, message="blank"),
                  IssueOut(severity="alert", code="unknown_column", file="users.csv", line=1, message="x")]
    res.report = "/home/reports/x/report.html"
    text = run_summary_text(res)
    assert "status applied" in text
    assert re.search(r"users\s+3\s+1\s+0\s+10\s+2", text)
    assert "issues: 0 holds, 2 errors, 1 alert" in text
    assert re.search(r"error\s+missing_value\s+2\s+A required value is blank", text)
    assert "report: /home/reports/x/report.html" in text


def test_run_summary_text_of_a_hold_names_the_commands():
    text = run_summary_text(result("held"))
    assert "rosterdrop holds release 20240502T021300-aaaa1111" in text
    assert "rosterdrop holds discard 20240502T021300-aaaa1111" in text


def test_school_counts_of_a_change_set_match_a_plain_groupby():
    import numpy as np

    from processor.apply.diff import ChangeSet, TableChanges
    from processor.pipeline import _school_counts

    rng = np.random.default_rng(7)

    def rows(n: int) -> pd.DataFrame:
        return pd.DataFrame({"sourced_id": [f"x{i}" for i in range(n)],
                             "school": pd.array(rng.choice(["s1", "s2", "", "s10"], n), dtype="str")})

    changes = ChangeSet()
    changes.tables["people"] = TableChanges("people", "bulk", created=rows(50), updated=rows(7), deactivated=rows(0))
    changes.tables["enrollments"] = TableChanges("enrollments", "bulk", created=rows(0), updated=rows(3),
                                                 deactivated=rows(11))
    got = _school_counts(changes, None, None, "t")
    parts = [f.assign(entity=t, action=a) for t, tc in changes.tables.items()
             for a, f in (("created", tc.created), ("updated", tc.updated), ("deactivated", tc.deactivated))]
    want = (pd.concat(parts).groupby(["school", "entity", "action"]).size().unstack(fill_value=0)
            .reindex(columns=["created", "updated", "deactivated"], fill_value=0).reset_index())
    assert got[["school", "entity", "created", "updated", "deactivated"]].astype(str).values.tolist() == \
        want.astype(str).values.tolist()
    assert got["school_name"].eq("(no school)").all() and got["unchanged"].eq(0).all()
