"""`roster export`: the tenant's current roster in the contract's shape (CONTRACT.md section 6).

The row shapes (SHAPES) are shared with the API's paginated roster reads (processor/web/api.py).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, select

from processor.apply.store import ENTITY_TABLES

SCHOOL_TYPES = ("school", "district")


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
