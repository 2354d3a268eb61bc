"""The run report: jinja2 templates → HTML (CSS inlined, ready for mail clients), plain text and CSV files.

The same HTML is the email body and `reports/<run-id>/report.html`. Templates live in processor/templates/;
HTML templates autoescape, so every value from a district's bundle is escaped.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import css_inline
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from processor.report import view
from processor.report.csvfiles import changes_csv, issues_csv
from processor.runs import RunResult, RunStatus
from processor.validate.datachecks import DATA_CHECKS
from processor.validate.issues import CATALOGUE, SEVERITY_ORDER, empty_issues, issue_counts

# The email body (HTML + text) must stay under 1 MB whatever the bundle holds; 50 rows per code keeps it
# far below that for the catalogue as it stands, and the loop in `render_report` shrinks the cap further
# if a future catalogue or very long values ever push it over.
BODY_BUDGET = 850_000
ROW_CAPS = (view.ROWS_PER_CODE, 20, 5, 1)


@dataclass
class ReportData:
    result: RunResult
    tenant_name: str
    issues: pd.DataFrame  # every issue, ISSUE_COLUMNS, sorted (holds, errors, alerts)
    school_counts: pd.DataFrame  # school, school_name, entity, created, updated, deactivated, unchanged
    changes: pd.DataFrame  # entity, sourced_id, action, label, fields
    release_command: str | None = None
    discard_command: str | None = None
    timezone: str = "UTC"  # the tenant's (config); the report's times are local times there


@dataclass(frozen=True)
class RenderedReport:
    subject: str
    html: str
    text: str


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("processor", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda n: f"{int(n):,}"
    env.filters["shy"] = _soft_hyphens
    return env


_SOFT_HYPHENS = {"Enrollments": "Enroll\u00adments", "Organisations": "Organi\u00adsations"}


def _soft_hyphens(label: str) -> str:
    # Long one-word labels may break with a hyphen in narrow (phone) tables instead of widening them.
    return " ".join(_SOFT_HYPHENS.get(w, w) for w in str(label).split(" "))


@cache
def _inliner() -> css_inline.CSSInliner:
    # keep_at_rules leaves the dark-mode and phone @media blocks in <style>; remote fetching stays off so
    # rendering never touches the network.
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


def render_page(template: str, **context) -> str:
    """Render an HTML template and inline its CSS (mail clients drop <style> blocks)."""
    html = environment().get_template(template).render(**context)
    return _inliner().inline(html)


def render_plain(template: str, **context) -> str:
    return environment().get_template(template).render(**context)


def _empty_issues_if_none(issues: pd.DataFrame | None) -> pd.DataFrame:
    return empty_issues() if issues is None else issues


def report_context(data: ReportData, rows_per_code: int = view.ROWS_PER_CODE) -> dict:
    """Everything the run report templates show, as plain values."""
    result = data.result
    issues = _empty_issues_if_none(data.issues)
    status = view.effective_status(result)
    groups = view.issue_groups(issues, rows_per_code)
    schools, schools_hidden = view.school_rows(data.school_counts)
    deactivations, deactivations_total = view.deactivations(data.changes)
    counts = view.entity_counts(result)
    totals = view.severity_totals(issues)
    subject = view.subject(result, data.tenant_name, issues)
    dry = result.status == RunStatus.DRY_RUN
    released = result.released is not None and not dry
    return {
        "subject": subject,
        "preheader": view.outcome_phrase(result, issues),
        "banner": view.banner(result, issues),
        "tenant_name": view.clean(data.tenant_name, 120) or result.tenant,
        "tenant": result.tenant,
        "run_id": result.run_id,
        "received": view.when(result.received_at, data.timezone),
        "source": result.source,
        "format": result.format or "",
        "status": status,
        "counts": counts,
        "show_counts": status != "rejected" and any(any(c[f] for f in view.COUNT_FIELDS) for c in counts),
        "show_skipped": any(c["skipped"] for c in counts),
        "errors_intro": _errors_intro(status, dry),
        # A rejected bundle's errors are about files and headers, not rows.
        "error_noun": ("problem" if totals["error"] == 1 else "problems") if status == "rejected"
        else ("row" if totals["error"] == 1 else "rows"),
        "counts_heading": "What would change" if dry or status == "held" else "What changed",
        "schools": schools,
        "schools_hidden": schools_hidden,
        # A held run explains its holds in the hold box; any other run (e.g. a released one) lists them.
        "hold_groups": [g for g in groups if g["severity"] == "hold"] if status == "held" else [],
        "other_hold_groups": [g for g in groups if g["severity"] == "hold"] if status != "held" else [],
        "error_groups": [g for g in groups if g["severity"] == "error"],
        "alert_groups": [g for g in groups if g["severity"] == "alert" and g["code"] not in DATA_CHECKS],
        "data_check_groups": view.data_check_groups(groups),
        # The Alerts heading counts the alerts it lists; the data checks have their own section.
        "alerts_listed": sum(g["count"] for g in groups if g["severity"] == "alert" and g["code"] not in DATA_CHECKS),
        "totals": totals,
        "capped": any(g["more"] for g in groups),
        "unlisted": bool(issue_counts(issues).gt(1).any()),  # some issues are counted, not listed, in issues.csv
        "rows_per_code": rows_per_code,
        # A released run lists what it changed, as its hold listed what it would change.
        "deactivations": deactivations if status == "held" or released else [],
        "deactivations_total": deactivations_total,
        "change_totals": view.change_totals(data.changes) if status == "held" or released else [],
        "removed_heading": "What the release changed" if released else "What would be removed",
        "deactivated_verb": "were deactivated" if released else "would be deactivated",
        "released_line": view.released_line(result, issues, data.timezone) if released else "",
        "release_command": data.release_command,
        "discard_command": data.discard_command,
    }


def _errors_intro(status: str, dry: bool) -> str:
    if status == "rejected":
        return "Fix these in your SIS and send the export again; nothing from this drop was applied."
    if status == "applied" and not dry:
        return "These rows were not imported; the rest of the drop was."
    return "These rows would not be imported when the drop is applied."


def render_report(data: ReportData) -> RenderedReport:
    """Subject, inlined HTML and text of a run report, with at most 50 rows per issue code."""
    for cap in ROW_CAPS:
        context = report_context(data, cap)
        html = render_page("run_report.html", **context)
        text = render_plain("run_report.txt", **context)
        if len(html.encode()) + len(text.encode()) <= BODY_BUDGET:
            break
    return RenderedReport(context["subject"], html, text)


def _write_atomic(path: Path, content: bytes) -> None:
    # A reader (the mail queue, an operator) never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report_dir: Path, data: ReportData) -> Path:
    """Write report.html, report.txt, issues.csv and (for holds) changes.csv; return the HTML path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    rendered = render_report(data)
    _write_atomic(report_dir / "report.html", rendered.html.encode())
    _write_atomic(report_dir / "report.txt", rendered.text.encode())
    _write_atomic(report_dir / "issues.csv", issues_csv(_empty_issues_if_none(data.issues)))
    if view.effective_status(data.result) == "held" or data.result.released:
        _write_atomic(report_dir / "changes.csv", changes_csv(data.changes))
    return report_dir / "report.html"


def run_summary_text(result: RunResult) -> str:
    """A short summary for the terminal: status, counts per entity, issue counts by code, report path."""
    status = str(result.status)
    if result.status == RunStatus.DRY_RUN and result.outcome:
        status += f" (would be {result.outcome})"
    lines = [f"run {result.run_id}  tenant {result.tenant}  status {status}"
             + (f"  format {result.format}" if result.format else "")]
    if any(any(getattr(c, f) for f in (*view.COUNT_FIELDS, "skipped")) for c in result.counts.values()):
        fields = (*view.COUNT_FIELDS, "skipped")
        lines.append("")
        lines.append(f"  {'':<12}" + "".join(f"{f:>12}" for f in fields))
        for entity, c in result.counts.items():
            lines.append(f"  {entity:<12}" + "".join(f"{getattr(c, f):>12,}" for f in fields))
    by_code, totals = Counter(), Counter()
    for i in result.issues:  # i.count: an issue past the cap per code and file stands for many
        by_code[(i.severity, i.code)] += i.count
        totals[i.severity] += i.count
    lines.append("")
    lines.append("issues: " + ", ".join(view.plural(totals.get(s, 0), s) for s in ("hold", "error", "alert")))
    for (severity, code), n in sorted(by_code.items(), key=lambda kv: (SEVERITY_ORDER.get(kv[0][0], 9),
                                                                       -kv[1], kv[0][1])):
        title = CATALOGUE[code].title if code in CATALOGUE else ""
        lines.append(f"  {severity:<6} {code:<28} {n:>9,}  {title}")
    if result.status == RunStatus.HELD:
        lines.append("")
        lines.append(f"release: rosterdrop holds release {result.run_id}")
        lines.append(f"discard: rosterdrop holds discard {result.run_id}")
    if result.report:
        lines.append("")
        lines.append(f"report: {result.report}")
    return "\n".join(lines)
