"""Notices: the short emails that are not a run report (hold released / discarded, missing drop, digest).

Each kind has its own pair of templates, notice_<kind>.html and notice_<kind>.txt. Callers pass the
values the template needs; `normalise` fills defaults so that a caller missing an optional value gets a
plainer sentence instead of an error inside the pipeline's transaction.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from processor.report import view
from processor.report.render import RenderedReport, render_page, render_plain
from processor.validate.issues import CATALOGUE

NOTICE_KINDS = ("hold_released", "hold_discarded", "missing_drop", "weekly_digest", "duplicate_drop", "run_failed",
                "run_superseded", "pause_starting", "pause_ended")
DIGEST_DAYS = 7
DIGEST_RUNS_SHOWN = 50
DIGEST_TOP_ERRORS = 5


def _hours(value: object) -> str:
    try:
        h = float(value)
    except (TypeError, ValueError):
        return "many"
    return f"{h:,.0f}" if h >= 10 or h == int(h) else f"{h:.1f}"


def normalise(kind: str, context: dict) -> dict:
    """The template values for a notice, with defaults for what the caller left out."""
    if kind not in NOTICE_KINDS:
        raise ValueError(f"unknown notice kind {kind!r}; expected one of {', '.join(NOTICE_KINDS)}")
    ctx = dict(context)
    ctx.setdefault("run_id", None)
    tz = ctx.get("timezone")  # the tenant's, from queue_notice
    ctx["received"] = view.when(ctx.get("received_at"), tz)
    if kind in ("hold_released", "hold_discarded"):
        ctx.setdefault("status", "applied" if kind == "hold_released" else "discarded")
        # Who acted, when and why (CONTRACT.md section 7); absent, the sentence just leaves them out.
        ctx["by"] = view.clean(ctx.get("by"), 120)
        ctx["at_text"] = view.when(ctx.get("at"), tz) if ctx.get("at") else ""
        ctx["note"] = view.clean(ctx.get("note"), 500)
    elif kind == "duplicate_drop":
        ctx["earlier"] = view.when(ctx.get("earlier_received_at"), tz)
        ctx.setdefault("earlier_run_id", "")
        ctx.setdefault("earlier_status", "")
        ctx["file_name"] = view.clean(ctx.get("file_name"), 120)
    elif kind == "missing_drop":
        ctx["hours_text"] = _hours(ctx.get("hours"))
        ctx["last"] = view.when(ctx.get("last_received_at"), tz)
        ctx["expected_text"] = _hours(ctx["expect_every_hours"]) if ctx.get("expect_every_hours") else ""
    elif kind in ("run_failed", "run_superseded"):
        ctx["file"] = view.clean(ctx.get("file"), 120)  # the district's own file name, one line
        ctx.setdefault("newer", None)
    elif kind in ("pause_starting", "pause_ended"):
        from processor.calendar import (  # the district's calendar (processor/calendar.py)
            MODE_LABEL,
            MODE_TEXT,
        )

        ctx["mode_text"] = MODE_TEXT.get(ctx.get("mode"), "")
        ctx["mode_label"] = MODE_LABEL.get(ctx.get("mode"), "")
        # On the due day; otherwise a day late (the daemon was down all of the due day).
        ctx["on_time"] = ctx.get("today") == (ctx.get("pause_from_eve") if kind == "pause_starting"
                                              else ctx.get("pause_until"))
        ctx.setdefault("held", 0)
    elif kind == "weekly_digest":
        ctx.setdefault("days", DIGEST_DAYS)
        ctx.setdefault("runs", [])
        ctx.setdefault("runs_total", len(ctx["runs"]))
        ctx.setdefault("status_counts", {})
        ctx.setdefault("holds", [])
        ctx.setdefault("top_errors", [])
        ctx.setdefault("since", "")
    return ctx


def notice_subject(kind: str, tenant_name: str, ctx: dict) -> str:
    name = view.clean(tenant_name, 80)
    if kind == "hold_released":
        if ctx["status"] == "applied":
            text = f"{name} roster: held drop released and applied"
        else:
            text = f"{name} roster: held drop released but not applied ({ctx['status']})"
    elif kind == "hold_discarded":
        text = f"{name} roster: held drop discarded, nothing applied"
    elif kind == "duplicate_drop":
        text = f"{name} roster: this file was already processed; nothing was done"
    elif kind == "missing_drop":
        text = f"{name} roster: no roster received in {ctx['hours_text']} hours"
    elif kind == "run_failed":
        text = f"{name} roster: we could not process this drop; the operator has been told"
    elif kind == "run_superseded":
        text = f"{name} roster: drop not applied, a newer drop was applied first"
    elif kind == "pause_starting":
        text = (f"{name} roster: syncs pause {'tomorrow' if ctx['on_time'] else 'today'}, "
                f"{ctx['pause_from']} to {ctx['pause_until']}")
    elif kind == "pause_ended":
        text = f"{name} roster: the sync pause ends {'today' if ctx['on_time'] else 'yesterday'}, {ctx['pause_until']}"
    else:
        holds = int(ctx["status_counts"].get("held", 0))
        text = (f"{name} roster: weekly summary, {view.plural(ctx['runs_total'], 'drop')}, "
                f"{view.plural(holds, 'hold')}")
    return view.clean(text, 200)


_BANNERS = {
    "hold_released": lambda c: view.Banner(
        "applied" if c["status"] == "applied" else "grey", "Held drop released",
        "The hold was released and the drop was applied." if c["status"] == "applied"
        else f"The hold was released, but the drop was not applied: it is {c['status']}."),
    "hold_discarded": lambda c: view.Banner(
        "grey", "Held drop discarded", "Nothing from this drop was applied; the roster is unchanged."),
    "duplicate_drop": lambda c: view.Banner(
        "grey", "Already processed: nothing was done",
        "These exact bytes were processed before" + (f", in run {c['earlier_run_id']}" if c["earlier_run_id"] else "")
        + "."),
    "missing_drop": lambda c: view.Banner(
        "held", f"No roster received in {c['hours_text']} hours",
        "Your roster in our system may be going out of date."),
    "weekly_digest": lambda c: view.Banner(
        "grey", "Weekly roster summary", f"Drops received in the last {c['days']} days."),
    "run_failed": lambda c: view.Banner(
        "rejected", "We could not process this file", "The operator has been told; nothing was applied."),
    "pause_starting": lambda c: view.Banner(
        "held", "Syncs pause " + ("tomorrow" if c["on_time"] else "today"),
        f"{c['pause_from']} to {c['pause_until']}, {c['mode_label']}."),
    "pause_ended": lambda c: view.Banner(
        "applied", "The sync pause ends " + ("today" if c["on_time"] else "yesterday"),
        f"Drops from {c['resumes']} on are processed as usual."),
    "run_superseded": lambda c: view.Banner(
        "grey", "Drop not applied", "A newer drop was applied first; nothing from this one was applied."),
}


def render_notice(kind: str, tenant: str, tenant_name: str, context: dict) -> RenderedReport:
    """Subject, inlined HTML and text of one notice."""
    ctx = normalise(kind, context)
    subject = notice_subject(kind, tenant_name, ctx)
    ctx.update(subject=subject, preheader=subject, banner=_BANNERS[kind](ctx), tenant=tenant,
               tenant_name=view.clean(tenant_name, 120) or tenant)
    return RenderedReport(subject, render_page(f"notice_{kind}.html", **ctx),
                          render_plain(f"notice_{kind}.txt", **ctx))


def digest_context(conn: Connection, tenant: str, now: float | None = None,
                   days: int = DIGEST_DAYS) -> dict:
    """Runs, holds and the most recurring errors of a tenant over the last `days` days (runs table)."""
    from processor.apply.store import runs

    now = time.time() if now is None else now
    since = datetime.fromtimestamp(now - days * 86400, UTC).isoformat(timespec="seconds")
    rows = conn.execute(
        select(runs.c.run_id, runs.c.status, runs.c.outcome, runs.c.received_at, runs.c.result)
        .where(runs.c.tenant == tenant, runs.c.received_at >= since)
        .order_by(runs.c.received_at.desc())
    ).all()
    status_counts: Counter[str] = Counter()
    error_rows: Counter[str] = Counter()
    error_runs: Counter[str] = Counter()
    listed, holds = [], []
    for run_id, status, outcome, received_at, result_json in rows:
        status_counts[status] += 1
        by_severity, codes = _issue_counts(result_json)
        for code, n in codes.items():
            error_rows[code] += n
            error_runs[code] += 1
        entry = {"run_id": run_id, "status": status, "outcome": outcome or "", "received": view.when(received_at),
                 "errors": by_severity.get("error", 0), "alerts": by_severity.get("alert", 0)}
        if len(listed) < DIGEST_RUNS_SHOWN:
            listed.append(entry)
        if status == "held":
            holds.append(entry)
    top = sorted(error_rows, key=lambda c: (-error_runs[c], -error_rows[c], c))[:DIGEST_TOP_ERRORS]
    return {
        "days": days,
        "since": view.when(since),
        "runs": listed,
        "runs_total": len(rows),
        "status_counts": dict(status_counts),
        "holds": holds,
        "top_errors": [{"code": c, "title": CATALOGUE[c].title if c in CATALOGUE else c,
                        "fix": CATALOGUE[c].fix if c in CATALOGUE else "",
                        "runs": error_runs[c], "rows": error_rows[c]} for c in top],
    }


def _issue_counts(result_json: str | None) -> tuple[Counter[str], Counter[str]]:
    """(issues by severity, error rows by code) of one stored run result.

    One run is parsed at a time and only its counters are kept, so memory stays bounded by the largest
    single run even over a week of big drops.
    """
    by_severity: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    if not result_json:
        return by_severity, errors
    try:
        issues = json.loads(result_json).get("issues") or []
    except (ValueError, AttributeError):
        return by_severity, errors
    for issue in issues:
        severity, code = issue.get("severity"), issue.get("code")
        by_severity[severity] += 1
        if severity == "error" and code:
            errors[code] += 1
    return by_severity, errors
