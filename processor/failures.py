"""Runs that end without their drop being processed: `failed` (an internal error) and `superseded`
before processing; and `rosterdrop runs retry`, which processes a failed run's drop again.

A failed run applied nothing (its transaction rolled back), keeps its spooled bundle so that it can be
retried, and tells the district with a short notice that the operator has been told; the operator gets
the stack frames in the log (never the exception's message, which may quote roster rows). Both are
recorded with a conditional UPDATE, so a run that finished in the meantime is never overwritten.
"""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from processor.apply import runs as run_store
from processor.apply.store import runs
from processor.context import Context, UserError
from processor.intake.spool import Drop
from processor.runs import COUNTED, Counts, IssueOut, RunResult, RunStatus, now_iso

log = logging.getLogger("rosterdrop.failures")

UNFINISHED = ("received", "processing")
INTERNAL_ERROR = "internal_error"
FAILED_MESSAGE = ("Rosterdrop could not process this file because of an internal error. Nothing was applied; "
                  "the operator has been told and can process it again once the cause is fixed.")
DRY_RUN_MARK = "dry_run"  # the issue's value when the run was a dry run: a retry would apply it


def failure_reason(exc: BaseException) -> str:
    """The exception's type, and for a database error the driver's first line (never roster values)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__}: {str(exc.orig).splitlines()[0][:200]}"
    return type(exc).__name__


def log_failure(drop: Drop, exc: BaseException) -> None:
    """The operator's record: where it failed (the frames), not the message, which may quote rows."""
    log.error("run %s tenant %s: processing failed: %s\n%s", drop.run_id, drop.tenant, failure_reason(exc),
              "".join(traceback.format_tb(exc.__traceback__)).rstrip())
    log.debug("run %s tenant %s: the failure in full", drop.run_id, drop.tenant, exc_info=exc)


def record_failed(ctx: Context, drop: Drop, reason: str, result: RunResult | None = None,
                  dry_run: bool = False) -> RunResult | None:
    """Mark an unfinished run `failed`, write its report, queue the district's notice (not for a dry run).

    None if the run had already finished (another process got there first): nothing is changed then.
    """
    engine = ctx.engine
    if result is None:
        result = run_store.get_result(engine, drop.run_id)
    result = result.model_copy(deep=True)
    result.status, result.outcome, result.finished_at = RunStatus.FAILED, None, now_iso()
    result.counts = {e: Counts() for e in COUNTED}  # nothing was applied, whatever the diff had counted
    result.issues = [IssueOut(severity="error", code=INTERNAL_ERROR, message=FAILED_MESSAGE,
                              value=DRY_RUN_MARK if dry_run else None)]
    notice = {"run_id": drop.run_id, "received_at": drop.received_at, "file": drop.original_name,
              "reason": reason}
    result.report = _write_notice_report(ctx, drop, "run_failed", notice)
    with engine.begin() as conn:
        changed = conn.execute(update(runs).where(runs.c.run_id == drop.run_id, runs.c.status.in_(UNFINISHED))
                               .values(status=RunStatus.FAILED.value, outcome=None, finished_at=result.finished_at,
                                       result=json.dumps(result.to_json()), report_path=result.report)).rowcount
        if changed != 1:
            return None
        if not dry_run:
            from processor.report.mail import queue_notice

            queue_notice(conn, ctx, drop.tenant, "run_failed", notice)
    log.error("run %s tenant %s: failed (%s); nothing applied; `rosterdrop runs retry %s` processes it again",
              drop.run_id, drop.tenant, reason, drop.run_id)
    return result


def supersede_unprocessed(ctx: Context, drop: Drop, newer: str) -> RunResult:
    """A run older than an applied one, not processed yet: superseded (applying it would undo the newer
    roster), with a notice so that the district knows its drop was not applied. Call it holding the lock."""
    result = run_store.get_result(ctx.engine, drop.run_id)
    result.status, result.finished_at = RunStatus.SUPERSEDED, now_iso()
    result.issues = [*result.issues, IssueOut(
        severity="alert", code="superseded",
        message=f"A newer drop (run {newer}) was applied before this one could be processed; applying this "
                "older drop would undo it. Nothing was applied.")]
    notice = {"run_id": drop.run_id, "received_at": drop.received_at, "file": drop.original_name, "newer": newer}
    result.report = _write_notice_report(ctx, drop, "run_superseded", notice)
    with ctx.engine.begin() as conn:
        run_store.save_result(conn, result, result.report)
        from processor.report.mail import queue_notice

        queue_notice(conn, ctx, drop.tenant, "run_superseded", notice)
    log.info("run %s tenant %s: superseded by run %s; nothing applied", drop.run_id, drop.tenant, newer)
    return result


def _write_notice_report(ctx: Context, drop: Drop, kind: str, notice: dict) -> str | None:
    """The notice doubles as the run's report (report.html / report.txt), so `runs show` has one."""
    try:
        from processor.report.notices import render_notice

        rendered = render_notice(kind, drop.tenant, ctx.config.tenant(drop.tenant).name, notice)
        folder = ctx.path("reports", drop.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.txt").write_text(rendered.text, encoding="utf-8")
        (folder / "report.html").write_text(rendered.html, encoding="utf-8")
        return str(folder / "report.html")
    except Exception:  # noqa: BLE001 - the run's outcome must be recorded even if its report cannot be
        log.exception("run %s tenant %s: the %s report could not be written", drop.run_id, drop.tenant, kind)
        return None


def retry_run(ctx: Context, run_id: str) -> RunResult:
    """`rosterdrop runs retry`: process a failed run's drop again, now, as the daemon would."""
    from processor.pipeline import process_drop

    engine = ctx.engine
    row = run_store.run_row(engine, run_id)
    ctx.config.tenant(row["tenant"])
    if row["status"] != RunStatus.FAILED:
        raise UserError(f"run {run_id} has not failed (its status is {row['status']}); only failed runs can be "
                        "retried")
    if any(i.code == INTERNAL_ERROR and i.value == DRY_RUN_MARK for i in run_store.get_result(engine, run_id).issues):
        raise UserError(f"run {run_id} was a dry run; run `rosterdrop process --dry-run` on the bundle again")
    path = Path(row["spool_path"] or "")
    if not row["spool_path"] or not path.exists():
        archived = ctx.path("archive", row["tenant"], run_id, path.name)
        if not archived.exists() and ctx.config.queue.backend == "procrastinate":
            from processor.queue import local_copy

            archived = local_copy(ctx, row).path  # received on another host: its bytes are in the store
        if not row["spool_path"] or not archived.exists():
            raise UserError(f"the bundle of run {run_id} is missing ({path}); it cannot be retried: ask the "
                            "district to send it again")
        path = archived
    with engine.begin() as conn:
        # Back in line as received; only one retry wins the row, a second one is told so.
        taken = conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.status == RunStatus.FAILED.value)
                             .values(status=RunStatus.RECEIVED.value, finished_at=None)).rowcount
    if taken != 1:
        raise UserError(f"run {run_id} is being retried already; see `rosterdrop runs show {run_id}`")
    log.info("run %s tenant %s: retried by the operator", run_id, row["tenant"])
    drop = Drop(run_id, row["tenant"], path, row["sha256"], row["received_at"], row["source"],
                row["original_name"] or path.name)
    return process_drop(ctx, drop)
