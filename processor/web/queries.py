"""What the console pages show, read from the store: every function takes the tenant and filters by it.

Nothing here trusts an id from a URL to belong to the tenant: each query has `tenant == :tenant` in its
WHERE clause, so a run id, school id or class id of another tenant simply finds nothing.
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import and_, func, select

from processor.apply.store import ENTITY_TABLES, outbox, runs
from processor.context import Context
from processor.report import view

PAGE_SIZE = 50
FINISHED_BAD = ("rejected", "failed")


def _ts(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def _issue_totals(result_json: str | None) -> dict[str, int]:
    try:
        issues = json.loads(result_json or "{}").get("issues") or []
    except (ValueError, AttributeError):
        issues = []
    totals = {"hold": 0, "error": 0, "alert": 0}
    for i in issues:
        if i.get("severity") in totals:
            totals[i["severity"]] += 1
    return totals


def tenant_status(ctx: Context, tenant: str, now: float | None = None) -> dict:
    """The status strip and the operator's tag: last drop, last applied, next expected, open holds."""
    now = time.time() if now is None else now
    tcfg = ctx.config.tenants[tenant]
    with ctx.engine.connect() as conn:
        last = conn.execute(select(runs.c.run_id, runs.c.status, runs.c.received_at, runs.c.result)
                            .where(runs.c.tenant == tenant, runs.c.status != "duplicate")
                            .order_by(runs.c.received_at.desc()).limit(1)).first()
        last_applied = conn.execute(select(func.max(runs.c.received_at))
                                    .where(runs.c.tenant == tenant, runs.c.status == "applied")).scalar()
        holds = conn.execute(select(func.count()).select_from(runs)
                             .where(runs.c.tenant == tenant, runs.c.status == "held")).scalar_one()
        failed_mail = conn.execute(select(func.count()).select_from(outbox)
                                   .where(outbox.c.tenant == tenant, outbox.c.status == "failed")).scalar_one()
    hours = tcfg.expect_drop_every_hours
    last_ts = _ts(last.received_at) if last else None
    next_expected = (last_ts + hours * 3600) if (hours and last_ts) else None
    missing = bool(hours and (last_ts is None or now - last_ts > hours * 3600))
    errors = _issue_totals(last.result)["error"] if last else 0
    if holds:
        tag = "held"
    elif last is not None and (last.status in FINISHED_BAD or failed_mail):
        tag = "failing"
    elif missing:
        tag = "missing drop"
    elif errors:
        tag = "errors"
    elif last is None:
        tag = "no drops yet"
    else:
        tag = "up to date"
    return {
        "tenant": tenant, "name": tcfg.name, "tag": tag,
        "last_drop": view.when(last.received_at, tcfg.timezone) if last else "never",
        "last_status": last.status if last else None,
        "last_applied": view.when(last_applied, tcfg.timezone) if last_applied else "never",
        "next_expected": (view.when(datetime.fromtimestamp(next_expected, UTC).isoformat(), tcfg.timezone)
                          if next_expected else ("overdue" if missing else "no schedule set")),
        "overdue": missing,
        "open_holds": int(holds),
    }


def run_rows(ctx: Context, tenant: str, limit: int = PAGE_SIZE, offset: int = 0,
             status: str | None = None) -> list[dict]:
    q = (select(runs.c.run_id, runs.c.status, runs.c.outcome, runs.c.source, runs.c.received_at,
                runs.c.original_name, runs.c.result)
         .where(runs.c.tenant == tenant).order_by(runs.c.received_at.desc(), runs.c.run_id.desc())
         .limit(limit).offset(offset))
    if status:
        q = q.where(runs.c.status == status)
    with ctx.engine.connect() as conn:
        rows = conn.execute(q).all()
    tz = ctx.config.tenants[tenant].timezone  # the tenant's local time, as in its reports
    out = []
    for r in rows:
        counts = json.loads(r.result or "{}").get("counts", {})
        out.append({"run_id": r.run_id, "status": r.status, "source": r.source,
                    "received": view.when(r.received_at, tz), "file": r.original_name or "",
                    "totals": _issue_totals(r.result),
                    "changed": {e: sum(c.get(k, 0) for k in ("created", "updated", "deactivated"))
                                for e, c in counts.items()}})
    return out


def run_detail(ctx: Context, tenant: str, run_id: str) -> dict | None:
    """The run's row and result, or None when the run is not this tenant's (or does not exist)."""
    with ctx.engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id, runs.c.tenant == tenant)
                           ).mappings().first()
    if row is None:
        return None
    result = json.loads(row["result"] or "{}")
    result["status"] = row["status"]
    return {"row": dict(row), "result": result}


def report_file(ctx: Context, run_id: str, name: str) -> Path | None:
    """A file of the run's report folder (report.html, report.txt, issues.csv, changes.csv), if written."""
    if name not in ("report.html", "report.txt", "issues.csv", "changes.csv"):
        return None
    path = ctx.path("reports", run_id, name)
    return path if path.is_file() and not path.is_symlink() else None


def changes_page(ctx: Context, run_id: str, page: int, size: int = PAGE_SIZE,
                 actions: tuple[str, ...] = ("deactivated",)) -> tuple[list[dict], int]:
    """One page of the rows a held run would change (from its changes.csv, filtered by action), and their total."""
    path = report_file(ctx, run_id, "changes.csv")
    if path is None:
        return [], 0
    table = _changes_table(str(path), path.stat().st_mtime_ns)
    table = table.filter(pc.is_in(table["action"], value_set=pa.array(list(actions), pa.string())))
    first = (page - 1) * size
    rows = table.slice(first, size).to_pylist()
    # the CSV is formula-safe for spreadsheets (a leading apostrophe); the page shows the values themselves
    return [{k: (v[1:] if isinstance(v, str) and v.startswith("'") else (v or "")) for k, v in r.items()}
            for r in rows], table.num_rows


@lru_cache(maxsize=8)
def _changes_table(path: str, _mtime_ns: int) -> pa.Table:
    # Arrow's reader (multithreaded, every column as text) instead of csv.DictReader: ~0.3 s instead of
    # ~2 s for 300k rows, then paging through the cached table costs nothing (bench/web_hold_page.py).
    names = ["entity", "sourced_id", "action", "label", "fields"]
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(encoding="utf-8"),
                          parse_options=pacsv.ParseOptions(newlines_in_values=True),  # a name may hold one
                          convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                               strings_can_be_null=False))


def issues_preview(result: dict, limit: int = 200) -> list[dict]:
    # holds are explained at the top of the page; these are the rows to fix and the alerts
    return [i for i in (result.get("issues") or []) if i.get("severity") in ("error", "alert")][:limit]


def hold_reasons(result: dict) -> list[dict]:
    return [i for i in (result.get("issues") or []) if i.get("severity") == "hold"]


def superseded_by(result: dict) -> str | None:
    for i in result.get("issues") or []:
        if i.get("code") == "superseded":
            return i.get("message")
    return None


# ---------------------------------------------------------------- roster browsing


def schools(ctx: Context, tenant: str) -> list[dict]:
    orgs, classes, people = ENTITY_TABLES["orgs"], ENTITY_TABLES["classes"], ENTITY_TABLES["people"]
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(orgs.c.sourced_id, orgs.c.name, orgs.c.identifier, orgs.c.type)
                            .where(orgs.c.tenant == tenant, orgs.c.status == "active")
                            .order_by(orgs.c.name, orgs.c.sourced_id)).all()
        n_classes = dict(conn.execute(select(classes.c.school, func.count())
                                      .where(classes.c.tenant == tenant, classes.c.status == "active")
                                      .group_by(classes.c.school)).all())
        n_people = dict(conn.execute(select(people.c.school, func.count())
                                     .where(people.c.tenant == tenant, people.c.status == "active")
                                     .group_by(people.c.school)).all())
    out = [{"sourced_id": r.sourced_id, "name": r.name or r.sourced_id, "identifier": r.identifier or "",
            "type": r.type or "", "classes": int(n_classes.get(r.sourced_id, 0)),
            "people": int(n_people.get(r.sourced_id, 0))} for r in rows]
    return sorted(out, key=lambda s: s["type"] == "district")  # the schools first, the district after them


def school(ctx: Context, tenant: str, school_id: str) -> dict | None:
    orgs, classes = ENTITY_TABLES["orgs"], ENTITY_TABLES["classes"]
    enr = ENTITY_TABLES["enrollments"]
    with ctx.engine.connect() as conn:
        org = conn.execute(select(orgs.c.sourced_id, orgs.c.name, orgs.c.identifier)
                           .where(orgs.c.tenant == tenant, orgs.c.sourced_id == school_id)).first()
        if org is None:
            return None
        rows = conn.execute(select(classes.c.sourced_id, classes.c.title, classes.c.grades)
                            .where(classes.c.tenant == tenant, classes.c.school == school_id,
                                   classes.c.status == "active")
                            .order_by(classes.c.title, classes.c.sourced_id)).all()
        sizes = dict(conn.execute(select(enr.c.class_id, func.count())
                                  .where(enr.c.tenant == tenant, enr.c.school == school_id, enr.c.status == "active")
                                  .group_by(enr.c.class_id)).all())
    return {"sourced_id": org.sourced_id, "name": org.name or org.sourced_id, "identifier": org.identifier or "",
            "classes": [{"sourced_id": r.sourced_id, "title": r.title or r.sourced_id,
                         "grades": (r.grades or "").replace(",", ", "), "people": int(sizes.get(r.sourced_id, 0))}
                        for r in rows]}


def class_people(ctx: Context, tenant: str, class_id: str) -> dict | None:
    classes, enr, people = ENTITY_TABLES["classes"], ENTITY_TABLES["enrollments"], ENTITY_TABLES["people"]
    orgs = ENTITY_TABLES["orgs"]
    with ctx.engine.connect() as conn:
        cls = conn.execute(select(classes.c.sourced_id, classes.c.title, classes.c.school, classes.c.grades)
                           .where(classes.c.tenant == tenant, classes.c.sourced_id == class_id)).first()
        if cls is None:
            return None
        school_name = conn.execute(select(orgs.c.name).where(orgs.c.tenant == tenant,
                                                             orgs.c.sourced_id == cls.school)).scalar()
        rows = conn.execute(
            select(people.c.sourced_id, people.c.given_name, people.c.family_name, people.c.role, people.c.email,
                   enr.c.role.label("class_role"))
            .select_from(enr.join(people, and_(people.c.tenant == enr.c.tenant, people.c.sourced_id == enr.c.person)))
            .where(enr.c.tenant == tenant, enr.c.class_id == class_id, enr.c.status == "active",
                   people.c.status == "active")
            .order_by(enr.c.role.desc(), people.c.family_name, people.c.given_name)).all()
    return {"sourced_id": cls.sourced_id, "title": cls.title or cls.sourced_id, "school": cls.school,
            "school_name": school_name or cls.school, "grades": (cls.grades or "").replace(",", ", "),
            "people": [{"sourced_id": r.sourced_id, "name": f"{r.given_name or ''} {r.family_name or ''}".strip(),
                        "role": r.role, "class_role": r.class_role, "email": r.email or ""} for r in rows]}


def csv_bytes(rows: list[dict], columns: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8-sig")


# ---------------------------------------------------------------- metrics and health


def metrics_snapshot(ctx: Context, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    with ctx.engine.connect() as conn:
        by_status = conn.execute(select(runs.c.tenant, runs.c.status, func.count())
                                 .group_by(runs.c.tenant, runs.c.status)).all()
        queue = conn.execute(select(func.count()).select_from(runs)
                             .where(runs.c.status.in_(("received", "processing")))).scalar_one()
        waiting = conn.execute(select(func.count()).select_from(outbox)
                               .where(outbox.c.status.in_(("queued", "sending")))).scalar_one()
        last = dict(conn.execute(select(runs.c.tenant, func.max(runs.c.received_at))
                                 .where(runs.c.status == "applied").group_by(runs.c.tenant)).all())
    since = {t: now - ts for t in ctx.config.tenants if (ts := _ts(last.get(t))) is not None}
    return {"runs": [(t, s, int(n)) for t, s, n in by_status], "queue": int(queue), "outbox": int(waiting),
            "since_applied": since}


def store_ok(ctx: Context) -> bool:
    try:
        with ctx.engine.connect() as conn:
            conn.execute(select(1))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable" to a health check
        return False


# ---------------------------------------------------------------- data checks (CONTRACT.md section 12)

DATA_CHECK_ROWS = 5


def data_checks(ctx: Context, tenant: str, rows: int = DATA_CHECK_ROWS) -> dict | None:
    """The data-check alerts of the tenant's latest applied run: per code its count, title, fix and first rows;
    None when the tenant has no applied run yet."""
    from processor.validate.datachecks import DATA_CHECKS
    from processor.validate.issues import CATALOGUE

    with ctx.engine.connect() as conn:
        last = conn.execute(select(runs.c.run_id, runs.c.received_at, runs.c.result)
                            .where(runs.c.tenant == tenant, runs.c.status == "applied")
                            .order_by(runs.c.received_at.desc(), runs.c.run_id.desc()).limit(1)).first()
    if last is None:
        return None
    try:
        issues = json.loads(last.result or "{}").get("issues") or []
    except (ValueError, AttributeError):
        issues = []
    groups = []
    for code in DATA_CHECKS:
        mine = [i for i in issues if i.get("code") == code]
        if not mine:
            continue
        spec = CATALOGUE[code]
        shown = [{"file": i.get("file") or "", "line": i.get("line"), "sourced_id": i.get("sourced_id") or "",
                  "message": view.clean(i.get("message"), view.MESSAGE_CHARS)} for i in mine[:rows]]
        # One message for every row (a student without a class) is said once, above the rows.
        same = shown[0]["message"] if len({r["message"] for r in shown}) == 1 and len(mine) > 1 else None
        groups.append({"code": code, "title": spec.title, "fix": spec.fix, "message": same,
                       "count": sum(int(i.get("count") or 1) for i in mine), "rows": shown})
    return {"run_id": last.run_id, "received": view.when(last.received_at, ctx.config.tenants[tenant].timezone),
            "groups": groups, "total": sum(g["count"] for g in groups)}
