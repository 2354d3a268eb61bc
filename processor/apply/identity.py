"""Identity churn: when a district's SIS changes sourcedIds (a migration), a person must keep one record.

- `rosterdrop roster alias --tenant ID --entity people OLD NEW` records that the district's NEW id is the
  stored record OLD. After convert, every drop's NEW is read as OLD (`apply_aliases`): in people,
  enrollments, guardian links and demographics. The stored record, its id and everything the vendor's app
  keyed on it stay; the first drop after the alias rewrites the rows' hashes silently (they were computed
  from the old id), and nothing is reported as changed unless a value really changed.
- `probable_id_change` (a hold, from check_holds): many stored people would be deactivated while as many
  near-identical ones (same email, or same name and birth date) are created: names examples so an operator
  can alias them before releasing.
"""

from __future__ import annotations

import getpass

import numpy as np
import pandas as pd
from sqlalchemy import Column, Connection, Engine, String, Table, Text, select

from processor.apply.store import ENTITY_TABLES, metadata
from processor.context import UserError
from processor.runs import now_iso
from processor.vector import arrow, isin, lookup, positions, row_hash

id_aliases = Table(
    "id_aliases", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("entity", String(32), primary_key=True),  # store table (people)
    Column("new_id", Text, primary_key=True),  # the id the district sends now
    Column("old_id", Text, nullable=False),  # the stored record it is
    Column("by", Text, nullable=False),
    Column("at", String(40), nullable=False),
)

MIN_PAIRS = 5  # probable_id_change: at least this many vanished people with a near-identical new one
EXAMPLES = 5


def add_alias(engine: Engine, tenant: str, entity: str, old: str, new: str, by: str | None = None) -> dict:
    if entity != "people":
        raise UserError(f"entity {entity!r} cannot be aliased; only people ids can (--entity people)")
    if old == new:
        raise UserError("OLD and NEW are the same id; nothing to alias")
    t = ENTITY_TABLES["people"]
    who = by or _user()
    with engine.begin() as conn:
        # OLD may itself be a later id of an earlier record (a second migration): alias to that record.
        earlier = conn.execute(select(id_aliases.c.old_id).where(
            id_aliases.c.tenant == tenant, id_aliases.c.entity == "people", id_aliases.c.new_id == old)).scalar()
        target = earlier or old
        if conn.execute(select(t.c.sourced_id).where(t.c.tenant == tenant, t.c.sourced_id == target)).first() is None:
            raise UserError(f"tenant {tenant} has no people record {old!r}; OLD must be the stored id")
        if conn.execute(select(t.c.run_id).where(t.c.tenant == tenant, t.c.sourced_id == new)).first() is not None:
            raise UserError(f"{new!r} already has its own record in tenant {tenant}; an alias cannot merge two "
                            f"records (revert the run that created it, see `rosterdrop runs changes`, then alias)")
        conn.execute(id_aliases.delete().where(id_aliases.c.tenant == tenant, id_aliases.c.entity == "people",
                                               id_aliases.c.new_id == new))
        conn.execute(id_aliases.insert().values(tenant=tenant, entity="people", new_id=new, old_id=target, by=who,
                                                at=now_iso()))
    return {"tenant": tenant, "entity": entity, "old": target, "new": new, "by": who}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "unknown"


def apply_aliases(engine: Engine, tenant: str, roster) -> int:
    """Read the district's new ids as the stored records they are, in a converted roster, in place.
    Returns how many rows were renamed."""
    with engine.connect() as conn:
        rows = conn.execute(select(id_aliases.c.new_id, id_aliases.c.old_id).where(
            id_aliases.c.tenant == tenant, id_aliases.c.entity == "people")).all()
    if not rows:
        return 0
    new = pd.Series([r.new_id for r in rows], dtype="str")
    old = pd.Series([r.old_id for r in rows], dtype="str")
    renamed = 0

    def rename(frame: pd.DataFrame, column: str) -> int:
        hit = isin(frame[column], new)
        if hit.any():
            frame.loc[hit, column] = lookup(frame.loc[hit, column], new, old).to_numpy()
        return int(hit.sum())

    for table, column in (("people", "sourced_id"), ("demographics", "sourced_id"), ("enrollments", "person")):
        if table in roster.tables:
            renamed += rename(roster.tables[table], column)
    links = roster.tables.get("guardian_links")
    if links is not None and len(links):
        n = rename(links, "student") + rename(links, "guardian")
        if n:
            links["sourced_id"] = (links["student"].astype("str") + "|" + links["guardian"].astype("str")).to_numpy()
            links["row_hash"] = row_hash([links["student"], links["guardian"]])
            renamed += n
    if roster.link_scope is not None and len(roster.link_scope):
        scope = pd.Series(roster.link_scope, dtype="str")
        hit = isin(scope, new)
        if hit.any():
            scope[hit] = lookup(scope[hit], new, old).to_numpy()
            roster.link_scope = pd.Index(scope.unique(), dtype="str")
    return renamed


def probable_id_change(conn: Connection, tenant: str, changes, roster) -> list[pd.DataFrame]:
    """A hold when at least MIN_PAIRS stored people would be deactivated while a near-identical person (same
    email, or same given name, family name and birth date) is created: the SIS probably changed its ids."""
    tc = changes.tables.get("people")
    if tc is None or tc.deactivated.empty or tc.created.empty:
        return []
    before = changes.before.get("people")
    if before is None or before.empty:
        return []
    gone = before[isin(before["sourced_id"], tc.deactivated["sourced_id"])]
    born_new = _birth_dates(roster.tables.get("demographics"))
    born_old = _stored_birth_dates(conn, tenant, gone["sourced_id"])
    match = np.full(len(gone), -1)
    for key_old, key_new in ((_email_key(gone), _email_key(tc.created)),
                             (_name_key(gone, born_old), _name_key(tc.created, born_new))):
        pos = positions(pd.Series(key_old, dtype="str"), pd.Series(key_new, dtype="str"))
        usable = (pos >= 0) & (key_old != "") & (match < 0)
        match = np.where(usable, pos, match)
    paired = match >= 0
    if paired.sum() < MIN_PAIRS:
        return []
    old_ids = gone["sourced_id"].to_numpy()[paired]
    new_ids = tc.created["sourced_id"].to_numpy()[match[paired]]
    examples = ", ".join(f"{o} → {n}" for o, n in list(zip(old_ids, new_ids, strict=True))[:EXAMPLES])
    file = (roster.files or {}).get("users", "users.csv")
    from processor.validate.issues import one_issue

    return [one_issue(
        "probable_id_change",
        f"{int(paired.sum()):,} people would be deactivated while near-identical people (same email, or same "
        f"name and birth date) are created with other ids, e.g. {examples}: your SIS may have changed its ids. "
        f"If so, map each old id to its new one with `rosterdrop roster alias --tenant {tenant} --entity people "
        f"OLD NEW` so each person keeps one record, then release the hold; if they are different people, "
        f"release it as it is.", file=file, sourced_id=str(old_ids[0]), field="sourcedId",
        value=str(int(paired.sum())))]


def _email_key(frame: pd.DataFrame) -> np.ndarray:
    import pyarrow.compute as pc

    email = pc.utf8_lower(pc.utf8_trim_whitespace(arrow(frame["email"].fillna("").astype("str"))))
    return np.asarray(email.to_numpy(zero_copy_only=False), dtype=object)


def _name_key(frame: pd.DataFrame, born: pd.Series) -> np.ndarray:
    date = lookup(frame["sourced_id"], pd.Series(born.index, dtype="str"), born.to_numpy(), default="")
    key = (frame["given_name"].fillna("").astype("str").str.strip().str.lower() + "|"
           + frame["family_name"].fillna("").astype("str").str.strip().str.lower() + "|" + date.to_numpy())
    out = key.to_numpy(dtype=object)
    out[date.to_numpy() == ""] = ""  # no birth date: a name alone is not enough
    return out


def _birth_dates(demographics: pd.DataFrame | None) -> pd.Series:
    if demographics is None or demographics.empty or "birth_date" not in demographics:
        return pd.Series(dtype="str")
    return pd.Series(demographics["birth_date"].fillna("").astype("str").to_numpy(),
                     index=demographics["sourced_id"].to_numpy(), dtype="str")


def _stored_birth_dates(conn: Connection, tenant: str, ids: pd.Series) -> pd.Series:
    t = ENTITY_TABLES["demographics"]
    wanted = list(ids)
    found: dict[str, str] = {}
    for i in range(0, len(wanted), 5000):
        rows = conn.execute(select(t.c.sourced_id, t.c.birth_date).where(
            t.c.tenant == tenant, t.c.sourced_id.in_(wanted[i:i + 5000]))).all()
        found.update({r.sourced_id: r.birth_date or "" for r in rows})
    return pd.Series(found, dtype="str")
