"""`roster export`: the tenant's current roster in the contract's shape (CONTRACT.md section 6).

The row shapes (SHAPES) are shared with the API's paginated roster reads (processor/web/api.py).
`export_roster` builds the whole document (what the API may call); the streaming writers beside it
(`write_json` for `--json`, `write_jsonl`, `write_csv`) go section by section, BATCH rows at a time, so a
300k-student roster (7.8 GB of Python objects as one document) is never held in memory. Every form has the
same records.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from typing import TextIO

from sqlalchemy import Connection, Engine, func, select

from processor.apply.store import ENTITY_TABLES

SCHOOL_TYPES = ("school", "district")
BATCH = 5000


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _school(r) -> dict:
    return {"sourced_id": r["sourced_id"], "name": r["name"], "identifier": r["identifier"] or "",
            "type": r["type"], "status": r["status"]}


def _person(r) -> dict:
    return {"sourced_id": r["sourced_id"], "role": r["role"], "email": r["email"] or "",
            "given_name": r["given_name"] or "", "family_name": r["family_name"] or "",
            "username": r["username"] or "", "school": r["school"] or None,
            "schools": _split(r["schools"]), "status": r["status"],
            "preferred_language": r["preferred_language"] or "en"}


def _class(r) -> dict:
    return {"sourced_id": r["sourced_id"], "title": r["title"], "grades": _split(r["grades"]),
            "school": r["school"], "status": r["status"]}


def _enrollment(r) -> dict:
    return {"sourced_id": r["sourced_id"], "class": r["class_id"], "person": r["person"],
            "role": r["role"], "status": r["status"]}


def _guardian(r) -> dict:
    return {"student": r["student"], "guardian": r["guardian"], "status": r["status"]}


# export key → (store table, columns read, row → export dict)
SHAPES: dict[str, tuple[str, tuple[str, ...], Callable]] = {
    "schools": ("orgs", ("sourced_id", "name", "identifier", "type", "status"), _school),
    "people": ("people", ("sourced_id", "role", "email", "given_name", "family_name", "username", "school",
                          "schools", "status", "preferred_language"), _person),
    "classes": ("classes", ("sourced_id", "title", "grades", "school", "status"), _class),
    "enrollments": ("enrollments", ("sourced_id", "class_id", "person", "role", "status"), _enrollment),
    "guardians": ("guardian_links", ("sourced_id", "student", "guardian", "status"), _guardian),
}


def export_roster(engine: Engine, tenant: str, include_inactive: bool = False) -> dict:
    def rows(key: str):
        table, cols, shape = SHAPES[key]
        t = ENTITY_TABLES[table]
        q = select(*[t.c[c] for c in cols]).where(t.c.tenant == tenant).order_by(t.c.sourced_id)
        if not include_inactive:
            q = q.where(t.c.status == "active")
        if key == "schools":
            q = q.where(t.c.type.in_(SCHOOL_TYPES))
        return [shape(r) for r in conn.execute(q).mappings().all()]

    from processor.apply.locks import list_locks

    with engine.connect() as conn:
        # "locks": the fields set by hand that drops do not overwrite (their values are in the rows above).
        out = {"tenant": tenant, **{key: rows(key) for key in SHAPES}, "locks": list_locks(conn, tenant)}
    return out


# ---------------------------------------------------------------- streaming forms

# export key -> the `kind` of its records in JSON lines
KINDS = {"schools": "school", "people": "person", "classes": "class", "enrollments": "enrollment",
         "guardians": "guardian"}

# CSV header per section: the record's keys, in order (lists are comma-joined in one cell, as in OneRoster)
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "schools": ("sourced_id", "name", "identifier", "type", "status"),
    "people": ("sourced_id", "role", "email", "given_name", "family_name", "username", "school", "schools",
               "status", "preferred_language"),
    "classes": ("sourced_id", "title", "grades", "school", "status"),
    "enrollments": ("sourced_id", "class", "person", "role", "status"),
    "guardians": ("student", "guardian", "status"),
}


def _where(q, t, key: str, tenant: str, include_inactive: bool):
    q = q.where(t.c.tenant == tenant)
    if not include_inactive:
        q = q.where(t.c.status == "active")
    if key == "schools":
        q = q.where(t.c.type.in_(SCHOOL_TYPES))
    return q


def iter_section(conn: Connection, tenant: str, key: str, include_inactive: bool = False) -> Iterator[dict]:
    """One section's records (as export_roster has them), in sourcedId order, fetched BATCH rows at a time."""
    table, cols, shape = SHAPES[key]
    t = ENTITY_TABLES[table]
    q = _where(select(*[t.c[c] for c in cols]), t, key, tenant, include_inactive).order_by(t.c.sourced_id)
    for r in conn.execution_options(yield_per=BATCH).execute(q).mappings():
        yield shape(r)


def count_roster(engine: Engine, tenant: str, include_inactive: bool = False) -> dict[str, int]:
    counts = {}
    with engine.connect() as conn:
        for key, (table, _cols, _shape) in SHAPES.items():
            t = ENTITY_TABLES[table]
            q = _where(select(func.count()).select_from(t), t, key, tenant, include_inactive)
            counts[key] = conn.execute(q).scalar()
    return counts


def write_json(engine: Engine, tenant: str, out: TextIO, include_inactive: bool = False,
               on_rows: Callable[[int], None] | None = None) -> int:
    """The `--json` document, streamed: byte for byte what `json.dumps(export_roster(...), indent=2,
    ensure_ascii=False)` and a newline give, without holding the roster. Returns the records written."""
    from processor.apply.locks import list_locks

    out.write('{\n  "tenant": ' + json.dumps(tenant, ensure_ascii=False))
    written = 0
    with engine.connect() as conn:
        for key in SHAPES:
            out.write(f",\n  {json.dumps(key)}: ")
            parts: list[str] = []
            n = 0
            for record in iter_section(conn, tenant, key, include_inactive):
                # indent=2 inside a record, then shifted under the list: structural newlines only (a newline
                # inside a value is escaped by json.dumps)
                parts.append(("[\n    " if n == 0 else ",\n    ")
                             + json.dumps(record, indent=2, ensure_ascii=False).replace("\n", "\n    "))
                n += 1
                if len(parts) == BATCH:
                    out.write("".join(parts))
                    parts.clear()
                    if on_rows:
                        on_rows(BATCH)
            out.write("".join(parts) + ("\n  ]" if n else "[]"))
            if on_rows and parts:
                on_rows(len(parts))
            written += n
        locks = list_locks(conn, tenant)  # few: set by hand
    out.write(',\n  "locks": ' + json.dumps(locks, indent=2, ensure_ascii=False).replace("\n", "\n  ") + "\n}\n")
    return written


def write_jsonl(engine: Engine, tenant: str, out: TextIO, include_inactive: bool = False,
                sections: list[str] | None = None, on_rows: Callable[[int], None] | None = None) -> int:
    """JSON lines: first `{"kind": "roster", "tenant": ..., "include_inactive": ...}`, then one record a
    line with its `kind` first (school, person, class, enrollment, guardian; with every section, then each
    field lock as `lock`). Returns the roster records written."""
    from processor.apply.locks import list_locks

    out.write(json.dumps({"kind": "roster", "tenant": tenant, "include_inactive": include_inactive}) + "\n")
    written = 0
    with engine.connect() as conn:
        for key in sections or list(SHAPES):
            kind = KINDS[key]
            lines: list[str] = []
            for record in iter_section(conn, tenant, key, include_inactive):
                lines.append(json.dumps({"kind": kind, **record}, ensure_ascii=False))
                if len(lines) == BATCH:
                    written += _flush_lines(out, lines, on_rows)
            written += _flush_lines(out, lines, on_rows)
        if not sections:
            for lock in list_locks(conn, tenant):
                out.write(json.dumps({"kind": "lock", **lock}, ensure_ascii=False) + "\n")
    return written


def _flush_lines(out: TextIO, lines: list[str], on_rows: Callable[[int], None] | None) -> int:
    n = len(lines)
    if n:
        out.write("\n".join(lines) + "\n")
        lines.clear()
        if on_rows:
            on_rows(n)
    return n


def write_csv(engine: Engine, tenant: str, key: str, out: TextIO, include_inactive: bool = False,
              on_rows: Callable[[int], None] | None = None) -> int:
    """One section as CSV with a header (CSV_COLUMNS): lists comma-joined in one quoted cell, no school as
    an empty cell. Returns the rows written."""
    cols = CSV_COLUMNS[key]
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    written, batch = 0, []
    with engine.connect() as conn:
        for record in iter_section(conn, tenant, key, include_inactive):
            batch.append([",".join(v) if isinstance(v, list) else "" if v is None else v
                          for v in (record[c] for c in cols)])
            if len(batch) == BATCH:
                w.writerows(batch)
                written += len(batch)
                batch.clear()
                if on_rows:
                    on_rows(BATCH)
        w.writerows(batch)
        written += len(batch)
        if on_rows and batch:
            on_rows(len(batch))
    return written
