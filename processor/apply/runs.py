"""Runs in the store: record, find duplicates, lock a tenant, finish, list and show."""

from __future__ import annotations

import json

from sqlalchemy import Connection, Engine, insert, select, update

from processor.apply.store import runs, tenants
from processor.apply.tenant_lock import tenant_lock  # noqa: F401 - callers use run_store.tenant_lock
from processor.context import UserError
from processor.runs import IssueOut, RunResult, RunStatus, now_iso

# Statuses whose bytes count as processed: the same bytes again are a duplicate. Not "discarded": a
# district whose held drop was discarded may send the same file again, and that starts a new run.
DONE = ("applied", "held", "rejected", "superseded")


def record_run(engine: Engine, result: RunResult, original_name: str, spool_path: str, tenant_name: str,
               also=None) -> None:
    """Insert the run's row; also(conn), if given, runs in the same transaction (the queue's wake-up)."""
    with engine.begin() as conn:
        if conn.execute(select(tenants.c.tenant).where(tenants.c.tenant == result.tenant)).first() is None:
            conn.execute(insert(tenants).values(tenant=result.tenant, name=tenant_name))
        conn.execute(insert(runs).values(
            run_id=result.run_id, tenant=result.tenant, status=result.status.value, format=result.format,
            source=result.source, received_at=result.received_at, sha256=result.sha256,
            original_name=original_name, spool_path=spool_path, result=json.dumps(result.to_json())))
        if also is not None:
            also(conn)


def find_by_sha(engine: Engine, tenant: str, sha256: str, statuses: tuple[str, ...]) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(select(runs.c.run_id).where(
            runs.c.tenant == tenant, runs.c.sha256 == sha256, runs.c.status.in_(statuses))
            .order_by(runs.c.received_at)).first()
    return row[0] if row else None


def save_result(conn: Connection, result: RunResult, report_path: str | None = None) -> None:
    values = {"status": result.status.value, "outcome": result.outcome, "format": result.format,
              "finished_at": result.finished_at, "result": json.dumps(result.to_json())}
    if report_path:
        values["report_path"] = report_path
    conn.execute(update(runs).where(runs.c.run_id == result.run_id).values(**values))


def set_status(engine: Engine, run_id: str, status: RunStatus) -> None:
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(status=status.value))


def run_row(engine: Engine, run_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
    if row is None:
        raise UserError(f"no run {run_id!r}; see `rosterdrop runs list`")
    return dict(row)


def get_result(engine: Engine, run_id: str) -> RunResult:
    row = run_row(engine, run_id)
    result = RunResult.model_validate(json.loads(row["result"]))
    # A status change made without rewriting the JSON (a hold superseded by a newer drop) wins.
    result.status = RunStatus(row["status"])
    return result


def list_runs(engine: Engine, tenant: str | None = None, status: str | None = None,
              limit: int | None = 50) -> list[dict]:
    q = select(runs.c.run_id, runs.c.tenant, runs.c.status, runs.c.outcome, runs.c.source, runs.c.received_at,
               runs.c.finished_at, runs.c.report_path, runs.c.result).order_by(runs.c.received_at.desc(),
                                                                                 runs.c.run_id.desc())
    if tenant:
        q = q.where(runs.c.tenant == tenant)
    if status:
        q = q.where(runs.c.status == status)
    if limit:
        q = q.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    out = []
    for r in rows:
        result = json.loads(r["result"] or "{}")
        sev = [i["severity"] for i in result.get("issues", [])]
        item = {k: r[k] for k in ("run_id", "tenant", "status", "source", "received_at", "finished_at")}
        item |= {"errors": sev.count("error"), "alerts": sev.count("alert"), "holds": sev.count("hold"),
                 "counts": result.get("counts", {}), "report": r["report_path"]}
        if r["outcome"]:
            item["outcome"] = r["outcome"]
        out.append(item)
    return out


def newer_applied(conn: Connection, tenant: str, received_at: str, run_id: str) -> str | None:
    row = conn.execute(select(runs.c.run_id).where(
        runs.c.tenant == tenant, runs.c.status == "applied", runs.c.run_id != run_id,
        runs.c.received_at > received_at)).first()
    return row[0] if row else None


def supersede_older_holds(conn: Connection, tenant: str, received_at: str) -> list[tuple[str, str | None]]:
    """Mark the tenant's older held runs superseded; returns their (run_id, spool_path)."""
    held = [(r[0], r[1]) for r in conn.execute(select(runs.c.run_id, runs.c.spool_path).where(
        runs.c.tenant == tenant, runs.c.status == "held", runs.c.received_at < received_at)).all()]
    if held:
        conn.execute(update(runs).where(runs.c.run_id.in_([h[0] for h in held])).values(status="superseded"))
    return held


def touch(conn: Connection, run_id: str) -> None:
    conn.execute(update(runs).where(runs.c.run_id == run_id).values(status=runs.c.status))


def mark_superseded(engine: Engine, run_id: str, newer: str, when: str) -> RunResult:
    """Record that a newer applied drop replaced this run: nothing of it is applied, ever.
    when: "after this one was held" or "before this one could be processed"."""
    result = get_result(engine, run_id)
    result.status = RunStatus.SUPERSEDED
    result.finished_at = now_iso()
    result.issues = [*result.issues, IssueOut(
        severity="alert", code="superseded",
        message=f"A newer drop (run {newer}) was applied {when}; applying this older drop would undo it. "
                "Nothing was applied.")]
    with engine.begin() as conn:
        save_result(conn, result)
    return result
