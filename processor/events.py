"""Change events: every change an apply makes, every run outcome and hold action, as rows of `events`.

Written in the caller's transaction (the apply's, the run result's), columnar like the roster rows (COPY on
PostgreSQL, executemany on SQLite), so a first load's millions of events cost a fraction of the apply and a
rolled-back apply leaves none.

Ids come from a per-tenant counter row (`event_counters`) that the writing transaction updates: the row
stays locked until that transaction commits, so a second writer of the tenant gets its ids only after the
first has committed. Ids are therefore strictly increasing *and* commit-ordered per tenant: a consumer that
polls `after=N` can never miss an event with a lower id that was still uncommitted when it read.

Storage: a row of `events` is a block of consecutive events of one write with the same type and changed
fields (at most BLOCK of them): ids `id`..`last_id`, their sourced ids as one JSON array. A first load's 3M
`*.created` events are 3,000 rows, built column-wise in Arrow: one row per event cost a third of the apply
on SQLite (6 µs an INSERT). Readers expand blocks into events (`iter_events`); the block is invisible to them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import BigInteger, Column, Connection, Engine, Index, String, Table, Text, func, select

from processor.apply.store import metadata
from processor.runs import RunResult, now_iso
from processor.vector import _escape, arrow

log = logging.getLogger("rosterdrop.events")

events = Table(
    "events", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # the block's first event id
    Column("last_id", BigInteger, nullable=False),  # its last (id + number of events - 1)
    Column("run_id", String(40)),  # null for changes made by hand (field locks)
    Column("type", String(40), nullable=False),  # every event of a block has this type ...
    Column("changed", Text),  # ... and these changed fields (comma-separated)
    Column("sourced_ids", Text, nullable=False),  # JSON array, one per event (null for run.* and hold.*)
    Column("at", String(40), nullable=False),  # ISO 8601, UTC
    Index("ix_events_tenant_last", "tenant", "last_id"),
    Index("ix_events_tenant_at", "tenant", "at"),
)

event_counters = Table(
    "event_counters", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    # The highest id retention has deleted: a consumer whose cursor is below it has missed events.
    Column("pruned_through", BigInteger, nullable=False, default=0),
)

# Store table → the event type's prefix. Other tables (courses, sessions, demographics) have no events.
PREFIX = {"orgs": "school", "people": "person", "classes": "class", "enrollments": "enrollment",
          "guardian_links": "guardian_link"}
# Store column → the name the roster export (and the API) uses for it.
FIELD_NAMES = {"class_id": "class"}
SCHOOL_TYPES = ("school", "district")  # the orgs the export lists as schools
RUN_EVENTS = {"applied": "run.applied", "held": "run.held", "rejected": "run.rejected"}
EVENT_COLUMNS = ["tenant", "id", "last_id", "run_id", "type", "changed", "sourced_ids", "at"]
BLOCK = 1000
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_ID = 2**63 - 1  # event ids are BIGINT on both stores: a cursor past it is refused, never sent to the store


class EventsExpired(Exception):
    """The consumer's cursor points before the oldest kept event: it must resync from the roster."""


# ---------------------------------------------------------------- writing


def reserve_ids(conn: Connection, tenant: str, count: int) -> int:
    """Reserve `count` ids for the tenant in this transaction; returns the first. Locks the counter row
    until the transaction ends (see the module docstring)."""
    p = "%s" if conn.dialect.name == "postgresql" else "?"
    conn.exec_driver_sql(f"INSERT INTO event_counters (tenant, last_id, pruned_through) VALUES ({p}, 0, 0) "
                         "ON CONFLICT (tenant) DO NOTHING", (tenant,))
    last = conn.exec_driver_sql(f"UPDATE event_counters SET last_id = last_id + {p} WHERE tenant = {p} "
                                "RETURNING last_id", (count, tenant)).scalar_one()
    return int(last) - count + 1


def _write(conn: Connection, tenant: str, run_id: str | None, parts: list[pd.DataFrame], at: str | None = None
           ) -> int:
    """Insert parts (frames from _frame) as the tenant's next events, in order."""
    parts = [p for p in parts if len(p)]
    total = sum(len(p) for p in parts)
    if not total:
        return 0
    from processor.apply.writer import _insert  # the writer imports this module

    first = reserve_ids(conn, tenant, total)
    blocks = []
    for part in parts:
        blocks.append(_blocks(part.reset_index(drop=True), first))
        first += len(part)
    constants = {"tenant": tenant, "run_id": run_id, "at": at or now_iso()}
    _insert(conn, events.name, EVENT_COLUMNS, pd.concat(blocks, ignore_index=True), constants)
    return total


def _blocks(frame: pd.DataFrame, first: int) -> pd.DataFrame:
    """Consecutive events with the same type and changed fields, BLOCK at most, as one row each; built
    column-wise (Arrow list → joined JSON arrays), never event by event."""
    n = len(frame)
    if "type" in frame.attrs:  # one type and one changed for the whole part (created, deactivated)
        starts = np.arange(0, n, BLOCK)
        types = np.full(len(starts), frame.attrs["type"], dtype=object)
        changed = np.full(len(starts), frame.attrs["changed"], dtype=object)
    else:
        all_types = frame["type"].to_numpy(dtype=object)
        all_changed = frame["changed"].to_numpy(dtype=object, copy=True)
        all_changed[pd.isna(all_changed)] = ""
        new_run = np.ones(n, dtype=bool)
        new_run[1:] = (all_types[1:] != all_types[:-1]) | (all_changed[1:] != all_changed[:-1])
        run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
        starts = np.flatnonzero(new_run | ((np.arange(n) - run_start) % BLOCK == 0))
        types, changed = all_types[starts], all_changed[starts]
    ends = np.append(starts[1:], n)

    def text(value: str):
        return pa.scalar(value, pa.large_string())

    ids = arrow(frame["sourced_id"]).cast(pa.large_string())
    offsets = pa.array(np.append(starts, n), type=pa.int32())
    if ids.null_count == 0:
        # '["' + ids joined by '","' + '"]': no per-event quoting
        lists = pa.ListArray.from_arrays(offsets, _escape(ids))
        joined = pc.binary_join_element_wise(text('["'), pc.binary_join(lists, text('","')), text('"]'), text(""))
    else:
        quoted = pc.if_else(pc.is_null(ids), text("null"),
                            pc.binary_join_element_wise(text('"'), _escape(pc.fill_null(ids, "")), text('"'),
                                                        text("")))
        lists = pa.ListArray.from_arrays(offsets, quoted)
        joined = pc.binary_join_element_wise(text("["), pc.binary_join(lists, text(",")), text("]"), text(""))
    return pd.DataFrame({"id": (first + starts).astype(np.int64), "last_id": (first + ends - 1).astype(np.int64),
                         "type": pd.Series(types, dtype=object), "changed": pd.Series(changed, dtype=object),
                         "sourced_ids": pd.Series(joined.to_numpy(zero_copy_only=False), dtype=object)})


def _frame(types, ids, changed) -> pd.DataFrame:
    """Events as columns. A scalar type and changed apply to every event (kept in attrs, never spread over
    millions of rows); ids may be a roster column (Arrow-backed), passed through without conversion."""
    def column(values) -> pd.Series:
        if isinstance(values, pd.Series):
            return values.reset_index(drop=True)
        return pd.Series(np.asarray(values, dtype=object), dtype=object)

    if isinstance(types, str):
        frame = pd.DataFrame({"sourced_id": column(ids)})
        frame.attrs.update(type=types, changed=changed)
        return frame
    return pd.DataFrame({"type": column(types), "sourced_id": column(ids), "changed": column(changed)})


def _field_names(fields: pd.Series) -> pd.Series:
    out = fields.fillna("").astype("str")
    for old, new in FIELD_NAMES.items():
        out = out.str.replace(rf"(?<![a-z_]){old}(?![a-z_])", new, regex=True)
    return out


def record_changes(conn: Connection, tenant: str, run_id: str, changes) -> int:
    """The events of a change set (processor.apply.diff.ChangeSet), in the apply's transaction."""
    parts = []
    for table, tc in changes.tables.items():
        prefix = PREFIX.get(table)
        if prefix is None:
            continue
        keep = _school_filter(changes, tc) if table == "orgs" else None
        created, updated, deactivated = tc.created, tc.updated, tc.deactivated
        if keep is not None:
            created, updated, deactivated = (f[keep(f)] for f in (created, updated, deactivated))
        if len(created):
            parts.append(_frame(f"{prefix}.created", created["sourced_id"], ""))
        if len(updated):
            action = updated["action"].astype("str")
            fields = _field_names(updated["fields"])
            # A reactivation changes the status, whatever else it changes.
            reactivated = action.eq("reactivated")
            fields = fields.mask(reactivated, ("status," + fields).str.rstrip(","))
            parts.append(_frame((prefix + "." + action).to_numpy(), updated["sourced_id"].to_numpy(),
                                fields.to_numpy()))
        if len(deactivated):
            parts.append(_frame(f"{prefix}.deactivated", deactivated["sourced_id"], "status"))
    if not parts:
        return 0
    return _write(conn, tenant, run_id, parts)


def _school_filter(changes, tc):
    """Orgs that are schools or districts (what the export lists as schools); others have no events."""
    before = changes.before.get("orgs")
    known = pd.Series(dtype="str")
    if before is not None and len(before) and "type" in before:
        known = pd.Series(before["type"].to_numpy(), index=before["sourced_id"].to_numpy(), dtype="str")

    def keep(frame: pd.DataFrame) -> np.ndarray:
        if frame.empty:
            return np.zeros(0, dtype=bool)
        if "type" in frame:
            types = frame["type"].fillna("").astype("str")
        else:
            types = frame["sourced_id"].map(known).fillna("").astype("str")
        return types.isin(SCHOOL_TYPES).to_numpy()
    return keep


def record_run(conn: Connection, result: RunResult) -> None:
    """run.applied | run.held | run.rejected for a finished run, in the transaction that saves its result."""
    kind = RUN_EVENTS.get(str(result.status.value if hasattr(result.status, "value") else result.status))
    if kind is None or result.status == "dry_run":
        return
    _write(conn, result.tenant, result.run_id, [_frame(kind, [None], "")])


def record_hold(conn: Connection, tenant: str, run_id: str, action: str) -> None:
    """hold.released | hold.discarded (action: "released" | "discarded")."""
    _write(conn, tenant, run_id, [_frame(f"hold.{action}", [None], "")])


def record_hold_released(engine: Engine, tenant: str, run_id: str) -> None:
    with engine.begin() as conn:
        record_hold(conn, tenant, run_id, "released")


def record_revert(conn: Connection, tenant: str, run_id: str, audit_rows) -> int:
    """Compensating events of a revert, from the audit records it undid (newest first, as undone):
    a created row is removed (→ deactivated), a deactivated one comes back (→ reactivated), an updated one
    gets its old values back (→ updated, with the fields that change back)."""
    types, ids, changed = [], [], []
    for entity, sid, action, before, after in audit_rows:
        prefix = PREFIX.get(entity)
        if prefix is None:
            continue
        if action == "created":
            for i in json.loads(after):
                types.append(f"{prefix}.deactivated")
                ids.append(i)
                changed.append("status")
            continue
        old = json.loads(before) if before else {}
        if entity == "orgs" and old.get("type") not in SCHOOL_TYPES:
            continue
        if action == "deactivated":
            types.append(f"{prefix}.reactivated")
            changed.append("status")
        elif action == "reactivated":
            types.append(f"{prefix}.deactivated")
            changed.append("status")
        else:
            new = json.loads(after) if after else {}
            fields = [k for k in new if k not in ("sourced_id", "data", "row_hash", "run_id")
                      and (old.get(k) or "") != (new.get(k) or "")]
            types.append(f"{prefix}.updated")
            changed.append(",".join(FIELD_NAMES.get(f, f) for f in fields))
        ids.append(sid)
    frame = _frame(types, ids, changed)
    frame = frame[~frame.duplicated(["sourced_id", "type"])] if len(frame) else frame
    return _write(conn, tenant, run_id, [frame.iloc[::-1]])


def record_manual_change(conn: Connection, tenant: str, table: str, sourced_id: str, fields: list[str]) -> None:
    """An `<entity>.updated` event for a change made by hand (a field lock), with no run."""
    prefix = PREFIX.get(table)
    if prefix is not None:
        _write(conn, tenant, None, [_frame(f"{prefix}.updated", [sourced_id],
                                           ",".join(FIELD_NAMES.get(f, f) for f in fields))])


# ---------------------------------------------------------------- reading


@dataclass
class EventPage:
    events: list[dict]
    next: int


def read_events(engine: Engine, tenant: str, after: int = 0, limit: int = DEFAULT_LIMIT) -> EventPage:
    """The tenant's events with id > after, oldest first; `next` is the cursor to pass as `after` next.
    EventsExpired if events after `after` were already deleted by retention."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    with engine.connect() as conn:
        counter = conn.execute(select(event_counters.c.last_id, event_counters.c.pruned_through)
                               .where(event_counters.c.tenant == tenant)).first()
        if counter is not None and after < counter.pruned_through:
            raise EventsExpired(
                f"events up to id {counter.pruned_through} of tenant {tenant} were deleted after the retention "
                f"period; cursor {after} is too old. Resync from the roster API (GET /api/v1/tenants/{tenant}/"
                f"people etc.), then read events after {counter.last_id} (the current last id)")
        out = []
        for event in iter_events(conn, tenant, after):
            out.append(event)
            if len(out) == limit:
                break
    return EventPage(out, out[-1]["id"] if out else after)


def iter_events(conn: Connection, tenant: str, after: int, blocks: int = 20):
    """The tenant's events with id > after, in id order, read a few blocks at a time."""
    e = events.c
    while True:
        rows = conn.execute(select(e.id, e.last_id, e.run_id, e.type, e.changed, e.sourced_ids, e.at)
                            .where(e.tenant == tenant, e.last_id > after).order_by(e.id).limit(blocks)).all()
        if not rows:
            return
        for r in rows:
            changed = [f for f in (r.changed or "").split(",") if f]
            for i, sid in enumerate(json.loads(r.sourced_ids)):
                if r.id + i > after:
                    yield {"id": int(r.id + i), "tenant": tenant, "run_id": r.run_id, "type": r.type,
                           "sourced_id": sid, "changed": list(changed), "at": r.at}
        after = int(rows[-1].last_id)


def last_event_id(conn: Connection, tenant: str) -> int:
    value = conn.execute(select(event_counters.c.last_id).where(event_counters.c.tenant == tenant)).scalar()
    return int(value or 0)


# ---------------------------------------------------------------- retention


def prune_events(engine: Engine, days: int, now: datetime | None = None) -> int:
    """Delete events older than `days` (0: keep forever), remembering per tenant the highest id deleted
    so that a consumer whose cursor is older gets EventsExpired instead of a silent gap."""
    if days <= 0:
        return 0
    cutoff = ((now or datetime.now(UTC)) - timedelta(days=days)).isoformat(timespec="microseconds")
    removed = 0
    with engine.begin() as conn:
        old = conn.execute(select(events.c.tenant, func.max(events.c.last_id),
                                  func.sum(events.c.last_id - events.c.id + 1))
                           .where(events.c.at < cutoff).group_by(events.c.tenant)).all()
        for tenant, highest, count in old:
            conn.execute(event_counters.update().where(event_counters.c.tenant == tenant)
                         .values(pruned_through=func.max(event_counters.c.pruned_through, highest)
                                 if conn.dialect.name == "sqlite"
                                 else func.greatest(event_counters.c.pruned_through, highest)))
            conn.execute(events.delete().where(events.c.tenant == tenant, events.c.last_id <= highest))
            removed += int(count)
    if removed:
        log.info("retention: %d events older than %d days deleted", removed, days)
    return removed


# ---------------------------------------------------------------- the daemon's jobs


def vendor_jobs(ctx) -> list[tuple[str, object, object, dict]]:
    """The daemon's scheduled jobs for the vendor's app: events retention, nightly; webhook delivery."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from processor.webhooks import WEBHOOK_EVERY_SECONDS, deliver_webhooks

    # Webhook delivery is scheduled even with none configured: it reads the config each time (a reloaded
    # config may add some), and with none it returns at once.
    return [("events-retention", lambda: prune_events(ctx.engine, ctx.config.daemon.events_retention_days),
             CronTrigger(hour=3, minute=27), {}),
            ("webhooks", lambda: deliver_webhooks(ctx), IntervalTrigger(seconds=WEBHOOK_EVERY_SECONDS), {})]
