"""`roster export`: the tenant's current roster in the contract's shape (CONTRACT.md section 6)."""

from __future__ import annotations

from sqlalchemy import Engine, select

from processor.apply.store import ENTITY_TABLES


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def export_roster(engine: Engine, tenant: str, include_inactive: bool = False) -> dict:
    def rows(table: str, *cols: str):
        t = ENTITY_TABLES[table]
        q = select(*[t.c[c] for c in cols]).where(t.c.tenant == tenant).order_by(t.c.sourced_id)
        if not include_inactive:
            q = q.where(t.c.status == "active")
        return conn.execute(q).mappings().all()

    with engine.connect() as conn:
        schools = [{"sourced_id": r["sourced_id"], "name": r["name"], "identifier": r["identifier"] or "",
                    "type": r["type"], "status": r["status"]}
                   for r in rows("orgs", "sourced_id", "name", "identifier", "type", "status")
                   if r["type"] in ("school", "district")]
        people = [{"sourced_id": r["sourced_id"], "role": r["role"], "email": r["email"] or "",
                   "given_name": r["given_name"] or "", "family_name": r["family_name"] or "",
                   "username": r["username"] or "", "school": r["school"] or None,
                   "schools": _split(r["schools"]), "status": r["status"],
                   "preferred_language": r["preferred_language"] or "en"}
                  for r in rows("people", "sourced_id", "role", "email", "given_name", "family_name", "username",
                                "school", "schools", "status", "preferred_language")]
        classes = [{"sourced_id": r["sourced_id"], "title": r["title"], "grades": _split(r["grades"]),
                    "school": r["school"], "status": r["status"]}
                   for r in rows("classes", "sourced_id", "title", "grades", "school", "status")]
        enrollments = [{"sourced_id": r["sourced_id"], "class": r["class_id"], "person": r["person"],
                        "role": r["role"], "status": r["status"]}
                       for r in rows("enrollments", "sourced_id", "class_id", "person", "role", "status")]
        guardians = [{"student": r["student"], "guardian": r["guardian"], "status": r["status"]}
                     for r in rows("guardian_links", "student", "guardian", "status")]
    return {"tenant": tenant, "schools": schools, "people": people, "classes": classes,
            "enrollments": enrollments, "guardians": guardians}
