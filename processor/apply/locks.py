"""Field locks: manual edits that survive syncs (`rosterdrop roster lock|unlock`, PUT/DELETE .../locks).

A lock sets a stored field to a value and keeps it there: after convert, every drop's rows get the locked
values (`apply_field_locks`, one call in the pipeline), so bulk drops, deltas and releases of holds all
write the locked value whenever they write the row. The row hash is left as the drop computed it (the hash
of what the SIS says), so a locked value never makes a row look changed night after night; unlocking
clears the stored hash so that the next drop writes the SIS's value back.

Every lock and unlock is recorded in `field_lock_log` (who, when, what).
"""

from __future__ import annotations

import getpass
import secrets

import pandas as pd
from sqlalchemy import Column, Connection, Engine, Index, Integer, String, Table, Text, delete, select

from processor import events
from processor.apply import runs as run_store
from processor.apply.store import ENTITY_TABLES, metadata, snapshots
from processor.config import APP_ROLES
from processor.context import UserError
from processor.runs import now_iso
from processor.vector import isin, lookup

field_locks = Table(
    "field_locks", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("entity", String(32), primary_key=True),  # store table: people | classes | orgs | enrollments
    Column("sourced_id", Text, primary_key=True),
    Column("field", String(32), primary_key=True),  # store column
    Column("value", Text, nullable=False),
    Column("by", Text, nullable=False),
    Column("at", String(40), nullable=False),
)

field_lock_log = Table(
    "field_lock_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("sourced_id", Text, nullable=False),
    Column("field", String(32), nullable=False),
    Column("action", String(8), nullable=False),  # lock | unlock
    Column("value", Text),
    Column("previous", Text),  # the stored value before the lock, or the locked value an unlock released
    Column("by", Text, nullable=False),
    Column("at", String(40), nullable=False),
    Index("ix_field_lock_log_tenant", "tenant", "id"),
)

# API / CLI entity → store table, and the export's field names that may be locked → store columns.
ENTITIES = {"people": "people", "classes": "classes", "schools": "orgs", "enrollments": "enrollments"}
ENTITY_NAMES = {v: k for k, v in ENTITIES.items()}
LOCKABLE: dict[str, dict[str, str]] = {
    "people": {"role": "role", "email": "email", "given_name": "given_name", "family_name": "family_name",
               "middle_name": "middle_name", "username": "username", "identifier": "identifier"},
    "classes": {"title": "title", "class_code": "class_code"},
    "schools": {"name": "name", "identifier": "identifier"},
    "enrollments": {"role": "role"},
}


class NotFound(UserError):
    """The row or the lock named does not exist."""


FILES = {"people": "users.csv", "classes": "classes.csv", "orgs": "orgs.csv", "enrollments": "enrollments.csv"}


def _resolve(entity: str, field: str) -> tuple[str, str]:
    if entity not in ENTITIES:
        raise UserError(f"entity {entity!r} cannot be locked; use one of {', '.join(ENTITIES)}")
    if field not in LOCKABLE[entity]:
        raise UserError(f"field {field!r} of {entity} cannot be locked; use one of {', '.join(LOCKABLE[entity])}")
    return ENTITIES[entity], LOCKABLE[entity][field]


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "unknown"


def lock_field(engine: Engine, tenant: str, entity: str, sourced_id: str, field: str, value: str,
               by: str | None = None) -> dict:
    """Lock one field of one stored row at a value (set it now, keep it through every later drop)."""
    table, column = _resolve(entity, field)
    if table == "people" and column == "role" and value not in APP_ROLES:
        raise UserError(f"role {value!r} is not an app role; use one of {', '.join(APP_ROLES)}")
    who, at = _who(by), now_iso()
    t = ENTITY_TABLES[table]
    # Under the tenant lock: a run applying now cannot write the old value after the lock is set.
    with run_store.tenant_lock(engine, tenant, "lock-" + secrets.token_hex(6), timeout=60), engine.begin() as conn:
        stored = conn.execute(select(t.c[column]).where(t.c.tenant == tenant, t.c.sourced_id == sourced_id)).first()
        if stored is None:
            raise NotFound(f"tenant {tenant} has no {entity} row with sourced_id {sourced_id!r}; nothing locked")
        previous = stored[0]
        conn.execute(delete(field_locks).where(*_key(tenant, table, sourced_id, column)))
        conn.execute(field_locks.insert().values(tenant=tenant, entity=table, sourced_id=sourced_id, field=column,
                                                 value=value, by=who, at=at))
        conn.execute(field_lock_log.insert().values(tenant=tenant, entity=table, sourced_id=sourced_id,
                                                    field=column, action="lock", value=value, previous=previous,
                                                    by=who, at=at))
        if (previous or "") != value:
            # The hash stays the drop's: the row does not look changed to the next drop of the same data.
            conn.execute(t.update().where(t.c.tenant == tenant, t.c.sourced_id == sourced_id)
                         .values({column: value}))
            events.record_manual_change(conn, tenant, table, sourced_id, [column])
    return {"tenant": tenant, "entity": entity, "sourced_id": sourced_id, "field": field, "value": value,
            "by": who, "at": at}


def unlock_field(engine: Engine, tenant: str, entity: str, sourced_id: str, field: str,
                 by: str | None = None) -> dict:
    """Give a field back to the district: the next drop that carries the row writes the SIS's value."""
    try:
        table, column = _resolve(entity, field)
    except UserError as exc:
        raise NotFound(f"no lock on {entity} {sourced_id!r} field {field}: {exc}") from None
    who, at = _who(by), now_iso()
    t = ENTITY_TABLES[table]
    with run_store.tenant_lock(engine, tenant, "lock-" + secrets.token_hex(6), timeout=60), engine.begin() as conn:
        row = conn.execute(select(field_locks.c.value).where(*_key(tenant, table, sourced_id, column))).first()
        if row is None:
            raise NotFound(f"no lock on {entity} {sourced_id!r} field {field} for tenant {tenant}")
        conn.execute(delete(field_locks).where(*_key(tenant, table, sourced_id, column)))
        conn.execute(field_lock_log.insert().values(tenant=tenant, entity=table, sourced_id=sourced_id,
                                                    field=column, action="unlock", previous=row.value, by=who,
                                                    at=at))
        # A hash no drop computes: the next drop's row differs, and is written with the SIS's value.
        conn.execute(t.update().where(t.c.tenant == tenant, t.c.sourced_id == sourced_id).values(row_hash=0))
        conn.execute(delete(snapshots).where(snapshots.c.tenant == tenant, snapshots.c.entity == table))
    return {"tenant": tenant, "entity": entity, "sourced_id": sourced_id, "field": field, "unlocked": True,
            "by": who, "at": at}


def _key(tenant: str, table: str, sourced_id: str, column: str) -> list:
    c = field_locks.c
    return [c.tenant == tenant, c.entity == table, c.sourced_id == sourced_id, c.field == column]


def list_locks(conn: Connection, tenant: str) -> list[dict]:
    c = field_locks.c
    rows = conn.execute(select(c.entity, c.sourced_id, c.field, c.value, c.by, c.at).where(c.tenant == tenant)
                        .order_by(c.entity, c.sourced_id, c.field)).all()
    return [{"entity": ENTITY_NAMES.get(r.entity, r.entity), "sourced_id": r.sourced_id,
             "field": _field_name(r.entity, r.field), "value": r.value, "by": r.by, "at": r.at} for r in rows]


def _field_name(table: str, column: str) -> str:
    fields = LOCKABLE.get(ENTITY_NAMES.get(table, ""), {})
    return next((name for name, col in fields.items() if col == column), column)


def apply_field_locks(engine: Engine, tenant: str, roster) -> int:
    """Put the tenant's locked values into a converted roster (processor.convert.roster.Roster), in place,
    and add one `manual_change_kept` alert per file saying how many values of the drop were overridden.
    Returns that count. Locks are few (set by hand): this touches only the rows they name."""
    with engine.connect() as conn:
        c = field_locks.c
        rows = conn.execute(select(c.entity, c.sourced_id, c.field, c.value).where(c.tenant == tenant)).all()
    if not rows:
        return 0
    from processor.validate.issues import one_issue

    locks = pd.DataFrame(rows, columns=["entity", "sourced_id", "field", "value"])
    kept_total = 0
    for table, of_table in locks.groupby("entity"):
        frame = roster.tables.get(table)
        if frame is None or frame.empty:
            continue
        kept, examples = 0, []
        for column, of_field in of_table.groupby("field"):
            if column not in frame.columns:
                continue
            named = isin(frame["sourced_id"], of_field["sourced_id"])
            if not named.any():
                continue
            locked = lookup(frame.loc[named, "sourced_id"], of_field["sourced_id"], of_field["value"])
            sent = frame.loc[named, column].fillna("").astype("str")
            differs = sent.to_numpy() != locked.to_numpy()
            kept += int(differs.sum())
            examples += [f"{sid} {_field_name(table, column)}"
                         for sid in frame.loc[named, "sourced_id"].to_numpy()[differs][:3]]
            frame.loc[named, column] = locked.to_numpy()
        if kept:
            kept_total += kept
            file = roster.files.get({"people": "users"}.get(table, table)) or FILES.get(table)
            roster.issues.append(one_issue(
                "manual_change_kept", f"Kept {kept} manual change{'s' if kept != 1 else ''}: fields locked in the "
                f"app keep their values whatever the drop says (e.g. {', '.join(examples[:3])}).", file=file))
    return kept_total
