"""What an operator asks of a running installation: `rosterdrop status`, `runs changes`, `runs revert`."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from sqlalchemy import func, select, update

from processor.apply.store import ENTITY_COLUMNS, audit, outbox, runs, tenant_access
from processor.context import Context, UserError
from processor.runs import RunStatus

UNFINISHED = ("received", "processing")
WAITING_EMAIL = ("queued", "sending")


class RevertRefused(UserError):
    """Only the tenant's latest applied run can be reverted (exit 2, like a refused release)."""


# ---------------------------------------------------------------- status


def daemon_state(home: Path) -> dict:
    """Whether a `rosterdrop serve` holds this home's lock, and its PID."""
    from processor.service import LOCK_NAME

    path = home / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return {"running": False, "pid": None}
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode("ascii", "replace").strip()
            return {"running": True, "pid": int(pid) if pid.isdigit() else None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return {"running": False, "pid": None}
    finally:
        os.close(fd)


def status(ctx: Context) -> dict:
    """Per configured tenant: last drop received, last applied, open holds, unfinished runs, emails waiting."""
    with ctx.engine.connect() as conn:
        received = dict(conn.execute(select(runs.c.tenant, func.max(runs.c.received_at)).group_by(runs.c.tenant)).all())
        applied_at = dict(conn.execute(select(runs.c.tenant, func.max(runs.c.finished_at))
                                       .where(runs.c.status == "applied").group_by(runs.c.tenant)).all())
        held = _counts(conn, runs.c.tenant, runs.c.status == "held")
        unfinished = _counts(conn, runs.c.tenant, runs.c.status.in_(UNFINISHED))
        failed = _counts(conn, runs.c.tenant, runs.c.status == "failed")
        emails = _counts(conn, outbox.c.tenant, outbox.c.status.in_(WAITING_EMAIL))
        disabled = set(conn.execute(select(tenant_access.c.tenant)).scalars())
        last_applied = {}
        for tenant, at in applied_at.items():
            last_applied[tenant] = {"run_id": conn.execute(select(runs.c.run_id).where(
                runs.c.tenant == tenant, runs.c.status == "applied", runs.c.finished_at == at)).scalar(), "at": at}
    tenants = [{"tenant": t, "name": cfg.name, "disabled": t in disabled,
                "last_received_at": received.get(t), "last_applied": last_applied.get(t),
                "open_holds": held.get(t, 0), "unfinished_runs": unfinished.get(t, 0), "failed_runs": failed.get(t, 0),
                "emails_waiting": emails.get(t, 0)}
               for t, cfg in sorted(ctx.config.tenants.items())]
    return {"home": str(ctx.home), "daemon": daemon_state(ctx.home), "tenants": tenants}


def _counts(conn, column, where) -> dict[str, int]:
    return dict(conn.execute(select(column, func.count()).where(where).group_by(column)).all())


# ---------------------------------------------------------------- what a run changed


def run_changes(ctx: Context, run_id: str) -> dict:
    """Every record an applied run changed: entity, sourced_id, action and the fields that changed.

    No values: they are people's names and emails; `rosterdrop roster export` shows the current ones.
    """
    from processor.apply.runs import run_row

    row = run_row(ctx.engine, run_id)
    with ctx.engine.connect() as conn:
        records = conn.execute(select(audit.c.entity, audit.c.sourced_id, audit.c.action, audit.c.before,
                                      audit.c.after).where(audit.c.tenant == row["tenant"], audit.c.run_id == run_id)
                               .order_by(audit.c.id)).all()
    changes = []
    for entity, sourced_id, action, before, after in records:
        if action == "created":
            changes += [{"entity": entity, "sourced_id": sid, "action": "created", "fields": []}
                        for sid in json.loads(after)]
            continue
        changes.append({"entity": entity, "sourced_id": sourced_id, "action": action,
                        "fields": changed_fields(entity, before, after)})
    return {"run_id": run_id, "tenant": row["tenant"], "status": row["status"], "changes": changes}


def changed_fields(entity: str, before: str | None, after: str | None) -> list[str]:
    """The app fields (and metadata.* fields) whose values differ between two audited states of a row."""
    old = json.loads(before) if before else {}
    new = json.loads(after) if after else {}
    if new == {"status": "inactive"}:
        return ["status"]
    names = ["status", *ENTITY_COLUMNS.get(entity, ())]
    out = [n for n in names if n in new and old.get(n) != new.get(n)]
    old_data, new_data = _data(old), _data(new)
    out += sorted(k for k in set(old_data) | set(new_data)
                  if k.lower().startswith("metadata.") and old_data.get(k) != new_data.get(k))
    return out


def _data(row: dict) -> dict:
    data = row.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------- revert


def revert(ctx: Context, run_id: str) -> dict:
    """Undo the tenant's latest applied run from the audit log, under the tenant's lock; the run becomes
    `reverted`. An older applied run is refused (RevertRefused): undoing it would also undo what the
    newer runs changed on top of it."""
    from processor.apply.runs import run_row, tenant_lock
    from processor.apply.writer import revert_run

    row = run_row(ctx.engine, run_id)
    tenant = row["tenant"]
    if row["status"] != "applied":
        raise RevertRefused(f"run {run_id} is {row['status']}, not applied; only an applied run can be reverted")
    with tenant_lock(ctx.engine, tenant, run_id, timeout=30):
        with ctx.engine.begin() as conn:
            latest = conn.execute(select(runs.c.run_id).where(runs.c.tenant == tenant, runs.c.status == "applied")
                                  .order_by(runs.c.finished_at.desc(), runs.c.run_id.desc()).limit(1)).scalar()
            if latest != run_id:
                raise RevertRefused(f"run {run_id} is not tenant {tenant}'s latest applied run ({latest} is); "
                                    f"revert {latest} first")
            undone = revert_run(conn, tenant, run_id)
            result = json.loads(row["result"]) if row["result"] else {}
            result["status"] = RunStatus.REVERTED.value
            conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.status == "applied")
                         .values(status=RunStatus.REVERTED.value, result=json.dumps(result)))
    return {"run_id": run_id, "tenant": tenant, "status": RunStatus.REVERTED.value, "records_undone": undone}
